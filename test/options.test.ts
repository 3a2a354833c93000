import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import Fastify, { type FastifyInstance } from 'fastify'
import { createRequire } from 'node:module'
import type { FastifyPluginCallback } from 'fastify'
import fastifyCookie from '@fastify/cookie'
import fastifySession from '@fastify/session'
import sessionSocketAuth from '../lib/index'
import { SECRET, connect, connected, readyError, startApp } from './support/app'

const TIMEOUT = { timeout: 60_000 }

/** Registers the plugin with raw (possibly wrong) options and returns the start-up error. */
async function startupError (options: unknown, { cookie = true, session = true } = {}): Promise<Error & { code?: string }> {
  return readyError(async (app) => {
    if (cookie) await app.register(fastifyCookie)
    if (session) await app.register(fastifySession, { secret: SECRET, cookie: { secure: false } })
    app.register(sessionSocketAuth, options as never)
  }, `registration with ${JSON.stringify(options)}`)
}

describe('options are validated at registration', TIMEOUT, () => {
  test('an unknown option key fails, naming the key', async () => {
    const error = await startupError({ cookieNmae: 'sid' })
    assert.match(error.message, /unknown option "cookieNmae"/)
    assert.equal(error.code, 'FST_SESSION_SOCKET_AUTH_INVALID_OPTION')
    // ...and it lists what is valid.
    assert.match(error.message, /cookieName/)
    const another = await startupError({ authorise: () => true })
    assert.match(another.message, /"authorise"/)
  })

  const wrong: Array<[string, Record<string, unknown>, RegExp]> = [
    ['cookieName as a number', { cookieName: 42 }, /"cookieName" must be a string, got number/],
    ['an empty cookieName', { cookieName: '' }, /"cookieName" must not be empty/],
    ['a cookieName other than @fastify/session\'s', { cookieName: 'sid' }, /"cookieName" is read from @fastify\/session now \("sessionId"\), and "sid" differs: remove the option/],
    ['a cookiePrefix other than @fastify/session\'s', { cookiePrefix: 's:' }, /"cookiePrefix" is read from @fastify\/session now \(""\), and "s:" differs/],
    ['cookiePrefix as a boolean', { cookiePrefix: true }, /"cookiePrefix" must be a string/],
    ['authorize as a string', { authorize: 'admin' }, /"authorize" must be a function, got the string "admin"/],
    ['namespaces with a non-function rule', { namespaces: { '/admin': true } }, /rule for namespace "\/admin" must be a function/],
    ['namespaces as an array', { namespaces: [() => true] }, /"namespaces" must be an object/],
    ['allowedOrigins "*"', { allowedOrigins: '*' }, /"allowedOrigins" must be an array of origins or a function/],
    ['allowedOrigins ["*"]', { allowedOrigins: ['*'] }, /"allowedOrigins" entries must be exact origins/],
    ['allowedOrigins with a path', { allowedOrigins: ['https://app.example.com/chat'] }, /exact origins .* got "https:\/\/app.example.com\/chat"/],
    ['storeTimeout -1', { storeTimeout: -1 }, /"storeTimeout" must be a number of milliseconds greater than 0/],
    ['storeTimeout as a string', { storeTimeout: '5000' }, /"storeTimeout" must be a number/],
    ['revalidateInterval "x"', { revalidateInterval: 'x' }, /"revalidateInterval" must be a number of milliseconds greater than 0, or false/],
    ['revalidateInterval true', { revalidateInterval: true }, /"revalidateInterval"/],
    ['keepAlive as a string', { keepAlive: 'yes' }, /"keepAlive" must be a boolean/],
    ['keepAliveInterval 0', { keepAliveInterval: 0 }, /"keepAliveInterval" must be a number/],
    ['preClose as an object', { preClose: {} }, /"preClose" must be a function/],
    // Refused whatever its shape: test/recovery.test.ts says why.
    ['connectionStateRecovery', { connectionStateRecovery: { skipMiddlewares: false } }, /"connectionStateRecovery" is not supported/]
  ]
  for (const [title, options, message] of wrong) {
    test(`${title} fails with a clear message`, async () => {
      const error = await startupError(options)
      assert.match(error.message, message)
      assert.match(error.message, /^fastify-session-socket-auth: /)
      assert.equal(error.code, 'FST_SESSION_SOCKET_AUTH_INVALID_OPTION')
    })
  }

  test('revalidateInterval false and Fastify\'s own register options are accepted', async (t) => {
    const app = Fastify({ logger: false })
    t.after(() => app.close())
    await app.register(fastifyCookie)
    await app.register(fastifySession, { secret: SECRET, cookie: { secure: false } })
    await app.register(sessionSocketAuth, { revalidateInterval: false, logLevel: 'warn' } as never)
    await app.ready()
    assert.ok(app.io)
  })
})

