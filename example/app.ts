/**
 * The example app: log in over HTTP with @fastify/passport (passport-local) on
 * @fastify/session, then talk over Socket.IO with the same session and the
 * same user. Read it top to bottom; every piece of the plugin a real app needs
 * is here once: the user on `socket.data.user`, "log out everywhere", and an
 * admin demoting a user while that user's page is open.
 *
 *   npm start                      MemoryStore, one process, http://localhost:3000
 *   REDIS_URL=redis://127.0.0.1:6379 PORT=3001 npm start
 *                                  Redis sessions + Redis adapter: start it twice
 *                                  on two ports and they behave as one app
 */
import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { promisify } from 'node:util'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import fastifyCookie from '@fastify/cookie'
import { Authenticator } from '@fastify/passport'
import fastifySession, { MemoryStore, type FastifySessionOptions, type SessionStore } from '@fastify/session'
import { createAdapter } from '@socket.io/redis-adapter'
import { RedisStore } from 'connect-redis'
import { Strategy as LocalStrategy } from 'passport-local'
import { createClient } from 'redis'
import sessionSocketAuth, { userRoom } from '../lib/index'

/** A user of this app, as its user directory keeps it (a database table in a real app). */
export interface DemoUser {
  id: string
  name: string
  role: 'user' | 'admin'
}

// What this app keeps in a session. Every field declared here is typed on
// request.session and on socket.data.session alike.
declare module 'fastify' {
  interface Session {
    /** The user's id, written there by @fastify/passport's serializer at login. */
    passport?: string | number
    /** Chat messages sent in this session: written by a socket handler, read over HTTP. */
    messages?: number
  }
}
// An app of its own would also type request.user and socket.data.user once:
//   declare module 'fastify' { interface PassportUser extends DemoUser {} }
//   declare module 'fastify-session-socket-auth' { interface SocketUser extends DemoUser {} }
// This example is type-checked together with the plugin's tests, so it reads them through userOf() instead.

/** Only for trying the example. Set SESSION_SECRET (32+ characters) anywhere else. */
export const DEV_SESSION_SECRET = 'dev-only-secret-not-for-production-0123456789'

const MINUTE = 60_000
const DAY = 24 * 60 * MINUTE

export interface ExampleOptions {
  /** Signs the session cookie. An array rotates secrets: the first signs, all verify. Default: DEV_SESSION_SECRET. */
  sessionSecret?: string | string[]
  /** With a URL, sessions live in Redis (connect-redis) and Socket.IO uses the Redis adapter. Default: MemoryStore, one process. */
  redisUrl?: string
  /** Prefix of every Redis key this app writes (sessions and adapter channels). Default `'example:'`. */
  redisPrefix?: string
  /** Shown on the page and in ticks, to tell the nodes of a cluster apart. Default `'node :<port>'`. */
  nodeName?: string
  /** How often the server sends a tick, in ms. Default 1000. */
  tickInterval?: number
  /** Session lifetime without "keep me signed in", rolling. Default 30 minutes. */
  sessionMaxAge?: number
  logger?: FastifyServerOptions['logger']
}

interface ChatMessage { from: string, role: 'user' | 'admin', text: string, at: string, node: string }

/**
 * Users, and which sessions each has logged in (for "log out everywhere"): a
 * Map in one process, a Redis hash and sets when the app runs on several nodes.
 * In a real app both are the app's database.
 */
interface Directory {
  get (id: string): Promise<StoredUser | undefined>
  put (user: StoredUser): Promise<void>
  all (): Promise<StoredUser[]>
  addSession (id: string, sessionId: string): Promise<void>
  removeSession (id: string, sessionId: string): Promise<void>
  /** Forgets and returns the session ids of a user. */
  takeSessions (id: string): Promise<string[]>
}

interface StoredUser extends DemoUser {
  /** scrypt hash of the password, hex, with its salt: `salt:hash`. */
  password: string
}

