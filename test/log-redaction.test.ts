// No raw session id in any log line: with pino at 'trace' capturing every line,
// over handshakes admitted and refused, revalidation and keep-alive against a
// store whose errors quote the key (as connect-redis does: 'GET sess:<id> failed'),
// a socket-side save, regenerate, HTTP logout, disconnectSession, a two-node
// cluster fan-out and app.close(), no line holds a session id or a signed
// cookie value. The failure paths must have logged something, so the check is
// not vacuous.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { Signer } from '@fastify/cookie'
import type { FastifyServerOptions } from 'fastify'
import type { Socket as ClientSocket } from 'socket.io-client'
import { SECRET, connected, cookieValueOf, refusedWith, regenerateRoutes, saveOnSocketEvent, sessionIdOf, sleep, startApp, waitFor, type StartOptions, type TestApp } from './support/app'
import { endingAfter, startCluster } from './support/cluster'
import { needRedis } from './support/services'
import { TestStore, failWith } from './support/store'

const WARN = 40

/** Every line pino writes, raw, at level trace. */
class Capture {
  readonly lines: string[] = []
  readonly secrets = new Set<string>()

  get logger (): FastifyServerOptions['logger'] {
    return { level: 'trace', stream: { write: (line: string) => { this.lines.push(line) } } }
  }

  /** Remembers a login cookie's session id and signed value (raw and URL-encoded) as things no line may hold. */
  keep (cookie: string): string {
    const id = sessionIdOf(cookie)
    this.secrets.add(id)
    this.secrets.add(cookieValueOf(cookie))
    this.secrets.add(cookie.slice(cookie.indexOf('=') + 1))
    return id
  }

  /** Lines written since `mark` at warn level or above. */
  warningsSince (mark: number): string[] {
    return this.lines.slice(mark).filter((line) => (JSON.parse(line) as { level: number }).level >= WARN)
  }

  assertClean (): void {
    assert.ok(this.lines.length > 0, 'something was logged at all')
    for (const secret of this.secrets) {
      const hits = this.lines.filter((line) => line.includes(secret))
      assert.equal(hits.length, 0, `${hits.length} log line(s) hold ${secret.length > 40 ? 'a signed cookie value' : 'a session id'}, e.g. ${hits[0]?.slice(0, 400)}`)
    }
  }
}

/** Errors quoting the key, as connect-redis's do. */
const quotingGetFault = failWith((sessionId: string) => new Error('GET sess:' + sessionId + ' failed'), { async: true })
const quotingSetFault = failWith((sessionId: string) => new Error('SET sess:' + sessionId + ' failed'), { async: true })

/** An app logging every line into `capture`, closed once (now or when the test ends). */
async function loggingApp (capture: Capture, options: StartOptions): Promise<TestApp> {
  const app = await startApp({ ...options, fastify: { logger: capture.logger } })
  let closing: Promise<void> | undefined
  return { ...app, close: () => (closing ??= app.close()) }
}

/**
 * Logs `name` in on `app`, keeps its cookie as a secret, and connects a socket
 * with it to `url` (the app's by default), closed when the test ends.
 */
async function keptSocket (t: TestContext, capture: Capture, app: TestApp, name: string, url = app.url): Promise<{ cookie: string, id: string, socket: ClientSocket }> {
  const cookie = await app.login(name)
  const id = capture.keep(cookie)
  const socket = await connected(url, { cookie })
  t.after(() => socket.close())
  return { cookie, id, socket }
}

/** A logging app whose sessions live in a TestStore, with `ada` logged in and her socket connected. */
async function faultStoreApp (t: TestContext, auth: StartOptions['auth']): Promise<{ capture: Capture, store: TestStore, app: TestApp, cookie: string, socket: ClientSocket }> {
  const capture = new Capture()
  const store = new TestStore()
  const app = await loggingApp(capture, {
    session: { store, cookie: { secure: false, maxAge: 60_000 } },
    auth
  })
  t.after(() => app.close())
  const { cookie, socket } = await keptSocket(t, capture, app, 'ada')
  return { capture, store, app, cookie, socket }
}

