// Packaging: what `npm install fastify-session-socket-auth` gives a user.
// Builds lib/ into a staged copy of the package, packs it with npm (package.json "files" decides the
// contents), installs the tarball into an empty app next to fastify@5, @fastify/cookie, @fastify/session
// and socket.io@4 (its peer) with a plain `npm install`, checks the tree has no peer problem and one socket.io, then
// runs a CommonJS and an ESM app that require()/import it and admit/refuse real Socket.IO clients, and
// type-checks a .cts and a .mts consumer against the installed declarations.
// Offline-friendly: npm runs with --prefer-offline, so packages already in the npm cache (all of them,
// after `npm ci`) are not fetched again.
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'

const root = resolve(__dirname, '..', '..')
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  name: string
  version: string
  main: string
  types: string
  files: string[]
  engines?: { node?: string }
  exports?: Record<string, unknown>
  peerDependencies?: Record<string, string>
  dependencies?: Record<string, string>
}

// Child processes are tools (npm, tsc) or apps that load dist/, not lib/: keep them out of coverage.
const childEnv: NodeJS.ProcessEnv = { ...process.env, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' }
delete childEnv.NODE_V8_COVERAGE
delete childEnv.NODE_OPTIONS

interface Run { stdout: string, stderr: string }

function run (command: string, args: string[], cwd: string, timeout = 180_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { cwd, env: childEnv, timeout, maxBuffer: 32 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error !== null) {
        reject(new Error(`${command} ${args.join(' ')} failed in ${cwd}: ${error.message}\n--- stdout\n${stdout}\n--- stderr\n${stderr}`))
      } else {
        resolve({ stdout, stderr })
      }
    })
  })
}

const npm = (args: string[], cwd: string): Promise<Run> => run('npm', args, cwd)
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')

let work: string
let tarball: string
let packedFiles: string[]
let app: string

before(async () => {
  work = mkdtempSync(join(tmpdir(), 'fssa-package-'))
  const stage = join(work, 'stage')
  // A copy of the repository without its build output or dependencies, then a fresh build of lib/ into it.
  cpSync(root, stage, {
    recursive: true,
    filter: (source) => !/[/\\](node_modules|\.git|dist|coverage|\.tmp)$/.test(source) && !source.endsWith('.tgz')
  })
  await run(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json'), '--outDir', join(stage, 'dist')], root)
  const packed = JSON.parse((await npm(['pack', '--json', '--ignore-scripts', '--pack-destination', work], stage)).stdout) as Array<{ filename: string, files: Array<{ path: string }> }>
  tarball = join(work, packed[0].filename)
  packedFiles = packed[0].files.map((file) => file.path).sort()

  app = join(work, 'app')
  mkdirSync(app)
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'consumer-app', version: '1.0.0', private: true }, null, 2))
  await npm([
    // Plain `npm install`, as a user types it; `npm ls` below reports any peer problem.
    'install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error',
    tarball, 'fastify@5', '@fastify/cookie@11', '@fastify/session@11', 'socket.io@4'
  ], app)
}, { timeout: 300_000 })

after(() => {
  if (work !== undefined && process.env.KEEP_PACKAGE_TEST !== '1') rmSync(work, { recursive: true, force: true })
})

test('package.json declares what a published Fastify plugin needs', () => {
  assert.equal(pkg.engines?.node, '>=20')
  assert.deepEqual(Object.keys(pkg.peerDependencies ?? {}).sort(), ['@fastify/cookie', '@fastify/session', 'fastify', 'socket.io'])
  assert.match(pkg.peerDependencies?.fastify ?? '', /^\^5\./)
  // A peer: the app's own socket.io (which it installs for types and adapters) is the one the plugin uses.
  assert.match(pkg.peerDependencies?.['socket.io'] ?? '', /^\^4\.8/)
  assert.equal(pkg.dependencies?.['socket.io'], undefined)
  assert.deepEqual(pkg.exports?.['.'], { types: './dist/index.d.ts', default: './dist/index.js' })
  assert.equal(pkg.main, 'dist/index.js')
  assert.equal(pkg.types, 'dist/index.d.ts')
})

