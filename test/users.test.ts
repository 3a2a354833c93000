import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import type { FastifyInstance } from 'fastify'
import type { FastifySessionOptions } from '@fastify/session'
import { Authenticator } from '@fastify/passport'
import type { Socket as ClientSocket } from 'socket.io-client'
import sessionSocketAuth, { userRoom } from '../lib/index'
import { ask, connectedFor, loginAs, refusedWith, registrationError, sleep, startApp, userRoutes, type StartOptions, type TestApp } from './support/app'
import { ending, staysConnected } from './support/cluster'
import { LEVEL, logCapture } from './support/health'
import { TestStore } from './support/store'

// loadUser, userRequired, identify, userRoom and disconnectUser: who a socket's
// user is, refusals when there is none (or it cannot be loaded), and reaching
// or ending every socket of one user, whichever session or tab it is in.

const INVALID_OPTION = 'FST_SESSION_SOCKET_AUTH_INVALID_OPTION'
const INVALID_ARGUMENT = 'FST_SESSION_SOCKET_AUTH_INVALID_ARGUMENT'

/**
 * userRoutes, POST /anon (a saved session with no user in it), and the socket
 * event 'me' on / and /chat, answering socket.data.user ('undefined' when unset).
 */
function setup (app: FastifyInstance): void {
  userRoutes(app)
  app.post('/anon', async (request) => {
    request.session.counter = 1
    return { ok: true }
  })
  for (const name of ['/', '/chat']) {
    app.io.of(name).on('connection', (socket) => {
      socket.on('me', (ack: (user: unknown) => void) => ack(socket.data.user === undefined ? 'undefined' : socket.data.user))
    })
  }
}

async function start (t: TestContext, options: StartOptions = {}): Promise<TestApp> {
  const app = await startApp({ setup, ...options })
  t.after(() => app.close())
  return app
}

/** The Cookie header of a saved session that has no user. */
async function anonymous (app: TestApp): Promise<string> {
  const response = await app.app.inject({ method: 'POST', url: '/anon' })
  const setCookie = response.cookies.find((cookie) => cookie.name === 'sessionId')
  if (setCookie === undefined) throw new Error('POST /anon set no cookie')
  return `sessionId=${encodeURIComponent(setCookie.value)}`
}

/** The ids of the sockets in a room of the main namespace, sorted. */
async function idsIn (app: FastifyInstance, room: string): Promise<string[]> {
  return (await app.io.in(room).fetchSockets()).map((socket) => socket.id).sort()
}

/** Every `event` the sockets receive from now on, by socket. */
function received (sockets: ClientSocket[], event: string): Map<ClientSocket, unknown[]> {
  const seen = new Map<ClientSocket, unknown[]>()
  for (const socket of sockets) {
    const list: unknown[] = []
    seen.set(socket, list)
    socket.on(event, (payload: unknown) => list.push(payload))
  }
  return seen
}

test('loadUser (sync): its result is socket.data.user, loaded from the session and socket at every namespace join, before the rules', async (t) => {
  const calls: Array<{ name: string | undefined, namespace: string }> = []
  const seenByRule: unknown[] = []
  let noUser: null | false | undefined = null
  const app = await start(t, {
    auth: {
      loadUser: (session, socket) => {
        calls.push({ name: session.user?.name, namespace: socket.nsp.name })
        return session.user === undefined ? noUser : { name: session.user.name.toUpperCase(), via: socket.nsp.name }
      },
      authorize: (_session, socket) => {
        seenByRule.push(socket.data.user)
        return true
      }
    }
  })
  const cookie = await app.login('ada')
  const root = await connectedFor(t, app.url, { cookie })
  const chat = await connectedFor(t, app.url, { cookie, namespace: '/chat' })
  assert.deepEqual(await ask(root, 'me'), { name: 'ADA', via: '/' })
  assert.deepEqual(await ask(chat, 'me'), { name: 'ADA', via: '/chat' })
  assert.deepEqual(calls, [{ name: 'ada', namespace: '/' }, { name: 'ada', namespace: '/chat' }], 'one load per namespace join')
  assert.deepEqual(seenByRule, [{ name: 'ADA', via: '/' }, { name: 'ADA', via: '/chat' }], 'the global rule already sees the user')

  // Nothing (null, false, undefined) means no user: admitted (userRequired is off), socket.data.user undefined.
  const anon = await anonymous(app)
  for (const nothing of [null, false, undefined] as const) {
    noUser = nothing
    const socket = await connectedFor(t, app.url, { cookie: anon })
    assert.equal(await ask(socket, 'me'), 'undefined', `a loader returning ${String(nothing)} gives no user`)
    socket.close()
  }
})

