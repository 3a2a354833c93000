import type { BenchReport, HandshakeFigures, Scenario } from './harness'
import type { VariantName } from './variants'

/** One table: a row per figure, a column per variant. */
export interface Table {
  header: string[]
  rows: Array<{ section?: string, cells: string[] }>
}

const DASH = '—'

function num (value: number | undefined, digits = 0): string {
  if (value === undefined || !Number.isFinite(value)) return DASH
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

export function buildTable (report: BenchReport): Table {
  const variants = report.meta.variants
  const header = ['figure', ...variants]
  const rows: Table['rows'] = []
  const section = (title: string): void => { rows.push({ section: title, cells: [] }) }
  const row = (label: string, cell: (variant: VariantName) => string): void => {
    rows.push({ cells: [label, ...variants.map(cell)] })
  }
  const hs = (variant: VariantName, scenario: Scenario): (HandshakeFigures & { rounds: HandshakeFigures[] }) | undefined =>
    report.handshakes[variant]?.[scenario]
  const bareCpu = hs('bare', 'admitted')?.cpuUsPerConn
  const bareLifecycle = hs('bare', 'admitted')?.lifecycleCpuUsPerConn

  if (Object.keys(report.handshakes).length > 0) {
    const n = report.meta.sizes
    section(`Admitted handshakes (websocket, ${n.admitted} per round, ${n.concurrency} in flight, median of ${n.rounds} round(s))`)
    row('server CPU µs / handshake', (v) => num(hs(v, 'admitted')?.cpuUsPerConn))
    row('  × bare', (v) => bareCpu === undefined ? DASH : num((hs(v, 'admitted')?.cpuUsPerConn ?? NaN) / bareCpu, 2))
    row('server CPU µs / close', (v) => num(hs(v, 'admitted')?.closeCpuUsPerConn))
    row('server CPU µs / connection (handshake + close)', (v) => num(hs(v, 'admitted')?.lifecycleCpuUsPerConn))
    row('  × bare', (v) => bareLifecycle === undefined ? DASH : num((hs(v, 'admitted')?.lifecycleCpuUsPerConn ?? NaN) / bareLifecycle, 2))
    row('handshakes / s', (v) => num(hs(v, 'admitted')?.connPerSec))
    row('latency p50 / p99 ms', (v) => pair(hs(v, 'admitted')?.p50Ms, hs(v, 'admitted')?.p99Ms))
    row('store calls / handshake', (v) => v === 'bare' ? DASH : num(hs(v, 'admitted')?.storeCallsPerConn, 2))
    for (const [scenario, title] of [['forged', `Refused: forged cookie, bad signature (${n.refused} per round)`], ['unknown', `Refused: unknown session, validly signed id not in the store (${n.refused} per round)`]] as const) {
      section(title)
      row('server CPU µs / connection (refusal + close)', (v) => num(hs(v, scenario)?.lifecycleCpuUsPerConn))
      row('  × bare admitted connection', (v) => bareLifecycle === undefined || hs(v, scenario) === undefined ? DASH : num((hs(v, scenario)?.lifecycleCpuUsPerConn ?? NaN) / bareLifecycle, 2))
      row('latency p50 / p99 ms', (v) => pair(hs(v, scenario)?.p50Ms, hs(v, scenario)?.p99Ms))
      row('store calls / handshake', (v) => num(hs(v, scenario)?.storeCallsPerConn, 2))
      if (report.meta.redis) row('Redis commands / handshake', (v) => v === 'guard-redis' ? num(hs(v, scenario)?.redisCommandsPerConn, 2) : DASH)
    }
  }

  if (Object.keys(report.memory).length > 0) {
    section(`Memory: ${report.meta.sizes.memorySockets} open authenticated sockets, after GC`)
    const bare = report.memory.bare
    row('heap bytes / socket', (v) => num(report.memory[v]?.heapBytesPerSocket))
    row('  over bare', (v) => bare === undefined || v === 'bare' ? DASH : signed(report.memory[v]?.heapBytesPerSocket, bare.heapBytesPerSocket))
    row('RSS bytes / socket', (v) => num(report.memory[v]?.rssBytesPerSocket))
    row('  over bare', (v) => bare === undefined || v === 'bare' ? DASH : signed(report.memory[v]?.rssBytesPerSocket, bare.rssBytesPerSocket))
  }

  const { oneNode, twoNodes } = report.revocation
  if (oneNode !== undefined || twoNodes !== undefined) {
    section('Revocation: logout HTTP response → client disconnect')
    row('one node (MemoryStore) p50 / p99 ms', (v) => v === 'guard-memory' && oneNode !== undefined ? `${pair(oneNode.p50Ms, oneNode.p99Ms)} (n=${oneNode.logouts})` : DASH)
    row('two nodes via Redis p50 / p99 ms', (v) => v === 'guard-redis' && twoNodes !== undefined ? `${pair(twoNodes.p50Ms, twoNodes.p99Ms)} (n=${twoNodes.logouts})` : DASH)
  }

  const reval = report.revalidation
  if (reval !== undefined) {
    section(`Revalidation: ${reval.sockets} sockets over ${reval.sessions} sessions, every ${reval.intervalMs} ms`)
    row('store reads / interval', (v) => v === 'guard-memory' ? `${num(reval.readsPerInterval)} (${num(reval.readsPerIntervalPerSession, 2)} / session)` : DASH)
  }
  return { header, rows }
}

function pair (a: number | undefined, b: number | undefined): string {
  return a === undefined && b === undefined ? DASH : `${num(a, 1)} / ${num(b, 1)}`
}

function signed (value: number | undefined, base: number): string {
  if (value === undefined || !Number.isFinite(value) || !Number.isFinite(base)) return DASH
  const diff = value - base
  return `${diff >= 0 ? '+' : ''}${num(diff)}`
}

export function renderText (report: BenchReport): string {
  const table = buildTable(report)
  const widths = table.header.map((h, i) => Math.max(h.length, ...table.rows.map((r) => (r.cells[i] ?? '').length)))
  const line = (cells: string[]): string => cells.map((c, i) => i === 0 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number)).join('  ')
  const total = widths.reduce((a, b) => a + b, 0) + 2 * (widths.length - 1)
  const out: string[] = [line(table.header), '='.repeat(total)]
  for (const r of table.rows) out.push(r.section !== undefined ? `-- ${r.section}` : line(r.cells))
  out.push('', ...targetLines(report), '', ...metaLines(report))
  return out.join('\n')
}

