/**
 * Property tests of the handshake: whatever a client sends as Cookie, Origin
 * and Host, a socket is admitted if and only if
 *   - the Origin is allowed (no Origin, the app's own origin, or a listed one), and
 *   - the session cookie is a validly signed id (any secret @fastify/session
 *     verifies with) of a session that is live in the store,
 * and the verification never throws, never rejects, never writes the store
 * and reads it only for cookies whose signature verifies.
 *
 * Two layers, because 10,000+ real socket handshakes per property would take
 * minutes on this 2-core machine:
 *   (a) the plugin's real guard (its namespace middleware, see
 *       support/guard-probe.ts) called on a synthetic `{ headers, socket }`
 *       request, in a real Fastify app with @fastify/cookie, @fastify/session,
 *       the plugin and a real MemoryStore holding sessions made by real
 *       logins: FC_RUNS cases per property (default 2,000 here;
 *       test/slow/property-handshake-full.test.ts runs 10,000);
 *   (b) real socket.io-client handshakes over WebSocket against the same app:
 *       FC_E2E_RUNS cases (default 200), header values restricted to what
 *       HTTP can carry.
 *
 * The expected verdict comes from an independent model below: the cookie
 * header parsed by a plain split on ';' (first occurrence wins, percent-
 * decoding when it decodes), the signature checked by recomputing the
 * HMAC-SHA256 with each secret, liveness from the ids this test logged in
 * (not from the store), and Origin allowance from the documented policy with
 * RFC 6454 origin syntax. Seeds are fixed (FC_SEED) and printed on failure.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { createHmac } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import fc from 'fast-check'
import { io as connectClient } from 'socket.io-client'
import { OLD_SECRET, SECRET, positiveIntFromEnv, sessionIdOf, startApp, type TestApp } from './support/app'
import { guardOf, probeFaults, probeHandshake, type GuardMiddleware } from './support/guard-probe'
import { LEVEL, logCapture, watchProcess } from './support/health'
import { TestStore } from './support/store'

const RUNS = positiveIntFromEnv('FC_RUNS', 2_000)
const E2E_RUNS = positiveIntFromEnv('FC_E2E_RUNS', 200)
const SEED = positiveIntFromEnv('FC_SEED', 20_250_601)

const SECRETS = [SECRET, OLD_SECRET]
const FOREIGN_SECRET = 'a-secret-this-app-was-never-given-0123456789'
const ALLOWED_ORIGINS = ['https://app.example.com', 'http://Partner.Example:8080']
const CORS_ORIGINS = ['https://cors.example.com', '*']

type Code = 'SESSION_REQUIRED' | 'SESSION_INVALID' | 'ORIGIN_NOT_ALLOWED'
type Expected =
  | { admit: true, sessionId: string, storeRead: true }
  | { admit: false, code: Code, storeRead: boolean }

interface World {
  host: string
  port: number
  live: Map<string, string> // id -> user name
  dead: string[] // destroyed (logout) and expired session ids
}

// ---------------------------------------------------------------------------
// The model: what the answer must be, computed without the plugin's code.
// ---------------------------------------------------------------------------

const hmac = (secret: string, id: string): string =>
  createHmac('sha256', secret).update(id).digest('base64').replace(/=+$/, '')
const signWith = (id: string, secret: string): string => `${id}.${hmac(secret, id)}`

const trimSpTab = (text: string): string => text.replace(/^[ \t]+|[ \t]+$/g, '')

/** The session cookie's value as @fastify/session reads it: first `sessionId=` pair, percent-decoded if that decodes. */
function modelCookieValue (header: string | undefined): string | undefined {
  if (header === undefined) return undefined
  for (const pair of header.split(';')) {
    const eq = pair.indexOf('=')
    if (eq === -1 || trimSpTab(pair.slice(0, eq)) !== 'sessionId') continue
    const raw = trimSpTab(pair.slice(eq + 1))
    if (!raw.includes('%')) return raw
    try {
      return decodeURIComponent(raw)
    } catch {
      return raw
    }
  }
  return undefined
}

