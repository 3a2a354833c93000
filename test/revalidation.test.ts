import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import type { Socket as ClientSocket } from 'socket.io-client'
import { connected, sessionIdOf, sleep, startApp } from './support/app'
import { ending, redisClient, report, startRedisNode, staysConnected, uniquePrefix } from './support/cluster'
import { needRedis } from './support/services'
import { TestStore } from './support/store'

// Out-of-band revocation: a session deleted from the store by other means ends
// its sockets within revalidateInterval; the cost is one read per session per
// interval, whatever the number of sockets, spread out with jitter.

// Time a store read plus the disconnect may take on a loaded 2-core machine.
const LATENCY_MARGIN = 300

// Each test has its own app and store and mostly waits for revalidation rounds, so they run at once.
describe('revalidation', { concurrency: true }, () => {
  test('a session deleted from the MemoryStore out of band: its sockets go with reason "revoked" within revalidateInterval', async (t) => {
    const interval = 600
    const store = new TestStore()
    const app = await startApp({ session: { store, cookie: { secure: false, maxAge: 60_000 } }, auth: { revalidateInterval: interval } })
    t.after(() => app.close())
    const cookie = await app.login('ada')
    const tab1 = await connected(app.url, { cookie })
    const tab2 = await connected(app.url, { cookie })
    const other = await connected(app.url, { cookie: await app.login('bob') })
    t.after(() => { for (const s of [tab1, tab2, other]) s.close() })
    // Let a revalidation or two pass first, so the deletion lands mid-cycle.
    await sleep(interval * 0.6)

    const endings = [ending(tab1, interval * 3), ending(tab2, interval * 3)]
    const deletedAt = Date.now()
    store.destroy(sessionIdOf(cookie), () => {})
    const ended = await Promise.all(endings)
    for (const end of ended) {
      assert.equal(end.reason, 'revoked')
      assert.ok(end.revokedFirst)
      assert.equal(end.disconnect, 'io server disconnect')
      const took = end.disconnectedAt - deletedAt
      assert.ok(took <= interval + LATENCY_MARGIN, `disconnected ${took} ms after the deletion (revalidateInterval ${interval})`)
    }
    report(t, `MemoryStore deletion -> disconnected after ${ended.map((e) => e.disconnectedAt - deletedAt).join(' / ')} ms (revalidateInterval ${interval} ms)`)
    assert.ok(await staysConnected(other, interval + 100), 'a session still in the store keeps its socket')
  })

  test('a session key deleted from Redis by another client: its socket goes with reason "revoked" within revalidateInterval', async (t) => {
    if (!await needRedis(t)) return
    const interval = 600
    const prefix = uniquePrefix('revalidation')
    const node = await startRedisNode(t, { sessionPrefix: prefix, auth: { revalidateInterval: interval } })
    const admin = await redisClient(t)
    const cookie = await node.login('ada')
    const otherCookie = await node.login('bob')
    const key = prefix + sessionIdOf(cookie)
    assert.equal(await admin.exists(key), 1, 'the session lives in Redis under the test prefix')
    const socket = await connected(node.url, { cookie })
    const other = await connected(node.url, { cookie: otherCookie })
    t.after(() => { socket.close(); other.close() })
    await sleep(interval * 0.6)

    const end = ending(socket, interval * 3)
    const deletedAt = Date.now()
    assert.equal(await admin.del(key), 1) // what an admin script would do
    const ended = await end
    const took = ended.disconnectedAt - deletedAt
    assert.equal(ended.reason, 'revoked')
    assert.equal(ended.disconnect, 'io server disconnect')
    assert.ok(took <= interval + LATENCY_MARGIN, `disconnected ${took} ms after DEL (revalidateInterval ${interval})`)
    report(t, `Redis DEL -> disconnected after ${took} ms (revalidateInterval ${interval} ms)`)
    assert.ok(await staysConnected(other, interval + 100))
    await admin.del(prefix + sessionIdOf(otherCookie))
  })

  test('revalidateInterval: false: a session deleted out of band keeps its socket, and the store is not read', async (t) => {
    const store = new TestStore()
    const app = await startApp({ session: { store, cookie: { secure: false, maxAge: 60_000 } }, auth: { revalidateInterval: false } })
    t.after(() => app.close())
    const cookie = await app.login('ada')
    const socket = await connected(app.url, { cookie })
    t.after(() => socket.close())
    const readsBefore = store.reads.length
    store.destroy(sessionIdOf(cookie), () => {})
    assert.ok(await staysConnected(socket, 1500), 'not disconnected: revalidation is off')
    assert.equal(store.readsAfter(readsBefore).length, 0, 'no revalidation reads')
  })

  test('cost: 20 sockets of 2 sessions cost one store read per session per interval, not per socket', async (t) => {
    const interval = 300
    const store = new TestStore()
    const app = await startApp({
      session: { store, cookie: { secure: false, maxAge: 60_000 } },
      auth: { revalidateInterval: interval },
      setup: (app) => { app.io.of('/chat') }
    })
    t.after(() => app.close())
    const cookies = [await app.login('ada'), await app.login('bob')]
    const sockets: ClientSocket[] = []
    t.after(() => { for (const s of sockets) s.close() })
    for (const cookie of cookies) {
      for (let i = 0; i < 5; i++) {
        // 5 connections per session, each with two namespaces: 10 sockets per session.
        const socket = await connected(app.url, { cookie })
        sockets.push(socket)
        const chat = socket.io.socket('/chat')
        await new Promise<void>((resolve, reject) => { chat.once('connect', resolve); chat.once('connect_error', reject) })
        sockets.push(chat)
      }
    }
    assert.equal(sockets.length, 20)
    assert.equal(app.app.io.of('/').sockets.size + app.app.io.of('/chat').sockets.size, 20)

    const window = interval * 5
    const readsBefore = store.reads.length
    await sleep(window)
    const reads = store.readsAfter(readsBefore)
    const perSession = cookies.map((cookie) => reads.filter((read) => read.sessionId === sessionIdOf(cookie)).length)
    // One read per session per interval, with intervals jittered down to 0.75x: at most window / (0.75 * interval) + 1 each.
    const most = Math.floor(window / (0.75 * interval)) + 1
    for (const count of perSession) {
      assert.ok(count >= 3, `a session was revalidated only ${count} times in ${window} ms`)
      assert.ok(count <= most, `a session was read ${count} times in ${window} ms (at most ${most} for one read per interval)`)
    }
    assert.equal(reads.length, perSession[0] + perSession[1], 'no other reads')
    report(t, `revalidation cost: ${reads.length} store reads in ${window} ms for 20 sockets of 2 sessions (per session: ${perSession.join(', ')}; one per socket would be ~${20 * window / interval})`)
    for (const socket of sockets) assert.equal(socket.connected, true)
  })

  test('revalidation reads are spread out with jitter, not made all at once, and never later than the interval', async (t) => {
    const interval = 1000
    const store = new TestStore()
    const connectedAt = new Map<string, number>()
    const app = await startApp({
      session: { store, cookie: { secure: false, maxAge: 60_000 } },
      auth: { revalidateInterval: interval },
      setup: (app) => { app.io.on('connection', (socket) => { connectedAt.set(socket.data.session.sessionId, Date.now()) }) }
    })
    t.after(() => app.close())
    const cookies: string[] = []
    for (let i = 0; i < 10; i++) cookies.push(await app.login(`user${i}`))
    const since = Date.now()
    const sockets = await Promise.all(cookies.map((cookie) => connected(app.url, { cookie })))
    t.after(() => { for (const s of sockets) s.close() })
    await sleep(interval + 200)

    // Each session's first revalidation, measured from its own connection.
    const delays = cookies.map((cookie) => {
      const id = sessionIdOf(cookie)
      const reads = store.readsSince(since).filter((read) => read.sessionId === id)
      // The first read is the handshake's; the second is the first revalidation.
      assert.ok(reads.length >= 2, `session ${id.slice(0, 6)} was not revalidated within ${interval + 200} ms`)
      return reads[1].at - (connectedAt.get(id) ?? NaN)
    })
    const spread = Math.max(...delays) - Math.min(...delays)
    // Jitter only shortens the interval: a deletion is always seen within it.
    for (const delay of delays) assert.ok(delay <= interval + 150, `first revalidation ${delay} ms after connecting (interval ${interval})`)
    assert.ok(spread >= 15, `10 sessions connected together were all revalidated within ${spread} ms of their connection: no jitter`)
    report(t, `first revalidation after connect: ${Math.min(...delays)}..${Math.max(...delays)} ms for 10 sessions (interval ${interval} ms)`)
  })
})
