// Every private of another package that the plugin reads sits in one seam
// module (lib/upstream/), listed in docs/upstream.md. Each assumption has a
// test here twice over: it holds for the installed versions (so the day a
// release breaks it, this file says which), and when it does not hold,
// registration fails loudly with a code and a message naming it, instead of
// the plugin misbehaving later. Changed shapes are simulated on real objects
// (deleting a private), the one thing these tests cannot cause for real.
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type IncomingMessage } from 'node:http'
import Fastify, { type FastifyInstance } from 'fastify'
import fastifyCookie from '@fastify/cookie'
import fastifySession from '@fastify/session'
import { Server } from 'socket.io'
import { createAdapter } from '@socket.io/redis-adapter'
import { createClient } from 'redis'
import { readFastifySession } from '../lib/upstream/fastify-session'
import { requestOriginReader, secondaryServers } from '../lib/upstream/fastify'
import {
  acceptsEio3, engineQuery, isSocketIoServer, namespacesOf, prependEngineMiddleware, prependNamespaceMiddleware, reachesOtherNodes, recoversConnectionState
} from '../lib/upstream/socket-io'
import { SECRET } from './support/app'
import { uniquePrefix } from './support/cluster'
import { needRedis, REDIS_URL } from './support/services'

async function withSession (t: { after: (fn: () => unknown) => void }, options: Record<string, unknown> = {}): Promise<FastifyInstance> {
  const app = Fastify({ logger: false })
  t.after(() => app.close())
  await app.register(fastifyCookie)
  await app.register(fastifySession, { secret: SECRET, ...options })
  await app.ready()
  return app
}

function symbolNamed (object: object, description: string): symbol {
  for (let o: object | null = object; o !== null; o = Object.getPrototypeOf(o)) {
    const symbol = Object.getOwnPropertySymbols(o).find((s) => s.description === description)
    if (symbol !== undefined) return symbol
  }
  throw new Error(`no symbol ${description}`)
}

describe('@fastify/session (lib/upstream/fastify-session.ts)', () => {
  test('holds for the installed version: store, signer, Session class and methods, persisted hash, cookie name and prefix', async (t) => {
    const app = await withSession(t, { cookieName: 'sid', cookiePrefix: 's:' })
    const parts = readFastifySession(app)
    assert.equal(typeof parts.store.get, 'function')
    assert.equal(parts.signer.unsign('forged.value').valid, false)
    assert.equal(typeof parts.Session, 'function')
    assert.equal(typeof parts.persistedHashKey, 'symbol')
    assert.equal(parts.cookieName, 'sid')
    assert.equal(parts.cookiePrefix, 's:')
    for (const name of ['save', 'isSaved'] as const) assert.equal(typeof parts.methods[name], 'function')
  })

  test('without a prefix, the prefix reads as empty', async (t) => {
    const parts = readFastifySession(await withSession(t))
    assert.equal(parts.cookieName, 'sessionId')
    assert.equal(parts.cookiePrefix, '')
  })

  test('an onRequest hook that is not handleSession any more fails registration, naming it', async (t) => {
    const app = await withSession(t)
    const hooks = (app as unknown as Record<symbol, { onRequest: Array<(...args: unknown[]) => void> }>)[symbolNamed(app, 'fastify.hooks')]
    const index = hooks.onRequest.findIndex((fn) => fn.name === 'handleSession')
    assert.ok(index >= 0, 'the installed @fastify/session adds handleSession')
    const original = hooks.onRequest[index]
    hooks.onRequest[index] = (...args: unknown[]) => original(...args)
    t.after(() => { hooks.onRequest[index] = original })
    assert.throws(() => readFastifySession(app), { code: 'FST_SESSION_SOCKET_AUTH_UNSUPPORTED_SESSION', message: /handleSession/ })
  })

  test('a Session without the symbols the seam reads fails registration, naming what is missing', async (t) => {
    const app = await withSession(t)
    const probe: { session: Record<symbol, unknown> | null } = { session: null }
    app.decryptSession('', probe, () => {})
    // The next Session built lacks its store symbol, as if @fastify/session renamed it.
    const storeSymbol = symbolNamed(probe.session as object, 'sessionStore')
    const original = app.decryptSession
    ;(app as unknown as { decryptSession: unknown }).decryptSession = (id: string, request: { session: unknown }, done: () => void) => {
      original.call(app, id, request, done)
      delete (request.session as Record<symbol, unknown>)[storeSymbol]
    }
    t.after(() => { (app as unknown as { decryptSession: unknown }).decryptSession = original })
    assert.throws(() => readFastifySession(app), { code: 'FST_SESSION_SOCKET_AUTH_UNSUPPORTED_SESSION', message: /store not found/ })
  })
})

