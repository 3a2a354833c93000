import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { Writable } from 'node:stream'
import { sign } from '@fastify/cookie'
import { OLD_SECRET, SECRET, ask, connect, connected, cookieValueOf, expectRefused, once, sessionIdOf, sleep, startApp } from './support/app'
import { TestStore, failWith } from './support/store'

const TRANSPORTS = ['polling', 'websocket'] as const
const OTHER_SECRET = 'a-secret-that-this-app-has-never-been-given-0'

/** A cookie header whose value is `value`, encoded as a browser would send it. */
const cookieOf = (value: string, name = 'sessionId'): string => `${name}=${encodeURIComponent(value)}`

/** The same signed value with the first character of its signature changed. */
function tamperSignature (value: string): string {
  const dot = value.lastIndexOf('.')
  const first = value[dot + 1]
  return `${value.slice(0, dot + 1)}${first === 'A' ? 'B' : 'A'}${value.slice(dot + 2)}`
}

/** The signature of one real session moved onto another id. */
function tamperId (value: string): string {
  const first = value[0]
  return `${first === 'A' ? 'B' : 'A'}${value.slice(1)}`
}

const TIMEOUT = { timeout: 60_000 }

describe('handshake: session cookie', TIMEOUT, () => {
  for (const transport of TRANSPORTS) {
    describe(`over ${transport}`, () => {
      test('a logged-in cookie is admitted and the socket carries the session', async (t) => {
        const app = await startApp()
        t.after(() => app.close())
        app.app.io.on('connection', (socket) => {
          socket.on('whoami', (ack: (user: unknown) => void) => ack(socket.data.session.user))
        })
        const cookie = await app.login('grace', 'admin')
        const socket = await connected(app.url, { cookie, transports: [transport] })
        assert.deepEqual(await ask(socket, 'whoami'), { name: 'grace', role: 'admin' })
        assert.equal(socket.io.engine.transport.name, transport)
        socket.close()
      })

      test('no cookie -> SESSION_REQUIRED', async (t) => {
        const app = await startApp()
        t.after(() => app.close())
        await expectRefused(app.url, 'SESSION_REQUIRED', { transports: [transport] })
        // Other cookies do not count as a session cookie.
        await expectRefused(app.url, 'SESSION_REQUIRED', { transports: [transport], cookie: 'theme=dark; lang=en' })
        await expectRefused(app.url, 'SESSION_REQUIRED', { transports: [transport], cookie: 'sessionId=' })
      })

      test('tampered signature, moved signature, foreign secret and unsigned id -> SESSION_INVALID', async (t) => {
        const app = await startApp()
        t.after(() => app.close())
        const cookie = await app.login()
        const value = cookieValueOf(cookie)
        const id = sessionIdOf(cookie)
        await expectRefused(app.url, 'SESSION_INVALID', { transports: [transport], cookie: cookieOf(tamperSignature(value)) })
        await expectRefused(app.url, 'SESSION_INVALID', { transports: [transport], cookie: cookieOf(tamperId(value)) })
        await expectRefused(app.url, 'SESSION_INVALID', { transports: [transport], cookie: cookieOf(sign(id, OTHER_SECRET)) })
        await expectRefused(app.url, 'SESSION_INVALID', { transports: [transport], cookie: cookieOf(id) })
        await expectRefused(app.url, 'SESSION_INVALID', { transports: [transport], cookie: cookieOf(`${id}.`) })
        // The genuine cookie still works: the refusals above are about the forgery only.
        const socket = await connected(app.url, { cookie, transports: [transport] })
        socket.close()
      })

      test('a validly signed id the store does not hold -> SESSION_INVALID', async (t) => {
        const app = await startApp()
        t.after(() => app.close())
        const unknown = sign(randomBytes(24).toString('base64url'), SECRET)
        await expectRefused(app.url, 'SESSION_INVALID', { transports: [transport], cookie: cookieOf(unknown) })
      })

      test('a session destroyed by an HTTP logout -> SESSION_INVALID', async (t) => {
        const app = await startApp()
        t.after(() => app.close())
        const cookie = await app.login()
        const before = await connected(app.url, { cookie, transports: [transport] })
        before.close()
        await app.logout(cookie)
        await expectRefused(app.url, 'SESSION_INVALID', { transports: [transport], cookie })
      })

      test('an expired session -> SESSION_INVALID, and no new session is created', async (t) => {
        const store = new TestStore()
        const app = await startApp({ session: { store, cookie: { secure: false, maxAge: 300 } } })
        t.after(() => app.close())
        const cookie = await app.login()
        const fresh = await connected(app.url, { cookie, transports: [transport] })
        fresh.close()
        await sleep(450)
        const size = store.size
        const sets = store.sets
        await expectRefused(app.url, 'SESSION_INVALID', { transports: [transport], cookie })
        assert.equal(store.size, size, 'the refusal of an expired session must not add a session to the store')
        assert.equal(store.sets, sets, 'the refusal of an expired session must not write to the store')
      })
    })
  }

  test('secret rotation: a cookie signed under the old secret is admitted while that secret is still listed', async (t) => {
    const store = new TestStore()
    const before = await startApp({ session: { secret: OLD_SECRET, store } })
    t.after(() => before.close())
    const cookie = await before.login('linus')
    assert.equal(cookieValueOf(cookie), sign(sessionIdOf(cookie), OLD_SECRET), 'the first app signs with OLD_SECRET')

    const rotated = await startApp({ session: { secret: [SECRET, OLD_SECRET], store } })
    t.after(() => rotated.close())
    const names: unknown[] = []
    rotated.app.io.on('connection', (socket) => { names.push(socket.data.session.user?.name) })
    for (const transport of TRANSPORTS) {
      const socket = await connected(rotated.url, { cookie, transports: [transport] })
      socket.close()
    }
    assert.deepEqual(names, ['linus', 'linus'])

    const dropped = await startApp({ session: { secret: [SECRET], store } })
    t.after(() => dropped.close())
    for (const transport of TRANSPORTS) {
      await expectRefused(dropped.url, 'SESSION_INVALID', { cookie, transports: [transport] })
    }
  })

  test("cookiePrefix 's:' (express-session style), given to @fastify/session only, is read like @fastify/session reads it", async (t) => {
    const app = await startApp({ session: { cookiePrefix: 's:' } })
    t.after(() => app.close())
    const cookie = await app.login()
    const value = cookieValueOf(cookie)
    assert.ok(value.startsWith('s:'), `the session cookie carries the prefix: ${value.slice(0, 2)}`)
    const id = sessionIdOf(cookie, 's:')
    assert.equal(value, `s:${sign(id, SECRET)}`)
    for (const transport of TRANSPORTS) {
      const socket = await connected(app.url, { cookie, transports: [transport] })
      socket.close()
      // Without the prefix, @fastify/session sees no session cookie; neither does the guard.
      await expectRefused(app.url, 'SESSION_REQUIRED', { cookie: cookieOf(value.slice(2)), transports: [transport] })
      await expectRefused(app.url, 'SESSION_INVALID', { cookie: cookieOf(`s:${tamperSignature(value.slice(2))}`), transports: [transport] })
    }
  })

  test('a custom cookieName, given to @fastify/session only', async (t) => {
    const app = await startApp({ session: { cookieName: 'sid' } })
    t.after(() => app.close())
    const cookie = await app.login()
    assert.ok(cookie.startsWith('sid='))
    const value = cookieValueOf(cookie)
    for (const transport of TRANSPORTS) {
      const socket = await connected(app.url, { cookie: `theme=dark; ${cookie}`, transports: [transport] })
      socket.close()
      // The same value under the default name is not the session cookie.
      await expectRefused(app.url, 'SESSION_REQUIRED', { cookie: cookieOf(value, 'sessionId'), transports: [transport] })
    }
  })
})

