import { execFileSync } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { cpus, loadavg, totalmem, type } from 'node:os'
import { performance } from 'node:perf_hooks'
import { reachable } from '../test/support/services'
import { buildForBench } from './build'
import { Child } from './ipc'
import type { HandshakeBatch, RevocationBatch } from './client'
import { median, medianOf, percentile, sleep } from './stats'
import { VARIANTS, VARIANT_LABELS, type ServerSpec, type StoreCounts, type VariantName } from './variants'

/**
 * The bench orchestrator: starts every server variant in a process of its own,
 * drives it from a separate client process over 127.0.0.1, and gathers the
 * figures of issue 5 into one report. It measures; run.ts prints and saves.
 */

export type Phase = 'handshakes' | 'memory' | 'revocation' | 'revalidation'
export const PHASES: readonly Phase[] = ['handshakes', 'memory', 'revocation', 'revalidation']
export type Scenario = 'admitted' | 'forged' | 'unknown'

export interface Sizes {
  rounds: number
  /** Admitted handshakes per variant per round. */
  admitted: number
  /** Refused handshakes per kind (forged, unknown) per variant per round. */
  refused: number
  /** Unmeasured handshakes of each kind per variant before the first round (JIT warm-up). */
  warmup: number
  /** Handshakes in flight at once. */
  concurrency: number
  /** Sessions made before measuring; handshakes cycle over them. */
  sessionPool: number
  /** Open authenticated sockets in the memory phase (one session each). */
  memorySockets: number
  revocations: number
  revocationWarmup: number
  revalSessions: number
  revalSocketsPerSession: number
  revalInterval: number
  revalIntervals: number
  /** In flight while opening the big socket sets (memory, revalidation). */
  openConcurrency: number
}

export const FULL: Sizes = {
  rounds: 5,
  admitted: 600,
  refused: 300,
  warmup: 200,
  concurrency: 8,
  sessionPool: 200,
  memorySockets: 5000,
  revocations: 200,
  revocationWarmup: 10,
  revalSessions: 1000,
  revalSocketsPerSession: 10,
  revalInterval: 2000,
  revalIntervals: 3,
  openConcurrency: 32
}

export const QUICK: Sizes = {
  rounds: 1,
  admitted: 8,
  refused: 4,
  warmup: 2,
  concurrency: 4,
  sessionPool: 4,
  memorySockets: 12,
  revocations: 4,
  revocationWarmup: 1,
  revalSessions: 4,
  revalSocketsPerSession: 3,
  revalInterval: 400,
  revalIntervals: 2,
  openConcurrency: 8
}

export interface BenchOptions {
  quick: boolean
  /** require: fail without Redis; skip: leave the Redis runs out; auto: run them when Redis answers. */
  redis: 'require' | 'skip' | 'auto'
  redisUrl: string
  rounds?: number
  phases?: readonly Phase[]
  /** Where the plugin's sources are (default lib/): to compare another version of it side by side. */
  libDir?: string
  /** A subset of the variants (default: all; the Redis one only with Redis). */
  variants?: readonly VariantName[]
  /** Progress lines (the table is not one of them). */
  log: (line: string) => void
}

export interface HandshakeFigures {
  n: number
  /** Server CPU (user + system, the server process's own process.cpuUsage()) per handshake, µs. */
  cpuUsPerConn: number
  /** Server CPU spent closing those connections afterwards, per connection, µs (not part of cpuUsPerConn). */
  closeCpuUsPerConn: number
  /**
   * Handshake + close, µs: the whole cost of one connection. For refused
   * handshakes this is the figure to use: socket.io-client closes the
   * connection at once on connect_error, so the close falls inside the window.
   */
  lifecycleCpuUsPerConn: number
  connPerSec: number
  p50Ms: number
  p99Ms: number
  admitted: number
  refused: number
  /** Session store calls (get/set/destroy/touch) per handshake. */
  storeCallsPerConn: number
  /** Commands sent to Redis per handshake (Redis variant). */
  redisCommandsPerConn: number
  /** Every handshake ended as the scenario expects (admitted, or refused). */
  asExpected: number
  codes: Record<string, number>
}

