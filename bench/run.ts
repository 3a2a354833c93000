/**
 * npm run bench [-- --full] [-- --profile plugin,bare] [-- --users] [-- --smoke] [-- --variants bare,plugin]
 *
 * Every server variant in a process of its own, one client process driving them
 * over 127.0.0.1, interleaved rounds; server CPU, GC and allocation from each
 * server's own accounting. Prints a table (Markdown) with the targets of issue 12
 * marked met or missed, and writes it with the raw rounds to bench/results/.
 * See bench/README.md for how each figure is taken.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { cpus, loadavg, totalmem } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import ts from 'typescript'
import type { Batch, Mode } from './client'
import { Child } from './ipc'
import type { Spec, Variant, Window } from './server'

const ROOT = resolve(__dirname, '..')
const { values: args } = parseArgs({
  options: {
    full: { type: 'boolean', default: false },
    smoke: { type: 'boolean', default: false },
    users: { type: 'boolean' },
    profile: { type: 'string' },
    variants: { type: 'string' },
    'results-dir': { type: 'string', default: join(ROOT, 'bench', 'results') }
  }
})
const SIZES = {
  smoke: { rounds: 1, batch: 10, warmup: 0, shared: 2, memory: 20, trials: 2 },
  short: { rounds: 6, batch: 600, warmup: 2, shared: 10, memory: 2000, trials: 50 },
  full: { rounds: 10, batch: 1500, warmup: 2, shared: 10, memory: 5000, trials: 200 }
}
const size = SIZES[args.smoke ? 'smoke' : args.full ? 'full' : 'short']
const CONCURRENCY = 20
const CELLS = [['held', 'distinct'], ['held', 'shared'], ['cycle', 'distinct'], ['cycle', 'shared']] as const
type Cell = `${Mode}/${'distinct' | 'shared'}`
const LABELS: Record<Variant, string> = {
  bare: 'Socket.IO on Fastify (with @fastify/session for the login route), no check: the floor',
  plugin: 'this plugin, no rule (a verified session is enough)',
  rule: 'this plugin, `authorize: (session) => session.user !== undefined`',
  naive: 'hand-written `io.use()` middleware calling `fastify.decryptSession`',
  express: 'Express 5 + express-session, `io.engine.use(sessionMiddleware)` (the Socket.IO docs\' recipe)',
  forged: 'this plugin, no rule, every cookie\'s signature corrupted (refused)',
  users: 'this plugin with `loadUser` + `identify` (joins the user\'s room)'
}
interface Round extends Window { n: number, asExpected: number }
type Server = Child<{ url: string }>

const log = (line: string): void => { console.error(line) }
const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s.length === 0 ? NaN : s.length % 2 === 1 ? s[(s.length - 1) / 2] as number : ((s[s.length / 2 - 1] as number) + (s[s.length / 2] as number)) / 2 }
const signed = (x: number): string => `${x >= 0 ? '+' : '−'}${fmt(Math.abs(x))}`
const fmt = (x: number, digits = 0): string => Number.isFinite(x) ? x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : 'n/a'
const spread = (xs: number[], digits = 0): string => `${fmt(median(xs), digits)} (${fmt(Math.min(...xs), digits)}–${fmt(Math.max(...xs), digits)})`
const reachable = (port: number): Promise<boolean> => new Promise((resolve) => {
  const socket = connect(port, '127.0.0.1', () => { socket.destroy(); resolve(true) }).once('error', () => resolve(false))
})

/** Compiles lib/ and the bench's processes to plain CommonJS, as users run dist/ (tsx would wrap every closure in __name()). */
function build (dir: string): void {
  const compile = (from: string, to: string): void => {
    for (const entry of readdirSync(from, { withFileTypes: true })) {
      if (entry.isDirectory()) compile(join(from, entry.name), join(to, entry.name))
      else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') && (from !== __dirname || !entry.name.startsWith('run'))) {
        const out = ts.transpileModule(readFileSync(join(from, entry.name), 'utf8'), { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true } })
        mkdirSync(to, { recursive: true })
        writeFileSync(join(to, entry.name.replace(/\.ts$/, '.js')), out.outputText)
      }
    }
  }
  compile(join(ROOT, 'lib'), join(dir, 'lib'))
  compile(__dirname, join(dir, 'bench'))
}

