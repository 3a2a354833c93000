import { before, after, test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import type { BenchReport, HandshakeFigures, Scenario } from '../bench/harness'
import type { VariantName } from '../bench/variants'
import { LOADER_VARIANTS, type UsersReport } from '../bench/users'
import { needRedis } from './support/services'

// A tiny end-to-end run of `npm run bench` (--quick: a few connections per
// variant), so the harness cannot rot. It checks that every variant and every
// figure is there and that every handshake ended as it should; it asserts no
// timings: those are for the full run on a quiet machine.

const ROOT = resolve(__dirname, '..')
const LOCAL_VARIANTS: VariantName[] = ['bare', 'guard-memory', 'naive', 'express']
const TARGETS = ['cpu-vs-bare', 'cpu-vs-alternatives', 'forged-vs-bare', 'forged-no-store', 'heap-per-socket', 'revocation-one-node', 'revocation-two-nodes', 'revalidation-reads']

let dir = ''
let run: { code: number | null, stdout: string, stderr: string } | undefined
let report: BenchReport | undefined

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bench-smoke-'))
  const result = await new Promise<NonNullable<typeof run>>((resolvePromise) => {
    execFile(process.execPath, ['--import', 'tsx', 'bench/run.ts', '--quick', '--redis', 'auto', '--results-dir', dir], {
      cwd: ROOT,
      timeout: 240_000,
      maxBuffer: 16 * 1024 * 1024
    }, (error, stdout, stderr) => {
      resolvePromise({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : null, stdout, stderr })
    })
  })
  run = result
  if (result.code === 0) report = JSON.parse(await readFile(join(dir, 'latest.json'), 'utf8')) as BenchReport
}, { timeout: 260_000 })

after(async () => {
  if (dir !== '') await rm(dir, { recursive: true, force: true })
})

function finished (): { report: BenchReport, stdout: string } {
  assert.ok(run !== undefined, 'the bench did not run')
  assert.equal(run.code, 0, `npm run bench -- --quick failed:\n${run.stderr}\n${run.stdout}`)
  assert.ok(report !== undefined)
  return { report, stdout: run.stdout }
}

function assertFinite (value: unknown, what: string): void {
  assert.equal(typeof value, 'number', `${what} is missing`)
  assert.ok(Number.isFinite(value), `${what} is ${String(value)}`)
}

function assertHandshakes (figures: HandshakeFigures | undefined, variant: string, scenario: Scenario): void {
  assert.ok(figures !== undefined, `no ${scenario} handshakes for ${variant}`)
  for (const key of ['cpuUsPerConn', 'closeCpuUsPerConn', 'lifecycleCpuUsPerConn', 'connPerSec', 'p50Ms', 'p99Ms', 'storeCallsPerConn', 'redisCommandsPerConn'] as const) {
    assertFinite(figures[key], `${variant} ${scenario} ${key}`)
  }
  // Functional, not timing: an admitted batch is all admitted, a refused one all refused.
  assert.equal(figures.asExpected, figures.n, `${variant} ${scenario}: ${JSON.stringify(figures.codes)}`)
  assert.equal(scenario === 'admitted' ? figures.admitted : figures.refused, figures.n)
}

function assertMemory (report: BenchReport, variant: VariantName): void {
  const memory = report.memory[variant]
  assert.ok(memory !== undefined, `no memory figures for ${variant}`)
  assert.equal(memory.sockets, report.meta.sizes.memorySockets)
  assertFinite(memory.heapBytesPerSocket, `${variant} heap per socket`)
  assertFinite(memory.rssBytesPerSocket, `${variant} RSS per socket`)
}