/** The id a signed value carries if some secret signed exactly it, else null. */
function modelVerifiedId (value: string): string | null {
  const dot = value.lastIndexOf('.')
  if (dot <= 0) return null
  const id = value.slice(0, dot)
  return SECRETS.some((secret) => value === signWith(id, secret)) ? id : null
}

// A serialized origin: scheme "://" host [":" port], nothing else (no path, userinfo, whitespace or list).
const ORIGIN_SYNTAX = /^([a-z][a-z0-9+.-]*):\/\/([^/?#@\s,]+)$/i
const DEFAULT_PORT: Record<string, string> = { http: ':80', https: ':443' }

/** Lower case, without the scheme's default port; null when not an origin at all. */
function canonicalOrigin (text: string): string | null {
  const match = ORIGIN_SYNTAX.exec(text)
  if (match === null) return null
  const scheme = match[1].toLowerCase()
  let host = match[2].toLowerCase()
  const port = DEFAULT_PORT[scheme]
  if (port !== undefined && host.endsWith(port)) host = host.slice(0, -port.length)
  return `${scheme}://${host}`
}

const allowedExact = new Set(ALLOWED_ORIGINS.concat(CORS_ORIGINS.filter((origin) => origin !== '*')).map(canonicalOrigin).filter((origin) => origin !== null))

/**
 * The documented Origin policy: none, a listed origin (any case), or the app's
 * own: the scheme it is served on (plain http here) and the Host header.
 */
function modelOriginAllowed (origin: string | undefined, host: string | undefined): boolean {
  if (origin === undefined) return true
  const canonical = canonicalOrigin(origin)
  if (canonical === null) return false
  if (allowedExact.has(canonical)) return true
  return host !== undefined && host.length > 0 && canonical === canonicalOrigin(`http://${host}`)
}

function model (world: World, headers: { cookie?: string, origin?: string, host?: string }): Expected {
  if (!modelOriginAllowed(headers.origin, headers.host)) return { admit: false, code: 'ORIGIN_NOT_ALLOWED', storeRead: false }
  const value = modelCookieValue(headers.cookie)
  if (value === undefined || value === '') return { admit: false, code: 'SESSION_REQUIRED', storeRead: false }
  const id = modelVerifiedId(value)
  if (id === null) return { admit: false, code: 'SESSION_INVALID', storeRead: false }
  if (!world.live.has(id)) return { admit: false, code: 'SESSION_INVALID', storeRead: true }
  return { admit: true, sessionId: id, storeRead: true }
}

// ---------------------------------------------------------------------------
// Arbitraries: hostile and valid inputs, mixed so both answers occur often.
// ---------------------------------------------------------------------------

/** Upper/lower case per character, from a bit mask. */
function mixCase (text: string): fc.Arbitrary<string> {
  return fc.nat().map((mask) => [...text].map((c, i) => ((mask >>> (i % 31)) & 1) === 1 ? c.toUpperCase() : c.toLowerCase()).join(''))
}

function safeEncodeURIComponent (text: string): string {
  try {
    return encodeURIComponent(text)
  } catch { // lone surrogates
    return text
  }
}

/** The same value as a client might put it on the wire: raw, encoded, partly encoded, badly encoded, padded. */
function encodings (value: string): fc.Arbitrary<string> {
  const percent = (c: string, lower: boolean): string => {
    const code = c.charCodeAt(0)
    if (code > 0x7f) return safeEncodeURIComponent(c)
    const hex = code.toString(16).padStart(2, '0')
    return `%${lower ? hex : hex.toUpperCase()}`
  }
  return fc.oneof(
    { weight: 5, arbitrary: fc.constant(value) },
    { weight: 2, arbitrary: fc.constant(safeEncodeURIComponent(value)) },
    {
      weight: 1,
      arbitrary: fc.tuple(fc.nat(), fc.boolean()).map(([mask, lower]) =>
        [...value].map((c, i) => ((mask >>> (i % 31)) & 1) === 1 ? percent(c, lower) : c).join(''))
    },
    {
      weight: 1,
      arbitrary: fc.tuple(fc.nat({ max: value.length }), fc.constantFrom('%', '%G1', '%E0%A4', '%ED%A0%80', '%00', '%%', '%2', '%C0%AE'))
        .map(([at, bad]) => value.slice(0, at) + bad + value.slice(at))
    },
    {
      weight: 1,
      arbitrary: fc.tuple(fc.constantFrom('', ' ', '\t', '  '), fc.constantFrom('', ' ', '\t')).map(([a, b]) => a + value + b)
    },
    { weight: 1, arbitrary: fc.constant(`"${value}"`) }
  )
}

function cookieValueArb (world: World): fc.Arbitrary<string> {
  const liveIds = [...world.live.keys()]
  const secret = fc.constantFrom(...SECRETS)
  const live = fc.constantFrom(...liveIds)
  const validSigned = fc.tuple(live, secret).map(([id, s]) => signWith(id, s))
  const text = fc.string({ unit: 'binary', maxLength: 80 })
  const values = fc.oneof(
    // genuine: a live id signed with the current or the previous secret
    { weight: 8, arbitrary: validSigned },
    // genuine signature, dead session (logged out, expired)
    { weight: 2, arbitrary: fc.tuple(fc.constantFrom(...world.dead), secret).map(([id, s]) => signWith(id, s)) },
    // genuine signature of an id no one logged in with
    { weight: 1, arbitrary: fc.tuple(fc.oneof(fc.string({ minLength: 1, maxLength: 40 }), fc.uuid(), text), secret).map(([id, s]) => signWith(id, s)) },
    // a live id signed with a secret not in the list
    { weight: 1, arbitrary: live.map((id) => signWith(id, FOREIGN_SECRET)) },
    // one character of the signature (or of the id) changed
    {
      weight: 2,
      arbitrary: fc.tuple(validSigned, fc.nat(), fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }), fc.boolean()).map(([v, at, c, inId]) => {
        const dot = v.lastIndexOf('.')
        const i = inId ? at % dot : dot + 1 + (at % (v.length - dot - 1))
        return v.slice(0, i) + (v[i] === c ? (c === 'A' ? 'B' : 'A') : c) + v.slice(i + 1)
      })
    },
    // signature truncated
    {
      weight: 1,
      arbitrary: fc.tuple(validSigned, fc.integer({ min: 1, max: 44 })).map(([v, cut]) => v.slice(0, Math.max(v.lastIndexOf('.') + 1, v.length - cut)))
    },
    // valid signature, then anything appended
    { weight: 1, arbitrary: fc.tuple(validSigned, fc.oneof(text.filter((x) => x.length > 0), fc.constantFrom('=', '==', '.', ' x', ';', '\0'))).map(([v, x]) => v + x) },
    // express-style and other prefixes before a valid value
    { weight: 1, arbitrary: fc.tuple(fc.constantFrom('s:', 'S:', 's%3A', 'j:', '.', 'sessionId='), validSigned).map(([p, v]) => p + v) },
    // pieces of a genuine value: bare id, id and dot, signature alone, signature moved to another id, empty id signed
    {
      weight: 1,
      arbitrary: fc.tuple(live, live, secret).chain(([a, b, s]) => fc.constantFrom(
        a, `${a}.`, `.${hmac(s, a)}`, hmac(s, a), `${a}.${hmac(s, b)}`, `${a}..${hmac(s, a)}`, signWith('', s), `${signWith(a, s)}.${hmac(s, a)}`
      ))
    },
    { weight: 2, arbitrary: text },
    { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 60 }) },
    { weight: 1, arbitrary: fc.constant('') },
    // huge: up to ~200 KB
    {
      weight: 1,
      arbitrary: fc.tuple(fc.oneof(validSigned, fc.string({ minLength: 1, maxLength: 4 })), fc.integer({ min: 1_000, max: 200_000 }), fc.boolean())
        .map(([v, size, first]) => first ? v + 'x'.repeat(size) : v.repeat(Math.ceil(size / v.length)))
    }
  )
  return values.chain(encodings)
}

