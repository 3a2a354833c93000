import { createServer, type IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import Fastify, { type FastifyInstance } from 'fastify'
import fastifyCookie from '@fastify/cookie'
import fastifySession, { MemoryStore, type FastifySessionObject, type SessionStore } from '@fastify/session'
import { Server, type ServerOptions } from 'socket.io'
import type { createClient } from 'redis'
import type * as ExpressSession from 'express-session'
import sessionSocketAuth from '../lib/index'
// Redis and Express are loaded by the variants that use
// them (dynamic import below), so that every server process starts quickly.

/**
 * The five servers the bench compares. Every one has the same two HTTP routes,
 * POST /login (makes a session with a user) and POST /logout (destroys it),
 * and a Socket.IO server on the same port with a trivial connection handler.
 * Each variant that authenticates admits a handshake only if its session has
 * a user, so all of them do the same job.
 */
export const VARIANTS = ['bare', 'guard-memory', 'guard-redis', 'naive', 'express'] as const
export type VariantName = typeof VARIANTS[number]

export const VARIANT_LABELS: Record<VariantName, string> = {
  bare: 'bare Socket.IO on Fastify, no auth (the floor)',
  'guard-memory': 'this plugin, @fastify/session MemoryStore',
  'guard-redis': 'this plugin, Redis store (connect-redis@9 + redis@5)',
  naive: 'hand-written fastify.decryptSession io.use() middleware, MemoryStore',
  express: 'Express 5 + express-session, io.engine.use(sessionMiddleware) recipe, MemoryStore'
}

export const BENCH_SECRET = 'bench-secret-with-at-least-32-characters!'
const MAX_AGE = 60 * 60 * 1000

export interface ServerSpec {
  variant: VariantName
  redisUrl?: string
  /** Redis key prefix of the session store; nodes of one cluster share it. */
  redisPrefix?: string
  /** When set, the Socket.IO Redis adapter with this key (for the two-node runs). */
  adapterKey?: string
  /** The plugin's revalidateInterval (guard variants only). */
  revalidateInterval?: number | false
  /**
   * Users (guard variants only, for bench/users.ts): `loadUser` sets a trivial
   * loader (the session's user object), `identify` names the user by its id
   * (per-user room, disconnectUser). Either adds an '/admin' rule (role admin)
   * and the routes POST /demote and POST /disconnect-user?id=.
   */
  users?: { loadUser: boolean, identify: boolean, /** guard-redis: the loader also reads the role from a Redis hash (the app's "user database"), and POST /set-role?id=&role= writes it there and calls reauthorizeUser. */ rolesInRedis?: boolean }
}

/** Calls that reached the session store (and, for Redis, the commands that reached Redis). */
export interface StoreCounts {
  get: number
  set: number
  destroy: number
  touch: number
  redisCommands: number
}

export interface RunningServer {
  url: string
  counts (): StoreCounts
  resetCounts (): void
  /** Open Engine.IO connections. */
  clients (): number
  close (): Promise<void>
}

type Callback = (err?: unknown, value?: unknown) => void
interface CallbackStore {
  get (sid: string, cb: Callback): unknown
  set (sid: string, session: unknown, cb: Callback): unknown
  destroy (sid: string, cb: Callback): unknown
  touch?: (sid: string, session: unknown, cb: Callback) => unknown
}

function newCounts (): StoreCounts {
  return { get: 0, set: 0, destroy: 0, touch: 0, redisCommands: 0 }
}

/** Counts every call on the store instance itself; the store still does the work. */
function countStore<S extends CallbackStore> (store: S, counts: StoreCounts): S {
  for (const method of ['get', 'set', 'destroy', 'touch'] as const) {
    const original = store[method] as ((...args: unknown[]) => unknown) | undefined
    if (typeof original !== 'function') continue
    Object.defineProperty(store, method, {
      value: function (this: unknown, ...args: unknown[]) {
        counts[method]++
        return original.apply(this, args)
      },
      configurable: true,
      writable: true
    })
  }
  return store
}

type Redis = ReturnType<typeof createClient>

/** The Redis client connect-redis sees: the same client, with every command it sends counted. */
function countingRedis (client: Redis, counts: StoreCounts): object {
  const counted = <A extends unknown[], R>(fn: (...args: A) => R) => (...args: A): R => {
    counts.redisCommands++
    return fn(...args)
  }
  return {
    get: counted((key: string) => client.get(key)),
    set: counted((key: string, value: string, options?: Parameters<Redis['set']>[2]) => client.set(key, value, options)),
    expire: counted((key: string, seconds: number) => client.expire(key, seconds)),
    del: counted((keys: string[]) => client.del(keys)),
    mGet: counted((keys: string[]) => client.mGet(keys)),
    scanIterator: (options: Parameters<Redis['scanIterator']>[0]) => client.scanIterator(options)
  }
}

function userOf (session: object | null | undefined): unknown {
  return (session as Record<string, unknown> | null | undefined)?.user
}

interface BenchUser { name: string, id?: string, role?: 'user' | 'admin' }

function benchUser (value: unknown): BenchUser | undefined {
  return value as BenchUser | undefined
}

export async function startVariant (spec: ServerSpec): Promise<RunningServer> {
  return spec.variant === 'express' ? startExpress() : startFastifyVariant(spec)
}

async function startFastifyVariant (spec: ServerSpec): Promise<RunningServer> {
  const counts = newCounts()
  const cleanup: Array<() => Promise<unknown>> = []
  const socketIo: Partial<ServerOptions> = {}

  let store: SessionStore
  let roles: { get: (id: string) => Promise<string | null>, set: (id: string, role: string) => Promise<unknown> } | undefined
  if (spec.variant === 'guard-redis') {
    const [{ createClient }, { RedisStore }] = await Promise.all([import('redis'), import('connect-redis')])
    const client: Redis = createClient({ url: spec.redisUrl })
    client.on('error', (err: unknown) => console.error('bench redis client:', err))
    await client.connect()
    const redisStore = new RedisStore({ client: countingRedis(client, counts), prefix: spec.redisPrefix ?? 'bench-sess:' })
    store = countStore(redisStore as unknown as CallbackStore, counts) as unknown as SessionStore
    const rolesKey = `${spec.redisPrefix ?? 'bench-sess:'}roles`
    if (spec.users?.rolesInRedis === true) {
      roles = { get: (id) => client.hGet(rolesKey, id), set: (id, role) => client.hSet(rolesKey, id, role) }
    }
    cleanup.push(async () => {
      // Only this run's keys (its unique prefix); the shared Redis keeps everything else.
      await redisStore.clear().catch(() => {})
      if (roles !== undefined) await client.del(rolesKey).catch(() => {})
      await client.close()
    })
    if (spec.adapterKey !== undefined) {
      const pub = client.duplicate()
      const sub = client.duplicate()
      pub.on('error', (err: unknown) => console.error('bench redis pub:', err))
      sub.on('error', (err: unknown) => console.error('bench redis sub:', err))
      const [{ createAdapter }] = await Promise.all([import('@socket.io/redis-adapter'), pub.connect(), sub.connect()])
      socketIo.adapter = createAdapter(pub, sub, { key: spec.adapterKey })
      cleanup.push(async () => { await Promise.all([pub.close(), sub.close()]) })
    }
  } else {
    store = countStore(new MemoryStore() as unknown as CallbackStore, counts) as unknown as SessionStore
  }

  const app: FastifyInstance = Fastify({ logger: false, forceCloseConnections: true })
  await app.register(fastifyCookie)
  await app.register(fastifySession, {
    secret: BENCH_SECRET,
    cookie: { secure: false, maxAge: MAX_AGE },
    saveUninitialized: false,
    store
  })

  let io: Server
  const users = spec.users
  if (spec.variant === 'guard-memory' || spec.variant === 'guard-redis') {
    await app.register(sessionSocketAuth, {
      ...socketIo,
      authorize: (session) => userOf(session) !== undefined,
      ...(spec.revalidateInterval !== undefined ? { revalidateInterval: spec.revalidateInterval } : {}),
      ...(users?.loadUser === true ? { loadUser: roles === undefined ? (session) => benchUser(userOf(session)) : redisRoleLoader(roles.get) } : {}),
      ...(users?.identify === true ? { identify: (session) => benchUser(userOf(session))?.id } : {}),
      ...(users === undefined
        ? {}
        : {
            namespaces: {
              '/admin': (session, socket) => benchUser(users.loadUser ? socket.data.user : userOf(session))?.role === 'admin'
            }
          })
    })
    io = app.io
    if (users !== undefined) io.of('/admin').on('connection', () => {})
  } else {
    io = new Server(app.server, socketIo)
    app.addHook('preClose', (done) => {
      io.local.disconnectSockets(true)
      io.engine.close()
      done()
    })
    app.addHook('onClose', (_instance, done) => { io.close(() => done()) })
    if (spec.variant === 'naive') io.use(naiveDecryptSession(app))
  }
  io.on('connection', () => {})

  app.post<{ Querystring: { id?: string, role?: string } }>('/login', async (request) => {
    await request.session.regenerate()
    const { id, role } = request.query
    ;(request.session as unknown as Record<string, unknown>).user = id === undefined
      ? { name: 'bench' }
      : { name: 'bench', id, role: role === 'admin' ? 'admin' : 'user' } satisfies BenchUser
    return { ok: true }
  })
  if (users !== undefined) {
    // The user's own session changes over HTTP (saved by @fastify/session): the
    // plugin hands the new session to its sockets on every node and reruns the rules.
    app.post('/demote', async (request) => {
      const session = request.session as unknown as Record<string, unknown>
      session.user = { ...benchUser(session.user), role: 'user' }
      return { ok: true }
    })
    // A change outside the session (the user database), then reauthorizeUser: how the example's admin demotes.
    app.post<{ Querystring: { id?: string, role?: string } }>('/set-role', async (request, reply) => {
      const { id, role } = request.query
      if (roles === undefined || id === undefined || (role !== 'user' && role !== 'admin')) return reply.code(400).send({ error: 'id, role' })
      await roles.set(id, role)
      await app.reauthorizeUser(id)
      return { ok: true }
    })
    app.post<{ Querystring: { id?: string } }>('/disconnect-user', async (request, reply) => {
      if (request.query.id === undefined) return reply.code(400).send({ error: 'id' })
      await app.disconnectUser(request.query.id)
      return { ok: true }
    })
  }
  app.post('/logout', async (request) => {
    await request.session.destroy()
    return { ok: true }
  })

  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}`,
    counts: () => ({ ...counts }),
    resetCounts: () => Object.assign(counts, newCounts()),
    clients: () => io.engine.clientsCount,
    async close () {
      await app.close()
      for (const step of cleanup) await step()
    }
  }
}

/** The session's user, with the role the "user database" (a Redis hash) has for it, if any. */
function redisRoleLoader (getRole: (id: string) => Promise<string | null>): (session: FastifySessionObject) => Promise<BenchUser | undefined> {
  return async (session) => {
    const user = benchUser(userOf(session))
    if (user?.id === undefined) return user
    const role = await getRole(user.id)
    return role === 'user' || role === 'admin' ? { ...user, role } : user
  }
}

/**
 * What an app author writes without this plugin: parse the cookie, let
 * @fastify/session decrypt it, check the user. (It has no Origin check, no
 * expiry handling beyond decryptSession's own and no revocation.)
 */
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

/** The Socket.IO documentation's recipe: share the express-session middleware with Engine.IO. */
async function startExpress (): Promise<RunningServer> {
  const [{ default: express }, { default: expressSession }] = await Promise.all([import('express'), import('express-session')])
  const counts = newCounts()
  const store = countStore(new expressSession.MemoryStore() as unknown as CallbackStore, counts)
  const sessionMiddleware = expressSession({
    secret: BENCH_SECRET,
    resave: false,
    saveUninitialized: false,
    store: store as unknown as ExpressSession.Store,
    cookie: { maxAge: MAX_AGE }
  })
  const app = express()
  app.use(sessionMiddleware)
  app.post('/login', (req, res, next) => {
    req.session.regenerate((err) => {
      if (err) return next(err)
      ;(req.session as unknown as Record<string, unknown>).user = { name: 'bench' }
      res.json({ ok: true })
    })
  })
  app.post('/logout', (req, res, next) => {
    req.session.destroy((err) => {
      if (err) return next(err)
      res.json({ ok: true })
    })
  })

  const server = createServer(app)
  const io = new Server(server)
  io.engine.use(sessionMiddleware)
  io.use((socket, next) => {
    const session = (socket.request as IncomingMessage & { session?: object }).session
    if (userOf(session) === undefined) return next(new Error('unauthorized'))
    next()
  })
  io.on('connection', () => {})

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}`,
    counts: () => ({ ...counts }),
    resetCounts: () => Object.assign(counts, newCounts()),
    clients: () => io.engine.clientsCount,
    async close () {
      io.local.disconnectSockets(true)
      io.engine.close()
      server.closeAllConnections()
      await new Promise<void>((resolve) => io.close(() => resolve()))
    }
  }
}