test('npm run bench -- --quick runs end to end: every local variant and figure, in the table and the JSON', () => {
  const { report, stdout } = finished()
  assert.equal(report.meta.quick, true)
  for (const variant of LOCAL_VARIANTS) {
    assert.ok(report.meta.variants.includes(variant), `variant ${variant} is missing`)
    assertHandshakes(report.handshakes[variant]?.admitted, variant, 'admitted')
    if (variant !== 'bare') {
      assertHandshakes(report.handshakes[variant]?.forged, variant, 'forged')
      assertHandshakes(report.handshakes[variant]?.unknown, variant, 'unknown')
    }
    assertMemory(report, variant)
  }
  // The plugin refuses a forged cookie without a store call (a count, not a timing).
  assert.equal(report.handshakes['guard-memory']?.forged?.storeCallsPerConn, 0)
  assert.equal(report.handshakes['guard-memory']?.forged?.codes.SESSION_INVALID, report.handshakes['guard-memory']?.forged?.n)
  assert.equal(report.handshakes['guard-memory']?.unknown?.codes.SESSION_INVALID, report.handshakes['guard-memory']?.unknown?.n)

  const oneNode = report.revocation.oneNode
  assert.ok(oneNode !== undefined, 'no one-node revocation figures')
  assert.equal(oneNode.logouts, report.meta.sizes.revocations)
  assert.equal(oneNode.missed, 0, 'a logout did not disconnect its socket within 2 s')
  assert.equal(oneNode.revokedEvents, oneNode.logouts, 'every revoked socket gets session:revoked first')
  assertFinite(oneNode.p50Ms, 'revocation p50')
  assertFinite(oneNode.p99Ms, 'revocation p99')

  const reval = report.revalidation
  assert.ok(reval !== undefined, 'no revalidation figures')
  assert.equal(reval.sockets, reval.sessions * report.meta.sizes.revalSocketsPerSession)
  assertFinite(reval.readsPerInterval, 'revalidation reads per interval')
  assert.equal(reval.readsWhileConnecting >= reval.sockets, true, 'one store read per admitted connection at least')

  for (const ratio of ['cpuGuardOverBare', 'lifecycleCpuGuardOverBare', 'cpuGuardOverNaive', 'cpuGuardOverExpress', 'forgedGuardOverBareAdmitted', 'heapGuardOverBare', 'extraHeapBytesPerSocket'] as const) {
    assertFinite(report.ratios[ratio], `ratio ${ratio}`)
  }
  assert.deepEqual(report.targets.map((t) => t.id), TARGETS)

  // The printed table: one column per variant, a row for every figure.
  const header = stdout.split('\n').find((line) => line.startsWith('figure'))
  assert.ok(header !== undefined, `no table in:\n${stdout}`)
  for (const variant of report.meta.variants) assert.match(header, new RegExp(`\\b${variant}\\b`))
  for (const row of ['server CPU µs / handshake', 'server CPU µs / connection (handshake + close)', 'server CPU µs / connection (refusal + close)', 'handshakes / s', 'latency p50 / p99 ms', 'store calls / handshake', 'heap bytes / socket', 'RSS bytes / socket', 'one node (MemoryStore) p50 / p99 ms', 'store reads / interval']) {
    assert.ok(stdout.includes(row), `row "${row}" missing from the table`)
  }
  for (const section of ['Admitted handshakes', 'Refused: forged cookie', 'Refused: unknown session', 'Memory:', 'Revocation:', 'Revalidation:', 'Targets (issue 5)']) {
    assert.ok(stdout.includes(section), `section "${section}" missing from the table`)
  }
  assert.ok(existsSync(join(dir, 'latest.md')), 'latest.md not written')
  assert.match(stdout, /Wrote .*latest\.json/)
})

test('npm run bench -- --quick covers the Redis variants: plugin with connect-redis, two nodes through the Redis adapter', async (t) => {
  if (!await needRedis(t)) return
  const { report, stdout } = finished()
  assert.equal(report.meta.redis, true, `the bench ran without Redis: ${report.meta.notes.join(' ')}`)
  assert.ok(report.meta.variants.includes('guard-redis'))
  for (const scenario of ['admitted', 'forged', 'unknown'] as const) {
    assertHandshakes(report.handshakes['guard-redis']?.[scenario], 'guard-redis', scenario)
  }
  // A forged cookie sends nothing to Redis; an unknown session costs exactly one read.
  assert.equal(report.handshakes['guard-redis']?.forged?.redisCommandsPerConn, 0)
  assert.equal(report.handshakes['guard-redis']?.forged?.storeCallsPerConn, 0)
  assert.equal(report.handshakes['guard-redis']?.unknown?.redisCommandsPerConn, 1)
  assertMemory(report, 'guard-redis')
  assertFinite(report.ratios.cpuGuardRedisOverBare, 'ratio cpuGuardRedisOverBare')
  assertFinite(report.ratios.forgedGuardRedisOverBareAdmitted, 'ratio forgedGuardRedisOverBareAdmitted')

  const twoNodes = report.revocation.twoNodes
  assert.ok(twoNodes !== undefined, 'no two-node revocation figures')
  assert.equal(twoNodes.nodes, 2)
  assert.equal(twoNodes.logouts, report.meta.sizes.revocations)
  assert.equal(twoNodes.missed, 0, 'a logout on node A did not disconnect the socket on node B within 2 s')
  assert.equal(twoNodes.revokedEvents, twoNodes.logouts)
  assert.ok(stdout.includes('two nodes via Redis p50 / p99 ms'))
  assert.ok(stdout.includes('Redis commands / handshake'))
})