describe('required plugins', TIMEOUT, () => {
  test('without @fastify/session, start-up fails naming it and showing the order', async () => {
    const error = await startupError({}, { session: false })
    assert.equal(error.code, 'FST_SESSION_SOCKET_AUTH_NO_SESSION_PLUGIN')
    assert.match(error.message, /register @fastify\/session before this plugin/)
    assert.match(error.message, /fastify-session-socket-auth/)
  })

  test('with @fastify/secure-session instead of @fastify/session, start-up says it is not supported and why', async (t) => {
    // Loaded untyped: its declarations retype request.session for the whole project.
    const fastifySecureSession = createRequire(__filename)('@fastify/secure-session') as FastifyPluginCallback<{ key: Buffer, cookie: { path: string } }>
    const app = Fastify({ logger: false })
    t.after(() => app.close().catch(() => {}))
    await app.register(fastifyCookie)
    await app.register(fastifySecureSession, { key: Buffer.alloc(32, 7), cookie: { path: '/' } })
    const error = await app.register(sessionSocketAuth).then(() => undefined, (err: Error & { code?: string }) => err)
    assert.equal(error?.code, 'FST_SESSION_SOCKET_AUTH_SECURE_SESSION')
    assert.match(error?.message ?? '', /@fastify\/secure-session is not supported: .*no store/)
  })

  test('without @fastify/cookie (and @fastify/session), start-up fails naming @fastify/cookie', async () => {
    const error = await startupError({}, { cookie: false, session: false })
    assert.match(error.message, /@fastify\/cookie/)
    assert.match(error.message, /fastify-session-socket-auth/)
  })

  test('registered before @fastify/session in the same scope, start-up fails naming it', async () => {
    const app = Fastify({ logger: false })
    app.register(fastifyCookie)
    app.register(sessionSocketAuth)
    app.register(fastifySession, { secret: SECRET })
    await assert.rejects(async () => { await app.ready() }, /@fastify\/session/)
    await app.close().catch(() => {})
  })
})

describe('Socket.IO options pass through', TIMEOUT, () => {
  test("path '/ws' moves the endpoint; the guard still applies there", async (t) => {
    const app = await startApp({ auth: { path: '/ws' } })
    t.after(() => app.close())
    const cookie = await app.login()
    for (const transport of ['polling', 'websocket'] as const) {
      const socket = await connected(app.url, { cookie, transports: [transport], extra: { path: '/ws' } })
      socket.close()
      const refused = await connect(app.url, { transports: [transport], extra: { path: '/ws' } })
      refused.socket.close()
      assert.equal(refused.ok ? 'admitted' : refused.code, 'SESSION_REQUIRED')
      // Nothing answers on the default path any more.
      const old = await connect(app.url, { cookie, transports: [transport] })
      old.socket.close()
      assert.equal(old.ok, false)
      assert.notEqual(old.ok ? '' : old.code, 'SESSION_REQUIRED')
    }
    assert.equal(app.app.io.path(), '/ws')
  })

  test("transports ['websocket'] is applied: a polling-only client cannot connect", async (t) => {
    const app = await startApp({ auth: { transports: ['websocket'] } })
    t.after(() => app.close())
    const cookie = await app.login()
    const socket = await connected(app.url, { cookie, transports: ['websocket'] })
    socket.close()
    const polling = await connect(app.url, { cookie, transports: ['polling'] })
    polling.socket.close()
    assert.equal(polling.ok, false)
  })

  test('other ServerOptions reach Socket.IO and Engine.IO (pingInterval, maxHttpBufferSize, connectTimeout)', async (t) => {
    const app: FastifyInstance = Fastify({ logger: false })
    t.after(() => app.close())
    await app.register(fastifyCookie)
    await app.register(fastifySession, { secret: SECRET })
    await app.register(sessionSocketAuth, { pingInterval: 1234, maxHttpBufferSize: 4321, connectTimeout: 2222 })
    const engineOpts = (app.io.engine as unknown as { opts: Record<string, unknown> }).opts
    assert.equal(engineOpts.pingInterval, 1234)
    assert.equal(engineOpts.maxHttpBufferSize, 4321)
    assert.equal((app.io as unknown as { _connectTimeout: number })._connectTimeout, 2222)
  })
})
