import { createServer, type IncomingMessage } from 'node:http'
import { Session as Inspector } from 'node:inspector'
import type { AddressInfo } from 'node:net'
import { writeFileSync } from 'node:fs'
import { setTimeout as sleep, setImmediate as nextTurn } from 'node:timers/promises'
import v8 from 'node:v8'
import Fastify, { type FastifyInstance } from 'fastify'
import fastifyCookie from '@fastify/cookie'
import fastifySession, { MemoryStore, type FastifySessionObject, type SessionStore } from '@fastify/session'
import { Server, type ServerOptions } from 'socket.io'
import fastifySessionSocketAuth from '../lib/index'
import { serve } from './ipc'

/**
 * One server variant in a process of its own. run.ts reads this process's own
 * CPU, GC and heap accounting around each batch, so the client's work is not in it.
 */
export type Variant = 'bare' | 'plugin' | 'rule' | 'naive' | 'express' | 'forged' | 'users'
export interface Spec { variant: Variant, redis?: { url: string, prefix: string, adapterKey: string } }
export interface Window { cpuUs: number, gcUs: number, gcs: number, allocatedBytes: number, storeCalls: number }
interface User { id: string, role: string }

const SECRET = 'bench-secret-with-at-least-32-characters!'
const userOf = (session: unknown): User | undefined => (session as { user?: User } | undefined)?.user
let storeCalls = 0

/** Counts every call that reaches the session store; the store still does the work. */
function counted<S extends object> (store: S): S {
  const methods = store as unknown as Record<string, (...args: unknown[]) => unknown>
  for (const name of ['get', 'set', 'destroy', 'touch']) {
    const original = methods[name]
    if (typeof original === 'function') methods[name] = function (this: unknown, ...args) { storeCalls++; return original.apply(this, args) }
  }
  return store
}

/** What an app author writes without this plugin: let @fastify/session decrypt the cookie, check the user. */
function naiveDecryptSession (app: FastifyInstance): Parameters<Server['use']>[0] {
  return (socket, next) => {
    const header = socket.request.headers.cookie
    const value = header === undefined ? undefined : app.parseCookie(header).sessionId
    if (value === undefined) return next(new Error('unauthorized'))
    const holder: { session?: FastifySessionObject } = {}
    app.decryptSession(value, holder, (err?: Error) => {
      if (err) return next(err)
      if (userOf(holder.session) === undefined) return next(new Error('unauthorized'))
      socket.data.session = holder.session
      next()
    })
  }
}

