import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import type { AddressInfo } from 'node:net'
import Fastify, { type FastifyInstance } from 'fastify'
import fastifyCookie from '@fastify/cookie'
import fastifySession from '@fastify/session'
import { Authenticator } from '@fastify/passport'
import { Strategy as LocalStrategy } from 'passport-local'
import type { Socket as ClientSocket } from 'socket.io-client'
import sessionSocketAuth, { userRoom } from '../lib/index'
import type { SessionSocketAuthOptions } from '../lib/options'
import { SECRET, ask, connectedFor, refusedWith, sleep } from './support/app'
import { cookieFromResponse, ending, staysConnected } from './support/cluster'
import { LEVEL, logCapture } from './support/health'

// @fastify/passport with passport-local, and sockets registered with
// `passport: fastifyPassport, userRequired: true`: socket.data.user is what
// passport's deserializers give (as request.user is over HTTP), and a socket
// without a user, or whose user can no longer be loaded, does not stay.

type PassportInstance = InstanceType<typeof Authenticator>

interface TableUser { id: string, name: string, role: 'user' | 'admin', password: string, banned?: boolean }

/** A fixed user table; each test gets its own copy (a test deletes from it). */
function userTable (): Map<string, TableUser> {
  return new Map<string, TableUser>([
    ['u1', { id: 'u1', name: 'Ada', role: 'admin', password: 'ada-pw' }],
    ['u2', { id: 'u2', name: 'Bob', role: 'user', password: 'bob-pw' }],
    ['u3', { id: 'u3', name: 'Eve', role: 'user', password: 'eve-pw', banned: true }],
    ['u4', { id: 'u4', name: 'Crash', role: 'user', password: 'crash-pw' }]
  ])
}

/** What the deserializer makes of a table row: the user without its password. */
function publicUser (row: TableUser): { id: string, name: string, role: string } {
  return { id: row.id, name: row.name, role: row.role }
}

interface PassportApp {
  app: FastifyInstance
  url: string
  passport: PassportInstance
  table: Map<string, TableUser>
  /** The ids the deserializer was asked for, in order. */
  deserialized: string[]
  /** POST /login over the network with username and password; the Cookie header a browser would then send. */
  login (username: string, password: string, cookie?: string): Promise<string>
}

/**
 * A real app: @fastify/cookie, @fastify/session (MemoryStore), a fresh
 * Authenticator with passport-local over `table` (id serialized; the
 * deserializer gives the row, false for a banned user or a deleted one, and
 * throws for 'u4'), then this plugin with `passport` and `userRequired`.
 * Routes: POST /login, POST /logout (`request.logout()`), POST /visit (a saved
 * session with no user). Socket event 'me' acks socket.data.user on / and /chat.
 */
async function startPassportApp (t: TestContext, options: { key?: string, auth?: SessionSocketAuthOptions, logger?: object } = {}): Promise<PassportApp> {
  const table = userTable()
  const deserialized: string[] = []
  const passport = new Authenticator(options.key === undefined ? {} : { key: options.key })
  passport.use('local', new LocalStrategy((username, password, done) => {
    const row = [...table.values()].find((user) => user.name.toLowerCase() === username)
    done(null, row !== undefined && row.password === password ? row : false)
  }))
  passport.registerUserSerializer(async (user: TableUser) => user.id)
  passport.registerUserDeserializer(async (id: string) => {
    deserialized.push(id)
    if (id === 'u4') throw new Error('user directory unreachable')
    const row = table.get(id)
    return row === undefined || row.banned === true ? false : publicUser(row)
  })

  const app = Fastify({ logger: options.logger ?? false, forceCloseConnections: true })
  await app.register(fastifyCookie)
  await app.register(fastifySession, { secret: SECRET, cookie: { secure: false, maxAge: 60_000 }, saveUninitialized: false })
  await app.register(passport.initialize())
  await app.register(passport.secureSession())
  await app.register(sessionSocketAuth, { passport, userRequired: true, ...options.auth })

  app.post('/login', { preValidation: passport.authenticate('local') }, async (request) => ({ user: request.user }))
  app.post('/logout', async (request) => {
    await request.logout()
    return { ok: true }
  })
  app.post('/visit', async (request) => {
    request.session.counter = 1
    return { ok: true }
  })
  for (const name of ['/', '/chat']) {
    app.io.of(name).on('connection', (socket) => {
      socket.on('me', (ack: (user: unknown) => void) => ack(socket.data.user === undefined ? 'undefined' : socket.data.user))
    })
  }
  t.after(() => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`

  return {
    app,
    url,
    passport,
    table,
    deserialized,
    async login (username, password, cookie) {
      const response = await fetch(`${url}/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(cookie === undefined ? {} : { cookie }) },
        body: JSON.stringify({ username, password })
      })
      if (response.status !== 200) throw new Error(`login of ${username} answered ${response.status}`)
      return cookieFromResponse(response)
    }
  }
}

