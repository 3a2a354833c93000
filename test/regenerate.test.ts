import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { FastifyInstance } from 'fastify'
import type { Socket as ClientSocket } from 'socket.io-client'
import { connected, refusedWith, regenerateRoutes, startApp } from './support/app'
import { cookieFromResponse, ending, report } from './support/cluster'

// Regenerate: sockets bound to the old session id are made to re-handshake.
// The transport closes, the client reconnects by itself, and is admitted only
// with the new cookie.

// The routes of regenerateRoutes, plus the same 'sid' event on /chat.
function regenerateRoute (app: FastifyInstance): void {
  regenerateRoutes(app)
  app.io.of('/chat').on('connection', (socket) => {
    socket.on('sid', (ack: (id: string) => void) => ack(socket.data.session.sessionId))
  })
}

const reconnecting = { reconnection: true, extra: { reconnectionDelay: 100, reconnectionDelayMax: 200 } }

function next (socket: ClientSocket, event: 'connect' | 'connect_error', timeoutMs = 5000): Promise<Error | undefined> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} within ${timeoutMs} ms`)), timeoutMs)
    socket.once(event, (err?: Error) => {
      clearTimeout(timer)
      resolve(err)
    })
  })
}

test('regenerate closes the transport; the client reconnects by itself and is admitted with the new cookie only', async (t) => {
  const app = await startApp({ setup: regenerateRoute })
  t.after(() => app.close())
  const cookie = await app.login('ada')
  const otherCookie = await app.login('bob')

  const tab = await connected(app.url, { cookie, ...reconnecting })
  const chat = tab.io.socket('/chat')
  await next(chat, 'connect')
  const staleTab = await connected(app.url, { cookie, ...reconnecting })
  const other = await connected(app.url, { cookie: otherCookie, ...reconnecting })
  t.after(() => { for (const s of [tab, chat, staleTab, other]) s.close() })
  const oldId = await tab.timeout(2000).emitWithAck('sid')

  // Like a browser, the first tab holds the new cookie by the time it reconnects.
  // (The socket event may beat the HTTP response, so the header is set when the client reconnects.)
  let newCookie = ''
  tab.io.on('reconnect_attempt', () => { tab.io.opts.extraHeaders = { cookie: newCookie } })
  const endings = [ending(tab), ending(chat), ending(staleTab)]
  const reconnected = [next(tab, 'connect'), next(chat, 'connect')]
  const staleRefused = next(staleTab, 'connect_error')
  const started = Date.now()
  const response = await fetch(`${app.url}/regenerate`, { method: 'POST', headers: { cookie } })
  assert.equal(response.status, 200)
  newCookie = cookieFromResponse(response)
  const { sessionId: newId } = (await response.json()) as { sessionId: string }
  assert.notEqual(newId, oldId)

  const ended = await Promise.all(endings)
  for (const end of ended) {
    assert.equal(end.reason, 'regenerate')
    assert.ok(end.revokedFirst)
    assert.equal(end.disconnect, 'transport close', 'the transport was closed, so the client will reconnect')
  }
  report(t, `regenerate -> told in ${ended.map((e) => (e.revokedAt ?? 0) - started).join(' / ')} ms, transports closed in ${ended.map((e) => e.disconnectedAt - started).join(' / ')} ms`)

  // Reconnected with no app code on the client, under the new session, both namespaces.
  await Promise.all(reconnected)
  report(t, `regenerate -> client back under the new session after ${Date.now() - started} ms`)
  assert.equal(await tab.timeout(2000).emitWithAck('sid'), newId)
  assert.equal(await chat.timeout(2000).emitWithAck('sid'), newId)

  // The tab that still sends the old cookie is refused when it comes back.
  const refusal = await staleRefused
  assert.equal(refusal?.message, 'SESSION_INVALID')
  assert.equal(staleTab.connected, false)

  // The other session was not touched.
  assert.equal(other.connected, true)
  assert.equal(await other.timeout(2000).emitWithAck('sid') === newId, false)
})

test('after regenerate the old cookie is refused and the new one admitted (fresh clients)', async (t) => {
  const app = await startApp({ setup: regenerateRoute })
  t.after(() => app.close())
  const cookie = await app.login('ada')
  const response = await fetch(`${app.url}/regenerate`, { method: 'POST', headers: { cookie } })
  const newCookie = cookieFromResponse(response)
  assert.equal((await refusedWith(app.url, { cookie })).code, 'SESSION_INVALID')
  const socket = await connected(app.url, { cookie: newCookie })
  socket.close()
})

test('regenerate() called from a socket handler ends the old session\'s sockets with reason regenerate', async (t) => {
  const app = await startApp({
    setup: (app) => {
      app.io.on('connection', (socket) => {
        socket.on('regenerate', () => { socket.data.session.regenerate().catch(() => {}) })
      })
    }
  })
  t.after(() => app.close())
  const cookie = await app.login('ada')
  const tab1 = await connected(app.url, { cookie })
  const tab2 = await connected(app.url, { cookie })
  t.after(() => { tab1.close(); tab2.close() })
  const endings = [ending(tab1), ending(tab2)]
  tab1.emit('regenerate')
  for (const end of await Promise.all(endings)) {
    assert.equal(end.reason, 'regenerate')
    assert.ok(end.revokedFirst)
  }
  // A socket cannot hand the browser the new cookie: the old one no longer works.
  assert.equal((await refusedWith(app.url, { cookie })).code, 'SESSION_INVALID')
})