describe('handshake: refusals leave the store as it was', TIMEOUT, () => {
  test('forged, unknown, unsigned, foreign-secret and expired handshakes add, change and delete nothing', async (t) => {
    const store = new TestStore()
    const app = await startApp({ session: { store, cookie: { secure: false, maxAge: 300 } } })
    t.after(() => app.close())
    const expired = await app.login('old')
    await sleep(450)
    const live = await app.login('new')
    const id = sessionIdOf(live)
    const keys = [...store.map.keys()].sort()
    assert.equal(keys.length, 2, 'the store holds the expired and the live session')
    const counts = { sets: store.sets, destroys: store.destroys }

    const batch = [
      cookieOf(tamperSignature(cookieValueOf(live))),
      cookieOf(tamperId(cookieValueOf(live))),
      cookieOf(sign(randomBytes(24).toString('base64url'), SECRET)),
      cookieOf(sign(id, OTHER_SECRET)),
      cookieOf(id),
      expired,
      undefined
    ]
    for (const transport of TRANSPORTS) {
      for (const cookie of batch) {
        const result = await connect(app.url, { cookie, transports: [transport] })
        result.socket.close()
        assert.equal(result.ok, false, 'every handshake of the batch is refused')
      }
    }
    assert.deepEqual([...store.map.keys()].sort(), keys, 'the same sessions, no more, no fewer')
    assert.deepEqual({ sets: store.sets, destroys: store.destroys }, counts, 'no writes and no deletes')
  })

  test('a cookie whose signature does not verify costs no store read', async (t) => {
    const store = new TestStore()
    const app = await startApp({ session: { store } })
    t.after(() => app.close())
    const cookie = await app.login()
    const value = cookieValueOf(cookie)
    const id = sessionIdOf(cookie)
    const gets = store.gets
    for (const transport of TRANSPORTS) {
      for (const forged of [tamperSignature(value), tamperId(value), sign(id, OTHER_SECRET), id, 'garbage', '.']) {
        await expectRefused(app.url, 'SESSION_INVALID', { cookie: cookieOf(forged), transports: [transport] })
      }
    }
    assert.equal(store.gets, gets, 'forged cookies must not reach the store')
    // The counter does see the reads a verified cookie causes.
    await expectRefused(app.url, 'SESSION_INVALID', { cookie: cookieOf(sign('not-a-stored-id', SECRET)) })
    assert.equal(store.gets, gets + 1)
  })
})

