import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import ts from 'typescript'
import { ROOT } from './ipc'

/**
 * The servers and clients run as plain JavaScript, compiled here from lib/ and
 * bench/ the way `npm run build` compiles lib/ for users. Under tsx every named
 * arrow function would be wrapped in esbuild's `__name()` (a call per closure,
 * and a function object in slow dictionary mode), which costs CPU and heap per
 * handshake that the published plugin does not have.
 *
 * The output goes to a fresh folder under .tmp/ (git-ignored) inside the repo,
 * so that node_modules resolves; the caller removes it.
 */
const BENCH_FILES = ['ipc.ts', 'variants.ts', 'server.ts', 'client.ts']

export interface Build {
  dir: string
  script (name: 'server' | 'client'): string
  remove (): void
}

export function buildForBench (libDir = join(ROOT, 'lib')): Build {
  mkdirSync(join(ROOT, '.tmp'), { recursive: true })
  const dir = mkdtempSync(join(ROOT, '.tmp', 'bench-build-'))
  const sources = [
    ...tsFiles(libDir).map((file) => ({ file, target: join(dir, 'lib', relative(libDir, file)) })),
    ...BENCH_FILES.map((file) => ({ file: join(ROOT, 'bench', file), target: join(dir, 'bench', file) }))
  ]
  for (const { file, target: tsTarget } of sources) {
    const { outputText } = ts.transpileModule(readFileSync(file, 'utf8'), {
      fileName: file,
      compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true }
    })
    const target = tsTarget.replace(/\.ts$/, '.js')
    mkdirSync(dirname(target), { recursive: true })
    writeFileSync(target, outputText)
  }
  return {
    dir,
    script: (name) => join(dir, 'bench', `${name}.js`),
    remove: () => rmSync(dir, { recursive: true, force: true })
  }
}

function tsFiles (folder: string): string[] {
  const files: string[] = []
  for (const entry of readdirSync(folder, { withFileTypes: true })) {
    const full = join(folder, entry.name)
    if (entry.isDirectory()) files.push(...tsFiles(full))
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) files.push(full)
  }
  return files
}