test('passport: after a passport-local login, socket.data.user is the deserialized user, and the socket is in its user room', async (t) => {
  const p = await startPassportApp(t)
  const cookie = await p.login('ada', 'ada-pw')
  const root = await connectedFor(t, p.url, { cookie })
  const chat = await connectedFor(t, p.url, { cookie, namespace: '/chat' })
  assert.deepEqual(await ask(root, 'me'), { id: 'u1', name: 'Ada', role: 'admin' })
  assert.deepEqual(await ask(chat, 'me'), { id: 'u1', name: 'Ada', role: 'admin' })
  assert.deepEqual(p.deserialized, ['u1', 'u1'], 'passport\'s deserializer, with the serialized id, once per namespace join')

  const bob = await connectedFor(t, p.url, { cookie: await p.login('bob', 'bob-pw') })
  assert.deepEqual(await ask(bob, 'me'), { id: 'u2', name: 'Bob', role: 'user' })
  // The default identify is the id @fastify/passport serialized.
  assert.deepEqual((await p.app.io.in(userRoom('u1')).fetchSockets()).map((socket) => socket.id), [root.id])
  assert.deepEqual((await p.app.io.in(userRoom('u2')).fetchSockets()).map((socket) => socket.id), [bob.id])
})

test('passport: before login (a session with no user in it) the socket is refused USER_REQUIRED', async (t) => {
  const p = await startPassportApp(t)
  const response = await fetch(`${p.url}/visit`, { method: 'POST' })
  const visitor = cookieFromResponse(response)
  assert.equal((await refusedWith(p.url, { cookie: visitor })).code, 'USER_REQUIRED')
  assert.equal((await refusedWith(p.url, { cookie: visitor, namespace: '/chat' })).code, 'USER_REQUIRED')
  assert.equal((await refusedWith(p.url, {})).code, 'SESSION_REQUIRED')
  assert.deepEqual(p.deserialized, [], 'nothing to deserialize')
  // Logging in (which regenerates the session) gives a cookie that is admitted.
  const cookie = await p.login('bob', 'bob-pw', visitor)
  assert.deepEqual(await ask(await connectedFor(t, p.url, { cookie }), 'me'), { id: 'u2', name: 'Bob', role: 'user' })
})

test('passport: request.logout() ends the open socket (passport regenerates the session), and its reconnect with the old cookie is refused', async (t) => {
  const p = await startPassportApp(t)
  const cookie = await p.login('ada', 'ada-pw')
  const bob = await connectedFor(t, p.url, { cookie: await p.login('bob', 'bob-pw') })
  const socket = await connectedFor(t, p.url, { cookie, reconnection: true, extra: { reconnectionDelay: 50, reconnectionDelayMax: 100 } })
  const refusals: string[] = []
  socket.on('connect_error', (err) => refusals.push(err.message))
  let reconnected = 0
  socket.on('connect', () => { reconnected++ })

  const end = ending(socket)
  const started = Date.now()
  const response = await fetch(`${p.url}/logout`, { method: 'POST', headers: { cookie } })
  assert.equal(response.status, 200)
  const ended = await end
  t.diagnostic(`logout -> socket ended after ${ended.disconnectedAt - started} ms: reason ${String(ended.reason)}, disconnect ${ended.disconnect}`)
  // @fastify/passport's logOut regenerates the session: the plugin sees a new session id.
  assert.equal(ended.reason, 'regenerate')
  assert.ok(ended.revokedFirst)
  assert.equal(ended.disconnect, 'transport close', 'the transport is closed so a browser would come back with its new cookie')

  // The client tries again with the cookie it has (the old one): refused, and it stays out.
  const deadline = Date.now() + 3000
  while (refusals.length === 0 && Date.now() < deadline) await sleep(20)
  assert.deepEqual(refusals, ['SESSION_INVALID'], 'the reconnect with the old cookie is refused')
  await sleep(300)
  assert.equal(socket.connected, false)
  assert.equal(reconnected, 0, 'never admitted again')
  assert.equal((await refusedWith(p.url, { cookie })).code, 'SESSION_INVALID', 'a fresh handshake with the old cookie too')
  assert.ok(await staysConnected(bob, 100), 'another user stays')
})

