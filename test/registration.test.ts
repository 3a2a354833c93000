import { describe, test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import type { AddressInfo } from 'node:net'
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify'
import fastifyCookie from '@fastify/cookie'
import fastifySession from '@fastify/session'
import { io as ioClient } from 'socket.io-client'
import sessionSocketAuth from '../lib/index'
import { SECRET, connected, readyError, refusedWith } from './support/app'

// One Socket.IO server per HTTP server, registered in the scope of
// @fastify/session: a second registration (same instance or a sibling scope)
// fails at start-up with ALREADY_REGISTERED instead of attaching a second
// Engine.IO server that crashes the process on the first WebSocket upgrade;
// a registration outside @fastify/session's scope fails with WRONG_SCOPE.

const TIMEOUT = { timeout: 60_000 }
// Set in the child process that runs a double registration (it may crash).
const CHILD_ENV = 'FSSA_REGISTRATION_CHILD'

interface ScenarioResult {
  registration: { code?: string, message: string } | 'ok'
  refusedWithoutCookie: string
  withCookie: string
}

type Scenario = 'same-instance' | 'siblings'

/** The plugin registered twice: twice at the root, or in two sibling scopes each with its own @fastify/cookie and @fastify/session. */
function registerTwice (app: FastifyInstance, scenario: Scenario): void {
  if (scenario === 'same-instance') {
    app.register(fastifyCookie)
    app.register(fastifySession, { secret: SECRET, cookie: { secure: false } })
    app.register(sessionSocketAuth)
    app.register(sessionSocketAuth)
    app.post('/login-first', async (request) => {
      request.session.user = { name: 'first', role: 'user' }
      return { ok: true }
    })
    return
  }
  for (const name of ['first', 'second']) {
    app.register(async (child) => {
      await child.register(fastifyCookie)
      await child.register(fastifySession, { secret: SECRET, cookie: { secure: false } })
      await child.register(sessionSocketAuth)
      child.post(`/login-${name}`, async (request) => {
        request.session.user = { name, role: 'user' }
        return { ok: true }
      })
    })
  }
}

/** What the child prints: how registration went, then what WebSocket clients get on the shared HTTP server. */
async function runScenario (scenario: Scenario): Promise<ScenarioResult> {
  const app = Fastify({ logger: false, forceCloseConnections: true })
  registerTwice(app, scenario)
  let registration: ScenarioResult['registration'] = 'ok'
  try {
    await app.listen({ port: 0, host: '127.0.0.1' })
  } catch (error) {
    const err = error as Error & { code?: string }
    registration = { code: err.code, message: err.message }
    // Fastify will not boot; serve its HTTP server by hand to see what the
    // first registration left attached to it.
    await new Promise<void>((resolve) => app.server.listen(0, '127.0.0.1', resolve))
  }
  const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
  const attempt = (cookie?: string): Promise<string> => new Promise((resolve) => {
    const socket = ioClient(url, {
      transports: ['websocket'],
      reconnection: false,
      forceNew: true,
      timeout: 5000,
      extraHeaders: cookie === undefined ? {} : { cookie }
    })
    socket.once('connect', () => { socket.close(); resolve('connect') })
    socket.once('connect_error', (err) => { socket.close(); resolve(`connect_error ${err.message}`) })
  })
  const refusedWithoutCookie = await attempt()
  const login = await fetch(`${url}/login-first`, { method: 'POST' })
  const setCookie = login.headers.getSetCookie().find((line) => line.startsWith('sessionId='))
  const withCookie = setCookie === undefined ? `no cookie (login ${login.status})` : await attempt(setCookie.slice(0, setCookie.indexOf(';')))
  await app.close().catch(() => {})
  if (app.server.listening) await new Promise((resolve) => app.server.close(resolve))
  return { registration, refusedWithoutCookie, withCookie }
}

const childScenario = process.env[CHILD_ENV]
if (childScenario === 'same-instance' || childScenario === 'siblings') {
  runScenario(childScenario).then((result) => {
    process.stdout.write(`${JSON.stringify(result)}\n`)
    process.exit(0)
  }, (error: unknown) => {
    process.stderr.write(`${String(error)}\n`)
    process.exit(2)
  })
} else {
  defineTests()
}

/** Runs a double-registration scenario in a child process (it may crash there). */
async function runChild (scenario: Scenario): Promise<{ exitCode: number | null, stdout: string, stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', __filename], {
    env: { ...process.env, [CHILD_ENV]: scenario },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  const exitCode = await new Promise<number | null>((resolve) => {
    const killer = setTimeout(() => child.kill('SIGKILL'), 30_000)
    child.once('exit', (code) => {
      clearTimeout(killer)
      resolve(code)
    })
  })
  return { exitCode, stdout, stderr }
}

/** POST /login: signs `ada` in. */
async function loginAda (request: FastifyRequest): Promise<{ ok: true }> {
  request.session.user = { name: 'ada', role: 'user' }
  return { ok: true }
}

/**
 * Builds an app with `build` (which must give it POST /login), listens, and
 * checks the guard: a socket without a cookie is refused SESSION_REQUIRED, one
 * with the login's cookie is admitted.
 */
async function startsAndGuards (t: TestContext, build: (app: FastifyInstance) => Promise<void>): Promise<void> {
  const app = Fastify({ logger: false, forceCloseConnections: true })
  t.after(() => app.close())
  await build(app)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
  assert.equal((await refusedWith(url)).code, 'SESSION_REQUIRED')
  const login = await app.inject({ method: 'POST', url: '/login' })
  const cookie = login.cookies.find((c) => c.name === 'sessionId')
  assert.ok(cookie !== undefined)
  const socket = await connected(url, { cookie: `sessionId=${encodeURIComponent(cookie.value)}` })
  socket.close()
}

function defineTests (): void {
  describe('one registration per HTTP server', TIMEOUT, () => {
    const cases: Array<[Scenario, string]> = [
      ['same-instance', 'registering twice on the same instance'],
      ['siblings', 'registering in two sibling scopes (each with its own @fastify/cookie and @fastify/session)']
    ]
    for (const [scenario, title] of cases) {
      test(`${title} fails at start-up with ALREADY_REGISTERED; the process survives and the first registration still serves WebSocket clients`, async () => {
        // In a child process: before the fix, two sibling registrations made the first
        // WebSocket upgrade throw "server.handleUpgrade() was called more than once
        // with the same socket", which killed the process.
        const { exitCode, stdout, stderr } = await runChild(scenario)
        assert.doesNotMatch(stderr, /handleUpgrade\(\) was called more than once/, 'two Engine.IO servers answered one upgrade')
        assert.equal(exitCode, 0, `the child process died:\n${stderr}`)
        const result = JSON.parse(stdout.trim()) as ScenarioResult
        assert.notEqual(result.registration, 'ok', 'the second registration was accepted')
        assert.equal(typeof result.registration === 'object' && result.registration.code, 'FST_SESSION_SOCKET_AUTH_ALREADY_REGISTERED')
        // The first registration's guard answers over WebSocket, and admits its own session.
        assert.equal(result.refusedWithoutCookie, 'connect_error SESSION_REQUIRED')
        assert.equal(result.withCookie, 'connect')
      })
    }

    test('registering twice on the same instance: the error is the plugin\'s own, not a Fastify decorator clash', async () => {
      const error = await readyError((app) => {
        app.register(fastifyCookie)
        app.register(fastifySession, { secret: SECRET, cookie: { secure: false } })
        app.register(sessionSocketAuth)
        app.register(sessionSocketAuth)
      })
      assert.equal(error.code, 'FST_SESSION_SOCKET_AUTH_ALREADY_REGISTERED')
      assert.match(error.message, /^fastify-session-socket-auth: /)
    })
  })

  describe('registered in the scope of @fastify/session', TIMEOUT, () => {
    test('inside a child scope while @fastify/session is at the root: fails at start-up with WRONG_SCOPE', async () => {
      const error = await readyError((app) => {
        app.register(fastifyCookie)
        app.register(fastifySession, { secret: SECRET, cookie: { secure: false } })
        app.register(async (child) => { await child.register(sessionSocketAuth) })
      })
      assert.equal(error.code, 'FST_SESSION_SOCKET_AUTH_WRONG_SCOPE')
    })

    test('at the root with @fastify/session at the root: starts and guards (sanity)', async (t) => {
      await startsAndGuards(t, async (app) => {
        await app.register(fastifyCookie)
        await app.register(fastifySession, { secret: SECRET, cookie: { secure: false } })
        await app.register(sessionSocketAuth)
        app.post('/login', loginAda)
      })
    })

    test('inside one child scope together with its own @fastify/session: starts and guards (sanity)', async (t) => {
      await startsAndGuards(t, async (app) => {
        await app.register(async (child) => {
          await child.register(fastifyCookie)
          await child.register(fastifySession, { secret: SECRET, cookie: { secure: false } })
          await child.register(sessionSocketAuth)
          child.post('/login', loginAda)
        })
      })
    })
  })
}
