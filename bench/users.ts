/**
 * `npm run bench:users`: users and re-authorization, side by side in one run.
 *
 *   (a) demotion over HTTP on node A; the user's socket on node B leaves
 *       '/admin' ('forbidden') while '/' stays. Demote response → '/admin'
 *       disconnect, p50/p99. Two ways: the request changes the user's own
 *       session (role admin → user), or it changes the role in the "user
 *       database" (a Redis hash the loader reads) and calls reauthorizeUser,
 *       as the example's admin page does.
 *   (b) disconnectUser: one user with 3 sessions × 3 tabs over 2 nodes; the
 *       call on node A → the last of the 9 sockets disconnected, p50/p99.
 *   (c) server CPU per admitted handshake with a trivial `loadUser`, and with
 *       `loadUser` + `identify` (per-user room), against neither, as ratios.
 *
 * Two nodes share connect-redis (one key prefix) and @socket.io/redis-adapter
 * (one key) on Redis at REDIS_URL (default redis://127.0.0.1:6379); every
 * server is a process of its own, driven by a separate client process over
 * 127.0.0.1, as in `npm run bench` (see bench/README.md).
 *
 *   npm run bench:users                     ~1 minute
 *   npm run bench:users -- --quick          a few trials: checks the harness, figures mean nothing
 *   npm run bench:users -- --out FILE.json  also write the report there
 */