function cookieHeaderArb (world: World, maxSegments = 6): fc.Arbitrary<string | undefined> {
  const name = fc.oneof(
    { weight: 10, arbitrary: fc.constant('sessionId') },
    {
      weight: 3,
      arbitrary: fc.constantFrom(' sessionId', 'sessionId\t', 'sessionId ', 'sessionid', 'SessionId', 'SESSIONID', 'session', 'sessionIds',
        'xsessionId', 'sessionId=', 's:sessionId', '__proto__', 'constructor', 'toString', '')
    },
    { weight: 1, arbitrary: fc.string({ maxLength: 12 }) }
  )
  const pair = fc.tuple(name, cookieValueArb(world)).map(([n, v]) => `${n}=${v}`)
  const segment = fc.oneof(
    { weight: 8, arbitrary: pair },
    { weight: 1, arbitrary: fc.constantFrom('', ' ', 'flag', 'theme=dark', 'lang=en; theme=dark', '=', '==', '=sessionId', 'sessionId') },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 30 }) }
  )
  return fc.oneof(
    { weight: 1, arbitrary: fc.constant(undefined) },
    {
      weight: 12,
      arbitrary: fc.tuple(fc.array(segment, { minLength: 1, maxLength: maxSegments }), fc.constantFrom('; ', ';', ' ; ', ';\t', ';;', ' ;'))
        .map(([parts, separator]) => parts.join(separator))
    },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 300 }) },
    { weight: 1, arbitrary: fc.constant('') }
  )
}

