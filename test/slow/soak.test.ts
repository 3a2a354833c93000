/**
 * Soak: SOAK_CYCLES (default 20,000) connect/disconnect cycles against one
 * server, valid sessions and refused handshakes mixed in a seeded random
 * order, SOAK_CONCURRENCY (default 40) cycles at a time. Afterwards the
 * server's heap after a forced GC is within 5% of its baseline, and its
 * counts (Engine.IO clients, namespace sockets, adapter rooms, the plugin's
 * registry sessions and timers, listeners on the io server, the namespace,
 * the engine, the HTTP server and process, active timers and TCP sockets)
 * are back to their baseline.
 *
 * The server runs in a child process (support/soak-server.ts, with
 * --expose-gc), so its heap holds the server alone; the clients run here.
 * The baseline is taken after SOAK_WARMUP (default 3,000) cycles, once lazy
 * compilation and caches have settled.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHmac, randomUUID } from 'node:crypto'
import { join } from 'node:path'
import { io as connectClient } from 'socket.io-client'
import { SECRET, positiveIntFromEnv, sleep } from '../support/app'
import { startChild } from '../support/child-process'
import type { SoakCommands, SoakReady, SoakSnapshot } from '../support/soak-server'
import { prng } from '../support/prng'

const CYCLES = positiveIntFromEnv('SOAK_CYCLES', 20_000)
const WARMUP = positiveIntFromEnv('SOAK_WARMUP', 3_000)
const CONCURRENCY = positiveIntFromEnv('SOAK_CONCURRENCY', 40)
const SESSIONS = 50
const HEAP_TOLERANCE = 0.05

type Kind = 'valid' | 'valid+echo' | 'forged' | 'unknown' | 'no cookie' | 'foreign origin'
const EXPECT: Record<Kind, string> = {
  valid: 'ADMIT',
  'valid+echo': 'ADMIT',
  forged: 'SESSION_INVALID',
  unknown: 'SESSION_INVALID',
  'no cookie': 'SESSION_REQUIRED',
  // Refused with a 403 to the upgrade, before Socket.IO: the client sees its transport fail.
  'foreign origin': 'websocket error'
}
const KINDS: Kind[] = ['valid', 'valid', 'valid+echo', 'valid+echo', 'forged', 'unknown', 'no cookie', 'foreign origin']

test(`soak: ${CYCLES} connect/disconnect cycles; heap within ${HEAP_TOLERANCE * 100}% of baseline and every count back to baseline`, { timeout: 600_000 }, async (tt) => {
  const server = await startChild<SoakReady, SoakCommands>(tt, join(__dirname, '..', 'support', 'soak-server.ts'), { execArgv: ['--expose-gc'], answerWithinMs: 60_000 })
  const url = server.ready.url
  const cookies = await server.call('login', SESSIONS)
  const sign = (id: string): string => `sessionId=${encodeURIComponent(`${id}.${createHmac('sha256', SECRET).update(id).digest('base64').replace(/=+$/, '')}`)}`
  const random = prng(Number(process.env.SOAK_SEED ?? 11))
  const tally = { cycles: 0, admitted: 0, refused: 0, wrong: [] as string[], byKind: {} as Record<string, number> }

  async function cycle (): Promise<void> {
    const kind = KINDS[Math.floor(random() * KINDS.length)]
    const cookie = cookies[Math.floor(random() * cookies.length)]
    const extraHeaders: Record<string, string> = {}
    switch (kind) {
      case 'valid': case 'valid+echo': extraHeaders.cookie = cookie; break
      case 'forged': extraHeaders.cookie = cookie.slice(0, -4) + 'AAAA'; break
      case 'unknown': extraHeaders.cookie = sign(randomUUID()); break
      case 'no cookie': break
      case 'foreign origin': extraHeaders.cookie = cookie; extraHeaders.origin = 'https://evil.example'; break
    }
    const socket = connectClient(url, { transports: ['websocket'], forceNew: true, reconnection: false, timeout: 30_000, extraHeaders })
    const got = await new Promise<string>((resolve) => {
      socket.once('connect', () => resolve('ADMIT'))
      socket.once('connect_error', (err) => resolve(err.message))
    })
    if (got === 'ADMIT' && kind === 'valid+echo') {
      const echoed: unknown = await socket.timeout(10_000).emitWithAck('echo', tally.cycles)
      if (typeof echoed !== 'number') tally.wrong.push(`echo answered ${String(echoed)}`)
    }
    socket.close()
    tally.cycles++
    tally.byKind[kind] = (tally.byKind[kind] ?? 0) + 1
    if (got === 'ADMIT') tally.admitted++
    else tally.refused++
    if (got !== EXPECT[kind]) tally.wrong.push(`${kind}: expected ${EXPECT[kind]}, got ${got}`)
  }

  async function run (cycles: number): Promise<void> {
    let started = 0
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (started < cycles) {
        started++
        await cycle()
      }
    }))
  }

  /** Waits until the server has let go of every socket (closing is asynchronous), then measures after GC. */
  async function settledSnapshot (expected?: Record<string, number>): Promise<SoakSnapshot> {
    const deadline = Date.now() + 20_000
    for (;;) {
      const snapshot = await server.call('snapshot', false)
      const idle = snapshot.counts['engine.clients'] === 0 && snapshot.counts['namespace.sockets'] === 0
      const same = expected === undefined || Object.entries(expected).every(([key, value]) => snapshot.counts[key] === value)
      if ((idle && same) || Date.now() > deadline) break
      await sleep(100)
    }
    return server.call('snapshot', true)
  }

  await run(WARMUP)
  const baseline = await settledSnapshot()
  const warmupWrong = tally.wrong.length

  const started = Date.now()
  tally.cycles = 0
  tally.admitted = 0
  tally.refused = 0
  tally.byKind = {}
  // SOAK_TRACE=<n>: print the heap after GC every n cycles (to tell a leak's slope from noise).
  const trace = positiveIntFromEnv('SOAK_TRACE', CYCLES)
  for (let done = 0; done < CYCLES; done += trace) {
    await run(Math.min(trace, CYCLES - done))
    if (trace < CYCLES) {
      const snapshot = await settledSnapshot(baseline.counts)
      tt.diagnostic(`after ${done + trace} cycles: heap ${(snapshot.heapUsed / 1024 / 1024).toFixed(2)} MB`)
    }
  }
  const elapsed = Date.now() - started
  const final = await settledSnapshot(baseline.counts)

  assert.equal(warmupWrong, 0, `warm-up answered wrong: ${tally.wrong.slice(0, 5).join('; ')}`)
  assert.deepEqual(tally.wrong.slice(0, 5), [], `${tally.wrong.length} cycles answered wrong`)
  assert.equal(tally.cycles, CYCLES)
  assert.deepEqual(final.problems, [], 'no unhandled rejection or uncaught exception in the server')
  assert.deepEqual(final.errorsLogged, [], 'nothing logged at error level')
  assert.deepEqual(final.counts, baseline.counts, 'every count back to its baseline')
  const growth = (final.heapUsed - baseline.heapUsed) / baseline.heapUsed
  const mb = (bytes: number): string => (bytes / 1024 / 1024).toFixed(2)
  tt.diagnostic(`soak: ${CYCLES} cycles (${tally.admitted} admitted, ${tally.refused} refused, 0 wrong) in ${(elapsed / 1000).toFixed(1)} s ` +
    `(${Math.round(CYCLES / (elapsed / 1000))}/s, ${CONCURRENCY} at a time) after ${WARMUP} warm-up; ` +
    `heap after GC ${mb(baseline.heapUsed)} MB -> ${mb(final.heapUsed)} MB (${(growth * 100).toFixed(2)}%); counts ${JSON.stringify(final.counts)}`)
  assert.ok(growth <= HEAP_TOLERANCE, `heap grew ${(growth * 100).toFixed(2)}% (${mb(baseline.heapUsed)} MB -> ${mb(final.heapUsed)} MB)`)
})