test('passport: a deserializer giving false (a banned user) is no user: USER_REQUIRED', async (t) => {
  const p = await startPassportApp(t)
  const cookie = await p.login('eve', 'eve-pw')
  assert.equal((await refusedWith(p.url, { cookie })).code, 'USER_REQUIRED')
  assert.deepEqual(p.deserialized, ['u3'], 'the deserializer was asked')
  // The same app without userRequired admits her, with no user.
  const lenient = await startPassportApp(t, { auth: { userRequired: false } })
  assert.equal(await ask(await connectedFor(t, lenient.url, { cookie: await lenient.login('eve', 'eve-pw') }), 'me'), 'undefined')
})

test('passport: a deserializer that throws refuses USER_UNAVAILABLE, logged at error level', async (t) => {
  const capture = logCapture()
  const p = await startPassportApp(t, { logger: { level: 'info', stream: capture.stream } })
  const cookie = await p.login('crash', 'crash-pw')
  const before = capture.atLeast(LEVEL.error).length
  assert.equal((await refusedWith(p.url, { cookie })).code, 'USER_UNAVAILABLE')
  const errors = capture.atLeast(LEVEL.error).slice(before)
  assert.equal(errors.length, 1)
  assert.match(String(errors[0]?.msg), /loading the user threw/)
  assert.match(JSON.stringify(errors[0]?.err), /user directory unreachable/)
  assert.deepEqual(await ask(await connectedFor(t, p.url, { cookie: await p.login('bob', 'bob-pw') }), 'me'), { id: 'u2', name: 'Bob', role: 'user' }, 'other users still get in')
})

test('passport: a user deleted from the table, then reauthorizeUser(id): the socket ends with \'forbidden\'; other users stay', async (t) => {
  const p = await startPassportApp(t)
  const cookie = await p.login('ada', 'ada-pw')
  const sockets = [await connectedFor(t, p.url, { cookie }), await connectedFor(t, p.url, { cookie, namespace: '/chat' }), await connectedFor(t, p.url, { cookie: await p.login('ada', 'ada-pw') })]
  const bob = await connectedFor(t, p.url, { cookie: await p.login('bob', 'bob-pw') })

  p.table.delete('u1')
  assert.ok(await staysConnected(sockets[0] as ClientSocket, 200), 'nothing happens until the app says so')
  const endings = sockets.map((socket) => ending(socket))
  const started = Date.now()
  await p.app.reauthorizeUser('u1')
  for (const end of await Promise.all(endings)) {
    assert.equal(end.reason, 'forbidden')
    assert.ok(end.revokedFirst)
    assert.equal(end.disconnect, 'io server disconnect')
  }
  t.diagnostic(`measured: reauthorizeUser -> sockets ended within ${Date.now() - started} ms`)
  assert.ok(await staysConnected(bob, 200))
  assert.deepEqual(await ask(bob, 'me'), { id: 'u2', name: 'Bob', role: 'user' })
  assert.equal((await refusedWith(p.url, { cookie })).code, 'USER_REQUIRED', 'and the session cannot open a new socket')
})

test('passport: a custom Authenticator key is where the user id is read from, for the user and the user room', async (t) => {
  const p = await startPassportApp(t, { key: 'auth' })
  const cookie = await p.login('bob', 'bob-pw')
  const socket = await connectedFor(t, p.url, { cookie })
  assert.deepEqual(await ask(socket, 'me'), { id: 'u2', name: 'Bob', role: 'user' })
  const [remote] = await p.app.io.fetchSockets()
  assert.equal(remote?.data.session.get('passport' as never), undefined, 'nothing under the default key')
  assert.equal((remote?.data.session as unknown as Record<string, unknown> | undefined)?.auth, 'u2')
  assert.deepEqual((await p.app.io.in(userRoom('u2')).fetchSockets()).map((s) => s.id), [socket.id])
})
