/**
 * A session store that fails, hangs, throws, answers twice or returns garbage:
 * every handshake is refused (SESSION_STORE_UNAVAILABLE for a store that
 * failed or did not answer in time, SESSION_INVALID for a record that is not
 * a session), none is admitted, nothing crashes and no rejection goes
 * unhandled. Sockets already connected when the store starts failing stay
 * connected (the documented policy) and are read again every round.
 *
 * The store is @fastify/session's real MemoryStore; only its `get` is
 * replaced, per case, by the fault under test (logins write to it normally).
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { connect, connected, registryStats, sessionIdOf, sleep, startApp, waitFor, type TestApp } from './support/app'
import { logCapture, watchProcess } from './support/health'
import { track } from './support/cluster'
import { TestStore, hang, type Fault } from './support/store'

const STORE_TIMEOUT = 300
const later = (fn: () => void, ms = 0): void => { setTimeout(fn, ms) }
/** A real record as a serialising store (Redis, PostgreSQL) would return it: plain JSON. */
const asJson = (record: unknown): unknown => JSON.parse(JSON.stringify(record))
const past = (): string => new Date(Date.now() - 1000).toISOString()
const future = (): string => new Date(Date.now() + 3_600_000).toISOString()

interface FaultCase { name: string, fault: Fault, code?: 'SESSION_STORE_UNAVAILABLE' | 'SESSION_INVALID' }

// Failures: the store did not give an answer.
const FAILURE_FAULTS: Array<{ name: string, fault: Fault }> = [
  { name: 'calls back with an Error', fault: (cb) => cb(new Error('ECONNREFUSED 127.0.0.1:6379')) },
  { name: 'calls back with an Error, asynchronously', fault: (cb) => later(() => cb(new Error('socket closed unexpectedly'))) },
  { name: 'calls back with a string as the error', fault: (cb) => cb('READONLY You can\'t write against a read only replica') }, // eslint-disable-line n/no-callback-literal
  { name: 'calls back with a plain object as the error', fault: (cb) => later(() => cb({ code: 'ECONNRESET' })) },
  { name: 'calls back with an error that cannot be turned into text', fault: (cb) => cb(Object.create(null)) },
  { name: 'hangs (never calls back)', fault: hang },
  { name: 'answers after the timeout', fault: (cb, real) => later(() => cb(null, real()), STORE_TIMEOUT + 200) },
  { name: 'throws an Error synchronously', fault: () => { throw new Error('store exploded') } },
  { name: 'throws a non-Error synchronously', fault: () => { throw 'a string' } }, // eslint-disable-line no-throw-literal
  { name: 'throws null synchronously', fault: () => { throw null } }, // eslint-disable-line no-throw-literal
  { name: 'returns a rejected promise and never calls back', fault: () => Promise.reject(new Error('pool exhausted')) },
  { name: 'returns a promise rejected with undefined', fault: () => Promise.reject(undefined) }, // eslint-disable-line prefer-promise-reject-errors
  { name: 'is an async function that throws', fault: async () => { throw new Error('async failure') } },
  { name: 'returns a promise that never settles', fault: () => new Promise(() => {}) },
  { name: 'calls back with an error, then with the record', fault: (cb, real) => { cb(new Error('first')); cb(null, real()) } }
]
const FAILURES: FaultCase[] = FAILURE_FAULTS.map((c) => ({ ...c, code: 'SESSION_STORE_UNAVAILABLE' }))

// Garbage: the store answered with something that is not a session.
const GARBAGE_VALUES: Array<[string, () => unknown]> = [
  ['a string', () => 'a string'],
  ['a JSON string of a real session', () => JSON.stringify({ cookie: { expires: future() } })],
  ['a number', () => 42],
  ['NaN', () => Number.NaN],
  ['true', () => true],
  ['a bigint', () => 10n],
  ['a symbol', () => Symbol('session')],
  ['a function', () => () => ({ cookie: {} })],
  ['an array', () => []],
  ['an array holding a session', () => [{ cookie: { expires: future() } }]],
  ['{} with no cookie', () => ({})],
  ['a session without its cookie', () => ({ user: { name: 'ada', role: 'admin' } })],
  ['cookie: null', () => ({ cookie: null })],
  ['cookie: a string', () => ({ cookie: 'sessionId=abc' })],
  ['cookie: a number', () => ({ cookie: 1 })],
  ['cookie: an array', () => ({ cookie: [] })],
  ['cookie.expires: 42', () => ({ cookie: { expires: 42 } })],
  ['cookie.expires: "not a date"', () => ({ cookie: { expires: 'not a date' } })],
  ['cookie.expires: an invalid Date', () => ({ cookie: { expires: new Date('nope') } })],
  ['cookie.expires: an object', () => ({ cookie: { expires: {} } })],
  ['cookie.expires: true', () => ({ cookie: { expires: true } })],
  ['cookie.expires: an array', () => ({ cookie: { expires: [future()] } })],
  ['cookie.expires in the past (expired)', () => ({ cookie: { expires: past() }, user: { name: 'ada', role: 'user' } })],
  ['cookie.expires: the epoch', () => ({ cookie: { expires: new Date(0) } })],
  ['null (no such session)', () => null],
  ['undefined (no such session)', () => undefined]
]
const GARBAGE: FaultCase[] = GARBAGE_VALUES.map(([name, value]) => ({
  name: `returns ${name}`,
  fault: (cb) => cb(null, value()),
  code: 'SESSION_INVALID'
}))
GARBAGE.push({ name: 'fails with code ENOENT (store\'s way of saying "no such session")', fault: (cb) => cb(Object.assign(new Error('not found'), { code: 'ENOENT' })), code: 'SESSION_INVALID' })