import { randomUUID } from 'node:crypto'
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, totalmem, type } from 'node:os'
import { dirname, resolve } from 'node:path'
import { performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { reachable } from '../test/support/services'
import { buildForBench } from './build'
import type { DemotionBatch, UserDisconnectBatch } from './client'
import { allStarted, measureHandshakes, type Client, type HandshakeFigures, type Server, type ServerInfo } from './harness'
import { Child } from './ipc'
import { median, medianOf, percentile } from './stats'
import type { ServerSpec } from './variants'

export interface UsersSizes {
  demotions: number
  userDisconnects: number
  warmup: number
  sessions: number
  tabs: number
  rounds: number
  admitted: number
  handshakeWarmup: number
  concurrency: number
  sessionPool: number
}

export const USERS_FULL: UsersSizes = { demotions: 200, userDisconnects: 100, warmup: 10, sessions: 3, tabs: 3, rounds: 5, admitted: 600, handshakeWarmup: 200, concurrency: 8, sessionPool: 200 }
export const USERS_QUICK: UsersSizes = { demotions: 5, userDisconnects: 3, warmup: 1, sessions: 3, tabs: 3, rounds: 1, admitted: 8, handshakeWarmup: 2, concurrency: 4, sessionPool: 4 }

export const LOADER_VARIANTS = ['plain', 'loadUser', 'loadUser+identify'] as const
export type LoaderVariant = typeof LOADER_VARIANTS[number]
const LOADER_SPECS: Record<LoaderVariant, ServerSpec> = {
  plain: { variant: 'guard-memory' },
  loadUser: { variant: 'guard-memory', users: { loadUser: true, identify: false } },
  'loadUser+identify': { variant: 'guard-memory', users: { loadUser: true, identify: true } }
}

export interface LatencyFigures {
  trials: number
  p50Ms: number
  p99Ms: number
  maxMs: number
  fromRequestP50Ms: number
  fromRequestP99Ms: number
  missed: number
}

export interface UsersReport {
  meta: { date: string, quick: boolean, node: string, os: string, cpu: string, cpuCount: number, memoryGiB: number, loadavgStart: number[], loadavgEnd: number[], durationS: number, sizes: UsersSizes, notes: string[] }
  demotion: LatencyFigures & { forbidden: number, mainLost: number }
  demotionReauthorize: LatencyFigures & { forbidden: number, mainLost: number }
  disconnectUser: LatencyFigures & { socketsPerTrial: number, perNode: number[], revokedEvents: number }
  handshakes: Record<LoaderVariant, HandshakeFigures & { rounds: HandshakeFigures[] }>
  ratios: { loadUserOverPlain: number, loadUserIdentifyOverPlain: number, loadUserOverPlainPerRound: number, loadUserIdentifyOverPlainPerRound: number }
  targets: Array<{ id: string, text: string, measured: string, met: boolean | null }>
}

function latency (afterResponse: number[], afterRequest: number[], missed: number): LatencyFigures {
  const clamped = afterResponse.map((ms) => Math.max(0, ms))
  return {
    trials: afterResponse.length + missed,
    p50Ms: percentile(clamped, 50),
    p99Ms: percentile(clamped, 99),
    maxMs: clamped.length === 0 ? NaN : Math.max(...clamped),
    fromRequestP50Ms: percentile(afterRequest, 50),
    fromRequestP99Ms: percentile(afterRequest, 99),
    missed
  }
}

export async function runUsersBench (options: { quick: boolean, redisUrl: string, log: (line: string) => void }): Promise<UsersReport> {
  const { log } = options
  const sizes = options.quick ? USERS_QUICK : USERS_FULL
  if (!await reachable(options.redisUrl, 6379)) throw new Error(`Redis is not reachable at ${options.redisUrl}: the two-node figures need it (redis-server --daemonize yes --port 6379)`)
  const started = performance.now()
  const loadavgStart = loadavg().map((l) => Math.round(l * 100) / 100)
  const runId = randomUUID()
  const build = buildForBench()
  const children: Array<Child<unknown>> = []
  const startServer = async (name: string, spec: ServerSpec): Promise<Server> => {
    const child = await Child.start<ServerInfo>(name, build.script('server'), { redisUrl: options.redisUrl, ...spec })
    children.push(child as Child<unknown>)
    return child
  }
  const startClient = async (name: string): Promise<Client> => {
    const child = await Child.start<{ pid: number }>(name, build.script('client'), {})
    children.push(child as Child<unknown>)
    return child
  }
  try {
    const cluster: ServerSpec = { variant: 'guard-redis', redisPrefix: `bench-users:${runId}:`, adapterKey: `bench-users-io:${runId}`, users: { loadUser: true, identify: true, rolesInRedis: true } }
    const [client, nodeA, nodeB, ...loaders] = await allStarted([
      startClient('users-client'),
      startServer('node-A', cluster),
      startServer('node-B', cluster),
      ...LOADER_VARIANTS.map((variant) => startServer(`handshakes-${variant}`, LOADER_SPECS[variant]))
    ])
    const timeoutMs = 2000

    log(`(a) demotion: ${sizes.demotions} trials each way, over HTTP on node A, socket on node B`)
    const demotions = (mode: 'session' | 'reauthorize'): Promise<DemotionBatch> => client.call<DemotionBatch>('demotions', {
      loginUrl: nodeA.info.url, socketUrl: nodeB.info.url, demoteUrl: nodeA.info.url, mode, count: sizes.demotions, warmup: sizes.warmup, timeoutMs
    })
    const demoted = await demotions('session')
    const reauthorized = await demotions('reauthorize')

    log(`(b) disconnectUser: ${sizes.userDisconnects} trials, ${sizes.sessions} sessions × ${sizes.tabs} tabs over 2 nodes, called on node A`)
    const ended = await client.call<UserDisconnectBatch>('userDisconnects', {
      loginUrl: nodeA.info.url, socketUrls: [nodeA.info.url, nodeB.info.url], disconnectUrl: nodeA.info.url, sessions: sizes.sessions, tabs: sizes.tabs, count: sizes.userDisconnects, warmup: sizes.warmup, timeoutMs
    })

    log(`(c) handshakes: ${sizes.rounds} round(s) of ${sizes.admitted} admitted per variant (${LOADER_VARIANTS.join(', ')}), interleaved`)
    const servers = new Map(LOADER_VARIANTS.map((variant, i) => [variant, loaders[i] as Server]))
    const cookies = new Map<LoaderVariant, string[]>()
    for (const variant of LOADER_VARIANTS) {
      cookies.set(variant, await client.call<string[]>('logins', { url: (servers.get(variant) as Server).info.url, count: sizes.sessionPool, concurrency: 8 }))
    }
    const measure = (variant: LoaderVariant, count: number): Promise<HandshakeFigures> =>
      measureHandshakes(servers.get(variant) as Server, client, cookies.get(variant) as string[], count, sizes.concurrency, 'admitted')
    for (const variant of LOADER_VARIANTS) await measure(variant, sizes.handshakeWarmup)
    const rounds = new Map<LoaderVariant, HandshakeFigures[]>(LOADER_VARIANTS.map((variant) => [variant, []]))
    for (let r = 0; r < sizes.rounds; r++) {
      const order = LOADER_VARIANTS.map((_, i) => LOADER_VARIANTS[(i + r) % LOADER_VARIANTS.length] as LoaderVariant)
      for (const variant of order) (rounds.get(variant) as HandshakeFigures[]).push(await measure(variant, sizes.admitted))
      log(`  round ${r + 1}/${sizes.rounds}: ${order.map((v) => `${v} ${Math.round((rounds.get(v) ?? []).at(-1)?.cpuUsPerConn ?? NaN)} µs`).join(', ')}`)
    }

    const handshakes = Object.fromEntries(LOADER_VARIANTS.map((variant) => {
      const all = rounds.get(variant) as HandshakeFigures[]
      return [variant, { ...medianOf(all), rounds: all }]
    })) as UsersReport['handshakes']
    const perRound = (a: LoaderVariant): number => median((rounds.get(a) as HandshakeFigures[]).map((round, i) => round.cpuUsPerConn / ((rounds.get('plain') as HandshakeFigures[])[i] as HandshakeFigures).cpuUsPerConn))
    const ratios = {
      loadUserOverPlain: handshakes.loadUser.cpuUsPerConn / handshakes.plain.cpuUsPerConn,
      loadUserIdentifyOverPlain: handshakes['loadUser+identify'].cpuUsPerConn / handshakes.plain.cpuUsPerConn,
      loadUserOverPlainPerRound: perRound('loadUser'),
      loadUserIdentifyOverPlainPerRound: perRound('loadUser+identify')
    }
    const demotion = { ...latency(demoted.afterResponse, demoted.afterRequest, demoted.missed), forbidden: demoted.forbidden, mainLost: demoted.mainLost }
    const demotionReauthorize = { ...latency(reauthorized.afterResponse, reauthorized.afterRequest, reauthorized.missed), forbidden: reauthorized.forbidden, mainLost: reauthorized.mainLost }
    const disconnectUser = { ...latency(ended.afterResponse, ended.afterRequest, ended.missed), socketsPerTrial: ended.sockets, perNode: ended.perNode, revokedEvents: ended.revokedEvents }
    const notes: string[] = []
    for (const [variant, figures] of Object.entries(handshakes)) {
      const admitted = figures.rounds.reduce((sum, round) => sum + round.admitted, 0)
      if (admitted !== figures.n * figures.rounds.length) notes.push(`${variant}: ${figures.n * figures.rounds.length - admitted} handshakes were not admitted (${JSON.stringify(figures.codes)})`)
    }
    const loadavgEnd = loadavg().map((l) => Math.round(l * 100) / 100)
    const busiest = Math.max(loadavgStart[0] ?? 0, loadavgEnd[0] ?? 0)
    if (busiest > 0.5 * cpus().length) notes.push(`the machine was busy (1-minute load average up to ${busiest} on ${cpus().length} CPUs): figures are noisy.`)
    const fmt = (value: number, digits = 1): string => Number.isFinite(value) ? value.toFixed(digits) : 'n/a'
    const targets = [
      {
        id: 'demotion-two-nodes',
        text: 'demotion over HTTP on node A → the socket on node B leaves /admin, p99 < 100 ms',
        measured: `${fmt(demotion.p99Ms)} ms (${demotion.forbidden}/${demotion.trials} with 'forbidden', '/' lost in ${demotion.mainLost}, missed ${demotion.missed})`,
        met: options.quick ? null : demotion.p99Ms < 100 && demotion.missed === 0 && demotion.mainLost === 0
      },
      {
        id: 'demotion-reauthorize-two-nodes',
        text: 'demotion by reauthorizeUser over HTTP on node A → the socket on node B leaves /admin, p99 < 100 ms',
        measured: `${fmt(demotionReauthorize.p99Ms)} ms (${demotionReauthorize.forbidden}/${demotionReauthorize.trials} with 'forbidden', '/' lost in ${demotionReauthorize.mainLost}, missed ${demotionReauthorize.missed})`,
        met: options.quick ? null : demotionReauthorize.p99Ms < 100 && demotionReauthorize.missed === 0 && demotionReauthorize.mainLost === 0
      },
      {
        id: 'disconnect-user-two-nodes',
        text: `disconnectUser, ${sizes.sessions} sessions × ${sizes.tabs} tabs over 2 nodes → all disconnected, p99 < 100 ms`,
        measured: `${fmt(disconnectUser.p99Ms)} ms (missed ${disconnectUser.missed})`,
        met: options.quick ? null : disconnectUser.p99Ms < 100 && disconnectUser.missed === 0
      }
    ]
    return {
      meta: {
        date: new Date().toISOString(),
        quick: options.quick,
        node: process.version,
        os: `${type()} ${process.arch}`,
        cpu: cpus()[0]?.model ?? 'unknown',
        cpuCount: cpus().length,
        memoryGiB: Math.round(totalmem() / 2 ** 30),
        loadavgStart,
        loadavgEnd,
        durationS: Math.round((performance.now() - started) / 100) / 10,
        sizes,
        notes
      },
      demotion,
      demotionReauthorize,
      disconnectUser,
      handshakes,
      ratios,
      targets
    }
  } finally {
    await Promise.all(children.map((child) => child.stop()))
    build.remove()
  }
}

export function renderUsersMarkdown (report: UsersReport): string {
  const f = (value: number, digits = 1): string => Number.isFinite(value) ? value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : 'n/a'
  const d = report.demotion
  const a = report.demotionReauthorize
  const u = report.disconnectUser
  const h = report.handshakes
  const r = report.ratios
  const lines = [
    '| figure | p50 | p99 | max | trials |',
    '| --- | ---: | ---: | ---: | ---: |',
    `| (a) demote over HTTP on node A (the user's session changed) → socket on node B leaves \`/admin\`, ms after the response | ${f(d.p50Ms)} | ${f(d.p99Ms)} | ${f(d.maxMs)} | ${d.trials} |`,
    `|   the same, from sending the request | ${f(d.fromRequestP50Ms)} | ${f(d.fromRequestP99Ms)} | | |`,
    `| (a′) demote over HTTP on node A (role changed in Redis + \`reauthorizeUser\`) → socket on node B leaves \`/admin\`, ms after the response | ${f(a.p50Ms)} | ${f(a.p99Ms)} | ${f(a.maxMs)} | ${a.trials} |`,
    `|   the same, from sending the request | ${f(a.fromRequestP50Ms)} | ${f(a.fromRequestP99Ms)} | | |`,
    `| (b) \`disconnectUser\` (${report.meta.sizes.sessions} sessions × ${report.meta.sizes.tabs} tabs, ${u.perNode.join(' + ')} sockets on nodes A + B) → last socket disconnected, ms after the response | ${f(u.p50Ms)} | ${f(u.p99Ms)} | ${f(u.maxMs)} | ${u.trials} |`,
    `|   the same, from sending the request | ${f(u.fromRequestP50Ms)} | ${f(u.fromRequestP99Ms)} | | |`,
    '',
    ...[['(a)', d], ['(a′)', a]].map(([name, x]) => {
      const y = x as UsersReport['demotion']
      return `${String(name)}: ${y.forbidden} of ${y.trials} \`/admin\` sockets got \`session:revoked\` \`{ reason: 'forbidden' }\`; \`/\` stayed connected in ${y.trials - y.missed - y.mainLost} of ${y.trials - y.missed}; missed (no disconnect within 2 s): ${y.missed}.  `
    }),
    `(b): ${u.revokedEvents} of ${(u.trials - u.missed) * u.socketsPerTrial} sockets got \`session:revoked\` first; trials with a socket left after 2 s: ${u.missed}.`,
    '',
    '| (c) admitted handshake, MemoryStore | server CPU µs / handshake | × without | per-round median × | handshakes / s | p50 / p99 ms |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
    `| without \`loadUser\` | ${f(h.plain.cpuUsPerConn, 0)} | 1.00 | 1.00 | ${f(h.plain.connPerSec, 0)} | ${f(h.plain.p50Ms)} / ${f(h.plain.p99Ms)} |`,
    `| \`loadUser\` (trivial: the session's user) | ${f(h.loadUser.cpuUsPerConn, 0)} | ${f(r.loadUserOverPlain, 2)} | ${f(r.loadUserOverPlainPerRound, 2)} | ${f(h.loadUser.connPerSec, 0)} | ${f(h.loadUser.p50Ms)} / ${f(h.loadUser.p99Ms)} |`,
    `| \`loadUser\` + \`identify\` (joins the user's room) | ${f(h['loadUser+identify'].cpuUsPerConn, 0)} | ${f(r.loadUserIdentifyOverPlain, 2)} | ${f(r.loadUserIdentifyOverPlainPerRound, 2)} | ${f(h['loadUser+identify'].connPerSec, 0)} | ${f(h['loadUser+identify'].p50Ms)} / ${f(h['loadUser+identify'].p99Ms)} |`,
    '',
    ...report.targets.map((t) => `- [${t.met === null ? 'n/a' : t.met ? 'met' : 'MISSED'}] ${t.text}: ${t.measured}`),
    '',
    `Machine: ${report.meta.cpuCount} × ${report.meta.cpu}, ${report.meta.memoryGiB} GiB, ${report.meta.os}, Node ${report.meta.node}; load average ${report.meta.loadavgStart.join(' ')} at start, ${report.meta.loadavgEnd.join(' ')} at end; ${report.meta.durationS} s; ${report.meta.date}${report.meta.quick ? ' (quick run: figures mean nothing)' : ''}.`,
    ...report.meta.notes.map((note) => `Note: ${note}`)
  ]
  return lines.join('\n') + '\n'
}

async function main (): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      out: { type: 'string' },
      'results-dir': { type: 'string' },
      help: { type: 'boolean', default: false }
    }
  })
  if (values.help) {
    console.log('npm run bench:users [-- --quick] [--out FILE.json] [--results-dir DIR]\n\nNeeds Redis (REDIS_URL, default redis://127.0.0.1:6379). Writes DIR/users-latest.json and .md (default bench/results).')
    return
  }
  const report = await runUsersBench({ quick: values.quick, redisUrl: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', log: (line) => console.error(line) })
  const markdown = renderUsersMarkdown(report)
  console.log(markdown)
  const dir = resolve(values['results-dir'] ?? resolve(__dirname, 'results'))
  const files: Array<[string, string]> = [[resolve(dir, 'users-latest.json'), JSON.stringify(report, null, 2) + '\n'], [resolve(dir, 'users-latest.md'), markdown]]
  if (values.out !== undefined) files.push([resolve(values.out), JSON.stringify(report, null, 2) + '\n'], [resolve(values.out).replace(/\.json$/i, '') + '.md', markdown])
  for (const [file, content] of files) {
    mkdirSync(dirname(file), { recursive: true })
    writeFileSync(file, content)
  }
  console.log(`Wrote ${files.map(([file]) => file).join(', ')}`)
}

if (require.main === module) {
  main().catch((error: unknown) => {
    console.error(error instanceof Error ? error.stack ?? error.message : error)
    process.exitCode = 1
  })
}
