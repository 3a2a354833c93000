// The built module's export surface: CommonJS require(), ESM import(), the
// fastify-plugin metadata and the named helpers. lib/ is compiled with the
// package's own build config (tsconfig.build.json, what `npm run build` runs)
// into a private directory under .tmp/, so that a build running elsewhere
// (`npm run build` wipes dist/) cannot race this file. Node resolves its
// dependencies from the repository's node_modules, as it would from dist/.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { randomBytes } from 'node:crypto'
import { pathToFileURL } from 'node:url'
import Fastify from 'fastify'
import fastifyCookie from '@fastify/cookie'
import fastifySession from '@fastify/session'
import { Server } from 'socket.io'
import { SECRET } from './support/app'

const root = resolve(__dirname, '..')
const TIMEOUT = { timeout: 180_000 }
const CODES = ['SESSION_REQUIRED', 'SESSION_INVALID', 'FORBIDDEN', 'USER_REQUIRED', 'USER_UNAVAILABLE', 'ORIGIN_NOT_ALLOWED', 'JSONP_NOT_ALLOWED', 'SESSION_STORE_UNAVAILABLE']

const childEnv: NodeJS.ProcessEnv = { ...process.env }
delete childEnv.NODE_OPTIONS
delete childEnv.NODE_V8_COVERAGE

function run (command: string, args: string[]): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    execFile(command, args, { cwd: root, env: childEnv, timeout: 120_000 }, (error, stdout, stderr) => {
      if (error !== null) reject(new Error(`${command} ${args.join(' ')} failed: ${error.message}\n${stdout}\n${stderr}`))
      else resolvePromise(stdout)
    })
  })
}

interface Built {
  (...args: unknown[]): unknown
  default: unknown
  fastifySessionSocketAuth: unknown
  sessionSocketAuth: unknown
  REFUSAL_CODES: Record<string, string>
  REVOKED_EVENT: string
  sessionRoom: (sessionId: string) => string
  userRoom: (userId: string | number) => string
  [key: symbol]: unknown
}

let outDir: string
let built: Built

describe('the built module', TIMEOUT, () => {
  before(async () => {
    mkdirSync(join(root, '.tmp'), { recursive: true })
    outDir = mkdtempSync(join(root, '.tmp', 'exports-'))
    await run(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json', '--outDir', outDir])
    built = require(join(outDir, 'index.js')) as Built
  })

  after(() => {
    if (outDir !== undefined) rmSync(outDir, { recursive: true, force: true })
  })

  test('package.json points at the build output', () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { main: string, types: string }
    assert.equal(pkg.main, 'dist/index.js')
    assert.equal(pkg.types, 'dist/index.d.ts')
    // dist/ is the build's outDir: the same file names exist in our build.
    assert.ok(existsSync(join(outDir, 'index.js')))
    assert.ok(existsSync(join(outDir, 'index.d.ts')))
    assert.match(readFileSync(join(outDir, 'index.d.ts'), 'utf8'), /export = fastifySessionSocketAuth/)
  })

  test('CommonJS: module.exports is the plugin, with .default, .fastifySessionSocketAuth and the deprecated .sessionSocketAuth being itself', () => {
    assert.equal(typeof built, 'function')
    assert.equal(built.default, built)
    assert.equal(built.fastifySessionSocketAuth, built)
    assert.equal(built.sessionSocketAuth, built)
  })

  test('fastify-plugin metadata: name, fastify 5.x, dependencies', () => {
    const meta = built[Symbol.for('plugin-meta')] as { name?: string, fastify?: string, dependencies?: string[] }
    assert.equal(meta.name, 'fastify-session-socket-auth')
    assert.equal(meta.fastify, '5.x')
    assert.deepEqual(meta.dependencies, ['@fastify/cookie'])
    assert.equal(built[Symbol.for('skip-override')], true, 'not encapsulated: fastify.io reaches the whole app')
  })

  test('userRoom never contains the raw user id, is stable per user, and differs from session rooms', () => {
    assert.equal(typeof built.userRoom, 'function')
    const room = built.userRoom(42)
    assert.equal(built.userRoom('42'), room, 'a number and its string name one user')
    assert.match(room, /^user:[A-Za-z0-9_-]{22}$/)
    assert.ok(!room.includes('42'))
    assert.notEqual(built.userRoom('x'), built.sessionRoom('x').replace('session:', 'user:'))
  })

  test('REFUSAL_CODES, REVOKED_EVENT and sessionRoom are exported', () => {
    assert.deepEqual(Object.keys(built.REFUSAL_CODES).sort(), [...CODES].sort())
    for (const code of CODES) assert.equal(typeof built.REFUSAL_CODES[code], 'string')
    assert.equal(built.REVOKED_EVENT, 'session:revoked')
    assert.equal(typeof built.sessionRoom, 'function')
  })

  test('sessionRoom never contains the raw session id, and is stable per session', () => {
    const rooms = new Set<string>()
    for (let i = 0; i < 200; i++) {
      const id = randomBytes(24).toString('base64url')
      const room = built.sessionRoom(id)
      assert.equal(built.sessionRoom(id), room, 'the same session, the same room')
      assert.match(room, /^session:/)
      assert.ok(!room.includes(id))
      for (let at = 0; at + 8 <= id.length; at++) {
        assert.ok(!room.includes(id.slice(at, at + 8)), 'the room name carries a piece of the session id')
      }
      rooms.add(room)
    }
    assert.equal(rooms.size, 200, 'different sessions, different rooms')
  })

  test('ESM: import() gives the default export and every named export', async () => {
    const url = pathToFileURL(join(outDir, 'index.js')).href
    const code = `
      import plugin, { fastifySessionSocketAuth, sessionSocketAuth, REFUSAL_CODES, REVOKED_EVENT, sessionRoom } from ${JSON.stringify(url)}
      const ns = await import(${JSON.stringify(url)})
      console.log(JSON.stringify({
        defaultIsFunction: typeof plugin === 'function',
        namedIsDefault: fastifySessionSocketAuth === plugin && sessionSocketAuth === plugin,
        nsDefaultDefault: ns.default.default === plugin,
        codes: Object.keys(REFUSAL_CODES).sort(),
        event: REVOKED_EVENT,
        room: typeof sessionRoom === 'function' && sessionRoom('x').startsWith('session:'),
        name: plugin[Symbol.for('plugin-meta')].name
      }))`
    const output = await run(process.execPath, ['--input-type=module', '-e', code])
    assert.deepEqual(JSON.parse(output), {
      defaultIsFunction: true,
      namedIsDefault: true,
      nsDefaultDefault: true,
      codes: [...CODES].sort(),
      event: 'session:revoked',
      room: true,
      name: 'fastify-session-socket-auth'
    })
  })

  test('the built plugin registers on Fastify 5 and decorates fastify.io', async (t) => {
    const app = Fastify({ logger: false })
    t.after(() => app.close())
    await app.register(fastifyCookie)
    await app.register(fastifySession, { secret: SECRET })
    await app.register(built as never)
    await app.ready()
    assert.ok(app.io instanceof Server)
    assert.equal(typeof app.disconnectSession, 'function')
  })
})