export interface MemoryFigures {
  sockets: number
  heapBytesPerSocket: number
  rssBytesPerSocket: number
  externalBytesPerSocket: number
  baseline: NodeJS.MemoryUsage
  loaded: NodeJS.MemoryUsage
}

export interface RevocationFigures {
  logouts: number
  nodes: 1 | 2
  store: 'memory' | 'redis'
  /** Logout HTTP response to client 'disconnect', ms; 0 when the disconnect arrived before the response. */
  p50Ms: number
  p99Ms: number
  maxMs: number
  /** Logout request sent to client 'disconnect', ms. */
  fromRequestP50Ms: number
  fromRequestP99Ms: number
  disconnectBeforeResponse: number
  missed: number
  revokedEvents: number
  reasons: Record<string, number>
}

export interface RevalidationFigures {
  sessions: number
  sockets: number
  intervalMs: number
  windowMs: number
  readsInWindow: number
  readsPerInterval: number
  readsPerIntervalPerSession: number
  otherStoreCalls: number
  /** Store reads while the sockets were connecting: one per connection, plus the revalidations that came due meanwhile. */
  readsWhileConnecting: number
}

export interface Target {
  id: string
  text: string
  measured: string
  met: boolean | null
  note?: string
}

export interface BenchReport {
  meta: {
    date: string
    quick: boolean
    node: string
    os: string
    cpu: string
    cpuCount: number
    memoryGiB: number
    loadavgStart: number[]
    loadavgEnd: number[]
    durationS: number
    sizes: Sizes
    variants: VariantName[]
    labels: Record<VariantName, string>
    redis: boolean
    fdLimit: number | null
    notes: string[]
  }
  handshakes: Partial<Record<VariantName, Partial<Record<Scenario, HandshakeFigures & { rounds: HandshakeFigures[] }>>>>
  memory: Partial<Record<VariantName, MemoryFigures>>
  revocation: { oneNode?: RevocationFigures, twoNodes?: RevocationFigures }
  revalidation?: RevalidationFigures
  ratios: {
    cpuGuardOverBare?: number
    /** The same with the close of each connection included. */
    lifecycleCpuGuardOverBare?: number
    /**
     * Median over rounds of the ratio within each round (both measured minutes apart at most):
     * a second view that is less exposed to load that drifts across the run.
     */
    cpuGuardOverBarePerRound?: number
    cpuGuardOverNaivePerRound?: number
    cpuGuardOverExpressPerRound?: number
    cpuGuardRedisOverBare?: number
    cpuGuardOverNaive?: number
    cpuGuardOverExpress?: number
    /** Forged-cookie refusal (handshake + close) over an admitted bare connection (handshake + close). */
    forgedGuardOverBareAdmitted?: number
    forgedGuardRedisOverBareAdmitted?: number
    unknownGuardOverBareAdmitted?: number
    heapGuardOverBare?: number
    extraHeapBytesPerSocket?: number
    extraRssBytesPerSocket?: number
  }
  targets: Target[]
}

export interface ServerInfo { url: string, pid: number }
export type Server = Child<ServerInfo>
export type Client = Child<{ pid: number }>
type Usage = { user: number, system: number }

