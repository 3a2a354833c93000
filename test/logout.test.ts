import { test } from 'node:test'
import assert from 'node:assert/strict'
import { io as ioClient, type Socket as ClientSocket } from 'socket.io-client'
import { connect, connected, sessionIdOf, sleep, startApp, whoami } from './support/app'
import { ending, report, staysConnected } from './support/cluster'
import { TestStore, answerLate } from './support/store'

// Logout: a destroyed session ends every socket opened with it, within a second,
// with { reason: 'logout' } first and a server disconnect (no auto-reconnect) after.

function openNamespace (manager: ClientSocket, nsp: string): Promise<ClientSocket> {
  const socket = manager.io.socket(nsp)
  if (!socket.connected) socket.connect()
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket))
    socket.once('connect_error', reject)
  })
}

test('HTTP logout ends every socket of the session (two tabs, two namespaces on one connection) within 1 s; others stay', async (t) => {
  let connections = 0
  const app = await startApp({
    setup: (app) => {
      app.io.of('/chat')
      app.io.on('connection', (socket) => socket.on('echo', (value: unknown, ack: (v: unknown) => void) => ack(value)))
      app.io.of('/').on('connection', () => { connections++ })
    }
  })
  t.after(() => app.close())
  const cookie = await app.login('ada')
  const otherCookie = await app.login('bob')

  // Reconnection on: the client must still not come back by itself.
  const reconnecting = { reconnection: true, extra: { reconnectionDelay: 50, reconnectionDelayMax: 100 } }
  const tab1 = await connected(app.url, { cookie, ...reconnecting })
  const tab1Chat = await openNamespace(tab1, '/chat')
  const tab2 = await connected(app.url, { cookie, ...reconnecting })
  const other = await connected(app.url, { cookie: otherCookie, ...reconnecting })
  t.after(() => { for (const s of [tab1, tab1Chat, tab2, other]) s.close() })
  assert.equal(tab1Chat.io, tab1.io, 'both namespaces share one connection')
  const connectionsBefore = connections

  const endings = [ending(tab1), ending(tab1Chat), ending(tab2)]
  const started = Date.now()
  const response = await fetch(`${app.url}/logout`, { method: 'POST', headers: { cookie } })
  assert.equal(response.status, 200)
  const ended = await Promise.all(endings)

  for (const [i, end] of ended.entries()) {
    assert.equal(end.reason, 'logout', `socket ${i} told why`)
    assert.ok(end.revokedFirst, `socket ${i}: session:revoked before disconnect`)
    assert.equal(end.disconnect, 'io server disconnect', `socket ${i}: a server disconnect, which the client does not retry`)
    assert.ok(end.disconnectedAt - started < 1000, `socket ${i} disconnected ${end.disconnectedAt - started} ms after logout`)
  }
  report(t, `logout latency (one node, 3 sockets): ${ended.map((e) => e.disconnectedAt - started).join(' / ')} ms`)

  // No reconnection, by the clients or seen by the server.
  await sleep(700)
  for (const socket of [tab1, tab1Chat, tab2]) {
    assert.equal(socket.connected, false)
    assert.equal(socket.active, false, 'the client gave up on this socket')
  }
  assert.equal(connections, connectionsBefore, 'no new connection arrived after the logout')
  assert.equal((await whoami(app.url, cookie)).user, null, 'the session is gone over HTTP too')

  // The other session was untouched and still works.
  assert.equal(other.connected, true)
  assert.equal(await other.timeout(2000).emitWithAck('echo', 'still here'), 'still here')
})

test('destroy() from a socket handler logs out every socket of that session', async (t) => {
  const app = await startApp({
    setup: (app) => {
      app.io.on('connection', (socket) => {
        socket.on('logout', () => { socket.data.session.destroy().catch(() => {}) })
      })
    }
  })
  t.after(() => app.close())
  const cookie = await app.login('ada')
  const otherCookie = await app.login('bob')
  const tab1 = await connected(app.url, { cookie })
  const tab2 = await connected(app.url, { cookie })
  const other = await connected(app.url, { cookie: otherCookie })
  t.after(() => { for (const s of [tab1, tab2, other]) s.close() })

  const endings = [ending(tab1), ending(tab2)]
  const started = Date.now()
  tab1.emit('logout')
  const ended = await Promise.all(endings)
  for (const end of ended) {
    assert.equal(end.reason, 'logout')
    assert.ok(end.revokedFirst)
    assert.equal(end.disconnect, 'io server disconnect')
    assert.ok(end.disconnectedAt - started < 1000)
  }
  report(t, `socket-side destroy -> both tabs disconnected in ${ended.map((e) => e.disconnectedAt - started).join(' / ')} ms`)
  assert.equal((await whoami(app.url, cookie)).user, null, 'the store no longer has the session')
  assert.ok(await staysConnected(other, 300), 'the other session stays connected')
})