export function renderMarkdown (report: BenchReport): string {
  const table = buildTable(report)
  const out: string[] = [
    `| ${table.header.join(' | ')} |`,
    `|${table.header.map((_, i) => i === 0 ? ' --- ' : ' ---: ').join('|')}|`
  ]
  for (const r of table.rows) {
    out.push(r.section !== undefined
      ? `| **${r.section}** |${table.header.slice(1).map(() => ' ').join('|')}|`
      : `| ${r.cells.join(' | ')} |`)
  }
  out.push('', ...targetLines(report).map((l) => `- ${l}`), '', ...metaLines(report).map((l) => `${l}  `))
  return out.join('\n') + '\n'
}

function targetLines (report: BenchReport): string[] {
  return [
    'Targets (issue 5):',
    ...report.targets.map((t) => {
      // A quick run's verdicts mean nothing: say so instead of met/missed.
      const mark = report.meta.quick ? 'quick ' : t.met === null ? 'n/a   ' : t.met ? 'met   ' : 'MISSED'
      return `  [${mark}] ${t.text}: ${t.measured}${t.note !== undefined ? ` (${t.note})` : ''}`
    })
  ]
}

function metaLines (report: BenchReport): string[] {
  const m = report.meta
  const lines = [
    `Variants: ${m.variants.map((v) => `${v} = ${m.labels[v]}`).join('; ')}.`,
    `Machine: ${m.cpuCount} × ${m.cpu}, ${m.memoryGiB} GiB, ${m.os}, Node ${m.node}; load average ${m.loadavgStart.join(' ')} at start, ${m.loadavgEnd.join(' ')} at end; ${m.durationS} s${m.quick ? ' (quick run)' : ''}; ${m.date}.`
  ]
  for (const note of m.notes) lines.push(`Note: ${note}`)
  return lines
}