export async function runBench (options: BenchOptions): Promise<BenchReport> {
  const started = performance.now()
  const log = (line: string): void => options.log(`[${((performance.now() - started) / 1000).toFixed(1).padStart(5)} s] ${line}`)
  const sizes: Sizes = { ...(options.quick ? QUICK : FULL) }
  if (options.rounds !== undefined) sizes.rounds = options.rounds
  const phases = new Set(options.phases ?? PHASES)
  const notes: string[] = []

  const redisUp = options.redis === 'skip' ? false : await reachable(options.redisUrl, 6379)
  if (options.redis === 'require' && !redisUp) {
    throw new Error(`Redis is not reachable at ${options.redisUrl} (start it with: redis-server --daemonize yes --port 6379), or run with --no-redis`)
  }
  if (!redisUp) notes.push(`Redis variants skipped (${options.redis === 'skip' ? '--no-redis' : `Redis not reachable at ${options.redisUrl}`}).`)
  const variants: VariantName[] = VARIANTS.filter((v) => (redisUp || v !== 'guard-redis') && (options.variants === undefined || options.variants.includes(v)))

  const fdLimit = openFileLimit()
  const fit = (wanted: number, what: string): number => {
    if (fdLimit === null || wanted + 512 <= fdLimit) return wanted
    const fitted = Math.max(10, fdLimit - 512)
    notes.push(`${what}: ${wanted} sockets need more than ulimit -n ${fdLimit}; measured ${fitted} instead (raise it with "ulimit -n 20000" before npm run bench).`)
    return fitted
  }
  sizes.memorySockets = fit(sizes.memorySockets, 'memory')
  const revalTotal = fit(sizes.revalSessions * sizes.revalSocketsPerSession, 'revalidation')
  if (revalTotal < sizes.revalSessions * sizes.revalSocketsPerSession) sizes.revalSessions = Math.max(1, Math.floor(revalTotal / sizes.revalSocketsPerSession))

  const runId = randomUUID().slice(0, 8)
  const report: BenchReport = {
    meta: {
      date: new Date().toISOString(),
      quick: options.quick,
      node: process.version,
      os: `${type()} ${process.arch}`,
      cpu: cpus()[0]?.model ?? 'unknown',
      cpuCount: cpus().length,
      memoryGiB: Math.round(totalmem() / 2 ** 30),
      loadavgStart: loadavg().map((l) => Math.round(l * 100) / 100),
      loadavgEnd: [],
      durationS: 0,
      sizes,
      variants,
      labels: VARIANT_LABELS,
      redis: redisUp,
      fdLimit,
      notes
    },
    handshakes: {},
    memory: {},
    revocation: {},
    ratios: {},
    targets: []
  }

  const build = buildForBench(options.libDir)
  const children = new Set<Child<unknown>>()
  const startServer = async (name: string, spec: ServerSpec): Promise<Server> => {
    const child = await Child.start<ServerInfo>(name, build.script('server'), { redisUrl: options.redisUrl, ...spec })
    children.add(child as Child<unknown>)
    return child
  }
  const startClient = async (name: string): Promise<Client> => {
    const child = await Child.start<{ pid: number }>(name, build.script('client'), {})
    children.add(child as Child<unknown>)
    return child
  }
  const stop = async (child: Child<unknown>): Promise<void> => {
    children.delete(child)
    await child.stop()
  }
  const specFor = (variant: VariantName): ServerSpec => variant === 'guard-redis'
    ? { variant, redisPrefix: `bench-sess:${runId}:${variant}:` }
    : { variant }

  try {
    if (phases.has('handshakes')) {
      log(`handshakes: ${variants.length} variants, ${sizes.rounds} round(s) of ${sizes.admitted} admitted + 2 × ${sizes.refused} refused`)
      const servers = new Map<VariantName, Server>()
      const [client] = await allStarted([
        startClient('client'),
        ...variants.map(async (variant) => { servers.set(variant, await startServer(variant, specFor(variant))) })
      ])
      log(`  ${variants.length} servers and the client are up`)
      report.handshakes = await handshakePhase(variants, servers, client, sizes, log)
      await Promise.all([client, ...servers.values()].map((child) => stop(child as Child<unknown>)))
    }

    if (phases.has('memory')) {
      log(`memory: ${sizes.memorySockets} open authenticated sockets per variant`)
      // A fresh server per variant (its RSS has seen nothing else), all started up front, measured one at a time.
      const memoryServers = new Map<VariantName, Server>()
      const [client] = await allStarted([
        startClient('memory-client'),
        ...variants.map(async (variant) => { memoryServers.set(variant, await startServer(`memory-${variant}`, specFor(variant))) })
      ])
      for (const variant of variants) {
        const server = memoryServers.get(variant) as Server
        report.memory[variant] = await memoryOf(server, client, sizes)
        log(`  ${variant}: ${Math.round(report.memory[variant]?.heapBytesPerSocket ?? NaN)} B heap / socket`)
        await stop(server as Child<unknown>)
      }
      await stop(client as Child<unknown>)
    }

    if (phases.has('revocation')) {
      log(`revocation: ${sizes.revocations} logouts on one node${redisUp ? ' and across two nodes through Redis' : ''}`)
      const cluster = { variant: 'guard-redis' as const, redisPrefix: `bench-sess:${runId}:cluster:`, adapterKey: `bench-io:${runId}` }
      const twoNodesToo = redisUp && variants.includes('guard-redis')
      const [client, node, nodeA, nodeB] = await allStarted([
        startClient('revocation-client'),
        startServer('revocation-node', { variant: 'guard-memory' }),
        twoNodesToo ? startServer('node-A', cluster) : undefined,
        twoNodesToo ? startServer('node-B', cluster) : undefined
      ])
      const batch = await client.call<RevocationBatch>('revocations', {
        loginUrl: node.info.url,
        socketUrl: node.info.url,
        logoutUrl: node.info.url,
        count: sizes.revocations,
        warmup: sizes.revocationWarmup,
        timeoutMs: 2000
      })
      report.revocation.oneNode = revocationFigures(batch, 1, 'memory')
      await stop(node as Child<unknown>)
      if (nodeA !== undefined && nodeB !== undefined) {
        // Login and socket on node B, logout on node A: only the adapter can carry the logout to B.
        const twoNodes = await client.call<RevocationBatch>('revocations', {
          loginUrl: nodeB.info.url,
          socketUrl: nodeB.info.url,
          logoutUrl: nodeA.info.url,
          count: sizes.revocations,
          warmup: sizes.revocationWarmup,
          timeoutMs: 2000
        })
        report.revocation.twoNodes = revocationFigures(twoNodes, 2, 'redis')
        await Promise.all([stop(nodeA as Child<unknown>), stop(nodeB as Child<unknown>)])
      }
      await stop(client as Child<unknown>)
    }

    if (phases.has('revalidation')) {
      log(`revalidation: ${sizes.revalSessions * sizes.revalSocketsPerSession} sockets over ${sizes.revalSessions} sessions, revalidateInterval ${sizes.revalInterval} ms`)
      const [client, server] = await allStarted([
        startClient('revalidation-client'),
        startServer('revalidation-server', { variant: 'guard-memory', revalidateInterval: sizes.revalInterval })
      ])
      report.revalidation = await revalidationOf(server, client, sizes)
      await Promise.all([stop(server as Child<unknown>), stop(client as Child<unknown>)])
    }
  } finally {
    await Promise.all([...children].map((child) => child.stop()))
    build.remove()
  }

  report.ratios = ratiosOf(report)
  report.targets = targetsOf(report)
  for (const [variant, scenarios] of Object.entries(report.handshakes)) {
    for (const [scenario, figures] of Object.entries(scenarios ?? {})) {
      const expected = figures.n * figures.rounds.length
      const got = figures.rounds.reduce((sum, r) => sum + r.asExpected, 0)
      if (got !== expected) notes.push(`${variant} ${scenario}: ${expected - got} of ${expected} handshakes did not end as expected (${JSON.stringify(figures.codes)}).`)
    }
  }
  report.meta.loadavgEnd = loadavg().map((l) => Math.round(l * 100) / 100)
  const busiest = Math.max(report.meta.loadavgStart[0] ?? 0, report.meta.loadavgEnd[0] ?? 0)
  if (busiest > 0.5 * report.meta.cpuCount) {
    notes.push(`the machine was busy (1-minute load average up to ${busiest} on ${report.meta.cpuCount} CPUs): CPU and latency figures are noisy; run again on a quiet machine before quoting them.`)
  }
  report.meta.durationS = Math.round((performance.now() - started) / 100) / 10
  return report
}

