import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { FastifyInstance } from 'fastify'
import { connected, startApp } from './support/app'
import { ending, report, staysConnected } from './support/cluster'

// fastify.disconnectSession(sessionId): every socket of that session goes with
// reason "revoked"; other sessions stay.

/** GET /sid: the session id, as an app would read it (request.session.sessionId). */
function sessionIdRoute (app: FastifyInstance): void {
  app.get('/sid', async (request) => ({ sessionId: request.session.sessionId }))
}

async function sessionIdOver (url: string, cookie: string): Promise<string> {
  const response = await fetch(`${url}/sid`, { headers: { cookie } })
  assert.equal(response.status, 200)
  return ((await response.json()) as { sessionId: string }).sessionId
}

test('disconnectSession(sessionId) ends every socket of that session with reason "revoked", and only those', async (t) => {
  const app = await startApp({ setup: (app) => { sessionIdRoute(app); app.io.of('/chat') } })
  t.after(() => app.close())
  const cookie = await app.login('ada')
  const otherCookie = await app.login('bob')
  const sessionId = await sessionIdOver(app.url, cookie)

  const tab1 = await connected(app.url, { cookie, reconnection: true, extra: { reconnectionDelay: 50 } })
  const chat = tab1.io.socket('/chat')
  await new Promise<void>((resolve, reject) => { chat.once('connect', resolve); chat.once('connect_error', reject) })
  const tab2 = await connected(app.url, { cookie })
  const other = await connected(app.url, { cookie: otherCookie })
  const otherChat = other.io.socket('/chat')
  await new Promise<void>((resolve, reject) => { otherChat.once('connect', resolve); otherChat.once('connect_error', reject) })
  t.after(() => { for (const s of [tab1, chat, tab2, other, otherChat]) s.close() })

  const endings = [ending(tab1), ending(chat), ending(tab2)]
  const started = Date.now()
  // The typed decorator: Promise<void>.
  const result: void = await app.app.disconnectSession(sessionId)
  assert.equal(result, undefined)
  const ended = await Promise.all(endings)
  for (const end of ended) {
    assert.equal(end.reason, 'revoked')
    assert.ok(end.revokedFirst)
    assert.equal(end.disconnect, 'io server disconnect', 'a server disconnect: the client does not reconnect by itself')
    assert.ok(end.disconnectedAt - started < 1000)
  }
  report(t, `disconnectSession -> 3 sockets disconnected in ${ended.map((e) => e.disconnectedAt - started).join(' / ')} ms`)

  assert.ok(await staysConnected(other, 300), 'the other session keeps its sockets')
  assert.equal(otherChat.connected, true)
  assert.equal(tab1.active, false, 'the client does not come back by itself')
  assert.equal(app.app.io.of('/').sockets.size, 1)
  assert.equal(app.app.io.of('/chat').sockets.size, 1)
})

test('disconnectSession for a session with no sockets resolves; a bad id is a TypeError', async (t) => {
  const app = await startApp()
  t.after(() => app.close())
  await app.app.disconnectSession('no-such-session')
  await assert.rejects(app.app.disconnectSession(''), TypeError)
  await assert.rejects(app.app.disconnectSession(42 as unknown as string), TypeError)
})