test('loadUser (async): socket.data.user is what the promise resolves to, from the app\'s own user table', async (t) => {
  const table = new Map([['ada', { id: 1, name: 'Ada', plan: 'pro' }], ['bob', { id: 2, name: 'Bob', plan: 'free' }]])
  const app = await start(t, {
    auth: {
      loadUser: async (session) => {
        await sleep(30)
        return table.get(session.user?.name ?? '') ?? null
      }
    }
  })
  const ada = await connectedFor(t, app.url, { cookie: await app.login('ada') })
  const bob = await connectedFor(t, app.url, { cookie: await app.login('bob'), namespace: '/chat' })
  const nobody = await connectedFor(t, app.url, { cookie: await app.login('carol') })
  assert.deepEqual(await ask(ada, 'me'), { id: 1, name: 'Ada', plan: 'pro' })
  assert.deepEqual(await ask(bob, 'me'), { id: 2, name: 'Bob', plan: 'free' })
  assert.equal(await ask(nobody, 'me'), 'undefined', 'a user missing from the table is no user')
})

test('userRequired: a session without a user is refused USER_REQUIRED (loader giving nothing or false); one with a user is admitted', async (t) => {
  const connections: string[] = []
  const app = await start(t, {
    auth: {
      userRequired: true,
      loadUser: async (session) => {
        if (session.user === undefined) return undefined
        return session.user.name === 'banned' ? false : { name: session.user.name }
      }
    },
    setup: (instance) => {
      setup(instance)
      instance.io.on('connection', (socket) => { connections.push(socket.id) })
    }
  })
  const anon = await anonymous(app)
  for (const namespace of ['', '/chat']) {
    const refused = await refusedWith(app.url, { cookie: anon, namespace })
    assert.equal(refused.code, 'USER_REQUIRED')
    assert.equal((refused.data as { code: string }).code, 'USER_REQUIRED')
    assert.equal((await refusedWith(app.url, { cookie: await app.login('banned'), namespace })).code, 'USER_REQUIRED', 'false means no user')
  }
  assert.deepEqual(connections, [], 'no refused socket reached a connection handler')
  const ada = await connectedFor(t, app.url, { cookie: await app.login('ada') })
  assert.deepEqual(await ask(ada, 'me'), { name: 'ada' })
})

test('a loader that throws (or rejects) refuses USER_UNAVAILABLE, logged at error level; other sessions still get in', async (t) => {
  const capture = logCapture()
  const app = await start(t, {
    fastify: { logger: { level: 'info', stream: capture.stream } },
    auth: {
      loadUser: (session) => {
        if (session.user?.name === 'thrower') throw new Error('user database down')
        if (session.user?.name === 'rejecter') return Promise.reject(new Error('user database timed out'))
        return { name: session.user?.name ?? 'nobody' }
      }
    }
  })
  for (const name of ['thrower', 'rejecter']) {
    const before = capture.atLeast(LEVEL.error).length
    const cookie = await app.login(name)
    assert.equal((await refusedWith(app.url, { cookie })).code, 'USER_UNAVAILABLE', name)
    assert.equal((await refusedWith(app.url, { cookie, namespace: '/chat' })).code, 'USER_UNAVAILABLE', `${name} on /chat`)
    const errors = capture.atLeast(LEVEL.error).slice(before)
    assert.equal(errors.length, 2, `each refusal of ${name} is logged at error level`)
    assert.match(String(errors[0]?.msg), /loading the user threw/)
  }
  assert.deepEqual(await ask(await connectedFor(t, app.url, { cookie: await app.login('ada') }), 'me'), { name: 'ada' })
})