test('the tarball holds the build, the README and package.json, and no sources or tests', () => {
  for (const file of ['package.json', 'README.md', 'CHANGELOG.md', 'LICENSE', 'dist/index.js', 'dist/index.d.ts', 'dist/types.d.ts', 'dist/options.d.ts']) {
    assert.ok(packedFiles.includes(file), `${file} is in the tarball (got ${packedFiles.join(', ')})`)
  }
  const stray = packedFiles.filter((file) => /^(lib|test|scripts|bench|example|\.ci)\//.test(file) || /\.tgz$/.test(file))
  assert.deepEqual(stray, [], 'no sources, tests or scripts are published')
  // Source maps would point at lib/*.ts, which is not published.
  assert.deepEqual(packedFiles.filter((file) => file.endsWith('.map')), [], 'no source maps without their sources')
  const indexJs = readFileSync(join(app, 'node_modules', pkg.name, 'dist', 'index.js'), 'utf8')
  assert.doesNotMatch(indexJs, /sourceMappingURL/)
  // Every dist module that index.js needs is there (a "files" mistake would drop some).
  for (const file of packedFiles.filter((f) => f.startsWith('dist/') && f.endsWith('.js'))) {
    assert.ok(packedFiles.includes(file.replace(/\.js$/, '.d.ts')), `${file} has its declarations`)
  }
})

test('installs next to fastify@5, @fastify/cookie, @fastify/session and socket.io with no peer-dependency problem', async () => {
  // `npm ls` reports missing or invalid peers, and exits non-zero if there are any.
  const { stdout } = await npm(['ls', '--json', '--all'], app)
  const tree = JSON.parse(stdout) as { problems?: string[], dependencies: Record<string, { version: string }> }
  assert.deepEqual(tree.problems ?? [], [])
  assert.equal(tree.dependencies[pkg.name]?.version, pkg.version)
  assert.match(tree.dependencies.fastify.version, /^5\./)
  // One socket.io: the user's Server and the plugin's are the same class.
  const { stdout: ioList } = await npm(['ls', 'socket.io', '--json', '--all'], app)
  const versions = new Set<string>()
  const walk = (node: { dependencies?: Record<string, { version: string, dependencies?: unknown }> }): void => {
    for (const [name, child] of Object.entries(node.dependencies ?? {})) {
      if (name === 'socket.io') versions.add(child.version)
      walk(child as never)
    }
  }
  walk(JSON.parse(ioList))
  assert.equal(versions.size, 1, `one socket.io version in the tree, got ${[...versions].join(', ')}`)
  assert.ok(!existsSync(join(app, 'node_modules', pkg.name, 'node_modules', 'socket.io')), 'socket.io is deduplicated')
})

// The same app body for both module systems: a logged-in client is admitted with its session,
// a client without a cookie is refused with SESSION_REQUIRED, app.close() ends it all.
const clientPath = JSON.stringify(dirname(require.resolve('socket.io-client/package.json')))
const appBody = `
const assert = require_('node:assert/strict')
const { io: connect } = require_(${clientPath})
assert.equal(typeof sessionSocketAuth, 'function')
assert.equal(named, sessionSocketAuth)
assert.equal(sessionSocketAuth.default, sessionSocketAuth)
assert.equal(REFUSAL_CODES.SESSION_REQUIRED.length > 0, true)
assert.equal(REVOKED_EVENT, 'session:revoked')
assert.match(sessionRoom('abc'), /^session:/)

const app = Fastify()
await app.register(fastifyCookie)
await app.register(fastifySession, { secret: 'a-secret-with-at-least-32-characters-in-it', cookie: { secure: false } })
await app.register(sessionSocketAuth, { authorize: (session) => session.user !== undefined })
assert.ok(app.io instanceof Server, 'fastify.io is the installed socket.io Server')
assert.equal(typeof app.disconnectSession, 'function')
app.post('/login', async (request) => { request.session.user = { name: 'ada' }; return { ok: true } })
const seen = []
app.io.on('connection', (socket) => { seen.push(socket.data.session.user.name) })
await app.listen({ port: 0, host: '127.0.0.1' })
const url = 'http://127.0.0.1:' + app.server.address().port

const login = await fetch(url + '/login', { method: 'POST' })
const cookie = login.headers.get('set-cookie').split(';')[0]
const outcome = (extraHeaders) => new Promise((resolve) => {
  const socket = connect(url, { extraHeaders, reconnection: false, transports: ['websocket'] })
  socket.on('connect', () => { socket.close(); resolve('connected') })
  socket.on('connect_error', (err) => { socket.close(); resolve(err.message) })
})
const admitted = await outcome({ cookie })
const refused = await outcome({})
await app.close()
console.log(JSON.stringify({ admitted, refused, seen }))
`

test('require() of the installed package registers on a real Fastify app (CommonJS)', async () => {
  writeFileSync(join(app, 'check.cjs'), `'use strict'
const require_ = require
const sessionSocketAuth = require('${pkg.name}')
const { fastifySessionSocketAuth: named, REFUSAL_CODES, REVOKED_EVENT, sessionRoom } = require('${pkg.name}')
const Fastify = require('fastify')
const fastifyCookie = require('@fastify/cookie')
const fastifySession = require('@fastify/session')
const { Server } = require('socket.io')
;(async () => {
${appBody}
})().catch((err) => { console.error(err); process.exit(1) })
`)
  const { stdout } = await run(process.execPath, ['check.cjs'], app, 60_000)
  assert.deepEqual(JSON.parse(stdout.trim().split('\n').pop() ?? ''), { admitted: 'connected', refused: 'SESSION_REQUIRED', seen: ['ada'] })
})

test('import of the installed package (default and named exports) registers on a real Fastify app (ESM)', async () => {
  writeFileSync(join(app, 'check.mjs'), `import { createRequire } from 'node:module'
import sessionSocketAuth, { fastifySessionSocketAuth as named, REFUSAL_CODES, REVOKED_EVENT, sessionRoom } from '${pkg.name}'
import Fastify from 'fastify'
import fastifyCookie from '@fastify/cookie'
import fastifySession from '@fastify/session'
import { Server } from 'socket.io'
const require_ = createRequire(import.meta.url)
${appBody}
`)
  const { stdout } = await run(process.execPath, ['check.mjs'], app, 60_000)
  assert.deepEqual(JSON.parse(stdout.trim().split('\n').pop() ?? ''), { admitted: 'connected', refused: 'SESSION_REQUIRED', seen: ['ada'] })
})

test('the installed declarations type-check for ESM (.mts) and CommonJS (.cts) consumers', async () => {
  // The consumer's own @types/node: linked from this repository instead of installed again.
  mkdirSync(join(app, 'node_modules', '@types'), { recursive: true })
  const typesNode = join(app, 'node_modules', '@types', 'node')
  if (!existsSync(typesNode)) symlinkSync(join(root, 'node_modules', '@types', 'node'), typesNode, 'dir')
  writeFileSync(join(app, 'tsconfig.json'), JSON.stringify({
    compilerOptions: { module: 'node16', moduleResolution: 'node16', target: 'ES2022', strict: true, noEmit: true, skipLibCheck: true, types: ['node'] },
    files: ['consumer.mts', 'consumer.cts']
  }, null, 2))
  const body = `
declare module 'fastify' { interface Session { user?: { name: string } } }
const app = Fastify()
export async function start (): Promise<void> {
  await app.register(sessionSocketAuth, { authorize: (session) => session.user !== undefined, cors: { origin: true } })
  const io: Server = app.io
  io.on('connection', (socket) => {
    const name: string | undefined = socket.data.session.user?.name
    socket.emit('hello', name)
  })
  const done: Promise<void> = app.disconnectSession('id')
  await done
}
`
  writeFileSync(join(app, 'consumer.mts'), `import Fastify from 'fastify'
import type { Server } from 'socket.io'
import sessionSocketAuth, { REFUSAL_CODES } from '${pkg.name}'
export const codes: string[] = Object.keys(REFUSAL_CODES)
${body}`)
  writeFileSync(join(app, 'consumer.cts'), `import Fastify = require('fastify')
import type { Server } from 'socket.io'
import sessionSocketAuth = require('${pkg.name}')
export const codes: string[] = Object.keys(sessionSocketAuth.REFUSAL_CODES)
${body}`)
  await run(process.execPath, [tsc, '-p', 'tsconfig.json'], app)
})
