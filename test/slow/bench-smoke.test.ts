import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'

// `npm run bench -- --smoke` end to end (ten connections per batch), so the
// harness cannot rot: every variant and every figure is reported, every
// handshake ended as it should. No timings are asserted. A slow test: it
// starts a process per variant and tests the harness, not the plugin.

const VARIANTS = ['bare', 'plugin', 'rule', 'naive', 'express', 'forged']
const CELLS = ['held/distinct', 'held/shared', 'cycle/distinct', 'cycle/shared']

test('npm run bench -- --smoke reports every variant, cell and target', { timeout: 60_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bench-smoke-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const { code, stdout, stderr } = await new Promise<{ code: number | null, stdout: string, stderr: string }>((resolvePromise) => {
    execFile(process.execPath, ['--import', 'tsx', 'bench/run.ts', '--smoke', '--results-dir', dir], { cwd: resolve(__dirname, '..', '..'), timeout: 55_000 },
      (error, stdout, stderr) => resolvePromise({ code: error === null ? 0 : (error.code as number | null), stdout, stderr }))
  })
  assert.equal(code, 0, `${stderr}\n${stdout}`)
  const report = JSON.parse(await readFile(join(dir, 'latest.json'), 'utf8')) as {
    variants: string[]
    rounds: Record<string, Array<{ n: number, asExpected: number, cpuUs: number, allocatedBytes: number, storeCalls: number }>>
    memory: Record<string, { heap: number, rss: number }>
  }
  assert.deepEqual(report.variants, VARIANTS)
  assert.match(stdout, new RegExp(`^\\| figure \\| ${VARIANTS.join(' \\| ')} \\|$`, 'm'))
  for (const variant of VARIANTS) {
    for (const cell of CELLS) {
      const rounds = report.rounds[`${cell}/${variant}`]
      assert.ok(rounds !== undefined && rounds.length > 0, `no ${cell} figures for ${variant}`)
      for (const round of rounds) {
        assert.equal(round.asExpected, round.n, `${variant} ${cell}: not every handshake was ${variant === 'forged' ? 'refused' : 'admitted'}`)
        assert.ok(Number.isFinite(round.cpuUs) && Number.isFinite(round.allocatedBytes), `${variant} ${cell}: figures missing`)
        // Counts, not timings: a forged cookie never reaches the store, an admitted handshake reads it once at most.
        if (variant === 'forged') assert.equal(round.storeCalls, 0)
      }
    }
    if (variant !== 'forged') assert.ok(Number.isFinite(report.memory[variant]?.heap), `no memory figures for ${variant}`)
  }
  assert.equal(stdout.match(/^- \[(met|MISSED)\] /gm)?.length, 7, 'every target marked met or missed')
  assert.doesNotMatch(stdout, /UNEXPECTED/)
})