async function startFastify ({ variant, redis }: Spec): Promise<{ url: string, io: Server, close: () => Promise<void> }> {
  const app = Fastify({ forceCloseConnections: true })
  const ioOptions: Partial<ServerOptions> = {}
  const cleanup: Array<() => Promise<unknown>> = []
  let store: SessionStore = counted(new MemoryStore())
  if (redis !== undefined) { // two nodes of one app: connect-redis and the Redis adapter
    const [{ createClient }, { RedisStore }, { createAdapter }] = await Promise.all([import('redis'), import('connect-redis'), import('@socket.io/redis-adapter')])
    const [client, pub, sub] = [0, 1, 2].map(() => createClient({ url: redis.url }))
    await Promise.all([client, pub, sub].map((c) => c?.connect()))
    const redisStore = new RedisStore({ client, prefix: redis.prefix })
    store = counted(redisStore) as unknown as SessionStore
    ioOptions.adapter = createAdapter(pub, sub, { key: redis.adapterKey })
    cleanup.push(() => redisStore.clear(), () => Promise.all([client, pub, sub].map((c) => c?.close())))
  }
  await app.register(fastifyCookie)
  await app.register(fastifySession, { secret: SECRET, cookie: { secure: false, maxAge: 3_600_000 }, saveUninitialized: false, store })

  let io: Server
  if (variant === 'plugin' || variant === 'forged' || variant === 'rule' || variant === 'users') {
    await app.register(fastifySessionSocketAuth, {
      ...ioOptions,
      ...(variant === 'rule' ? { authorize: (session) => userOf(session) !== undefined } : {}),
      ...(variant === 'users'
        ? {
            loadUser: (session) => userOf(session),
            identify: (session) => userOf(session)?.id,
            namespaces: { '/admin': (_session, socket) => (socket.data.user as User | undefined)?.role === 'admin' }
          }
        : {})
    })
    io = app.io
    if (variant === 'users') io.of('/admin').on('connection', () => {})
  } else {
    io = new Server(app.server, ioOptions)
    app.addHook('preClose', (done) => { io.local.disconnectSockets(true); done() })
    app.addHook('onClose', (_app, done) => { io.close(() => done()) })
    if (variant === 'naive') io.use(naiveDecryptSession(app))
  }
  io.on('connection', () => {})

  app.post<{ Querystring: { id?: string, role?: string } }>('/login', async (request) => {
    await request.session.regenerate()
    request.session.set('user' as never, { id: request.query.id ?? Math.random().toString(36).slice(2), role: request.query.role ?? 'user' } as never)
    return { ok: true }
  })
  app.post('/logout', async (request) => { await request.session.destroy(); return { ok: true } })
  app.post('/demote', async (request) => { request.session.set('user' as never, { ...userOf(request.session), role: 'user' } as never); return { ok: true } })
  app.post<{ Querystring: { id: string } }>('/disconnect-user', async (request) => { await app.disconnectUser(request.query.id); return { ok: true } })
  await app.listen({ port: 0, host: '127.0.0.1' })
  return {
    url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`,
    io,
    close: async () => { await app.close(); for (const step of cleanup) await step() }
  }
}

/** The Socket.IO documentation's recipe: express-session shared with Engine.IO. */
async function startExpress (): Promise<{ url: string, io: Server, close: () => Promise<void> }> {
  const [{ default: express }, { default: expressSession }] = await Promise.all([import('express'), import('express-session')])
  const sessions = expressSession({ secret: SECRET, resave: false, saveUninitialized: false, store: counted(new expressSession.MemoryStore()), cookie: { maxAge: 3_600_000 } })
  const app = express()
  app.use(sessions)
  app.post('/login', (req, res, next) => req.session.regenerate((err) => {
    if (err) return next(err)
    ;(req.session as unknown as { user: User }).user = { id: String(req.query.id ?? Math.random()), role: 'user' }
    res.json({ ok: true })
  }))
  const server = createServer(app)
  const io = new Server(server)
  io.engine.use(sessions)
  io.use((socket, next) => next(userOf((socket.request as IncomingMessage & { session?: unknown }).session) === undefined ? new Error('unauthorized') : undefined))
  io.on('connection', () => {})
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    io,
    close: async () => { io.local.disconnectSockets(true); server.closeAllConnections(); await io.close() }
  }
}

async function main (): Promise<void> {
  const spec = JSON.parse(process.argv[2] as string) as Spec
  const server = spec.variant === 'express' ? await startExpress() : await startFastify(spec)
  const gc = globalThis.gc as () => void
  const inspector = new Inspector()
  inspector.connect()
  const post = (method: string, params?: object): Promise<{ profile?: object }> =>
    new Promise((resolve, reject) => inspector.post(method, params, (err, result) => err ? reject(err) : resolve(result as { profile?: object })))

  let cpu0 = process.cpuUsage()
  let heap0 = 0
  let calls0 = 0
  let profiler = new v8.GCProfiler()
  serve({
    // A measured window: no forced GC anywhere near it; GCs that happen are accounted by v8.GCProfiler.
    begin: () => {
      profiler = new v8.GCProfiler()
      profiler.start()
      calls0 = storeCalls
      heap0 = v8.getHeapStatistics().used_heap_size
      cpu0 = process.cpuUsage()
    },
    end: async (): Promise<Window> => {
      await sleep(20) // what the last answers set off (binding a socket to its session) belongs to the batch
      const cpu = process.cpuUsage(cpu0)
      const heap1 = v8.getHeapStatistics().used_heap_size
      const gcs = profiler.stop().statistics
      // Bytes allocated = growth of the used heap + what every GC in the window reclaimed.
      const reclaimed = gcs.reduce((sum, g) => sum + g.beforeGC.heapStatistics.usedHeapSize - g.afterGC.heapStatistics.usedHeapSize, 0)
      return { cpuUs: cpu.user + cpu.system, gcUs: gcs.reduce((sum, g) => sum + g.cost, 0), gcs: gcs.length, allocatedBytes: heap1 - heap0 + reclaimed, storeCalls: storeCalls - calls0 }
    },
    clients: async ({ count, timeoutMs }: { count: number, timeoutMs: number }) => {
      for (const deadline = Date.now() + timeoutMs; server.io.engine.clientsCount !== count && Date.now() < deadline;) await sleep(5)
      return server.io.engine.clientsCount
    },
    // Memory figures only, outside every CPU window: several passes, as weak maps and finalizers free in later ones.
    memory: async () => {
      for (let i = 0; i < 4; i++) { gc(); await nextTurn() }
      return process.memoryUsage()
    },
    profileStart: async () => { await post('Profiler.enable'); await post('Profiler.setSamplingInterval', { interval: 250 }); await post('Profiler.start') },
    profileStop: async (file: string) => { writeFileSync(file, JSON.stringify((await post('Profiler.stop')).profile)) },
    exit: async () => { await server.close(); setImmediate(() => process.exit(0)) }
  }, { url: server.url })
}

main().catch((error: unknown) => { console.error('bench server:', error); process.exit(1) })
