/**
 * A real Redis session store (connect-redis + node-redis v5) that dies in the
 * middle of a run and comes back. The test runs its own redis-server on a
 * spare loopback port (support/redis-server.ts), never the shared one.
 *
 * During the outage: every handshake that needs the store is refused with
 * SESSION_STORE_UNAVAILABLE within about storeTimeout, nothing crashes, no
 * rejection goes unhandled, and sockets connected before the outage stay
 * connected (the documented policy), revalidated each round.
 * After the restart: that Redis kept nothing on disk, so the old sessions are
 * gone — the next revalidation ends their sockets (reason 'revoked') and their
 * cookies are refused (SESSION_INVALID) — and a fresh login is admitted
 * within seconds.
 *
 * Client configuration that works (found here): `disableOfflineQueue: true`
 * makes commands fail at once while disconnected instead of waiting in a
 * queue, and `socket.reconnectStrategy` keeps reconnecting (capped back-off)
 * so the client comes back by itself. The second test keeps node-redis's
 * default offline queue: then storeTimeout is what bounds each handshake.
 */
import { describe, test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { RedisStore } from 'connect-redis'
import { createClient } from 'redis'
import type { Socket as ClientSocket } from 'socket.io-client'
import { connect, connected, startApp, waitFor, type TestApp } from './support/app'
import { logCapture, watchProcess } from './support/health'
import { needRedisServerBinary, startOwnRedis, type OwnRedis } from './support/redis-server'
import { track } from './support/cluster'

const STORE_TIMEOUT = 1000
const REVALIDATE = 200
const OUTAGE_MS = 2500
const RECOVERY_BOUND_MS = 5000

interface Run {
  redis: OwnRedis
  client: ReturnType<typeof createClient>
  t: TestApp
  clientErrors: Error[]
}

/** Its own redis-server, a node-redis client and an app storing sessions there; all closed when the test ends. */
async function setUp (tt: TestContext, binary: string, offlineQueue: boolean): Promise<Run> {
  const redis = await startOwnRedis(binary)
  const clientErrors: Error[] = []
  const client = createClient({
    url: redis.url,
    disableOfflineQueue: !offlineQueue,
    socket: { connectTimeout: 1000, reconnectStrategy: (retries: number) => Math.min(50 * (retries + 1), 500) }
  })
  // Without an 'error' listener node-redis's connection errors would crash the process.
  client.on('error', (error: Error) => { clientErrors.push(error) })
  await client.connect()
  const logs = logCapture()
  const t = await startApp({
    fastify: { logger: { level: 'warn', stream: logs.stream } },
    session: { store: new RedisStore({ client, prefix: `sess:${randomUUID()}:` }) },
    auth: { storeTimeout: STORE_TIMEOUT, revalidateInterval: REVALIDATE }
  })
  tt.after(async () => {
    await t.close()
    client.destroy()
    await redis.close()
  })
  return { redis, client, t, clientErrors }
}

async function refusedDuringOutage (t: TestApp, cookie: string | undefined): Promise<{ code: string, ms: number }> {
  const started = Date.now()
  const result = await connect(t.url, cookie === undefined ? {} : { cookie })
  const ms = Date.now() - started
  result.socket.close()
  assert.equal(result.ok, false, 'no handshake is admitted during the outage')
  return { code: result.ok ? 'ADMITTED' : result.code, ms }
}

/** Logs in (an HTTP request that writes Redis) and connects; retried until Redis serves again. */
async function loginAndConnect (t: TestApp, name: string): Promise<ClientSocket | undefined> {
  let cookie: string
  try {
    cookie = await t.login(name)
  } catch {
    return undefined // the store is not writable yet
  }
  const result = await connect(t.url, { cookie })
  if (result.ok) return result.socket
  result.socket.close()
  return undefined
}

async function outageScenario (tt: TestContext, run: Run, label: string): Promise<void> {
  const { t, redis } = run
  const health = watchProcess()
  const sockets: ClientSocket[] = []
  tt.after(() => {
    health.stop()
    for (const socket of sockets) socket.close()
  })
  // Before: two sessions connected.
  const cookieA = await t.login('ada')
  const cookieB = await t.login('bob')
  const a = await connected(t.url, { cookie: cookieA })
  const b = await connected(t.url, { cookie: cookieB })
  sockets.push(a, b)
  const seenA = track(a)
  const seenB = track(b)

  // Redis dies.
  await redis.kill()
  const outageStarted = Date.now()
  const refusals: Array<{ code: string, ms: number }> = []
  // Handshakes during the outage, one at a time and in bursts, until it has lasted OUTAGE_MS.
  while (Date.now() - outageStarted < OUTAGE_MS) {
    refusals.push(await refusedDuringOutage(t, cookieA))
    refusals.push(...await Promise.all([cookieA, cookieB, cookieA, cookieB, cookieA].map((cookie) => refusedDuringOutage(t, cookie))))
  }
  for (const refusal of refusals) {
    assert.equal(refusal.code, 'SESSION_STORE_UNAVAILABLE')
    assert.ok(refusal.ms <= STORE_TIMEOUT + 1000, `refused in ${refusal.ms} ms, expected within about storeTimeout (${STORE_TIMEOUT} ms)`)
  }
  // Refusals that need no store keep their own, precise code.
  assert.equal((await refusedDuringOutage(t, undefined)).code, 'SESSION_REQUIRED')
  assert.equal((await refusedDuringOutage(t, 'sessionId=forged.signature')).code, 'SESSION_INVALID')
  // Policy: the outage does not end sockets connected before it (they were revalidated, and failed, many times by now).
  assert.ok(a.connected && b.connected, 'sockets connected before the outage stay connected')
  assert.deepEqual([seenA.revoked, seenB.revoked], [[], []])
  const slowest = Math.max(...refusals.map((r) => r.ms))

  // Redis comes back, empty.
  await redis.start()
  const restarted = Date.now()
  const socket = await (async () => {
    let admitted: ClientSocket | undefined
    await waitFor('a fresh login to be admitted again', async () => {
      admitted = await loginAndConnect(t, 'carol')
      return admitted !== undefined
    }, RECOVERY_BOUND_MS, 50)
    return admitted as ClientSocket
  })()
  sockets.push(socket)
  const recoveryMs = Date.now() - restarted
  // The old sessions were lost with Redis's memory: their sockets end at the next round, and their cookies no longer open one.
  await waitFor('the lost sessions\' sockets to be revoked', () => !a.connected && !b.connected, RECOVERY_BOUND_MS, 50)
  assert.deepEqual([seenA.revoked, seenB.revoked], [['revoked'], ['revoked']])
  const stale = await connect(t.url, { cookie: cookieA })
  stale.socket.close()
  assert.equal(stale.ok ? 'ADMITTED' : stale.code, 'SESSION_INVALID')
  assert.ok(socket.connected, 'the new session stays connected')

  // Stopped before the test's cleanup closes the app and Redis: a crash there fails the test as usual.
  health.stop()
  assert.deepEqual(health.problems, [], 'no unhandled rejection or uncaught exception')
  tt.diagnostic(`${label}: ${refusals.length} handshakes during a ${OUTAGE_MS} ms outage, all SESSION_STORE_UNAVAILABLE, slowest ${slowest} ms; ` +
    `admitted again ${recoveryMs} ms after redis restarted; client reported ${run.clientErrors.length} connection errors`)
}

describe('Redis outage', () => {
  test('fail-fast client (disableOfflineQueue): refused at once during the outage, admitted again after', async (tt) => {
    const binary = needRedisServerBinary(tt)
    if (binary === undefined) return
    await outageScenario(tt, await setUp(tt, binary, false), 'disableOfflineQueue')
  })

  test('default client (offline queue): storeTimeout bounds every handshake during the outage', async (tt) => {
    const binary = needRedisServerBinary(tt)
    if (binary === undefined) return
    await outageScenario(tt, await setUp(tt, binary, true), 'offline queue')
  })
})
