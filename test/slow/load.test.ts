/**
 * Load: LOAD_HANDSHAKES (default 2,000) WebSocket handshakes started together
 * against one server — half of them valid sessions, half invalid (forged
 * signature, validly signed unknown id, logged-out session, no cookie, foreign
 * Origin) in a seeded random order. Every valid one is admitted, every invalid
 * one refused with its code, no client or server error, and the store is
 * never written.
 *
 * How: one client process (this one), all handshakes started in the same tick
 * and none closed until every one has its answer, so all of them are in flight
 * together (no batching). The server runs in the same process, so the 2 cores
 * are shared by both sides; the figure printed is the wall time from the first
 * connect to the last answer. The server listens with a backlog of 4096:
 * with Node's default of 511, 2,000 simultaneous connects overflow the accept
 * queue on a busy machine and some are reset (ECONNRESET) before any HTTP is
 * spoken, which tests the kernel, not the plugin.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHmac, randomUUID } from 'node:crypto'
import { io as connectClient, type Socket as ClientSocket } from 'socket.io-client'
import { SECRET, cookieValueOf, registryStats, sleep, startApp } from '../support/app'
import { LEVEL, logCapture, watchProcess } from '../support/health'
import { prng } from '../support/prng'
import { TestStore } from '../support/store'

const TOTAL = Math.max(2, Number(process.env.LOAD_HANDSHAKES ?? 2000))
const SEED = Number(process.env.LOAD_SEED ?? 7)

// A foreign Origin is refused with a 403 to the upgrade itself, before Socket.IO: the client sees that status.
type Expect = 'ADMIT' | 'SESSION_INVALID' | 'SESSION_REQUIRED' | 'websocket error:  Unexpected server response: 403'
interface Attempt { kind: string, cookie?: string, origin?: string, expect: Expect }

const signed = (id: string, secret = SECRET): string =>
  `sessionId=${encodeURIComponent(`${id}.${createHmac('sha256', secret).update(id).digest('base64').replace(/=+$/, '')}`)}`

/** A refusal's code, or for a transport failure the underlying error, so a failure says what broke. */
function transportError (err: Error & { description?: unknown }): string {
  if (err.message !== 'websocket error' && err.message !== 'xhr poll error') return err.message
  const cause = err.description as { message?: string, error?: { code?: string, message?: string } } | undefined
  return `${err.message}: ${cause?.error?.code ?? ''} ${cause?.error?.message ?? cause?.message ?? String(cause)}`
}

test(`load: ${TOTAL} concurrent WebSocket handshakes, half valid and half invalid, each answered right`, async (t) => {
  const health = watchProcess()
  const logs = logCapture()
  const store = new TestStore()
  const app = await startApp({
    fastify: { logger: { level: 'warn', stream: logs.stream } },
    session: { store },
    // The defaults (60 s revalidation), as in production, except a longer
    // Engine.IO ping timeout: on a busy 2-core machine the last handshakes can
    // take tens of seconds, and the first sockets must not time out meanwhile.
    auth: { pingTimeout: 60_000 },
    // Node's default backlog (511) overflows when 2,000 connections arrive at once.
    backlog: 4096
  })
  const clients: ClientSocket[] = []
  t.after(async () => {
    health.stop()
    for (const client of clients) client.close()
    await app.close()
  })
  let serverConnections = 0
  app.app.io.on('connection', () => { serverConnections++ })

  const valid = Math.ceil(TOTAL / 2)
  const invalid = TOTAL - valid
  const attempts: Attempt[] = []
  const cookies = await Promise.all(Array.from({ length: valid }, (_, i) => app.login(`user-${i}`)))
  for (const cookie of cookies) attempts.push({ kind: 'valid', cookie, expect: 'ADMIT' })
  const loggedOut = await app.login('gone')
  await app.logout(loggedOut)
  const sample = cookieValueOf(cookies[0])
  const invalidKinds: Array<() => Attempt> = [
    () => ({ kind: 'forged signature', cookie: `sessionId=${encodeURIComponent(sample.slice(0, -3) + 'AAA')}`, expect: 'SESSION_INVALID' }),
    () => ({ kind: 'unknown id, valid signature', cookie: signed(randomUUID()), expect: 'SESSION_INVALID' }),
    () => ({ kind: 'logged-out session', cookie: loggedOut, expect: 'SESSION_INVALID' }),
    () => ({ kind: 'no cookie', expect: 'SESSION_REQUIRED' }),
    () => ({ kind: 'foreign origin', cookie: cookies[0], origin: 'https://evil.example', expect: 'websocket error:  Unexpected server response: 403' })
  ]
  for (let i = 0; i < invalid; i++) attempts.push(invalidKinds[i % invalidKinds.length]())
  const random = prng(SEED)
  for (let i = attempts.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    ;[attempts[i], attempts[j]] = [attempts[j], attempts[i]]
  }
  const storeSize = store.size
  const setsBefore = store.sets

  const started = Date.now()
  const results = await Promise.all(attempts.map((attempt) => new Promise<{ attempt: Attempt, got: string }>((resolve) => {
    const extraHeaders: Record<string, string> = {}
    if (attempt.cookie !== undefined) extraHeaders.cookie = attempt.cookie
    if (attempt.origin !== undefined) extraHeaders.origin = attempt.origin
    const socket = connectClient(app.url, { transports: ['websocket'], forceNew: true, reconnection: false, timeout: 120_000, extraHeaders })
    clients.push(socket)
    socket.once('connect', () => resolve({ attempt, got: 'ADMIT' }))
    socket.once('connect_error', (err: Error & { description?: unknown }) => resolve({ attempt, got: transportError(err) }))
  })))
  const elapsed = Date.now() - started

  const wrong = results.filter((r) => r.got !== r.attempt.expect)
  const summary = wrong.slice(0, 5).map((r) => `${r.attempt.kind}: expected ${r.attempt.expect}, got ${r.got}`)
  assert.deepEqual(summary, [], `${wrong.length} of ${TOTAL} handshakes answered wrong`)
  const admitted = results.filter((r) => r.got === 'ADMIT').length
  assert.equal(admitted, valid)
  assert.equal(serverConnections, valid, 'the server saw exactly the valid connections')
  assert.equal(app.app.io.of('/').sockets.size, valid, 'all valid sockets are connected at once')
  const stats = registryStats(app.app)
  assert.equal(stats.sessions, valid, 'one registry entry per session')
  assert.equal(store.size, storeSize, 'no session was created by a handshake')
  assert.equal(store.sets, setsBefore, 'the store was never written by a handshake')

  for (const client of clients) client.close()
  const deadline = Date.now() + 10_000
  while ((app.app.io.of('/').sockets.size > 0 || registryStats(app.app).sessions > 0) && Date.now() < deadline) await sleep(50)
  assert.equal(app.app.io.of('/').sockets.size, 0, 'every socket gone after the clients closed')
  assert.deepEqual(registryStats(app.app), { sessions: 0, timers: 0 })

  assert.deepEqual(logs.atLeast(LEVEL.error), [], 'no error logged')
  assert.deepEqual(health.problems, [], 'no unhandled rejection or uncaught exception')
  const byCode: Record<string, number> = {}
  for (const r of results) byCode[r.got] = (byCode[r.got] ?? 0) + 1
  t.diagnostic(`load: ${TOTAL} handshakes in flight together, answered in ${elapsed} ms (${Math.round(TOTAL / (elapsed / 1000))}/s); ${JSON.stringify(byCode)}; 0 wrong`)
})