describe('Fastify (lib/upstream/fastify.ts)', () => {
  test('holds for the installed version: the Request getters read host and protocol, trustProxy included', async (t) => {
    const plain = Fastify()
    const proxied = Fastify({ trustProxy: true })
    t.after(() => Promise.all([plain.close(), proxied.close()]))
    const request = { headers: { host: 'app.test', 'x-forwarded-host': 'public.test', 'x-forwarded-proto': 'https' }, socket: { remoteAddress: '127.0.0.1' } } as unknown as IncomingMessage
    assert.deepEqual(requestOriginReader(plain)(request), { protocol: 'http', host: 'app.test' })
    assert.deepEqual(requestOriginReader(proxied)(request), { protocol: 'https', host: 'public.test' })
  })

  test('holds for the installed version: the extra servers of listen({ host: "localhost" }) are found (none here)', async (t) => {
    const app = Fastify()
    t.after(() => app.close())
    await app.listen({ port: 0, host: '127.0.0.1' })
    assert.deepEqual(secondaryServers(app), [])
  })

  test('an instance without the Request class or the server list fails, naming it', () => {
    const bare = Object.create(null) as FastifyInstance
    assert.throws(() => requestOriginReader(bare), { code: 'FST_SESSION_SOCKET_AUTH_UNSUPPORTED_UPSTREAM', message: /fastify\.Request/ })
    assert.throws(() => secondaryServers(bare), { code: 'FST_SESSION_SOCKET_AUTH_UNSUPPORTED_UPSTREAM', message: /fastify\.serverBindings/ })
  })
})

/** A Socket.IO server attached to an HTTP server that never listens: it has its Engine.IO. */
function attachedServer (t: { after: (fn: () => unknown) => void }, options: ConstructorParameters<typeof Server>[1] = {}): Server {
  const io = new Server(createServer(), options)
  t.after(() => new Promise<void>((resolve) => { io.close(() => resolve()) }))
  return io
}

describe('Socket.IO and Engine.IO (lib/upstream/socket-io.ts)', () => {
  test('holds for the installed version: namespaces, middleware lists, options and the in-memory adapter', (t) => {
    const io = attachedServer(t)
    assert.deepEqual(namespacesOf(io).map((nsp) => nsp.name), ['/'])
    const first = (): void => {}
    prependNamespaceMiddleware(io.of('/'), first)
    assert.equal((io.of('/') as unknown as { _fns: unknown[] })._fns[0], first)
    const gate = (): void => {}
    io.engine.use(() => {})
    prependEngineMiddleware(io, gate)
    assert.equal((io.engine as unknown as { middlewares: unknown[] }).middlewares[0], gate)
    assert.equal(recoversConnectionState(io), false)
    assert.equal(recoversConnectionState(attachedServer(t, { connectionStateRecovery: {} })), true)
    assert.equal(acceptsEio3(io), false)
    assert.equal(acceptsEio3(attachedServer(t, { allowEIO3: true })), true)
    assert.equal(isSocketIoServer(io), true)
    assert.equal(isSocketIoServer({ of () {} }), false)
    assert.equal(reachesOtherNodes(io.of('/').adapter), false)
  })

  test('holds for the installed version: the Redis adapter reaches other nodes', async (t) => {
    if (!await needRedis(t)) return
    const pub = createClient({ url: REDIS_URL })
    const sub = pub.duplicate()
    await Promise.all([pub.connect(), sub.connect()])
    t.after(() => Promise.all([pub.close(), sub.close()]))
    const io = attachedServer(t, { adapter: createAdapter(pub, sub, { key: uniquePrefix('seams') }) })
    assert.equal(reachesOtherNodes(io.of('/').adapter), true)
  })

  test('holds for the installed version: Engine.IO has parsed the query when its middleware runs; without it, the URL is parsed', async (t) => {
    const io = attachedServer(t)
    const seen: Array<Readonly<Record<string, unknown>>> = []
    io.engine.use((request: IncomingMessage, _response: unknown, next: () => void) => {
      seen.push(engineQuery(request), (request as { _query?: Record<string, unknown> })._query ?? {})
      next()
    })
    await new Promise<void>((resolve) => io.httpServer.listen(0, '127.0.0.1', resolve))
    const { port } = io.httpServer.address() as { port: number }
    await fetch(`http://127.0.0.1:${port}/socket.io/?EIO=4&transport=polling&j=0`)
    assert.equal(seen[0]?.j, '0')
    assert.deepEqual(seen[0], seen[1], 'read from Engine.IO\'s parsed query')
    assert.deepEqual(engineQuery({ url: '/socket.io/?EIO=4&j=1' } as IncomingMessage), { EIO: '4', j: '1' })
  })

  test('a namespace or engine without the private lists fails, naming them', () => {
    const io = new Server(createServer())
    const nsp = io.of('/')
    delete (nsp as unknown as { _fns?: unknown })._fns
    assert.throws(() => prependNamespaceMiddleware(nsp, () => {}), { code: 'FST_SESSION_SOCKET_AUTH_UNSUPPORTED_UPSTREAM', message: /_fns/ })
    delete (io as unknown as { _nsps?: unknown })._nsps
    assert.throws(() => namespacesOf(io), { code: 'FST_SESSION_SOCKET_AUTH_UNSUPPORTED_UPSTREAM', message: /_nsps/ })
    delete (io.engine as unknown as { middlewares?: unknown }).middlewares
    assert.throws(() => prependEngineMiddleware(io, () => {}), { code: 'FST_SESSION_SOCKET_AUTH_UNSUPPORTED_UPSTREAM', message: /middleware list/ })
    // Broken on purpose, so not closed through Socket.IO: nothing listens, nothing is left running.
    io.engine.close()
  })
})
