import { describe, test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import type { Socket as ClientSocket } from 'socket.io-client'
import { connected, refusedWith, regenerateRoutes } from './support/app'
import { cookieFromResponse, ending, report, startCluster, staysConnected, type RedisNode } from './support/cluster'
import { needRedis } from './support/services'

// Multi-node: nodes share Redis for the session store (connect-redis, one
// prefix) and for @socket.io/redis-adapter (one key). Whatever ends a session
// on one node ends its sockets on every node.

async function cluster (t: TestContext, count: number): Promise<RedisNode[]> {
  return startCluster(t, count, { setup: regenerateRoutes })
}

function closeAll (t: TestContext, sockets: ClientSocket[]): void {
  t.after(() => { for (const socket of sockets) socket.close() })
}

// Each test has its own nodes, session prefix and adapter key, so they run at once.
describe('cluster', { concurrency: true }, () => {
  test('cluster: POST /logout on node A disconnects the session\'s socket on node B within 1 s', async (t) => {
    if (!await needRedis(t)) return
    const [a, b] = await cluster(t, 2)
    const cookie = await a.login('ada') // logged in over HTTP on A
    const otherCookie = await a.login('bob')
    const onB = await connected(b.url, { cookie, reconnection: true, extra: { reconnectionDelay: 50 } })
    const onA = await connected(a.url, { cookie })
    const otherOnB = await connected(b.url, { cookie: otherCookie })
    closeAll(t, [onB, onA, otherOnB])

    const endings = [ending(onB), ending(onA)]
    const started = Date.now()
    const response = await fetch(`${a.url}/logout`, { method: 'POST', headers: { cookie } })
    assert.equal(response.status, 200)
    const [endB, endA] = await Promise.all(endings)
    for (const end of [endB, endA]) {
      assert.equal(end.reason, 'logout')
      assert.ok(end.revokedFirst)
      assert.equal(end.disconnect, 'io server disconnect')
    }
    const latencyB = endB.disconnectedAt - started
    assert.ok(latencyB < 1000, `node B's socket disconnected ${latencyB} ms after the logout on A`)
    report(t, `logout latency across nodes: node B ${latencyB} ms, node A ${endA.disconnectedAt - started} ms`)

    assert.ok(await staysConnected(otherOnB, 300), 'the other session stays on B')
    assert.equal(onB.active, false, 'the client on B does not reconnect by itself')
    assert.equal((await refusedWith(b.url, { cookie })).code, 'SESSION_INVALID', 'B sees the session gone from the shared store')
  })

  test('cluster: disconnectSession on node A reaches nodes B and C', async (t) => {
    if (!await needRedis(t)) return
    const [a, b, c] = await cluster(t, 3)
    const cookie = await b.login('ada')
    const otherCookie = await c.login('bob')
    const response = await fetch(`${a.url}/sid`, { headers: { cookie } })
    const { sessionId } = (await response.json()) as { sessionId: string }
    const onB = await connected(b.url, { cookie })
    const onC = await connected(c.url, { cookie })
    const otherOnC = await connected(c.url, { cookie: otherCookie })
    closeAll(t, [onB, onC, otherOnC])

    const endings = [ending(onB), ending(onC)]
    const started = Date.now()
    await a.app.disconnectSession(sessionId) // A itself holds no socket of this session
    const ended = await Promise.all(endings)
    for (const end of ended) {
      assert.equal(end.reason, 'revoked')
      assert.ok(end.revokedFirst)
      assert.equal(end.disconnect, 'io server disconnect')
      assert.ok(end.disconnectedAt - started < 1000)
    }
    report(t, `disconnectSession on A -> B ${ended[0].disconnectedAt - started} ms, C ${ended[1].disconnectedAt - started} ms`)
    assert.ok(await staysConnected(otherOnC, 300))
  })

  test('cluster: regenerate on node A makes the socket on node B reconnect, admitted under the new session', async (t) => {
    if (!await needRedis(t)) return
    const [a, b] = await cluster(t, 2)
    const cookie = await a.login('ada')
    const onB = await connected(b.url, { cookie, reconnection: true, extra: { reconnectionDelay: 100, reconnectionDelayMax: 200 } })
    const staleOnB = await connected(b.url, { cookie, reconnection: true, extra: { reconnectionDelay: 100, reconnectionDelayMax: 200 } })
    closeAll(t, [onB, staleOnB])

    let newCookie = ''
    onB.io.on('reconnect_attempt', () => { onB.io.opts.extraHeaders = { cookie: newCookie } })
    const end = ending(onB)
    const back = new Promise<void>((resolve) => onB.once('connect', () => resolve()))
    const staleRefused = new Promise<string>((resolve) => staleOnB.once('connect_error', (err) => resolve(err.message)))
    const started = Date.now()
    const response = await fetch(`${a.url}/regenerate`, { method: 'POST', headers: { cookie } })
    newCookie = cookieFromResponse(response)
    const { sessionId: newId } = (await response.json()) as { sessionId: string }

    const ended = await end
    assert.equal(ended.reason, 'regenerate')
    assert.equal(ended.disconnect, 'transport close')
    await back
    report(t, `regenerate on A -> socket on B closed after ${ended.disconnectedAt - started} ms, back under the new session after ${Date.now() - started} ms`)
    assert.equal(await onB.timeout(2000).emitWithAck('sid'), newId)
    assert.equal(await staleRefused, 'SESSION_INVALID')
  })

  test('cluster: a node closing disconnects only its own sockets; the others keep working', async (t) => {
    if (!await needRedis(t)) return
    const [a, b] = await cluster(t, 2)
    const cookie = await a.login('ada')
    const onA = await connected(a.url, { cookie })
    const onB = await connected(b.url, { cookie })
    closeAll(t, [onA, onB])

    const endB = ending(onB)
    await b.close()
    assert.ok((await endB).disconnect.length > 0, 'B\'s own socket went with B')
    assert.ok(await staysConnected(onA, 1000), 'A\'s socket of the same session stays connected')
    assert.equal(typeof await onA.timeout(2000).emitWithAck('sid'), 'string', 'A still answers')

    // A still ends its sockets on logout after B has gone.
    const endA = ending(onA)
    await a.logout(cookie)
    assert.equal((await endA).reason, 'logout')
  })
})