test('identify by default: a string or number under session.passport names the user room; no id, no user room', async (t) => {
  const app = await start(t)
  assert.equal(sessionSocketAuth.userRoom, userRoom, 'userRoom is on the default export too')
  const alice = await connectedFor(t, app.url, { cookie: await loginAs(app.app, 'u-alice') })
  const numeric = await connectedFor(t, app.url, { cookie: await loginAs(app.app, 42) })
  const noId = await connectedFor(t, app.url, { cookie: await app.login('ada') }) // session.user only, no session.passport

  assert.deepEqual(await idsIn(app.app, userRoom('u-alice')), [alice.id])
  assert.deepEqual(await idsIn(app.app, userRoom(42)), [numeric.id])
  assert.deepEqual(await idsIn(app.app, userRoom('42')), [numeric.id], 'a number and its string are one user')
  assert.ok(!userRoom('u-alice').includes('u-alice'), 'the room name does not reveal the id')

  const [remote] = (await app.app.io.fetchSockets()).filter((socket) => socket.id === noId.id)
  assert.ok(remote !== undefined)
  assert.ok(![...remote.rooms].some((room) => room.startsWith('user:')), `a session without an id joins no user room: ${[...remote.rooms].join(', ')}`)
})

test('identify: a custom function names the user (session.passport is then ignored)', async (t) => {
  const app = await start(t, { auth: { identify: (session) => session.user?.name === 'anon' ? undefined : session.user?.name } })
  const ada = await connectedFor(t, app.url, { cookie: await app.login('ada') })
  const bob = await connectedFor(t, app.url, { cookie: await loginAs(app.app, 'u-9', 'user', 'bob') })
  const anon = await connectedFor(t, app.url, { cookie: await app.login('anon') })
  assert.deepEqual(await idsIn(app.app, userRoom('ada')), [ada.id])
  assert.deepEqual(await idsIn(app.app, userRoom('bob')), [bob.id])
  assert.deepEqual(await idsIn(app.app, userRoom('u-9')), [], 'the default identify is replaced')
  const all = await app.app.io.fetchSockets()
  const rooms = all.find((socket) => socket.id === anon.id)?.rooms ?? new Set(['missing'])
  assert.ok(![...rooms].some((room) => room.startsWith('user:')), 'identify giving undefined joins no user room')
})

test('userRoom reaches every socket of a user, across two sessions and two tabs each, and no one else', async (t) => {
  const app = await start(t)
  const aliceSessions = [await loginAs(app.app, 'alice'), await loginAs(app.app, 'alice')]
  const alice: ClientSocket[] = []
  for (const cookie of aliceSessions) for (let tab = 0; tab < 2; tab++) alice.push(await connectedFor(t, app.url, { cookie }))
  const bob = await connectedFor(t, app.url, { cookie: await loginAs(app.app, 'bob') })
  const noId = await connectedFor(t, app.url, { cookie: await app.login('ada') })

  const notices = received([...alice, bob, noId], 'notice')
  app.app.io.to(userRoom('alice')).emit('notice', 'for alice')
  app.app.io.to(userRoom('bob')).emit('notice', 'for bob')
  await sleep(300)
  for (const [index, socket] of alice.entries()) assert.deepEqual(notices.get(socket), ['for alice'], `alice's socket ${index} got hers once, and not bob's`)
  assert.deepEqual(notices.get(bob), ['for bob'])
  assert.deepEqual(notices.get(noId), [], 'a session with no user gets neither')
})

test('disconnectUser ends every socket of the user (two sessions, two tabs each, any namespace) with the reason; other users stay; sessions stay', async (t) => {
  const store = new TestStore()
  const app = await start(t, { session: { store: store as unknown as FastifySessionOptions['store'] } })
  const aliceSessions = [await loginAs(app.app, 'alice'), await loginAs(app.app, 'alice')]
  const alice: ClientSocket[] = []
  for (const cookie of aliceSessions) {
    for (let tab = 0; tab < 2; tab++) alice.push(await connectedFor(t, app.url, { cookie }))
    alice.push(await connectedFor(t, app.url, { cookie, namespace: '/chat' }))
  }
  const bobCookie = await loginAs(app.app, 'bob')
  const bob = [await connectedFor(t, app.url, { cookie: bobCookie }), await connectedFor(t, app.url, { cookie: bobCookie, namespace: '/chat' })]
  const sessions = store.size

  const endings = alice.map((socket) => ending(socket))
  await app.app.disconnectUser('alice', 'logout')
  for (const end of await Promise.all(endings)) {
    assert.equal(end.reason, 'logout')
    assert.ok(end.revokedFirst, 'session:revoked arrives before the disconnect')
    assert.equal(end.disconnect, 'io server disconnect')
  }
  for (const socket of bob) assert.ok(await staysConnected(socket, 300), 'bob stays connected')
  assert.deepEqual(await ask(bob[0] as ClientSocket, 'me'), 'undefined', 'bob still answers')
  assert.equal(store.size, sessions, 'no session left the store')

  // A later handshake with either of alice's cookies is admitted again.
  for (const cookie of aliceSessions) assert.equal(typeof (await connectedFor(t, app.url, { cookie })).id, 'string')

  // The default reason is 'revoked'; a numeric id names the same user as its string.
  const seven = await connectedFor(t, app.url, { cookie: await loginAs(app.app, 7) })
  const end = ending(seven)
  await app.app.disconnectUser('7')
  assert.equal((await end).reason, 'revoked')
})