async function handshakePhase (
  variants: VariantName[], servers: Map<VariantName, Server>, client: Client, sizes: Sizes, log: (line: string) => void
): Promise<BenchReport['handshakes']> {
  const cookies = new Map<VariantName, Record<Scenario, string[]>>()
  for (const variant of variants) {
    const url = (servers.get(variant) as Server).info.url
    const valid = await client.call<string[]>('logins', { url, count: sizes.sessionPool, concurrency: 8 })
    const stale = variant === 'bare' ? [] : await client.call<string[]>('logins', { url, count: sizes.sessionPool, concurrency: 8, stale: true })
    cookies.set(variant, { admitted: valid, forged: valid.map(forge), unknown: stale })
  }
  const scenariosOf = (variant: VariantName): Scenario[] => variant === 'bare' ? ['admitted'] : ['admitted', 'forged', 'unknown']
  const countOf = (scenario: Scenario): number => scenario === 'admitted' ? sizes.admitted : sizes.refused

  log(`  sessions made: ${sizes.sessionPool} valid and ${sizes.sessionPool} logged out again per variant`)
  // Warm-up: JIT, pools and caches, unmeasured.
  for (const variant of variants) {
    for (const scenario of scenariosOf(variant)) {
      await measureHandshakes(servers.get(variant) as Server, client, (cookies.get(variant) as Record<Scenario, string[]>)[scenario], sizes.warmup, sizes.concurrency, scenario)
    }
  }

  log('  warmed up')
  const rounds = new Map<string, HandshakeFigures[]>()
  for (let r = 0; r < sizes.rounds; r++) {
    // Interleaved, and a different order every round, so drifting machine noise hits every variant alike.
    const order = variants.map((_, i) => variants[(i + r) % variants.length] as VariantName)
    for (const variant of order) {
      for (const scenario of scenariosOf(variant)) {
        const figures = await measureHandshakes(servers.get(variant) as Server, client, (cookies.get(variant) as Record<Scenario, string[]>)[scenario], countOf(scenario), sizes.concurrency, scenario)
        const key = `${variant}/${scenario}`
        rounds.set(key, [...(rounds.get(key) ?? []), figures])
      }
    }
    log(`  round ${r + 1}/${sizes.rounds}: ${order.map((v) => `${v} ${Math.round((rounds.get(`${v}/admitted`) ?? []).at(-1)?.cpuUsPerConn ?? NaN)} µs`).join(', ')}`)
  }

  const out: BenchReport['handshakes'] = {}
  for (const variant of variants) {
    const perScenario: Partial<Record<Scenario, HandshakeFigures & { rounds: HandshakeFigures[] }>> = {}
    for (const scenario of scenariosOf(variant)) {
      const all = rounds.get(`${variant}/${scenario}`) ?? []
      perScenario[scenario] = { ...medianOf(all), codes: mergeCodes(all), rounds: all }
    }
    out[variant] = perScenario
  }
  return out
}