test('handshakes admitted and refused, socket save, regenerate, HTTP logout, disconnectSession and app.close() log no session id or cookie value', async (t) => {
  const capture = new Capture()
  const app = await loggingApp(capture, {
    auth: { revalidateInterval: false },
    setup: (app) => {
      saveOnSocketEvent(app, 'save')
      regenerateRoutes(app)
    }
  })
  t.after(() => app.close())

  // Admitted, and a socket-side save.
  const { cookie: ada, id: adaId, socket: adaSocket } = await keptSocket(t, capture, app, 'ada')
  assert.equal(await adaSocket.timeout(2000).emitWithAck('save'), 'ok')

  // Refused: a bad signature on a real id; a well-signed id the store does not have.
  const forged = `sessionId=${encodeURIComponent(`${adaId}.${randomBytes(32).toString('base64url')}`)}`
  capture.secrets.add(cookieValueOf(forged))
  assert.equal((await refusedWith(app.url, { cookie: forged })).code, 'SESSION_INVALID')
  const unknownId = randomBytes(24).toString('base64url')
  const unknown = `sessionId=${encodeURIComponent(new Signer(SECRET).sign(unknownId))}`
  capture.keep(unknown)
  assert.equal((await refusedWith(app.url, { cookie: unknown })).code, 'SESSION_INVALID')

  // Regenerate over HTTP.
  const grace = await keptSocket(t, capture, app, 'grace')
  const regenerated = await endingAfter(grace.socket, async () => {
    const response = await fetch(`${app.url}/regenerate`, { method: 'POST', headers: { cookie: grace.cookie } })
    assert.equal(response.status, 200)
    capture.secrets.add(((await response.json()) as { sessionId: string }).sessionId)
  }, 2000)
  assert.equal(regenerated.reason, 'regenerate')

  // HTTP logout.
  assert.equal((await endingAfter(adaSocket, () => app.logout(ada), 2000)).reason, 'logout')

  // disconnectSession.
  const bob = await keptSocket(t, capture, app, 'bob')
  assert.equal((await endingAfter(bob.socket, () => app.app.disconnectSession(bob.id), 2000)).reason, 'revoked')

  // app.close() with a socket still connected.
  const carol = await keptSocket(t, capture, app, 'carol')
  await endingAfter(carol.socket, () => app.close(), 2000)

  capture.assertClean()
})

test('revalidation against a store whose errors quote the key: the failure is logged (warn) without the session id', async (t) => {
  const { capture, store, app, cookie, socket } = await faultStoreApp(t, { revalidateInterval: 50, storeTimeout: 500 })

  const mark = capture.lines.length
  store.readFault = quotingGetFault
  await waitFor('three failed revalidation reads', () => store.faultedGets >= 3)
  // A handshake during the outage too (its store error quotes the key as well).
  const other = await app.login('bob')
  capture.keep(other)
  assert.equal((await refusedWith(app.url, { cookie: other })).code, 'SESSION_STORE_UNAVAILABLE')
  store.readFault = undefined
  assert.ok(capture.warningsSince(mark).length > 0, 'the failing revalidation was logged at warn or above')

  await endingAfter(socket, () => app.logout(cookie), 2000)
  await app.close()
  capture.assertClean()
})

test('keep-alive against a store whose get and set errors quote the key: each failure is logged (warn) without the session id', async (t) => {
  const { capture, store, app, cookie, socket } = await faultStoreApp(t, { keepAlive: true, keepAliveInterval: 1, revalidateInterval: false, storeTimeout: 500 })

  let failures = 0
  for (const fault of ['readFault', 'writeFault'] as const) {
    const mark = capture.lines.length
    const failedBefore = store.faultedGets + store.faultedSets
    store[fault] = fault === 'readFault' ? quotingGetFault : quotingSetFault
    for (let i = 0; i < 4; i++) {
      await sleep(15)
      socket.emit('typing', i)
    }
    await sleep(100)
    store[fault] = undefined
    const failed = store.faultedGets + store.faultedSets - failedBefore
    failures += failed
    if (failed > 0) assert.ok(capture.warningsSince(mark).length > 0, `keep-alive's failed store call (${fault}) was logged at warn or above`)
  }
  assert.ok(failures > 0, 'keep-alive called the failing store')

  await endingAfter(socket, () => app.logout(cookie), 2000)
  await app.close()
  capture.assertClean()
})

test('a two-node cluster (Redis): logout on one node ends the socket on the other, and neither logs the session id', async (t) => {
  if (!await needRedis(t)) return
  const capture = new Capture()
  const [a, b] = await startCluster(t, 2, { fastify: { logger: capture.logger } })
  assert.ok(a !== undefined && b !== undefined)
  const { cookie, id: sessionId, socket } = await keptSocket(t, capture, a, 'ada', b.url)
  const other = await connected(b.url, { cookie: await a.login('bob') })
  t.after(() => other.close())

  assert.equal((await endingAfter(socket, () => a.logout(cookie), 3000)).reason, 'logout')
  // And the cluster-wide disconnectSession, from the node without the socket.
  const bob = await keptSocket(t, capture, a, 'bob', b.url)
  assert.equal((await endingAfter(bob.socket, () => a.app.disconnectSession(bob.id), 3000)).reason, 'revoked')

  await a.close()
  await b.close()
  assert.ok(sessionId.length > 0)
  capture.assertClean()
})