/** Keeps the id, corrupts the signature: the plugin must refuse it without asking the store. */
function forge (cookie: string): string {
  const [name, value] = cookie.split('=') as [string, string]
  const decoded = decodeURIComponent(value)
  const dot = decoded.lastIndexOf('.')
  return `${name}=${encodeURIComponent(decoded.slice(0, dot + 1) + [...decoded.slice(dot + 1)].map((c) => c === 'A' ? 'B' : 'A').join(''))}`
}

async function measure (server: Server, client: Child, cookies: string[], n: number, mode: Mode, refused: boolean): Promise<Round> {
  await server.call('begin')
  const batch = await client.call<Batch>('batch', { url: server.info.url, cookies, count: n, concurrency: CONCURRENCY, mode })
  await server.call('clients', { count: mode === 'held' ? batch.admitted : 0, timeoutMs: 10_000 })
  const window = await server.call<Window>('end')
  await client.call('closeAll')
  await server.call('clients', { count: 0, timeoutMs: 10_000 })
  return { ...window, n, asExpected: refused ? batch.refused : batch.admitted }
}

async function main (): Promise<void> {
  const started = Date.now()
  const load0 = loadavg()[0] as number
  const redis = args.users ?? (args.full && await reachable(6379))
  if (redis && !await reachable(6379)) throw new Error('--users needs Redis at 127.0.0.1:6379 (redis-server --daemonize yes)')
  const all: Variant[] = ['bare', 'plugin', 'rule', 'naive', 'express', 'forged', ...(redis ? ['users' as const] : [])]
  // A subset, for working on one figure; bare always runs (every ratio is to it), and targets whose variants did not run read n/a.
  const chosen = args.variants?.split(',')
  const variants = chosen === undefined ? all : all.filter((v) => v === 'bare' || chosen.includes(v))
  const profiled = (args.profile ?? '').split(',').filter(Boolean) as Variant[]
  const dir = join(ROOT, '.tmp', `bench-${process.pid}`)
  const resultsDir = resolve(args['results-dir'])
  mkdirSync(resultsDir, { recursive: true })
  build(dir)
  const children: Child[] = []
  const start = async (name: string, spec: Spec, execArgv?: string[]): Promise<Server> => {
    const child = await Child.start<{ url: string }>(name, join(dir, 'bench', 'server.js'), spec, execArgv)
    children.push(child)
    return child
  }
  const rounds = new Map<string, Round[]>()
  const memory = new Map<Variant, { heap: number, rss: number }>()
  const trials = new Map<string, number[]>()
  const profiles: string[] = []
  try {
    const client = await Child.start('client', join(dir, 'bench', 'client.js'), {})
    children.push(client)
    const servers = new Map(await Promise.all(variants.map(async (v) => [v, await start(v, { variant: v })] as const)))
    const cookies = new Map<Variant, Record<'distinct' | 'shared', string[]>>()
    for (const [v, server] of servers) {
      const distinct = await client.call<string[]>('logins', { url: server.info.url, count: size.batch })
      const shared = distinct.slice(0, size.shared)
      cookies.set(v, v === 'forged' ? { distinct: distinct.map(forge), shared: shared.map(forge) } : { distinct, shared })
    }
    const pass = async (r: number, record: boolean): Promise<void> => {
      // Interleaved: every cell of every variant each round, the variants in a rotated order.
      for (const [mode, sessions] of CELLS) {
        for (let i = 0; i < variants.length; i++) {
          const v = variants[(i + r) % variants.length] as Variant
          const result = await measure(servers.get(v) as Server, client, cookies.get(v)?.[sessions] as string[], size.batch, mode, v === 'forged')
          if (record) rounds.set(`${mode}/${sessions}/${v}`, [...rounds.get(`${mode}/${sessions}/${v}`) ?? [], result])
        }
      }
    }
    log(`handshakes: ${variants.join(', ')}; ${size.batch} per batch, ${CONCURRENCY} in flight, ${size.warmup} warm-up + ${size.rounds} rounds`)
    for (let r = 0; r < size.warmup; r++) await pass(r, false)
    for (const v of profiled) await servers.get(v)?.call('profileStart')
    for (let r = 0; r < size.rounds; r++) {
      await pass(r, true)
      log(`  round ${r + 1}/${size.rounds}: ${variants.map((v) => `${v} ${fmt(perConn(rounds.get(`held/distinct/${v}`)?.at(-1) as Round, 'cpuUs'))}`).join(', ')} µs (held, distinct)`)
    }
    for (const v of profiled) {
      const file = join(resultsDir, `${v}.cpuprofile`)
      await servers.get(v)?.call('profileStop', file)
      profiles.push(file)
    }
    await Promise.all([...servers.values()].map((s) => s.stop()))

    log(`memory: ${size.memory} open sockets, one session each, a fresh server per variant`)
    for (const v of variants.filter((v) => v !== 'forged')) {
      const server = await start(`memory-${v}`, { variant: v })
      const url = server.info.url
      const sessions = await client.call<string[]>('logins', { url, count: size.memory })
      await client.call('batch', { url, cookies: sessions, count: Math.min(300, size.memory), concurrency: CONCURRENCY, mode: 'cycle' })
      await server.call('clients', { count: 0, timeoutMs: 10_000 })
      const before = await server.call<NodeJS.MemoryUsage>('memory')
      await client.call('batch', { url, cookies: sessions, count: size.memory, concurrency: CONCURRENCY, mode: 'held' })
      const open = await server.call<number>('clients', { count: size.memory, timeoutMs: 30_000 })
      const after = await server.call<NodeJS.MemoryUsage>('memory')
      if (open !== size.memory) throw new Error(`memory ${v}: ${open} of ${size.memory} sockets open`)
      memory.set(v, { heap: (after.heapUsed - before.heapUsed) / open, rss: (after.rss - before.rss) / open })
      await client.call('closeAll')
      await server.stop()
    }

    if (redis) {
      log(`users: ${size.trials} trials each on two nodes sharing Redis (connect-redis + @socket.io/redis-adapter)`)
      const id = `${process.pid}-${Date.now()}`
      const cluster: Spec = { variant: 'users', redis: { url: 'redis://127.0.0.1:6379', prefix: `bench-sess:${id}:`, adapterKey: `bench-io:${id}` } }
      const [a, b] = await Promise.all([start('node-A', cluster), start('node-B', cluster)]) as [Server, Server]
      for (const kind of ['logout', 'demote', 'disconnectUser']) {
        const ms: number[] = []
        for (let i = 0; i < size.trials + 5; i++) {
          const t = await client.call<number>('trial', { kind, a: a.info.url, b: b.info.url })
          if (i >= 5) ms.push(t)
        }
        trials.set(kind, ms)
      }
    }
  } finally {
    await Promise.all(children.map((c) => c.stop()))
    rmSync(dir, { recursive: true, force: true })
  }

  const report = render(variants, rounds, memory, trials, profiles, { load0, seconds: (Date.now() - started) / 1000 })
  console.log(report)
  writeFileSync(join(resultsDir, 'latest.md'), report + '\n')
  writeFileSync(join(resultsDir, 'latest.json'), JSON.stringify({ variants, size, rounds: Object.fromEntries(rounds), memory: Object.fromEntries(memory), trials: Object.fromEntries(trials) }, null, 1) + '\n')
}