const PUBLIC = join(__dirname, 'public')
const ASSETS: Record<string, { type: string, body: Buffer }> = {
  '/': { type: 'text/html; charset=utf-8', body: readFileSync(join(PUBLIC, 'index.html')) },
  '/app.js': { type: 'text/javascript; charset=utf-8', body: readFileSync(join(PUBLIC, 'app.js')) },
  '/style.css': { type: 'text/css; charset=utf-8', body: readFileSync(join(PUBLIC, 'style.css')) }
}

// The page runs only its own scripts; chat text is rendered as text, and this
// header makes sure nothing injected could run even if it were not.
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
  "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

/** Builds the example app, not yet listening: call `app.listen()` (port 0 is fine). */
export async function buildExampleApp (options: ExampleOptions = {}): Promise<FastifyInstance> {
  const prefix = options.redisPrefix ?? 'example:'
  const app = Fastify({ logger: options.logger ?? false, forceCloseConnections: true })
  let nodeName = options.nodeName ?? 'node'
  app.addHook('onListen', async () => {
    nodeName = options.nodeName ?? `node :${(app.server.address() as AddressInfo).port}`
  })

  // --- Stores: Redis when configured, else @fastify/session's MemoryStore ---
  // The session store is kept at hand: "log out everywhere" destroys sessions in it.
  let store: SessionStore = new MemoryStore()
  let directory: Directory = memoryDirectory()
  let adapter: ReturnType<typeof createAdapter> | undefined
  if (options.redisUrl !== undefined) {
    const client = createClient({ url: options.redisUrl })
    const pub = client.duplicate()
    const sub = client.duplicate()
    await Promise.all([client.connect(), pub.connect(), sub.connect()])
    // Added before the plugin, so it runs after the plugin has closed Socket.IO (onClose runs last-added first).
    app.addHook('onClose', async () => {
      await Promise.allSettled([client.close(), pub.close(), sub.close()])
    })
    store = new RedisStore({ client, prefix: `${prefix}sess:` }) as unknown as SessionStore
    directory = redisDirectory(client, prefix)
    adapter = createAdapter(pub, sub, { key: `${prefix}socket.io` })
  }

  // --- HTTP sessions, exactly as an app without sockets would set them up ---
  await app.register(fastifyCookie)
  await app.register(fastifySession, {
    secret: options.sessionSecret ?? DEV_SESSION_SECRET,
    store: store as FastifySessionOptions['store'],
    // 'auto': Secure over https, and over plain http (localhost) a SameSite=Lax
    // cookie without Secure, so that logging in works in a browser either way.
    cookie: { secure: 'auto', httpOnly: true, sameSite: 'lax', maxAge: options.sessionMaxAge ?? 30 * MINUTE },
    // No session (and no cookie) until someone logs in.
    saveUninitialized: false
  })

  // --- Log in with passport-local; the session keeps the user's id only ---
  // One Authenticator per app (not the module's shared default), so that two
  // apps in one process (the tests) each keep their own deserializer.
  const passport = new Authenticator()
  passport.use('local', new LocalStrategy({ usernameField: 'name', passReqToCallback: true }, (request, name, password, done) => {
    const wantsAdmin = (request.body as { admin?: string } | undefined)?.admin === 'on'
    findOrCreateUser(directory, name.trim(), password, wantsAdmin).then((user) => done(null, user ?? false), done)
  }))
  passport.registerUserSerializer(async (user: DemoUser) => user.id)
  // Read again on every request and every socket (re)authorization: a role
  // changed in the directory shows at once. null: the user is gone, logged out.
  passport.registerUserDeserializer(async (id: string) => publicUser(await directory.get(id)) ?? null)
  await app.register(passport.initialize())
  await app.register(passport.secureSession())

  // --- Socket.IO, guarded by that session and that user ---
  await app.register(sessionSocketAuth, {
    // socket.data.user is what the deserializer above gives, as request.user is over HTTP;
    // a session without a user is refused (USER_REQUIRED).
    passport,
    userRequired: true,
    // Rerun whenever the user is reloaded (fastify.reauthorizeUser below): a
    // demoted admin's socket leaves /admin with session:revoked { reason: 'forbidden' }.
    namespaces: { '/admin': (_session, socket) => userOf(socket.data.user)?.role === 'admin' },
    // Chatting over the socket counts as activity: it extends the rolling session.
    keepAlive: true,
    keepAliveInterval: MINUTE,
    ...(adapter === undefined ? {} : { adapter })
  })
  const io = app.io
  const admin$ = io.of('/admin')
  const activity = (text: string): void => {
    admin$.emit('activity', { at: new Date().toISOString(), node: nodeName, text })
  }

  // --- Pages and forms ---
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_request, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)))
  })
  // A form post from another origin (even same-site: another port of this
  // host) is refused: the same rule the plugin applies to socket handshakes.
  app.addHook('onRequest', async (request, reply) => {
    const origin = request.headers.origin
    if (request.method === 'POST' && origin !== undefined && originHost(origin) !== request.headers.host) {
      return reply.code(403).send({ error: 'cross-origin form post refused' })
    }
  })
  for (const [path, asset] of Object.entries(ASSETS)) {
    app.get(path, async (_request, reply) => {
      return reply.type(asset.type).header('content-security-policy', CSP).header('cache-control', 'no-cache').send(asset.body)
    })
  }

  app.get('/me', async (request) => {
    const user = userOf(request.user)
    return {
      node: nodeName,
      user: user ?? null,
      messages: request.session.messages ?? 0,
      expires: user === undefined ? null : request.session.cookie.expires ?? null
    }
  })

  app.post<{ Body: { name?: string, password?: string, admin?: string, remember?: string } | undefined }>('/login', {
    // passport-local checks the name and password; on success @fastify/passport
    // regenerates the session (no session fixation: sockets bound to an earlier
    // session of this browser are told to reconnect with the new cookie) and
    // writes the user's id into it.
    preValidation: passport.authenticate('local', { failureRedirect: '/?error=login' })
  }, async (request, reply) => {
    const user = userOf(request.user)
    if (user === undefined) return reply.redirect('/?error=login', 303)
    if (request.body?.remember === 'on') request.session.options({ maxAge: 30 * DAY })
    await directory.addSession(user.id, request.session.sessionId)
    activity(`${user.name} (${user.role}) logged in over HTTP`)
    admin$.emit('users', await userList(directory)) // the first login made an account
    return reply.redirect('/', 303)
  })

  app.post('/logout', async (request, reply) => {
    const user = userOf(request.user)
    const sessionId = request.session.sessionId
    // All it takes: every socket of this session, on every node, is disconnected
    // with 'session:revoked' { reason: 'logout' }.
    await request.session.destroy()
    reply.clearCookie('sessionId', { path: '/' })
    if (user !== undefined) {
      await directory.removeSession(user.id, sessionId)
      activity(`${user.name} logged out; their sockets were disconnected`)
    }
    return reply.redirect('/', 303)
  })

  app.post('/logout-everywhere', async (request, reply) => {
    const user = userOf(request.user)
    if (user === undefined) return reply.redirect('/', 303)
    // Two steps, because they are two jobs. Ending sessions is the app's: it
    // destroys every session it recorded for this user at login, in the store,
    // so no browser can use them again. Ending the sockets of those sessions
    // *now*, on every node, is the plugin's: disconnectUser (without it they
    // would end at their next revalidation, up to revalidateInterval later).
    const sessionIds = await directory.takeSessions(user.id)
    await Promise.all(sessionIds.map((id) => destroyIn(store, id)))
    await request.session.destroy()
    await app.disconnectUser(user.id, 'logout')
    reply.clearCookie('sessionId', { path: '/' })
    activity(`${user.name} logged out everywhere: ${sessionIds.length} session(s) destroyed, their sockets disconnected`)
    return reply.redirect('/', 303)
  })

  // An admin changes a user's role. The change is in the user directory, not in
  // any session, so the plugin is told: reauthorizeUser reloads that user for
  // every socket of theirs on every node and reruns the rules. Their open page
  // loses /admin ('forbidden'); '/' stays connected.
  app.post<{ Params: { id: string }, Body: { role?: unknown } | undefined }>('/users/:id/role', async (request, reply) => {
    const admin = userOf(request.user)
    if (admin?.role !== 'admin') return reply.code(403).send({ error: 'admins only' })
    const role = request.body?.role
    if (role !== 'user' && role !== 'admin') return reply.code(400).send({ error: 'role must be "user" or "admin"' })
    const user = await directory.get(request.params.id)
    if (user === undefined) return reply.code(404).send({ error: 'no such user' })
    if (user.role !== role) {
      await directory.put({ ...user, role })
      await app.reauthorizeUser(user.id)
      // Every page of that user shows the new role (the room spans every node).
      io.to(userRoom(user.id)).emit('user', publicUser({ ...user, role }))
      activity(`${admin.name} made ${user.name} ${role === 'admin' ? 'an admin' : 'a user'}`)
      admin$.emit('users', await userList(directory))
    }
    return { ok: true }
  })

  // --- Socket handlers: socket.data.user is the live user, socket.data.session the live session ---
  io.on('connection', (socket) => {
    const user = userOf(socket.data.user)
    if (user === undefined) return socket.disconnect(true) // unreachable: userRequired
    socket.emit('welcome', { user, node: nodeName })
    activity(`${user.name} connected to / on ${nodeName}`)

    socket.on('chat', async (text: unknown) => {
      if (typeof text !== 'string') return
      const trimmed = text.trim().slice(0, 500)
      if (trimmed.length === 0) return
      // The name and role come from the server's user, never from the client;
      // read at each message, so a role changed meanwhile shows.
      const now = userOf(socket.data.user) ?? user
      const message: ChatMessage = { from: now.name, role: now.role, text: trimmed, at: new Date().toISOString(), node: nodeName }
      io.emit('chat', message)
      try {
        socket.emit('messages', await countMessage(socket.data))
      } catch (error) {
        app.log.warn({ err: error }, 'could not count a chat message in the session')
      }
    })

    socket.on('disconnect', (reason) => {
      activity(`${user.name} disconnected from / on ${nodeName} (${reason})`)
    })
  })

  admin$.on('connection', (socket) => {
    const user = userOf(socket.data.user)
    if (user === undefined) return socket.disconnect(true) // unreachable: the '/admin' rule requires an admin
    socket.emit('welcome', { user, node: nodeName })
    socket.emit('activity', { at: new Date().toISOString(), node: nodeName, text: `you joined /admin on ${nodeName}` })
    userList(directory).then((users) => socket.emit('users', users), (error: unknown) => app.log.warn({ err: error }, 'could not list the users'))
    socket.on('announce', (text: unknown) => {
      if (typeof text !== 'string' || text.trim().length === 0) return
      io.emit('announcement', { from: userOf(socket.data.user)?.name ?? user.name, text: text.trim().slice(0, 200), at: new Date().toISOString() })
    })
  })

  // --- Ticks: each node ticks its own sockets, so a cluster does not multiply them ---
  let tick = 0
  const ticker = setInterval(() => {
    tick++
    io.local.emit('tick', { n: tick, at: new Date().toISOString(), node: nodeName })
  }, options.tickInterval ?? 1000)
  app.addHook('preClose', async () => clearInterval(ticker))

  return app
}