test('a logout that lands while a handshake is being verified still ends that socket', async (t) => {
  const store = new TestStore()
  const app = await startApp({ session: { store, cookie: { secure: false, maxAge: 60_000 } } })
  t.after(() => app.close())
  const cookie = await app.login('ada')

  // The handshake's store read starts, then the session is destroyed, then the read answers "valid".
  // Reads now, answers 250 ms later: the answer predates whatever happens meanwhile.
  const readStarted = new Promise<void>((resolve) => { store.faultNextRead(sessionIdOf(cookie), answerLate(250, resolve)) })
  const socket = ioClient(app.url, { transports: ['websocket'], extraHeaders: { cookie }, reconnection: false, forceNew: true })
  t.after(() => socket.close())
  const refused = new Promise<string>((resolve) => socket.once('connect_error', (err) => resolve(err.message)))
  const end = ending(socket, 3000)
  await readStarted
  const response = await fetch(`${app.url}/logout`, { method: 'POST', headers: { cookie } })
  assert.equal(response.status, 200)
  const loggedOutAt = Date.now()

  const outcome = await Promise.race([end, refused])
  if (typeof outcome === 'string') {
    // Refusing the late handshake outright would be correct too.
    assert.equal(outcome, 'SESSION_INVALID')
    report(t, 'handshake racing a logout: refused')
    return
  }
  assert.equal(outcome.reason, 'logout', 'the socket admitted on a stale read is ended as logged out')
  assert.equal(outcome.disconnect, 'io server disconnect')
  assert.ok(outcome.disconnectedAt - loggedOutAt < 1000)
  report(t, `handshake racing a logout: socket ended ${outcome.disconnectedAt - loggedOutAt} ms after the logout`)
})

test('logout of a session with no sockets, and a second logout, are harmless', async (t) => {
  const app = await startApp()
  t.after(() => app.close())
  const cookie = await app.login('ada')
  await app.logout(cookie)
  const again = await fetch(`${app.url}/logout`, { method: 'POST', headers: { cookie } })
  assert.equal(again.status, 200)
  const result = await connect(app.url, { cookie })
  result.socket.close()
  assert.equal(result.ok, false)
  assert.equal(result.ok ? '' : result.code, 'SESSION_INVALID')
})

test('a logout that lands while a namespace join reads the store refuses the join: the app\'s connection handler never runs', async (t) => {
  const store = new TestStore({ delay: 0, serialize: true })
  const ran: string[] = []
  const app = await startApp({
    session: { store },
    setup: (instance) => { instance.io.of('/other').on('connection', (socket) => { ran.push(socket.data.session.user?.name ?? '') }) }
  })
  t.after(() => app.close())
  const cookie = await app.login('erin')
  store.delay = 200
  const join = connect(app.url, { cookie, namespace: '/other' })
  await sleep(50)
  store.delay = 0
  await app.logout(cookie)
  const result = await join
  result.socket.close()
  assert.equal(result.ok ? 'admitted' : result.code, 'SESSION_INVALID')
  await sleep(100)
  assert.deepEqual(ran, [], 'no connection handler ran with the ended session')
})

test('an app disconnect handler that throws on one socket does not leave the session\'s other sockets open', async (t) => {
  const app = await startApp({
    auth: { revalidateInterval: false },
    setup: (instance) => {
      instance.io.on('connection', (socket) => {
        socket.on('disconnect', () => { if (socket.handshake.query.boom === '1') throw new Error('an app bug in a disconnect handler') })
      })
    }
  })
  t.after(() => app.close())
  const cookie = await app.login()
  const sockets: ClientSocket[] = []
  for (const boom of ['0', '1', '0', '0']) {
    const socket = await connected(app.url, { cookie, extra: { query: { boom } } })
    t.after(() => socket.close())
    sockets.push(socket)
  }
  const ended = Promise.all(sockets.map((socket) => ending(socket, 3000)))
  const response = await fetch(`${app.url}/logout`, { method: 'POST', headers: { cookie } })
  assert.equal(response.status, 200, 'the logout route answers as usual')
  assert.deepEqual((await ended).map((e) => e.reason), ['logout', 'logout', 'logout', 'logout'])
  assert.equal((await app.app.io.fetchSockets()).length, 0)
})
