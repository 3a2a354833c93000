/**
 * The example app: log in over HTTP with @fastify/session, then talk over
 * Socket.IO with the same session. Read it top to bottom; every piece of the
 * plugin a real app needs is here once.
 *
 *   npm start                      MemoryStore, one process, http://localhost:3000
 *   REDIS_URL=redis://127.0.0.1:6379 PORT=3001 npm start
 *                                  Redis sessions + Redis adapter: start it twice
 *                                  on two ports and they behave as one app
 */
import { readFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import fastifyCookie from '@fastify/cookie'
import fastifySession, { type FastifySessionOptions } from '@fastify/session'
import { createAdapter } from '@socket.io/redis-adapter'
import { RedisStore } from 'connect-redis'
import { createClient } from 'redis'
import sessionSocketAuth from '../lib/index'

// What this app keeps in a session. Every field declared here is typed on
// request.session and on socket.data.session alike.
declare module 'fastify' {
  interface Session {
    user?: { name: string, role: 'user' | 'admin' }
    /** Chat messages sent in this session: written by a socket handler, read over HTTP. */
    messages?: number
  }
}

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
  let store: FastifySessionOptions['store']
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
    store = new RedisStore({ client, prefix: `${prefix}sess:` }) as unknown as FastifySessionOptions['store']
    adapter = createAdapter(pub, sub, { key: `${prefix}socket.io` })
  }

  // --- HTTP sessions, exactly as an app without sockets would set them up ---
  await app.register(fastifyCookie)
  await app.register(fastifySession, {
    secret: options.sessionSecret ?? DEV_SESSION_SECRET,
    store,
    // 'auto': Secure over https, and over plain http (localhost) a SameSite=Lax
    // cookie without Secure, so that logging in works in a browser either way.
    cookie: { secure: 'auto', httpOnly: true, sameSite: 'lax', maxAge: options.sessionMaxAge ?? 30 * MINUTE },
    // No session (and no cookie) until someone logs in.
    saveUninitialized: false
  })

  // --- Socket.IO, guarded by that session ---
  await app.register(sessionSocketAuth, {
    authorize: (session) => session.user !== undefined,
    namespaces: { '/admin': (session) => session.user?.role === 'admin' },
    // Chatting over the socket counts as activity: it extends the rolling session.
    keepAlive: true,
    keepAliveInterval: MINUTE,
    ...(adapter === undefined ? {} : { adapter })
  })
  const io = app.io
  const admin = io.of('/admin')
  const activity = (text: string): void => {
    admin.emit('activity', { at: new Date().toISOString(), node: nodeName, text })
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

  app.get('/me', async (request) => ({
    node: nodeName,
    user: request.session.user ?? null,
    messages: request.session.messages ?? 0,
    expires: request.session.user === undefined ? null : request.session.cookie.expires ?? null
  }))

  app.post<{ Body: { name?: string, admin?: string, remember?: string } | undefined }>('/login', async (request, reply) => {
    const name = (request.body?.name ?? '').trim()
    if (name.length === 0 || name.length > 32) return reply.redirect('/?error=name', 303)
    const role = request.body?.admin === 'on' ? 'admin' : 'user'
    // A fresh session id at login (no session fixation); sockets bound to an
    // earlier session of this browser are told to reconnect with the new cookie.
    await request.session.regenerate()
    if (request.body?.remember === 'on') request.session.options({ maxAge: 30 * DAY })
    request.session.user = { name, role }
    activity(`${name} (${role}) logged in over HTTP`)
    return reply.redirect('/', 303)
  })

  app.post('/logout', async (request, reply) => {
    const name = request.session.user?.name
    // All it takes: every socket of this session, on every node, is disconnected
    // with 'session:revoked' { reason: 'logout' }.
    await request.session.destroy()
    reply.clearCookie('sessionId', { path: '/' })
    if (name !== undefined) activity(`${name} logged out; their sockets were disconnected`)
    return reply.redirect('/', 303)
  })

  // --- Socket handlers: socket.data.session is the live session ---
  io.on('connection', (socket) => {
    const user = socket.data.session.user
    if (user === undefined) return socket.disconnect(true) // unreachable: authorize requires a user
    socket.emit('welcome', { user, node: nodeName })
    activity(`${user.name} connected to / on ${nodeName}`)

    socket.on('chat', async (text: unknown) => {
      if (typeof text !== 'string') return
      const trimmed = text.trim().slice(0, 500)
      if (trimmed.length === 0) return
      // The name comes from the session, never from the client.
      const message: ChatMessage = { from: user.name, role: user.role, text: trimmed, at: new Date().toISOString(), node: nodeName }
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

  admin.on('connection', (socket) => {
    const user = socket.data.session.user
    if (user === undefined) return socket.disconnect(true) // unreachable: the '/admin' rule requires an admin
    socket.emit('welcome', { user, node: nodeName })
    socket.emit('activity', { at: new Date().toISOString(), node: nodeName, text: `you joined /admin on ${nodeName}` })
    socket.on('announce', (text: unknown) => {
      if (typeof text !== 'string' || text.trim().length === 0) return
      io.emit('announcement', { from: user.name, text: text.trim().slice(0, 200), at: new Date().toISOString() })
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

function originHost (origin: string): string | undefined {
  try {
    return new URL(origin).host
  } catch {
    return undefined
  }
}