export async function measureHandshakes (server: Server, client: Client, cookies: string[], count: number, concurrency: number, scenario: Scenario): Promise<HandshakeFigures> {
  await drained(server, 0)
  await server.call('gc', 1)
  const counts0 = await server.call<StoreCounts>('counts')
  const cpu0 = await server.call<Usage>('cpu')
  const batch = await client.call<HandshakeBatch>('handshakes', { url: server.info.url, cookies, count, concurrency })
  // Let the server finish what the last answers set off (e.g. binding the socket to its session).
  await sleep(20)
  const cpu1 = await server.call<Usage>('cpu')
  const counts1 = await server.call<StoreCounts>('counts')
  await client.call('closeAll')
  await drained(server, 0)
  const cpu2 = await server.call<Usage>('cpu')
  return {
    n: count,
    cpuUsPerConn: cpuDelta(cpu0, cpu1) / count,
    closeCpuUsPerConn: cpuDelta(cpu1, cpu2) / count,
    lifecycleCpuUsPerConn: cpuDelta(cpu0, cpu2) / count,
    connPerSec: count / (batch.wallMs / 1000),
    p50Ms: percentile(batch.latencies, 50),
    p99Ms: percentile(batch.latencies, 99),
    admitted: batch.admitted,
    refused: batch.refused,
    storeCallsPerConn: (storeCalls(counts1) - storeCalls(counts0)) / count,
    redisCommandsPerConn: (counts1.redisCommands - counts0.redisCommands) / count,
    asExpected: scenario === 'admitted' ? batch.admitted : batch.refused,
    codes: batch.codes
  }
}