function hostArb (world: World): fc.Arbitrary<string | undefined> {
  return fc.oneof(
    { weight: 8, arbitrary: fc.constant(world.host) },
    { weight: 1, arbitrary: fc.constant(undefined) },
    { weight: 2, arbitrary: fc.constantFrom(`localhost:${world.port}`, '127.0.0.1', 'app.example.com', 'partner.example:8080', '', ' ', 'cors.example.com') },
    { weight: 1, arbitrary: mixCase(world.host) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) }
  )
}

function originArb (world: World, host: string | undefined): fc.Arbitrary<string | undefined> {
  const own = host ?? world.host
  const scheme = fc.constantFrom('http', 'https', 'HTTP', 'Https', 'ws', 'chrome-extension', 'a+b.c-d', 'file')
  return fc.oneof(
    { weight: 4, arbitrary: fc.constant(undefined) },
    // the app's own origin, any case, any well-formed scheme
    { weight: 4, arbitrary: fc.tuple(scheme, mixCase(own)).map(([s, h]) => `${s}://${h}`) },
    // listed origins, any case (the wildcard '*' in cors.origin must not count)
    { weight: 3, arbitrary: fc.constantFrom(...ALLOWED_ORIGINS, ...CORS_ORIGINS).chain(mixCase) },
    // near misses of allowed origins
    {
      weight: 3,
      arbitrary: fc.tuple(
        fc.constantFrom(...ALLOWED_ORIGINS, 'https://cors.example.com', `http://${own}`),
        fc.constantFrom('/', ':443', ':80', '.', '.evil.com', ' ', '/path', '#', '?x', '@evil.com', '\0', '%00', ':', ',https://evil.com')
      ).map(([origin, suffix]) => origin + suffix)
    },
    {
      weight: 2,
      arbitrary: fc.tuple(
        fc.constantFrom('https://evil.com/', ' ', 'x', 'https://', 'null,', '\t'),
        fc.constantFrom(...ALLOWED_ORIGINS, `http://${own}`)
      ).map(([prefix, origin]) => prefix + origin)
    },
    // malformed or special
    {
      weight: 2,
      arbitrary: fc.constantFrom(
        'null', 'NULL', '*', '', ' ', 'file://', 'http://', '://', `://${own}`, ` http://${own}`, `http:/${own}`, `http//${own}`, `x y://${own}`,
        `1http://${own}`, `-://${own}`, `http:///${own}`, `http://${own}/`, `http://user@${own}`, `http://${own}:`, `http://${own}.`, `${own}`
      )
    },
    { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 60 }) },
    { weight: 1, arbitrary: fc.webUrl() },
    { weight: 1, arbitrary: fc.tuple(scheme, fc.webAuthority({ withPort: true, withIPv4: true, withIPv6: true })).map(([s, a]) => `${s}://${a}`) }
  )
}