function perConn (round: Round, key: 'cpuUs' | 'gcUs' | 'allocatedBytes' | 'storeCalls'): number {
  return round[key] / round.n
}

function render (variants: Variant[], rounds: Map<string, Round[]>, memory: Map<Variant, { heap: number, rss: number }>, trials: Map<string, number[]>, profiles: string[], run: { load0: number, seconds: number }): string {
  const of = (cell: Cell, v: Variant): Round[] => rounds.get(`${cell}/${v}`) ?? []
  const cpu = (cell: Cell, v: Variant): number[] => of(cell, v).map((r) => perConn(r, 'cpuUs'))
  /** Per-round ratios of a to b in one cell: each round's batches ran back to back. */
  const ratios = (cell: Cell, a: Variant, b: Variant): number[] => of(cell, a).map((r, i) => {
    const other = of(cell, b)[i]
    return other === undefined ? NaN : perConn(r, 'cpuUs') / perConn(other, 'cpuUs')
  })
  const row = (name: string, cell: (v: Variant) => string): string => `| ${name} | ${variants.map(cell).join(' | ')} |`
  const lines = [`| figure | ${variants.join(' | ')} |`, `| --- |${' ---: |'.repeat(variants.length)}`]
  for (const [mode, sessions] of CELLS) {
    const cell: Cell = `${mode}/${sessions}`
    lines.push(`| **${mode === 'held' ? 'sockets held open' : 'connect-then-close'}, ${sessions === 'distinct' ? 'one session per connection' : `${size.batch} connections over ${size.shared} sessions`}** |${' |'.repeat(variants.length)}`)
    lines.push(row(`server CPU µs / ${mode === 'held' ? 'handshake' : 'connection'}, median (min–max)`, (v) => spread(cpu(cell, v))))
    lines.push(row('  × bare, median of rounds (min–max)', (v) => spread(ratios(cell, v, 'bare'), 2)))
    lines.push(row('  of which GC µs', (v) => fmt(median(of(cell, v).map((r) => perConn(r, 'gcUs'))))))
    lines.push(row('KB allocated / connection', (v) => fmt(median(of(cell, v).map((r) => perConn(r, 'allocatedBytes') / 1024)), 1)))
    lines.push(row('store calls / connection', (v) => v === 'bare' ? '—' : fmt(median(of(cell, v).map((r) => perConn(r, 'storeCalls'))), 2)))
  }
  const heap = (v: Variant): number => memory.get(v)?.heap ?? NaN
  lines.push(`| **memory: ${size.memory} open sockets, one session each, after GC** |${' |'.repeat(variants.length)}`)
  lines.push(row('heap B / open socket', (v) => v === 'forged' ? '—' : fmt(heap(v))))
  lines.push(row('  over bare', (v) => v === 'forged' || v === 'bare' ? '—' : signed(heap(v) - heap('bare'))))
  lines.push(row('RSS B / open socket', (v) => v === 'forged' ? '—' : fmt(memory.get(v)?.rss ?? NaN)))

  // Targets of issue 12 (targets for the benchmark, never assertions). CPU
  // comparisons are medians of per-round ratios: a round's batches ran back to
  // back, so a slow moment of the machine weighs on both sides alike.
  const ratio = (cell: Cell, a: Variant, b: Variant): number => median(ratios(cell, a, b))
  const held = ['held/distinct', 'held/shared'] as const
  const cycle = ['cycle/distinct', 'cycle/shared'] as const
  const allocated = (cell: Cell, v: Variant): number => median(of(cell, v).map((r) => perConn(r, 'allocatedBytes')))
  const forgedCalls = CELLS.reduce((sum, [m, s]) => sum + of(`${m}/${s}`, 'forged').reduce((n, r) => n + r.storeCalls, 0), 0)
  const both = (cells: readonly Cell[], f: (c: Cell) => string): string => cells.map((c) => `${c.split('/')[1]} ${f(c)}`).join('; ')
  const targets: Array<[string, boolean, string]> = [
    ['held open: plugin CPU / handshake ≤ 1.10 × bare', held.every((c) => ratio(c, 'plugin', 'bare') <= 1.10), both(held, (c) => `${fmt(ratio(c, 'plugin', 'bare'), 2)} ×`)],
    ['held open: plugin and rule below naive', held.every((c) => ratio(c, 'plugin', 'naive') < 1 && ratio(c, 'rule', 'naive') < 1), both(held, (c) => `${fmt(ratio(c, 'plugin', 'naive'), 2)} × / ${fmt(ratio(c, 'rule', 'naive'), 2)} × naive`)],
    ['connect-then-close: plugin and rule below naive', cycle.every((c) => ratio(c, 'plugin', 'naive') < 1 && ratio(c, 'rule', 'naive') < 1), both(cycle, (c) => `${fmt(ratio(c, 'plugin', 'naive'), 2)} × / ${fmt(ratio(c, 'rule', 'naive'), 2)} × naive`)],
    ['forged cookie refused for less than a bare admit (connect-then-close), no store call', cycle.every((c) => ratio(c, 'forged', 'bare') < 1) && forgedCalls === 0, `${both(cycle, (c) => `${fmt(ratio(c, 'forged', 'bare'), 2)} × bare`)}; ${forgedCalls} store calls`],
    ['heap / open socket: plugin ≤ bare + 1,200 B', heap('plugin') - heap('bare') <= 1200, `${signed(heap('plugin') - heap('bare'))} B`],
    ['heap / open socket: rule below naive', heap('rule') < heap('naive'), `${fmt(heap('rule'))} vs ${fmt(heap('naive'))} B`],
    ['bytes allocated / admitted handshake (held open): plugin and rule below naive', held.every((c) => allocated(c, 'plugin') < allocated(c, 'naive') && allocated(c, 'rule') < allocated(c, 'naive')),
      both(held, (c) => `${fmt(allocated(c, 'plugin') / 1024, 1)} / ${fmt(allocated(c, 'rule') / 1024, 1)} vs ${fmt(allocated(c, 'naive') / 1024, 1)} KB`)]
  ]
  const bad = variants.flatMap((v) => CELLS.map(([m, s]) => [`${m}/${s}`, of(`${m}/${s}`, v).reduce((n, r) => n + r.n - r.asExpected, 0)] as const).filter(([, n]) => n > 0).map(([c, n]) => `${v} ${c}: ${n} not ${v === 'forged' ? 'refused' : 'admitted'}`))
  const out = [lines.join('\n'), '', 'Targets (issue 12; targets, not assertions):', ...targets.map(([text, met, measured]) => `- [${measured.includes('n/a') ? 'not run' : met ? 'met' : 'MISSED'}] ${text}: ${measured}`)]
  if (bad.length > 0) out.push('', `UNEXPECTED: ${bad.join('; ')}`)
  if (trials.size > 0) {
    out.push('', '| two nodes via Redis, request on A → disconnect, ms | p50 | p99 | missed |', '| --- | ---: | ---: | ---: |')
    const names: Record<string, string> = { logout: 'POST /logout → the socket on B', demote: 'demote (session changed) → `/admin` on B leaves, `/` stays', disconnectUser: '`disconnectUser`, 3 sessions × 3 tabs on A and B → last socket' }
    for (const [kind, ms] of trials) {
      const ok = ms.filter(Number.isFinite).sort((a, b) => a - b)
      out.push(`| ${names[kind]} | ${fmt(median(ok), 1)} | ${fmt(ok[Math.ceil(0.99 * ok.length) - 1] ?? NaN, 1)} | ${ms.length - ok.length} of ${ms.length} |`)
    }
  }
  for (const file of profiles) out.push('', summarise(file, of('held/distinct', file.split('/').at(-1)?.replace('.cpuprofile', '') as Variant)))
  out.push('', 'Variants:', ...variants.map((v) => `- ${v}: ${LABELS[v]}`))
  const version = (name: string): string => (JSON.parse(readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version
  out.push('', `Machine: ${cpus().length} × ${cpus()[0]?.model.trim()}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}; fastify ${version('fastify')}, @fastify/session ${version('@fastify/session')}, @fastify/cookie ${version('@fastify/cookie')}, socket.io ${version('socket.io')}, express-session ${version('express-session')}. ` +
    `${size.rounds} rounds × ${size.batch} connections per cell, ${CONCURRENCY} in flight, after ${size.warmup} warm-up round(s); load average ${fmt(run.load0, 2)} at start, ${fmt(loadavg()[0] as number, 2)} at end; ${fmt(run.seconds)} s; \`npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}\`.`)
  if (size === SIZES.smoke) out.push('Smoke run: the figures mean nothing.')
  if (profiles.length > 0) out.push('Profiled run: the profiled variants\' CPU figures include the sampling profiler; do not quote them.')
  return out.join('\n')
}

/**
 * A V8 CPU profile's samples per connection measured while it ran, by where the code lives. Node core and native
 * frames are charged to the package code that called them (a leaf in node:crypto under @fastify/cookie's signer is
 * the signer's); the top frames are those callers, in the plugin, @fastify/session, the signer and GC.
 */
function summarise (file: string, measured: Round[]): string {
  type Frame = { functionName: string, url: string, lineNumber: number }
  const profile = JSON.parse(readFileSync(file, 'utf8')) as { nodes: Array<{ id: number, callFrame: Frame, children?: number[] }>, samples: number[], timeDeltas: number[] }
  const where = ({ url, functionName: fn }: Frame): string | undefined => {
    if (fn === '(garbage collector)') return 'GC'
    if (fn === '(idle)' || fn === '(program)' || (fn === 'dispatch' && url === '')) return '(idle, program, profiler)'
    if (url.includes('.tmp/bench-') && url.includes('/lib/')) return 'plugin (lib/)'
    if (url.includes('@fastify/session')) return '@fastify/session'
    if (/@fastify\/cookie|cookie-signature/.test(url)) return 'signer and cookie parsing (@fastify/cookie)'
    if (/socket\.io|engine\.io|\/ws\//.test(url)) return 'Socket.IO, Engine.IO, ws'
    if (/fastify|find-my-way|avvio/.test(url)) return 'Fastify'
    if (/express|body-parser|router|cookie|uid-safe/.test(url)) return 'Express, express-session'
    if (url.includes('.tmp/bench-')) return 'bench server'
    return url.startsWith('node:') || url === '' ? undefined : 'other packages'
  }
  const parent = new Map<number, number>()
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id)
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  /** The first frame up the stack that is not Node core: who the sample is charged to. */
  const owner = (id: number | undefined): [string, Frame | undefined] => {
    for (let at = id; at !== undefined; at = parent.get(at)) {
      const frame = (byId.get(at) as { callFrame: Frame }).callFrame
      const group = where(frame)
      if (group !== undefined) return [group, frame]
    }
    return ['Node.js core (event loop, net, timers)', undefined]
  }
  const groups = new Map<string, number>()
  const frames = new Map<string, number>()
  profile.samples.forEach((id, i) => {
    const us = profile.timeDeltas[i] ?? 0
    const [group, frame] = owner(id)
    groups.set(group, (groups.get(group) ?? 0) + us)
    if (frame !== undefined && /GC|plugin|session|signer/.test(group)) {
      const name = `${group.split(' ')[0]}: ${frame.functionName || '(anonymous)'} ${frame.url.replace(/.*node_modules\//, '').replace(/.*\.tmp\/bench-\d+\//, '')}:${frame.lineNumber + 1}`
      frames.set(name, (frames.get(name) ?? 0) + us)
    }
  })
  const n = measured.reduce((sum, r) => sum + r.n, 0) * CELLS.length
  const top = (m: Map<string, number>, k: number): string[] => [...m].filter(([name]) => !name.startsWith('(idle')).sort((a, b) => b[1] - a[1]).slice(0, k).map(([name, us]) => `  ${fmt(us / n, 1).padStart(6)} µs  ${name}`)
  return [`Profile of ${file.replace(/.*\//, '')} (${n} connections, all cells), µs per connection:`, ...top(groups, 10), '  top frames of the plugin, @fastify/session, the signer and GC:', ...top(frames, 12)].join('\n')
}

main().catch((error: unknown) => { console.error(error); process.exitCode = 1 })