async function memoryOf (server: Server, client: Client, sizes: Sizes): Promise<MemoryFigures> {
  const url = server.info.url
  const count = sizes.memorySockets
  const cookies = await client.call<string[]>('logins', { url, count, concurrency: 32 })
  // Warm-up so code, pools and the first-connection costs are in the baseline.
  await client.call('handshakes', { url, cookies, count: Math.min(300, count), concurrency: sizes.openConcurrency })
  await client.call('closeAll')
  await drained(server, 0)
  const baseline = await server.call<NodeJS.MemoryUsage>('memory')
  const batch = await client.call<HandshakeBatch>('handshakes', { url, cookies, count, concurrency: sizes.openConcurrency })
  if (batch.admitted !== count) throw new Error(`memory: only ${batch.admitted} of ${count} sockets were admitted (${JSON.stringify(batch.codes)})`)
  await drained(server, count)
  await sleep(100)
  const loaded = await server.call<NodeJS.MemoryUsage>('memory')
  await client.call('closeAll')
  await drained(server, 0)
  return {
    sockets: count,
    heapBytesPerSocket: (loaded.heapUsed - baseline.heapUsed) / count,
    rssBytesPerSocket: (loaded.rss - baseline.rss) / count,
    externalBytesPerSocket: (loaded.external - baseline.external) / count,
    baseline,
    loaded
  }
}

async function revalidationOf (server: Server, client: Client, sizes: Sizes): Promise<RevalidationFigures> {
  const url = server.info.url
  const sockets = sizes.revalSessions * sizes.revalSocketsPerSession
  const cookies = await client.call<string[]>('logins', { url, count: sizes.revalSessions, concurrency: 32 })
  await server.call('resetCounts')
  // Socket i uses session i % sessions: every session gets revalSocketsPerSession sockets.
  const batch = await client.call<HandshakeBatch>('handshakes', { url, cookies, count: sockets, concurrency: sizes.openConcurrency })
  if (batch.admitted !== sockets) throw new Error(`revalidation: only ${batch.admitted} of ${sockets} sockets were admitted (${JSON.stringify(batch.codes)})`)
  await drained(server, sockets)
  const handshakeCounts = await server.call<StoreCounts>('counts')
  await server.call('resetCounts')
  const t0 = performance.now()
  await sleep(sizes.revalInterval * sizes.revalIntervals)
  const counts = await server.call<StoreCounts>('counts')
  const windowMs = performance.now() - t0
  const clientsAfter = await server.call<number>('clients')
  await client.call('closeAll')
  await drained(server, 0)
  if (clientsAfter !== sockets) throw new Error(`revalidation: ${sockets - clientsAfter} sockets were lost during the window`)
  const readsPerInterval = counts.get / (windowMs / sizes.revalInterval)
  return {
    sessions: sizes.revalSessions,
    sockets,
    intervalMs: sizes.revalInterval,
    windowMs: Math.round(windowMs),
    readsInWindow: counts.get,
    readsPerInterval,
    readsPerIntervalPerSession: readsPerInterval / sizes.revalSessions,
    otherStoreCalls: counts.set + counts.destroy + counts.touch,
    readsWhileConnecting: handshakeCounts.get
  }
}

function revocationFigures (batch: RevocationBatch, nodes: 1 | 2, store: 'memory' | 'redis'): RevocationFigures {
  const clamped = batch.afterResponse.map((ms) => Math.max(0, ms))
  return {
    logouts: batch.afterResponse.length + batch.missed,
    nodes,
    store,
    p50Ms: percentile(clamped, 50),
    p99Ms: percentile(clamped, 99),
    maxMs: clamped.length === 0 ? NaN : Math.max(...clamped),
    fromRequestP50Ms: percentile(batch.afterRequest, 50),
    fromRequestP99Ms: percentile(batch.afterRequest, 99),
    disconnectBeforeResponse: batch.afterResponse.filter((ms) => ms <= 0).length,
    missed: batch.missed,
    revokedEvents: batch.revokedEvents,
    reasons: batch.reasons
  }
}