// Control cases: odd but genuine answers, admitted (so refusals above are about the fault, not the store).
const GENUINE: Array<{ name: string, fault: Fault }> = [
  { name: 'the record itself, asynchronously', fault: (cb, real) => later(() => cb(null, real())) },
  { name: 'the record as JSON (expires as an ISO string)', fault: (cb, real) => cb(null, asJson(real())) },
  { name: 'the record, then an error (first answer wins)', fault: (cb, real) => { cb(null, real()); cb(new Error('second')) } },
  { name: 'the record twice', fault: (cb, real) => { cb(null, real()); cb(null, real()) } },
  { name: 'the record, then an error a moment later', fault: (cb, real) => { cb(null, real()); later(() => cb(new Error('late'))) } },
  { name: 'the record, then throws', fault: (cb, real) => { cb(null, real()); throw new Error('after answering') } },
  { name: 'a session whose cookie has no expiry', fault: (cb) => cb(null, { cookie: {}, user: { name: 'ada', role: 'user' } }) },
  { name: 'a session whose cookie.expires is null', fault: (cb) => cb(null, { cookie: { expires: null, originalMaxAge: null } }) }
]

describe('store faults during the handshake', () => {
  const store = new TestStore()
  const logs = logCapture()
  const health = watchProcess()
  let t: TestApp
  let cookie: string
  let connections = 0

  before(async () => {
    t = await startApp({
      fastify: { logger: { level: 'warn', stream: logs.stream } },
      session: { store },
      auth: { storeTimeout: STORE_TIMEOUT, revalidateInterval: false }
    })
    t.app.io.on('connection', () => { connections++ })
    cookie = await t.login('ada')
  })

  after(async () => {
    health.stop()
    await t.close()
  })

  for (const c of [...FAILURES, ...GARBAGE]) {
    test(`a store that ${c.name} -> ${c.code}`, async () => {
      const connectionsBefore = connections
      const getsBefore = store.gets
      store.readFault = c.fault
      const started = Date.now()
      const result = await connect(t.url, { cookie })
      const elapsed = Date.now() - started
      store.readFault = undefined
      result.socket.close()
      assert.equal(result.ok, false, 'never admitted')
      if (!result.ok) {
        assert.equal(result.code, c.code)
        assert.deepEqual((result.data as { code?: string }).code, c.code)
      }
      assert.equal(store.gets - getsBefore, 1, 'the store was asked once')
      assert.equal(connections, connectionsBefore, 'no connection handler ran')
      // A store that does not answer is given storeTimeout, not forever.
      assert.ok(elapsed < STORE_TIMEOUT + 2000, `answered in ${elapsed} ms`)
      // Late answers (the 'after the timeout' case) must land harmlessly too.
      await sleep(c.name.includes('after the timeout') ? STORE_TIMEOUT + 300 : 0)
      assert.deepEqual(health.problems, [])
    })
  }

  for (const c of GENUINE) {
    test(`a store that answers with ${c.name} -> admitted once`, async () => {
      const connectionsBefore = connections
      store.readFault = c.fault
      const result = await connect(t.url, { cookie })
      store.readFault = undefined
      await sleep(20)
      result.socket.close()
      assert.equal(result.ok, true, result.ok ? '' : `refused with ${result.code}`)
      assert.equal(connections, connectionsBefore + 1, 'exactly one connection')
      assert.deepEqual(health.problems, [])
    })
  }

  test('after all faults, the same cookie is admitted by the healthy store and nothing crashed', async () => {
    const socket = await connected(t.url, { cookie })
    socket.close()
    assert.deepEqual(health.problems, [])
  })
})