/**
 * Adds one to the session's message count from a socket handler. save()
 * refuses to overwrite a session that an HTTP request (or another socket)
 * saved since this socket loaded it; then reload and apply the change again.
 */
async function countMessage (data: sessionSocketAuth.SessionSocketData): Promise<number> {
  for (let attempt = 1; ; attempt++) {
    const session = data.session // read it again after reload(): reload replaces it
    session.messages = (session.messages ?? 0) + 1
    try {
      await session.save()
      return session.messages
    } catch (error) {
      if ((error as { code?: string }).code !== 'FST_SESSION_SOCKET_AUTH_SESSION_CONFLICT' || attempt === 3) throw error
      await session.reload()
    }
  }
}

/** The user as the page may see it: no password hash. */
function publicUser (user: StoredUser | undefined): DemoUser | undefined {
  return user === undefined ? undefined : { id: user.id, name: user.name, role: user.role }
}

/** request.user and socket.data.user, as the deserializer gave them (see the note at the top). */
function userOf (user: unknown): DemoUser | undefined {
  return (user ?? undefined) as DemoUser | undefined
}

async function userList (directory: Directory): Promise<DemoUser[]> {
  return (await directory.all()).map((user) => publicUser(user) as DemoUser).sort((a, b) => a.name.localeCompare(b.name))
}