describe('logs', TIMEOUT, () => {
  test('the raw session id and the signed cookie never appear in a log line (debug level)', async (t) => {
    const lines: string[] = []
    const stream = new Writable({
      write (chunk: Buffer, _encoding, callback) {
        lines.push(chunk.toString())
        callback()
      }
    })
    const store = new TestStore()
    const app = await startApp({
      fastify: { logger: { level: 'debug', stream } },
      session: { store },
      auth: { authorize: (session) => session.user?.name !== 'mallory', storeTimeout: 1000 }
    })
    t.after(() => app.close())
    const secrets: string[] = []
    const cookie = await app.login('ada')
    const mallory = await app.login('mallory')
    for (const c of [cookie, mallory]) secrets.push(sessionIdOf(c), cookieValueOf(c), c.slice(c.indexOf('=') + 1))

    for (const transport of TRANSPORTS) {
      await expectRefused(app.url, 'SESSION_INVALID', { cookie: cookieOf(tamperSignature(cookieValueOf(cookie))), transports: [transport] })
      await expectRefused(app.url, 'SESSION_INVALID', { cookie: cookieOf(tamperId(cookieValueOf(cookie))), transports: [transport] })
      await expectRefused(app.url, 'FORBIDDEN', { cookie: mallory, transports: [transport] })
      const socket = await connected(app.url, { cookie, transports: [transport] })
      socket.close()
    }
    // A store whose error message quotes the key it failed on, as some do.
    store.readFault = failWith((sessionId: string) => new Error(`connection lost while reading ${sessionId}`))
    await expectRefused(app.url, 'SESSION_STORE_UNAVAILABLE', { cookie })
    store.readFault = undefined

    const open = await connected(app.url, { cookie })
    const closed = once(open, 'disconnect', 2000)
    await app.logout(cookie)
    await closed
    await expectRefused(app.url, 'SESSION_INVALID', { cookie })
    // Closed here, not only after the test: the lines it logs while closing are checked too.
    await app.close()

    const text = lines.join('')
    const refusals = lines.filter((line) => line.includes('"plugin":"fastify-session-socket-auth"') && line.includes('"msg":"refused"'))
    assert.ok(refusals.length >= 7, `the refusals were logged (${refusals.length} lines)`)
    assert.ok(refusals.every((line) => /"fix":"[^"]+"/.test(line)), 'every refusal says what to change')
    assert.ok(text.includes('SESSION_STORE_UNAVAILABLE'), 'the store failure was logged')
    for (const secret of secrets) {
      assert.ok(!text.includes(secret), 'a log line contains a session id or a session cookie')
    }
  })
})