/** Host, then an Origin that often relates to it. */
function originAndHostArb (world: World): fc.Arbitrary<{ origin: string | undefined, host: string | undefined }> {
  return hostArb(world).chain((host) => originArb(world, host).map((origin) => ({ origin, host })))
}

// ---------------------------------------------------------------------------
// Running properties.
// ---------------------------------------------------------------------------

interface Tally { runs: number, admitted: number, codes: Record<string, number>, storeReads: number }
const newTally = (): Tally => ({ runs: 0, admitted: 0, codes: {}, storeReads: 0 })

async function checkProperty<T> (name: string, arbitrary: fc.Arbitrary<T>, body: (input: T) => Promise<void>, numRuns: number): Promise<void> {
  try {
    await fc.assert(fc.asyncProperty(arbitrary, body), { numRuns, seed: SEED })
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    throw new Error(`property "${name}" failed with FC_SEED=${SEED} (runs: ${numRuns}); rerun with FC_SEED=${SEED} to reproduce.\n${message}`)
  }
}

function headersOf (input: { cookie?: string | undefined, origin?: string | undefined, host?: string | undefined }): IncomingHttpHeaders {
  const headers: IncomingHttpHeaders = {}
  if (input.cookie !== undefined) headers.cookie = input.cookie
  if (input.origin !== undefined) headers.origin = input.origin
  if (input.host !== undefined) headers.host = input.host
  return headers
}