const scryptAsync = promisify(scrypt) as (password: string, salt: string, length: number) => Promise<Buffer>

async function hashPassword (password: string, salt = randomBytes(16).toString('hex')): Promise<string> {
  return `${salt}:${(await scryptAsync(password, salt, 32)).toString('hex')}`
}

/**
 * passport-local's check. A demo: the first login with a name creates that
 * account with the password given (and the admin role if ticked); later logins
 * need the same password, and keep the role the account has.
 */
async function findOrCreateUser (directory: Directory, name: string, password: string, wantsAdmin: boolean): Promise<DemoUser | undefined> {
  if (name.length === 0 || name.length > 32 || password.length === 0 || password.length > 200) return undefined
  const existing = await directory.get(name)
  if (existing === undefined) {
    const user: StoredUser = { id: name, name, role: wantsAdmin ? 'admin' : 'user', password: await hashPassword(password) }
    await directory.put(user)
    return publicUser(user)
  }
  const [salt = '', hash = ''] = existing.password.split(':')
  const given = Buffer.from((await hashPassword(password, salt)).split(':')[1] ?? '', 'hex')
  const stored = Buffer.from(hash, 'hex')
  return given.length === stored.length && timingSafeEqual(given, stored) ? publicUser(existing) : undefined
}

function destroyIn (store: SessionStore, sessionId: string): Promise<void> {
  return new Promise((resolve, reject) => store.destroy(sessionId, (error) => error ? reject(error) : resolve()))
}

