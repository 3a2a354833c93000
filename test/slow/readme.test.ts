// Every ```ts and ```js block of README.md compiles as written, against the package's own source
// (`fastify-session-socket-auth` is mapped to lib/index.ts), with the repo's TypeScript.
//
// Blocks are compiled the way the Quick start's project is set up: ES modules ("type": "module"),
// module/moduleResolution node16, strict. Each block is its own program, since blocks augment
// interfaces (`Session`, the event maps) differently and an augmentation is global to a program;
// the programs share one compiler host and its parsed files, so this stays one fast compile.
// ```json blocks must parse; shell, HTML, nginx, diff and md blocks are not checked.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import ts from 'typescript'

const root = resolve(__dirname, '..', '..')
const workDir = join(root, '.tmp', 'readme-blocks')

/**
 * The prelude, identical for every block: what README fragments take as given, as the README says
 * ("the shorter snippets use this `app` and this `Session` declaration"; "`socket` is the page's
 * `io()` socket"). Blocks with their own `app` or `socket` shadow these. The page's socket comes from
 * the untyped `<script src="/socket.io/socket.io.min.js">`, hence `any`.
 */
const PRELUDE = `import type { FastifyInstance } from 'fastify'
import type {} from 'fastify-session-socket-auth'
declare module 'fastify' {
  interface Session { user?: { name: string, admin?: boolean } }
}
declare global {
  const app: FastifyInstance
  const socket: any
  function showError (message: string): void
  function showBanner (message: string): void
}
`

interface Block { lang: string, line: number, code: string }

function readBlocks (markdown: string): Block[] {
  const blocks: Block[] = []
  const lines = markdown.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\w*)\s*$/.exec(lines[i] as string)
    if (open === null) continue
    const start = i
    const body: string[] = []
    for (i++; i < lines.length && lines[i] !== '```'; i++) body.push(lines[i] as string)
    assert.ok(i < lines.length, `README.md:${start + 1}: code block never closed`)
    blocks.push({ lang: open[1] as string, line: start + 1, code: body.join('\n') + '\n' })
  }
  return blocks
}

const blocks = readBlocks(readFileSync(join(root, 'README.md'), 'utf8'))
const compiled = blocks.filter((block) => block.lang === 'ts' || block.lang === 'js')

test('README.md has code blocks to check, and every one says its language', () => {
  assert.ok(compiled.length >= 8, `only ${compiled.length} ts/js blocks found`)
  const unlabeled = blocks.filter((block) => block.lang === '').map((block) => `README.md:${block.line}`)
  assert.deepEqual(unlabeled, [], 'code blocks without a language')
})

test('every ```json block of README.md parses', () => {
  for (const block of blocks.filter((b) => b.lang === 'json')) {
    assert.doesNotThrow(() => JSON.parse(block.code), `README.md:${block.line}`)
  }
})

test('every ```ts and ```js block of README.md compiles', () => {
  rmSync(workDir, { recursive: true, force: true })
  mkdirSync(workDir, { recursive: true })
  writeFileSync(join(workDir, 'package.json'), '{ "type": "module" }\n')
  writeFileSync(join(workDir, 'prelude.d.ts'), PRELUDE)
  const files = compiled.map((block) => {
    const file = join(workDir, `line-${block.line}.${block.lang}`)
    writeFileSync(file, block.code)
    return { block, file }
  })
  const config = {
    compilerOptions: {
      target: 'ES2022',
      lib: ['ES2022', 'DOM'],
      module: 'node16',
      moduleResolution: 'node16',
      strict: true,
      esModuleInterop: true,
      skipLibCheck: true,
      allowJs: true,
      checkJs: true,
      noEmit: true,
      types: ['node'],
      paths: { 'fastify-session-socket-auth': ['../../lib/index.ts'] }
    },
    files: ['prelude.d.ts', ...files.map(({ file }) => file.slice(workDir.length + 1))]
  }
  const parsed = ts.parseJsonConfigFileContent(config, ts.sys, workDir)
  assert.deepEqual(parsed.errors, [])

  // One host for every program: lib/, node_modules and the prelude are parsed once.
  const host = ts.createCompilerHost(parsed.options)
  const cache = new Map<string, ts.SourceFile | undefined>()
  const getSourceFile = host.getSourceFile.bind(host)
  host.getSourceFile = (fileName, languageVersion, onError, shouldCreate) => {
    const key = `${fileName}|${JSON.stringify(languageVersion)}`
    if (!cache.has(key)) cache.set(key, getSourceFile(fileName, languageVersion, onError, shouldCreate))
    return cache.get(key)
  }

  // JavaScript has no annotations to give: implicit any is what an editor's checkJs accepts too.
  const optionsFor = (lang: string): ts.CompilerOptions => lang === 'js' ? { ...parsed.options, noImplicitAny: false } : parsed.options
  const preludes = [join(workDir, 'prelude.d.ts')]
  const failures: string[] = []
  for (const { block, file } of files) {
    const program = ts.createProgram({ rootNames: [...preludes, file], options: optionsFor(block.lang), host })
    const source = program.getSourceFile(file)
    assert.ok(source, file)
    const diagnostics = [
      ...program.getOptionsDiagnostics(),
      ...program.getGlobalDiagnostics(),
      ...program.getSyntacticDiagnostics(source),
      ...program.getSemanticDiagnostics(source),
      ...preludes.flatMap((prelude) => program.getSemanticDiagnostics(program.getSourceFile(prelude)))
    ]
    for (const diagnostic of diagnostics) {
      const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n')
      let where = `README.md:${block.line}`
      if (diagnostic.file !== undefined && diagnostic.start !== undefined) {
        const { line, character } = diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start)
        where = diagnostic.file === source ? `README.md:${block.line + 1 + line}:${character + 1}` : `${diagnostic.file.fileName}:${line + 1}`
      }
      failures.push(`${where} (\`\`\`${block.lang} block) TS${diagnostic.code}: ${message}`)
    }
  }
  assert.deepEqual(failures, [], `README code blocks that do not compile:\n${failures.join('\n')}`)
})