describe('store faults during revalidation of connected sockets', () => {
  const store = new TestStore()
  const logs = logCapture()
  const health = watchProcess()
  let app: TestApp
  const INTERVAL = 150

  before(async () => {
    app = await startApp({
      fastify: { logger: { level: 'warn', stream: logs.stream } },
      session: { store },
      auth: { storeTimeout: 200, revalidateInterval: INTERVAL },
      setup (app) {
        // A session that expires `ms` after login.
        app.post<{ Body: { ms: number } }>('/login-brief', async (request) => {
          await request.session.regenerate()
          request.session.user = { name: 'brief', role: 'user' }
          request.session.cookie.maxAge = request.body.ms
          return { ok: true }
        })
      }
    })
  })

  after(async () => {
    health.stop()
    await app.close()
  })

  test('a store that errors, hangs or throws keeps sockets connected; each round reads it again; recovery resumes revocation', async (t) => {
    const cookieA = await app.login('ada')
    const cookieB = await app.login('bob')
    const a = await connected(app.url, { cookie: cookieA })
    const b = await connected(app.url, { cookie: cookieB })
    const seenA = track(a)
    const seenB = track(b)
    t.after(() => { a.close(); b.close() })
    const faults: Array<[string, Fault]> = [
      ['errors', (cb) => cb(new Error('ECONNREFUSED'))],
      ['hangs', hang],
      ['throws', () => { throw new Error('store exploded') }],
      ['rejects', () => Promise.reject(new Error('pool exhausted'))]
    ]
    for (const [name, fault] of faults) {
      const getsBefore = store.gets
      store.readFault = fault
      // Three rounds for each of the two sessions.
      await waitFor(`three revalidation rounds while the store ${name}`, () => store.gets - getsBefore >= 6, 5000)
      store.readFault = undefined
      assert.ok(a.connected && b.connected, `sockets stay connected while the store ${name}`)
      assert.deepEqual([seenA.revoked, seenB.revoked], [[], []], `no revocation while the store ${name}`)
    }
    assert.ok(logs.lines.some((line) => String(line.msg).includes('could not revalidate')), 'the outage is logged as a warning')
    assert.equal(registryStats(app.app).sessions, 2)

    // The store is back: the next round sees that b's session was deleted meanwhile (out of band) and ends b only.
    store.map.delete(sessionIdOf(cookieB))
    await waitFor('b revoked after the store came back', () => seenB.disconnected.length > 0, 3000)
    assert.deepEqual(seenB.revoked, ['revoked'])
    assert.deepEqual(seenB.disconnected, ['io server disconnect'])
    const getsBefore = store.gets
    await waitFor('two more rounds for a', () => store.gets - getsBefore >= 2, 3000)
    assert.ok(a.connected, 'a, whose session is intact, stays connected')
    assert.deepEqual(seenA.revoked, [])
    // Closed here: the registry must empty once they are gone.
    a.close()
    b.close()
    await waitFor('registry empty', () => registryStats(app.app).sessions === 0 && registryStats(app.app).timers === 0, 2000)
    assert.deepEqual(health.problems, [])
  })

  test('an expiry that falls during the outage still ends the socket (fail closed)', async (t) => {
    const response = await app.app.inject({ method: 'POST', url: '/login-brief', payload: { ms: 900 } })
    const value = response.cookies.find((c) => c.name === 'sessionId')?.value
    assert.ok(value !== undefined)
    const socket = await connected(app.url, { cookie: `sessionId=${encodeURIComponent(value)}` })
    const seen = track(socket)
    t.after(() => {
      store.readFault = undefined
      socket.close()
    })
    store.readFault = (cb) => cb(new Error('ECONNREFUSED'))
    await waitFor('expiry during the outage', () => seen.disconnected.length > 0, 3000)
    assert.deepEqual(seen.revoked, ['expired'])
    assert.deepEqual(health.problems, [])
  })

  test('garbage from the store during revalidation ends the socket (not a session any more)', async (t) => {
    const cookie = await app.login('carol')
    const socket = await connected(app.url, { cookie })
    const seen = track(socket)
    t.after(() => {
      store.readFault = undefined
      socket.close()
    })
    store.readFault = (cb) => cb(null, { cookie: { expires: 'not a date' } })
    await waitFor('revocation on garbage', () => seen.disconnected.length > 0, 3000)
    assert.deepEqual(seen.revoked, ['revoked'])
    await waitFor('registry empty', () => registryStats(app.app).sessions === 0 && registryStats(app.app).timers === 0, 2000)
    assert.deepEqual(health.problems, [])
  })
})