function memoryDirectory (): Directory {
  const users = new Map<string, StoredUser>()
  const sessions = new Map<string, Set<string>>()
  return {
    get: async (id) => users.get(id),
    put: async (user) => { users.set(user.id, user) },
    all: async () => [...users.values()],
    addSession: async (id, sessionId) => {
      let set = sessions.get(id)
      if (set === undefined) sessions.set(id, set = new Set())
      set.add(sessionId)
    },
    removeSession: async (id, sessionId) => { sessions.get(id)?.delete(sessionId) },
    takeSessions: async (id) => {
      const ids = [...(sessions.get(id) ?? [])]
      sessions.delete(id)
      return ids
    }
  }
}

function redisDirectory (client: ReturnType<typeof createClient>, prefix: string): Directory {
  const usersKey = `${prefix}users`
  const sessionsKey = (id: string): string => `${prefix}user-sessions:${id}`
  return {
    get: async (id) => {
      const json = await client.hGet(usersKey, id)
      return json == null ? undefined : JSON.parse(json) as StoredUser
    },
    put: async (user) => { await client.hSet(usersKey, user.id, JSON.stringify(user)) },
    all: async () => Object.values(await client.hGetAll(usersKey)).map((json) => JSON.parse(json) as StoredUser),
    addSession: async (id, sessionId) => { await client.sAdd(sessionsKey(id), sessionId) },
    removeSession: async (id, sessionId) => { await client.sRem(sessionsKey(id), sessionId) },
    takeSessions: async (id) => {
      const [ids] = await client.multi().sMembers(sessionsKey(id)).del(sessionsKey(id)).exec() as unknown as [string[], number]
      return ids
    }
  }
}

function originHost (origin: string): string | undefined {
  try {
    return new URL(origin).host
  } catch {
    return undefined
  }
}
