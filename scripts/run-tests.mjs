#!/usr/bin/env node
// The test command (`npm test`): every test/**/*.test.ts under node:test through tsx,
// with line coverage of lib/ checked by c8 (floor and reporters in .c8rc.json).
//
//   node scripts/run-tests.mjs                     all tests, with coverage
//   node scripts/run-tests.mjs --no-coverage       all tests, no coverage (faster)
//   node scripts/run-tests.mjs test/logout.test.ts test/store   only these files / folders
//
// Environment:
//   TEST_CONCURRENCY   test files run at once (default 1: the suite starts real servers, uses shared
//                      Redis/PostgreSQL and has expiry/timer tests; the machine has 2 cores)
//   TEST_TIMEOUT       per-test timeout in ms (default 600000), so a hung test cannot hang CI
//   TEST_SUMMARY_FILE  if set, a JSON line { node, tests, passed, failed, skipped, ... } is appended to it
//
// Node 20 does not expand globs in `node --test` arguments, so the files are found here.
// test/support/ holds helpers, not tests; test/types/ holds tstyche type tests (*.tst.ts, `npm run test:types`).
import { spawn } from 'node:child_process'
import { appendFileSync, existsSync, readdirSync, statSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, relative, resolve, sep } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const require = createRequire(import.meta.url)
const SKIP_DIRS = new Set(['node_modules', 'support', 'fixtures', 'types'])

function findTests (path) {
  const stat = statSync(path)
  if (stat.isFile()) return path.endsWith('.test.ts') ? [path] : []
  const found = []
  for (const entry of readdirSync(path, { withFileTypes: true })) {
    if (entry.name.startsWith('.')) continue
    const full = join(path, entry.name)
    if (entry.isDirectory()) {
      if (!SKIP_DIRS.has(entry.name)) found.push(...findTests(full))
    } else if (entry.isFile() && entry.name.endsWith('.test.ts')) {
      found.push(full)
    }
  }
  return found
}

const args = process.argv.slice(2)
const coverage = !args.includes('--no-coverage')
const targets = args.filter((arg) => !arg.startsWith('--'))
const unknown = args.filter((arg) => arg.startsWith('--') && arg !== '--no-coverage')
if (unknown.length > 0) {
  console.error(`run-tests: unknown option(s) ${unknown.join(' ')}; known: --no-coverage`)
  process.exit(2)
}

const paths = targets.length > 0 ? targets.map((target) => resolve(target)) : [join(root, 'test')]
for (const path of paths) {
  if (!existsSync(path)) {
    console.error(`run-tests: ${relative(root, path) || path} does not exist`)
    process.exit(2)
  }
}
const files = [...new Set(paths.flatMap(findTests))]
  .map((file) => relative(root, file).split(sep).join('/'))
  .sort()
if (files.length === 0) {
  console.error('run-tests: no test/**/*.test.ts file found')
  process.exit(1)
}

const concurrency = positiveInt('TEST_CONCURRENCY', 1)
const timeout = positiveInt('TEST_TIMEOUT', 600_000)

const nodeArgs = [
  '--import', 'tsx',
  '--test',
  `--test-concurrency=${concurrency}`,
  `--test-timeout=${timeout}`,
  // The same human-readable output on every Node version (20 would print TAP when piped).
  '--test-reporter=spec', '--test-reporter-destination=stdout',
  ...files
]

const command = process.execPath
let commandArgs = nodeArgs
if (coverage) {
  // c8 reads .c8rc.json: include lib/**, check-coverage with a 95% line floor, text-summary + lcov.
  const c8 = join(dirname(require.resolve('c8/package.json')), 'bin', 'c8.js')
  commandArgs = [c8, process.execPath, ...nodeArgs]
}

console.log(`run-tests: node ${process.version}, ${files.length} file(s), concurrency ${concurrency}, ` +
  `coverage ${coverage ? 'on (c8, lib/**)' : 'off'}`)
for (const file of files) console.log(`  ${file}`)

const startedAt = Date.now()
const child = spawn(command, commandArgs, { cwd: root, stdio: ['inherit', 'pipe', 'inherit'], env: process.env })

// Pass the output through as it comes, and keep the counts of node:test's closing summary.
const counts = {}
let pending = ''
child.stdout.on('data', (chunk) => {
  process.stdout.write(chunk)
  pending += chunk.toString('utf8')
  const lines = pending.split('\n')
  pending = lines.pop() ?? ''
  for (const line of lines) readCount(line)
})

function readCount (line) {
  // spec reporter: "ℹ pass 12"; TAP: "# pass 12"
  const match = /^(?:\u2139|#) (tests|suites|pass|fail|cancelled|skipped|todo|duration_ms) ([\d.]+)\s*$/.exec(line)
  if (match !== null) counts[match[1]] = Number(match[2])
}

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => child.kill(signal))
}

child.on('close', (code, signal) => {
  if (pending.length > 0) readCount(pending)
  const seconds = ((Date.now() - startedAt) / 1000).toFixed(1)
  const exitCode = code ?? (signal !== null ? 1 : 0)
  const haveSummary = counts.tests !== undefined
  const passed = counts.pass ?? 0
  const failed = (counts.fail ?? 0) + (counts.cancelled ?? 0)
  const skipped = (counts.skipped ?? 0) + (counts.todo ?? 0)
  if (process.env.TEST_SUMMARY_FILE) {
    appendFileSync(process.env.TEST_SUMMARY_FILE, JSON.stringify({
      node: process.version, coverage, files: files.length, tests: counts.tests ?? 0, passed, failed, skipped, seconds: Number(seconds), exitCode, haveSummary
    }) + '\n')
  }
  if (!haveSummary) {
    console.log(`run-tests: node:test printed no summary (exit ${signal ?? exitCode}) after ${seconds}s`)
    process.exit(exitCode === 0 ? 1 : exitCode)
  }
  if (coverage && failed === 0 && exitCode !== 0) {
    console.log('run-tests: every test passed, but line coverage of lib/ is under the floor (see the c8 report above)')
  }
  console.log(`run-tests: node ${process.version}, ${seconds}s`)
  // Closing line: tests counted by node:test (a coverage shortfall shows in the exit code only).
  console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`)
  process.exit(exitCode)
})

function positiveInt (name, fallback) {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isInteger(value) || value < 1) {
    console.error(`run-tests: ${name} must be a positive integer, got "${raw}"`)
    process.exit(2)
  }
  return value
}