test('npm run bench:users -- --quick runs end to end: demotion and disconnectUser across two nodes, CPU with and without loadUser', { timeout: 60_000 }, async (t) => {
  if (!await needRedis(t)) return
  const usersDir = await mkdtemp(join(tmpdir(), 'bench-users-smoke-'))
  t.after(() => rm(usersDir, { recursive: true, force: true }))
  const result = await new Promise<{ code: number | null, stdout: string, stderr: string }>((resolvePromise) => {
    execFile(process.execPath, ['--import', 'tsx', 'bench/users.ts', '--quick', '--results-dir', usersDir], {
      cwd: ROOT,
      timeout: 50_000,
      maxBuffer: 16 * 1024 * 1024
    }, (error, stdout, stderr) => {
      resolvePromise({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : null, stdout, stderr })
    })
  })
  assert.equal(result.code, 0, `npm run bench:users -- --quick failed:\n${result.stderr}\n${result.stdout}`)
  const users = JSON.parse(await readFile(join(usersDir, 'users-latest.json'), 'utf8')) as UsersReport
  // Functional, not timing: every trial ended as it should.
  const { demotion, demotionReauthorize, disconnectUser } = users
  for (const figures of [demotion, demotionReauthorize]) {
    assert.equal(figures.trials, users.meta.sizes.demotions)
    assert.equal(figures.missed, 0, 'a demotion on node A did not end /admin on node B within 2 s')
    assert.equal(figures.forbidden, figures.trials, "every demoted /admin socket gets session:revoked { reason: 'forbidden' }")
    assert.equal(figures.mainLost, 0, "'/' stays connected when /admin is left")
    assertFinite(figures.p99Ms, 'demotion p99')
  }
  assert.equal(disconnectUser.trials, users.meta.sizes.userDisconnects)
  assert.equal(disconnectUser.missed, 0, 'disconnectUser left a socket connected for 2 s')
  assert.equal(disconnectUser.socketsPerTrial, 9)
  assert.deepEqual(disconnectUser.perNode.map((n) => n > 0), [true, true], 'the sockets are spread over both nodes')
  assert.equal(disconnectUser.revokedEvents, disconnectUser.trials * 9)
  for (const figure of ['p50Ms', 'p99Ms'] as const) {
    assertFinite(demotion[figure], `demotion ${figure}`)
    assertFinite(disconnectUser[figure], `disconnectUser ${figure}`)
  }
  for (const variant of LOADER_VARIANTS) {
    const figures = users.handshakes[variant]
    assertFinite(figures.cpuUsPerConn, `${variant} CPU per handshake`)
    assert.equal(figures.admitted, figures.n, `${variant}: ${JSON.stringify(figures.codes)}`)
  }
  assertFinite(users.ratios.loadUserOverPlain, 'ratio loadUserOverPlain')
  assertFinite(users.ratios.loadUserIdentifyOverPlain, 'ratio loadUserIdentifyOverPlain')
  assert.deepEqual(users.targets.map((target) => target.id), ['demotion-two-nodes', 'demotion-reauthorize-two-nodes', 'disconnect-user-two-nodes'])
  assert.match(result.stdout, /\(a\) demote over HTTP on node A/)
  assert.match(result.stdout, /\(c\) admitted handshake/)
})
