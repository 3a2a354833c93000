import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname, relative, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { PHASES, runBench, type BenchOptions, type Phase } from './harness'
import { renderMarkdown, renderText } from './report'
import { VARIANTS, type VariantName } from './variants'

const USAGE = `npm run bench [-- options]

  --quick              tiny counts: checks the harness end to end in seconds (figures mean nothing)
  --rounds N           handshake rounds (default 5; the median is reported)
  --no-redis           leave out the Redis variants (default: Redis at 127.0.0.1:6379 is required)
  --redis MODE         require | auto | skip
  --phases LIST        comma-separated subset of: ${PHASES.join(',')}
  --variants LIST      comma-separated subset of: ${VARIANTS.join(',')}
  --results-dir DIR    where latest.json / latest.md go (default bench/results, git-ignored)
  --out FILE.json      also write the JSON (and FILE.md with the table) here, e.g. to commit it
  --help

Environment: REDIS_URL (default redis://127.0.0.1:6379); BENCH_LIB_DIR, the plugin sources to
measure instead of lib/ (e.g. a copy with a change, to compare).
The memory and revalidation phases hold up to 10,000 sockets per process: check "ulimit -n" (the
harness scales the counts down, and says so, when the limit is lower).`

async function main (): Promise<number> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      rounds: { type: 'string' },
      'no-redis': { type: 'boolean', default: false },
      redis: { type: 'string' },
      phases: { type: 'string' },
      variants: { type: 'string' },
      'results-dir': { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', default: false }
    }
  })
  if (values.help) {
    console.log(USAGE)
    return 0
  }
  const redis = values['no-redis'] ? 'skip' : (values.redis ?? 'require')
  if (redis !== 'require' && redis !== 'auto' && redis !== 'skip') throw new Error(`--redis must be require, auto or skip, got "${redis}"`)
  const phases = values.phases?.split(',').map((p) => p.trim()).filter(Boolean)
  for (const phase of phases ?? []) if (!PHASES.includes(phase as Phase)) throw new Error(`unknown phase "${phase}"; phases: ${PHASES.join(', ')}`)
  const variants = values.variants?.split(',').map((v) => v.trim()).filter(Boolean)
  for (const variant of variants ?? []) if (!VARIANTS.includes(variant as VariantName)) throw new Error(`unknown variant "${variant}"; variants: ${VARIANTS.join(', ')}`)
  const rounds = values.rounds === undefined ? undefined : Number.parseInt(values.rounds, 10)
  if (rounds !== undefined && !(rounds >= 1)) throw new Error('--rounds must be a positive integer')

  const options: BenchOptions = {
    quick: values.quick,
    redis,
    redisUrl: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    rounds,
    phases: phases as Phase[] | undefined,
    variants: variants as VariantName[] | undefined,
    libDir: process.env.BENCH_LIB_DIR === undefined ? undefined : resolve(process.env.BENCH_LIB_DIR),
    log: (line) => console.error(line)
  }
  const report = await runBench(options)

  console.log(renderText(report))
  const resultsDir = resolve(values['results-dir'] ?? resolve(__dirname, 'results'))
  const written = [
    write(resolve(resultsDir, 'latest.json'), JSON.stringify(report, null, 2) + '\n'),
    write(resolve(resultsDir, 'latest.md'), renderMarkdown(report))
  ]
  if (values.out !== undefined) {
    const json = resolve(values.out)
    written.push(write(json, JSON.stringify(report, null, 2) + '\n'))
    written.push(write(json.replace(/\.json$/i, '') + '.md', renderMarkdown(report)))
  }
  console.log(`\nWrote ${written.map((file) => relative(process.cwd(), file) || file).join(', ')}`)
  return 0
}

function write (file: string, content: string): string {
  mkdirSync(dirname(file), { recursive: true })
  writeFileSync(file, content)
  return file
}

main().then((code) => { process.exitCode = code }, (error: unknown) => {
  console.error(error instanceof Error ? error.message : error)
  process.exitCode = 1
})