function ratiosOf (report: BenchReport): BenchReport['ratios'] {
  const admitted = (variant: VariantName): number | undefined => report.handshakes[variant]?.admitted?.cpuUsPerConn
  const over = (a: number | undefined, b: number | undefined): number | undefined =>
    a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0 ? undefined : a / b
  const bare = admitted('bare')
  const guard = admitted('guard-memory')
  const lifecycle = (variant: VariantName, scenario: Scenario): number | undefined => report.handshakes[variant]?.[scenario]?.lifecycleCpuUsPerConn
  const bareLifecycle = lifecycle('bare', 'admitted')
  const heapBare = report.memory.bare?.heapBytesPerSocket
  const heapGuard = report.memory['guard-memory']?.heapBytesPerSocket
  const rssBare = report.memory.bare?.rssBytesPerSocket
  const rssGuard = report.memory['guard-memory']?.rssBytesPerSocket
  const perRound = (a: VariantName, b: VariantName): number | undefined => {
    const ra = report.handshakes[a]?.admitted?.rounds
    const rb = report.handshakes[b]?.admitted?.rounds
    if (ra === undefined || rb === undefined || ra.length !== rb.length || ra.length === 0) return undefined
    return median(ra.map((round, i) => round.cpuUsPerConn / (rb[i] as HandshakeFigures).cpuUsPerConn))
  }
  return {
    cpuGuardOverBare: over(guard, bare),
    cpuGuardOverBarePerRound: perRound('guard-memory', 'bare'),
    cpuGuardOverNaivePerRound: perRound('guard-memory', 'naive'),
    cpuGuardOverExpressPerRound: perRound('guard-memory', 'express'),
    lifecycleCpuGuardOverBare: over(lifecycle('guard-memory', 'admitted'), bareLifecycle),
    cpuGuardRedisOverBare: over(admitted('guard-redis'), bare),
    cpuGuardOverNaive: over(guard, admitted('naive')),
    cpuGuardOverExpress: over(guard, admitted('express')),
    forgedGuardOverBareAdmitted: over(lifecycle('guard-memory', 'forged'), bareLifecycle),
    forgedGuardRedisOverBareAdmitted: over(lifecycle('guard-redis', 'forged'), bareLifecycle),
    unknownGuardOverBareAdmitted: over(lifecycle('guard-memory', 'unknown'), bareLifecycle),
    heapGuardOverBare: over(heapGuard, heapBare),
    extraHeapBytesPerSocket: heapGuard === undefined || heapBare === undefined ? undefined : heapGuard - heapBare,
    extraRssBytesPerSocket: rssGuard === undefined || rssBare === undefined ? undefined : rssGuard - rssBare
  }
}

function targetsOf (report: BenchReport): Target[] {
  const r = report.ratios
  const h = report.handshakes
  const fmt = (value: number | undefined, digits = 2, unit = ''): string => value === undefined || !Number.isFinite(value) ? 'n/a' : `${value.toFixed(digits)}${unit}`
  const check = (value: number | undefined, ok: (v: number) => boolean): boolean | null => value === undefined || !Number.isFinite(value) ? null : ok(value)
  const guard = h['guard-memory']?.admitted?.cpuUsPerConn
  const naive = h.naive?.admitted?.cpuUsPerConn
  const express = h.express?.admitted?.cpuUsPerConn
  const forgedCalls = (['guard-memory', 'guard-redis'] as const)
    .map((v) => h[v]?.forged)
    .filter((f): f is NonNullable<typeof f> => f !== undefined)
  const reval = report.revalidation
  const targets: Target[] = [
    { id: 'cpu-vs-bare', text: 'server CPU per admitted handshake, plugin (MemoryStore) ≤ 1.05 × bare', measured: `${fmt(r.cpuGuardOverBare)} × (per-round median ${fmt(r.cpuGuardOverBarePerRound)} ×; with the close ${fmt(r.lifecycleCpuGuardOverBare)} ×)`, met: check(r.cpuGuardOverBare, (v) => v <= 1.05) },
    {
      id: 'cpu-vs-alternatives',
      text: 'plugin (MemoryStore) CPU per admitted handshake < naive decryptSession and < express-session recipe',
      measured: `${fmt(r.cpuGuardOverNaive)} × naive, ${fmt(r.cpuGuardOverExpress)} × express (per-round medians ${fmt(r.cpuGuardOverNaivePerRound)} ×, ${fmt(r.cpuGuardOverExpressPerRound)} ×)`,
      met: guard === undefined || naive === undefined || express === undefined ? null : guard < naive && guard < express
    },
    {
      id: 'forged-vs-bare',
      text: 'forged-cookie refusal CPU < bare admitted CPU (each: handshake + close, since the client closes on refusal)',
      measured: `${fmt(r.forgedGuardOverBareAdmitted)} × bare admitted (Redis store: ${fmt(r.forgedGuardRedisOverBareAdmitted)} ×)`,
      met: check(r.forgedGuardOverBareAdmitted, (v) => v < 1)
    },
    {
      id: 'forged-no-store',
      text: 'a forged cookie does not touch the store (plugin; Redis: commands counted at the client)',
      measured: forgedCalls.length === 0 ? 'n/a' : forgedCalls.map((f) => `${fmt(f.storeCallsPerConn * f.n, 0)} store calls, ${fmt(f.redisCommandsPerConn * f.n, 0)} Redis commands`).join('; '),
      met: forgedCalls.length === 0 ? null : forgedCalls.every((f) => f.rounds.every((round) => round.storeCallsPerConn === 0 && round.redisCommandsPerConn === 0))
    },
    { id: 'heap-per-socket', text: 'extra heap per authenticated socket ≤ 1 KiB over bare', measured: `${fmt(r.extraHeapBytesPerSocket, 0)} B`, met: check(r.extraHeapBytesPerSocket, (v) => v <= 1024) },
    { id: 'revocation-one-node', text: 'revocation p99 < 50 ms, one node', measured: `${fmt(report.revocation.oneNode?.p99Ms, 1)} ms`, met: check(report.revocation.oneNode?.p99Ms, (v) => v < 50 && report.revocation.oneNode?.missed === 0) },
    { id: 'revocation-two-nodes', text: 'revocation p99 < 100 ms, two nodes through Redis', measured: `${fmt(report.revocation.twoNodes?.p99Ms, 1)} ms`, met: check(report.revocation.twoNodes?.p99Ms, (v) => v < 100 && report.revocation.twoNodes?.missed === 0) },
    {
      id: 'revalidation-reads',
      text: 'revalidation store reads per interval = sessions, not sockets (±20 % for the jitter)',
      measured: reval === undefined ? 'n/a' : `${fmt(reval.readsPerInterval, 0)} reads / interval for ${reval.sessions} sessions, ${reval.sockets} sockets`,
      met: reval === undefined ? null : Math.abs(reval.readsPerInterval - reval.sessions) <= 0.2 * reval.sessions
    }
  ]
  if (report.meta.quick) for (const target of targets) target.note = 'quick run: counts too small to judge'
  return targets
}