describe('handshake properties', () => {
  let t: TestApp
  let store: TestStore
  let guard: GuardMiddleware
  let world: World
  const logs = logCapture()
  const health = watchProcess()
  let storeSize = 0
  let setsBefore = 0
  let destroysBefore = 0

  before(async () => {
    store = new TestStore()
    t = await startApp({
      fastify: { logger: { level: 'warn', stream: logs.stream } },
      session: { secret: SECRETS, store, cookie: { secure: false, maxAge: 3_600_000 } },
      auth: { allowedOrigins: ALLOWED_ORIGINS, cors: { origin: CORS_ORIGINS, credentials: true }, revalidateInterval: false },
      setup (app) {
        // A session that expires 150 ms after login and stays in the store.
        app.post('/login-brief', async (request) => {
          await request.session.regenerate()
          request.session.user = { name: 'brief', role: 'user' }
          request.session.cookie.maxAge = 150
          return { ok: true }
        })
      }
    })
    const port = Number(new URL(t.url).port)
    const live = new Map<string, string>()
    for (const name of ['ada', 'grace', 'linus', 'margaret', 'ken']) live.set(sessionIdOf(await t.login(name)), name)
    const dead: string[] = []
    for (const name of ['gone-1', 'gone-2']) {
      const cookie = await t.login(name)
      await t.logout(cookie)
      dead.push(sessionIdOf(cookie))
    }
    for (let i = 0; i < 2; i++) {
      const response = await t.app.inject({ method: 'POST', url: '/login-brief' })
      const cookie = response.cookies.find((c) => c.name === 'sessionId')
      assert.ok(cookie, 'login-brief set a cookie')
      dead.push(sessionIdOf(`sessionId=${encodeURIComponent(cookie.value)}`))
    }
    await new Promise((resolve) => setTimeout(resolve, 300))
    // The setup is what the model says it is: live ones stored, logged-out ones gone, expired ones stored but past expiry.
    for (const id of live.keys()) assert.ok(store.map.has(id), 'live session is stored')
    assert.ok(!store.map.has(dead[0]) && !store.map.has(dead[1]), 'logged-out sessions are gone from the store')
    for (const id of dead.slice(2)) {
      const record = store.map.get(id) as { cookie: { expires: Date } } | undefined
      assert.ok(record !== undefined && record.cookie.expires.getTime() < Date.now(), 'expired session is still stored, past its expiry')
    }
    world = { host: `127.0.0.1:${port}`, port, live, dead }
    guard = guardOf(t.app.io)
    storeSize = store.size
    setsBefore = store.sets
    destroysBefore = store.destroys
  })

  after(async () => {
    health.stop()
    await t?.close()
  })

  /** One synthetic handshake checked against the model. */
  async function probeOne (tally: Tally, input: { cookie?: string, origin?: string, host?: string }): Promise<void> {
    const expected = model(world, input)
    const readsBefore = store.gets
    const result = await probeHandshake(guard, headersOf(input))
    const reads = store.gets - readsBefore
    tally.runs++
    tally.storeReads += reads
    if (result.admitted) {
      tally.admitted++
      assert.ok(expected.admit, `admitted, but the model says ${expected.admit ? '' : expected.code}`)
      assert.equal(result.session.sessionId, expected.sessionId, 'admitted with the session the cookie names')
      assert.equal((result.session.user as { name?: string } | undefined)?.name, world.live.get(expected.sessionId))
    } else {
      tally.codes[result.code] = (tally.codes[result.code] ?? 0) + 1
      assert.ok(!expected.admit, `refused with ${result.code}, but the model admits it`)
      assert.equal(result.code, expected.code)
      assert.deepEqual((result.data as { code?: string }).code, expected.code)
    }
    assert.equal(reads, expected.storeRead ? 1 : 0, 'store read exactly when the signature verifies')
  }

  function checkNoSideEffects (tally: Tally): void {
    assert.equal(store.size, storeSize, 'no session was created or removed')
    assert.equal(store.sets, setsBefore, 'the store was never written')
    assert.equal(store.destroys, destroysBefore, 'no session was destroyed')
    assert.deepEqual(logs.atLeast(LEVEL.error), [], 'nothing was logged at error level (the guard logs one if verification throws)')
    assert.deepEqual(health.problems, [], 'no unhandled rejection or uncaught exception')
    assert.equal(probeFaults.extraNextCalls, 0, 'next() called once per handshake')
    // The properties must exercise both answers, or they prove little.
    assert.ok(tally.admitted >= tally.runs * 0.05, `too few admitted cases (${tally.admitted}/${tally.runs}) for the property to mean anything`)
    assert.ok(tally.runs - tally.admitted >= tally.runs * 0.05, `too few refused cases (${tally.runs - tally.admitted}/${tally.runs})`)
  }

  test(`(a) arbitrary Cookie headers: admitted iff a validly signed live session (${RUNS} runs)`, async (tt) => {
    const tally = newTally()
    const input = fc.record({
      cookie: cookieHeaderArb(world),
      origin: fc.constantFrom(undefined, `http://${world.host}`, ALLOWED_ORIGINS[0])
    })
    await checkProperty('cookie header', input, (i) => probeOne(tally, { ...i, host: world.host }), RUNS)
    checkNoSideEffects(tally)
    tt.diagnostic(`cookie header: ${JSON.stringify(tally)}`)
  })

  test(`(a) arbitrary Origin and Host headers: admitted iff Origin allowed and session valid (${RUNS} runs)`, async (tt) => {
    const tally = newTally()
    const liveIds = [...world.live.keys()]
    const cookie = fc.oneof(
      { weight: 4, arbitrary: fc.tuple(fc.constantFrom(...liveIds), fc.constantFrom(...SECRETS)).map(([id, s]) => `sessionId=${encodeURIComponent(signWith(id, s))}`) },
      { weight: 1, arbitrary: fc.constantFrom(undefined, 'sessionId=forged.value', `sessionId=${signWith(world.dead[0], SECRET)}`) }
    )
    const input = fc.tuple(cookie, originAndHostArb(world)).map(([c, oh]) => ({ cookie: c, ...oh }))
    await checkProperty('origin and host', input, (i) => probeOne(tally, i), RUNS)
    checkNoSideEffects(tally)
    tt.diagnostic(`origin and host: ${JSON.stringify(tally)}`)
  })

  test(`(a) Cookie, Origin and Host all arbitrary together (${RUNS} runs)`, async (tt) => {
    const tally = newTally()
    const input = fc.tuple(cookieHeaderArb(world), originAndHostArb(world)).map(([cookie, oh]) => ({ cookie, ...oh }))
    await checkProperty('cookie, origin and host', input, (i) => probeOne(tally, i), RUNS)
    checkNoSideEffects(tally)
    tt.diagnostic(`all together: ${JSON.stringify(tally)}`)
  })

  test(`(b) end to end: real socket.io-client handshakes obey the same model (${E2E_RUNS} runs)`, async (tt) => {
    const tally = newTally()
    // What an HTTP/1.1 header can carry (Node rejects the rest before sending),
    // and what the server then sees: the value without surrounding blanks.
    const onTheWire = (value: string | undefined): boolean => value === undefined || /^[\t\x20-\x7e\x80-\xff]*$/.test(value)
    const received = (value: string | undefined): string | undefined => value === undefined ? undefined : trimSpTab(value)
    const input = fc.tuple(cookieHeaderArb(world, 4), originAndHostArb(world))
      .map(([cookie, oh]) => ({ cookie, ...oh }))
      .filter((i) => onTheWire(i.cookie) && onTheWire(i.origin) && onTheWire(i.host) && (i.cookie?.length ?? 0) < 8_000 && (i.host?.trim().length ?? 0) > 0)

    await checkProperty('end to end', input, async (i) => {
      const expected = model(world, { cookie: received(i.cookie), origin: received(i.origin), host: received(i.host) })
      const readsBefore = store.gets
      const extraHeaders: Record<string, string> = {}
      if (i.cookie !== undefined) extraHeaders.cookie = i.cookie
      if (i.origin !== undefined) extraHeaders.origin = i.origin
      if (i.host !== undefined) extraHeaders.host = i.host
      const socket = connectClient(t.url, { transports: ['websocket'], forceNew: true, reconnection: false, timeout: 10_000, extraHeaders })
      const result = await new Promise<{ ok: true } | { ok: false, code: string }>((resolve) => {
        socket.once('connect', () => resolve({ ok: true }))
        socket.once('connect_error', (err) => resolve({ ok: false, code: err.message }))
      })
      socket.close()
      const reads = store.gets - readsBefore
      tally.runs++
      tally.storeReads += reads
      if (result.ok) {
        tally.admitted++
        assert.ok(expected.admit, `admitted, but the model says ${expected.admit ? '' : expected.code}`)
      } else {
        tally.codes[result.code] = (tally.codes[result.code] ?? 0) + 1
        assert.ok(!expected.admit, `refused with ${result.code}, but the model admits it`)
        // A refused Origin is a 403 to the upgrade itself: the client sees its transport fail.
        assert.equal(result.code, expected.code === 'ORIGIN_NOT_ALLOWED' ? 'websocket error' : expected.code)
      }
      assert.equal(reads, expected.storeRead ? 1 : 0, 'store read exactly when the signature verifies')
    }, E2E_RUNS)
    checkNoSideEffects(tally)
    tt.diagnostic(`end to end: ${JSON.stringify(tally)}`)
  })
})