test('disconnectUser and reauthorizeUser refuse a bad id or reason with FST_SESSION_SOCKET_AUTH_INVALID_ARGUMENT, and do nothing', async (t) => {
  const app = await start(t)
  const alice = await connectedFor(t, app.url, { cookie: await loginAs(app.app, 'alice') })
  const isInvalidArgument = (error: Error & { code?: string }): boolean => {
    assert.ok(error instanceof TypeError, `a TypeError: ${String(error)}`)
    assert.equal(error.code, INVALID_ARGUMENT)
    return true
  }
  for (const bad of ['', Number.NaN, Infinity, null, undefined, {}, ['alice'], true]) {
    await assert.rejects(app.app.disconnectUser(bad as never), isInvalidArgument, `disconnectUser(${String(bad)})`)
    await assert.rejects(app.app.reauthorizeUser(bad as never), isInvalidArgument, `reauthorizeUser(${String(bad)})`)
  }
  for (const reason of ['bogus', '', 42, null]) {
    await assert.rejects(app.app.disconnectUser('alice', reason as never), isInvalidArgument, `reason ${String(reason)}`)
  }
  assert.ok(await staysConnected(alice, 300), 'no bad call ended alice\'s socket')
})

test('registration: loadUser with passport, or userRequired without a loader, is refused with FST_SESSION_SOCKET_AUTH_INVALID_OPTION', async () => {
  const both = await registrationError({ auth: { loadUser: () => null, passport: new Authenticator() } })
  assert.equal(both.code, INVALID_OPTION)
  assert.match(both.message, /either "loadUser" or "passport"/)
  const required = await registrationError({ auth: { userRequired: true } })
  assert.equal(required.code, INVALID_OPTION)
  assert.match(required.message, /"userRequired" needs a way to load the user/)
  for (const auth of [{ loadUser: 'user' }, { identify: 42 }, { userRequired: 'yes' }, { passport: {} }, { passport: null }]) {
    const error = await registrationError({ auth: auth as never })
    assert.equal(error.code, INVALID_OPTION, JSON.stringify(auth))
    assert.ok(error instanceof TypeError)
  }
  // The valid combinations start.
  for (const auth of [{ userRequired: true, loadUser: () => null }, { userRequired: true, passport: new Authenticator() }, { userRequired: false }]) {
    const app = await startApp({ auth })
    await app.close()
  }
})

test('socket events read no session from the store and load no user: only joins do', async (t) => {
  const store = new TestStore()
  let loads = 0
  const app = await start(t, {
    session: { store: store as unknown as FastifySessionOptions['store'] },
    auth: {
      loadUser: (session) => {
        loads++
        return { name: session.user?.name }
      }
    }
  })
  const cookie = await app.login('ada')
  const getsBefore = store.gets
  const root = await connectedFor(t, app.url, { cookie })
  const chat = await connectedFor(t, app.url, { cookie, namespace: '/chat' })
  assert.equal(store.gets - getsBefore, 2, 'each namespace join reads the store once')
  assert.equal(loads, 2)

  const gets = store.gets
  for (let i = 0; i < 25; i++) {
    assert.deepEqual(await ask(i % 2 === 0 ? root : chat, 'me'), { name: 'ada' })
  }
  assert.equal(store.gets, gets, 'no store read for 25 events')
  assert.equal(loads, 2, 'no user load for 25 events')
})