function forge (cookie: string): string {
  // name=value, value = URL-encoded "[s:]id.signature": keep the id, corrupt the signature.
  const eq = cookie.indexOf('=')
  const value = decodeURIComponent(cookie.slice(eq + 1))
  const dot = value.lastIndexOf('.')
  const signature = value.slice(dot + 1)
  const flipped = [...signature].map((c) => c === 'A' ? 'B' : 'A').join('')
  return `${cookie.slice(0, eq)}=${encodeURIComponent(value.slice(0, dot + 1) + flipped)}`
}

function cpuDelta (a: Usage, b: Usage): number {
  return (b.user - a.user) + (b.system - a.system)
}

function storeCalls (counts: StoreCounts): number {
  return counts.get + counts.set + counts.destroy + counts.touch
}

function mergeCodes (rounds: HandshakeFigures[]): Record<string, number> {
  const codes: Record<string, number> = {}
  for (const round of rounds) for (const [code, n] of Object.entries(round.codes)) codes[code] = (codes[code] ?? 0) + n
  return codes
}

/**
 * Promise.all for starting children, but it waits for every start to settle
 * before it throws, so that no child comes up after the cleanup has run.
 */
export async function allStarted<T extends readonly unknown[]> (starts: T): Promise<{ -readonly [K in keyof T]: Awaited<T[K]> }> {
  const settled = await Promise.allSettled(starts)
  const failed = settled.find((result): result is PromiseRejectedResult => result.status === 'rejected')
  if (failed !== undefined) throw failed.reason
  return settled.map((result) => (result as PromiseFulfilledResult<unknown>).value) as { -readonly [K in keyof T]: Awaited<T[K]> }
}

async function drained (server: Server, expected: number, timeoutMs = 30_000): Promise<void> {
  const clients = await server.call<number>('waitClients', { count: expected, timeoutMs }, timeoutMs + 10_000)
  if (clients !== expected) throw new Error(`${server.name}: ${clients} Engine.IO connections open, expected ${expected}`)
}

function openFileLimit (): number | null {
  try {
    const out = execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim()
    return out === 'unlimited' ? Infinity : Number.parseInt(out, 10)
  } catch {
    return null
  }
}
