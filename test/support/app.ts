import assert from 'node:assert/strict'
import type { AddressInfo } from 'node:net'
import type { TestContext } from 'node:test'
import { request as httpRequest } from 'node:http'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import fastifyCookie from '@fastify/cookie'
import fastifySession, { type FastifySessionOptions } from '@fastify/session'
import { Manager, io as connectClient, type Socket as ClientSocket, type ManagerOptions, type SocketOptions } from 'socket.io-client'
import sessionSocketAuth from '../../lib/index'
import type { SessionSocketAuthOptions } from '../../lib/options'

export const SECRET = 'a-secret-with-at-least-32-characters-in-it'
export const OLD_SECRET = 'an-older-secret-with-at-least-32-characters'

declare module 'fastify' {
  interface Session {
    user?: { name: string, role: 'user' | 'admin' }
    counter?: number
    /** The user's id where @fastify/passport keeps it (see `userRoutes`): the plugin's default `identify` reads it. */
    passport?: string | number
  }
}

export interface TestApp {
  app: FastifyInstance
  url: string
  origin: string
  /** Logs in over HTTP and returns the Cookie header a browser would send. */
  login (name?: string, role?: 'user' | 'admin'): Promise<string>
  logout (cookie: string): Promise<void>
  close (): Promise<void>
}

export interface StartOptions {
  session?: Partial<FastifySessionOptions>
  auth?: SessionSocketAuthOptions
  /** Runs after the plugins, before listen. */
  setup?: (app: FastifyInstance) => void | Promise<void>
  port?: number
  /**
   * listen() host, default '127.0.0.1'. With 'localhost' Fastify binds one server per address
   * localhost resolves to; `url` is then the main server's address.
   */
  host?: string
  /** listen() backlog (Node's default is 511), for tests that open thousands of connections at once. */
  backlog?: number
  /** Fastify server options (e.g. a logger), merged over the defaults. */
  fastify?: FastifyServerOptions
  /** Runs after @fastify/cookie and @fastify/session, before this plugin is registered. */
  beforeAuth?: (app: FastifyInstance) => void | Promise<void>
}

/** A real Fastify app on a loopback port with login, logout and whoami routes. */
export async function startApp (options: StartOptions = {}): Promise<TestApp> {
  const app = Fastify({ logger: false, forceCloseConnections: true, ...options.fastify })
  await app.register(fastifyCookie)
  await app.register(fastifySession, {
    secret: SECRET,
    cookie: { secure: false, maxAge: 60_000 },
    saveUninitialized: false,
    ...options.session
  } as FastifySessionOptions)
  await options.beforeAuth?.(app)
  await app.register(sessionSocketAuth, options.auth ?? {})

  app.post<{ Body: { name?: string, role?: 'user' | 'admin' } }>('/login', async (request) => {
    await request.session.regenerate()
    request.session.user = { name: request.body?.name ?? 'ada', role: request.body?.role ?? 'user' }
    return { ok: true }
  })
  app.post('/logout', async (request) => {
    await request.session.destroy()
    return { ok: true }
  })
  app.get('/whoami', async (request) => ({ user: request.session.user ?? null, counter: request.session.counter ?? null }))
  app.post('/touch', async () => ({ ok: true }))
  await options.setup?.(app)

  await app.listen({ port: options.port ?? 0, host: options.host ?? '127.0.0.1', ...(options.backlog === undefined ? {} : { backlog: options.backlog }) })
  const { address, family, port } = app.server.address() as AddressInfo
  const url = family === 'IPv6' ? `http://[${address}]:${port}` : `http://${address}:${port}`
  const cookieName = options.session?.cookieName ?? 'sessionId'

  return {
    app,
    url,
    origin: url,
    async login (name = 'ada', role = 'user') {
      const response = await app.inject({ method: 'POST', url: '/login', payload: { name, role } })
      const setCookie = response.cookies.find((cookie) => cookie.name === cookieName)
      if (setCookie === undefined) throw new Error(`login set no cookie (status ${response.statusCode})`)
      return `${cookieName}=${encodeURIComponent(setCookie.value)}`
    },
    async logout (cookie) {
      const response = await fetch(`${url}/logout`, { method: 'POST', headers: { cookie } })
      if (response.status !== 200) throw new Error(`logout failed: ${response.status}`)
    },
    close: () => app.close()
  }
}

export interface ConnectOptions {
  cookie?: string
  origin?: string
  namespace?: string
  transports?: Array<'polling' | 'websocket'>
  reconnection?: boolean
  extra?: Partial<ManagerOptions & SocketOptions>
}

export type ConnectResult =
  | { ok: true, socket: ClientSocket }
  | { ok: false, code: string, data: unknown, socket: ClientSocket }

/** A real socket.io-client, resolved once it is admitted or refused. */
export function connect (url: string, options: ConnectOptions = {}): Promise<ConnectResult> {
  const headers: Record<string, string> = {}
  if (options.cookie !== undefined) headers.cookie = options.cookie
  if (options.origin !== undefined) headers.origin = options.origin
  const socket = connectClient(url + (options.namespace ?? ''), {
    transports: options.transports ?? ['websocket'],
    extraHeaders: headers,
    reconnection: options.reconnection ?? false,
    forceNew: true,
    timeout: 5000,
    ...options.extra
  })
  return new Promise((resolve) => {
    socket.once('connect', () => resolve({ ok: true, socket }))
    socket.once('connect_error', (err: Error & { data?: { code?: string } }) => {
      resolve({ ok: false, code: err.message, data: err.data, socket })
    })
  })
}

/**
 * One Engine.IO connection (one Manager, as one browser tab) joined to several
 * namespaces in turn; fails unless each is admitted. The sockets come back in
 * the order of `namespaces`; closing all of them closes the connection.
 */
export async function connectedTab (url: string, namespaces: string[], options: Omit<ConnectOptions, 'namespace'> = {}): Promise<ClientSocket[]> {
  const headers: Record<string, string> = {}
  if (options.cookie !== undefined) headers.cookie = options.cookie
  if (options.origin !== undefined) headers.origin = options.origin
  const manager = new Manager(url, {
    transports: options.transports ?? ['websocket'],
    extraHeaders: headers,
    reconnection: options.reconnection ?? false,
    timeout: 5000,
    ...options.extra
  })
  const sockets: ClientSocket[] = []
  for (const namespace of namespaces) {
    const socket = manager.socket(namespace)
    sockets.push(socket)
    const outcome = await new Promise<string | undefined>((resolve) => {
      socket.once('connect', () => resolve(undefined))
      socket.once('connect_error', (err: Error) => resolve(err.message))
    })
    if (outcome !== undefined) {
      for (const opened of sockets) opened.close()
      throw new Error(`expected ${namespace} to be admitted on the shared connection, got ${outcome}`)
    }
  }
  return sockets
}

/** Connects and fails the test unless the socket is admitted. */
export async function connected (url: string, options: ConnectOptions = {}): Promise<ClientSocket> {
  const result = await connect(url, options)
  if (!result.ok) {
    result.socket.close()
    throw new Error(`expected the socket to be admitted, got ${result.code}`)
  }
  return result.socket
}

/** Connects and returns the refusal code, failing the test if the socket is admitted. */
export async function refusedWith (url: string, options: ConnectOptions = {}): Promise<{ code: string, data: unknown }> {
  const result = await connect(url, options)
  result.socket.close()
  if (result.ok) throw new Error('expected the socket to be refused, but it was admitted')
  return { code: result.code, data: result.data }
}

/** Connects and fails the test unless the socket is refused with `code` (as `err.message` and `err.data.code`). */
export async function expectRefused (url: string, code: string, options: ConnectOptions = {}): Promise<void> {
  const refused = await refusedWith(url, options)
  assert.equal(refused.code, code, `err.message should be ${code}`)
  assert.deepEqual((refused.data as { code?: unknown } | undefined)?.code, code, `err.data.code should be ${code}`)
}

/**
 * Fails the test unless the request gate refuses the handshake at the HTTP level,
 * before Engine.IO opens a connection: the client sees its transport fail, and
 * the 403's body (which a foreign page cannot read) carries `code`.
 */
export async function expectRefusedByGate (url: string, code: string, options: ConnectOptions = {}): Promise<void> {
  const refused = await refusedWith(url, options)
  assert.match(refused.code, /^(xhr poll error|websocket error)$/)
  const headers: Record<string, string> = {}
  if (options.cookie !== undefined) headers.cookie = options.cookie
  if (options.origin !== undefined) headers.origin = options.origin
  const answer = await engineRequest(url, `transport=${options.transports?.[0] ?? 'websocket'}`, headers)
  assert.equal(answer.status, 403)
  assert.equal(answer.code, code)
}

/** Connects, fails the test unless the socket is admitted, and closes it. */
export async function expectAdmitted (url: string, options: ConnectOptions = {}): Promise<void> {
  const socket = await connected(url, options)
  socket.close()
}

/** GET /whoami with the browser's cookie: who the server thinks is logged in over HTTP. */
export async function whoami (url: string, cookie: string): Promise<{ user: unknown, counter: unknown }> {
  const response = await fetch(`${url}/whoami`, { headers: { cookie } })
  return (await response.json()) as { user: unknown, counter: unknown }
}

/** Emits `event` on the socket and resolves with the server's ack (fails after `timeoutMs`). */
export function ask<T = unknown> (socket: ClientSocket, event: string, timeoutMs = 5000): Promise<T> {
  return socket.timeout(timeoutMs).emitWithAck(event) as Promise<T>
}

/** Closes the socket when the test ends; returns it. */
export function closeAfter (t: TestContext, socket: ClientSocket): ClientSocket {
  t.after(() => { socket.close() })
  return socket
}

/** `connected()`, and the socket is closed when the test ends. */
export async function connectedFor (t: TestContext, url: string, options: ConnectOptions = {}): Promise<ClientSocket> {
  return closeAfter(t, await connected(url, options))
}

/** Resolves once the client's engine runs over WebSocket (after an upgrade from polling). */
export async function upgraded (socket: ClientSocket): Promise<void> {
  const engine = socket.io.engine
  if (engine.transport.name !== 'websocket') {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no upgrade to websocket within 5 s (transport ${engine.transport.name})`)), 5000)
      engine.once('upgrade', () => { clearTimeout(timer); resolve() })
      engine.once('upgradeError', (error: Error) => { clearTimeout(timer); reject(new Error(`the upgrade failed: ${error.message}`)) })
    })
  }
  assert.equal(socket.io.engine.transport.name, 'websocket')
}

/** Polls `condition` every `every` ms until it holds; fails after `timeoutMs`. Resolves with the ms it took. */
export async function waitFor (what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 3000, every = 10): Promise<number> {
  const started = Date.now()
  while (!(await condition())) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(every)
  }
  return Date.now() - started
}

/** A positive integer from the environment variable `name`, else `fallback`. */
export function positiveIntFromEnv (name: string, fallback: number): number {
  const value = Number(process.env[name])
  return Number.isSafeInteger(value) && value > 0 ? value : fallback
}

/** The plugin's registry counts, read through its symbol-keyed test hook (`lib/index.ts`). */
export interface RegistryStats { sessions: number, timers: number }
export function registryStats (app: FastifyInstance): RegistryStats {
  const hook = (app as unknown as Record<symbol, (() => RegistryStats) | undefined>)[Symbol.for('fastify-session-socket-auth.stats')]
  if (typeof hook !== 'function') throw new Error('the plugin exposes no stats hook')
  return hook()
}

export function once<T = unknown> (socket: ClientSocket, event: string, timeoutMs = 5000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "${event}" within ${timeoutMs} ms`)), timeoutMs)
    socket.once(event, (value: T) => {
      clearTimeout(timer)
      resolve(value)
    })
  })
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** The decoded value of a `name=value` Cookie header made by `login()`. */
export function cookieValueOf (cookie: string): string {
  return decodeURIComponent(cookie.slice(cookie.indexOf('=') + 1))
}

/** The raw session id inside a `login()` cookie (strip the optional prefix, then the signature). */
export function sessionIdOf (cookie: string, prefix = ''): string {
  const value = cookieValueOf(cookie)
  const unprefixed = value.startsWith(prefix) ? value.slice(prefix.length) : value
  return unprefixed.slice(0, unprefixed.lastIndexOf('.'))
}

/**
 * POST /regenerate: a fresh session id that keeps the user (what a login or
 * privilege change does); GET /sid and the socket event 'sid' tell the id.
 */
export function regenerateRoutes (app: FastifyInstance): void {
  app.get('/sid', async (request) => ({ sessionId: request.session.sessionId }))
  app.post('/regenerate', async (request) => {
    const user = request.session.user
    await request.session.regenerate()
    request.session.user = user
    return { sessionId: request.session.sessionId }
  })
  app.io.on('connection', (socket) => {
    socket.on('sid', (ack: (id: string) => void) => ack(socket.data.session.sessionId))
  })
}

/**
 * The socket event `event` adds one to `session.counter` and saves the session
 * from the socket; it acks 'ok', or the error's code (else the error) as a string.
 */
export function saveOnSocketEvent (app: FastifyInstance, event: string): void {
  app.io.on('connection', (socket) => {
    socket.on(event, async (ack: (result: string) => void) => {
      socket.data.session.counter = (socket.data.session.counter ?? 0) + 1
      try {
        await socket.data.session.save()
        ack('ok')
      } catch (error) {
        ack(String((error as { code?: unknown }).code ?? error))
      }
    })
  })
}

/**
 * Routes for a logged-in user with an id, as @fastify/passport keeps it:
 * - POST /login-as `{ id, name?, role? }`: a fresh session (regenerated) with
 *   `session.passport = id` (what the plugin's default `identify` reads) and
 *   `session.user = { name, role }`;
 * - POST /role `{ role }` and POST /rename `{ name }`: change `session.user` in
 *   place (same session id; @fastify/session saves the change).
 * `loginAs()` logs in through the first one.
 */
export function userRoutes (app: FastifyInstance): void {
  app.post<{ Body: { id: string | number, name?: string, role?: 'user' | 'admin' } }>('/login-as', async (request) => {
    await request.session.regenerate()
    request.session.passport = request.body.id
    request.session.user = { name: request.body.name ?? String(request.body.id), role: request.body.role ?? 'user' }
    return { sessionId: request.session.sessionId }
  })
  app.post<{ Body: { role: 'user' | 'admin' } }>('/role', async (request, reply) => {
    const user = request.session.user
    if (user === undefined) return reply.code(401).send({ ok: false })
    request.session.user = { ...user, role: request.body.role }
    return { ok: true }
  })
  app.post<{ Body: { name: string } }>('/rename', async (request, reply) => {
    const user = request.session.user
    if (user === undefined) return reply.code(401).send({ ok: false })
    request.session.user = { ...user, name: request.body.name }
    return { ok: true }
  })
}

/** Logs `id` in through `userRoutes`' POST /login-as; returns the Cookie header a browser would send. */
export async function loginAs (app: FastifyInstance, id: string | number, role: 'user' | 'admin' = 'user', name?: string): Promise<string> {
  const response = await app.inject({ method: 'POST', url: '/login-as', payload: { id, role, ...(name === undefined ? {} : { name }) } })
  const setCookie = response.cookies.find((cookie) => cookie.name === 'sessionId')
  if (setCookie === undefined) throw new Error(`login-as set no cookie (status ${response.statusCode})`)
  return `sessionId=${encodeURIComponent(setCookie.value)}`
}

/** A POST over the network with the browser's cookie and a JSON body; fails unless it answers 200. */
export async function postAs (url: string, path: string, cookie: string, body: unknown = {}): Promise<Response> {
  const response = await fetch(url + path, { method: 'POST', headers: { cookie, 'content-type': 'application/json' }, body: JSON.stringify(body) })
  if (response.status !== 200) throw new Error(`POST ${path} answered ${response.status}`)
  return response
}

export interface EngineAnswer {
  status: number
  /** The refusal code of a 403 from the request gate (`{ code }` in the body), if any. */
  code: string | undefined
  body: string
}

/**
 * One raw HTTP request to the Engine.IO endpoint, as a browser or an attacker
 * would send it: `query` after `/socket.io/?EIO=4&` (or after `?` when it names its own `EIO`), any headers. With
 * `transport=websocket` in the query it is an upgrade request, and the answer
 * is the status line the server sends (101 when it accepts).
 */
export function engineRequest (url: string, query: string, headers: Record<string, string> = {}, options: { method?: string, body?: string } = {}): Promise<EngineAnswer> {
  const upgrade = /(^|&)transport=websocket(&|$)/.test(query)
  const allHeaders: Record<string, string> = upgrade
    ? { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', ...headers }
    : { ...headers }
  return new Promise((resolve, reject) => {
    const protocol = /(^|&)EIO=/.test(query) ? '' : 'EIO=4&'
    const request = httpRequest(`${url}/socket.io/?${protocol}${query}`, { method: options.method ?? 'GET', headers: allHeaders, agent: false })
    const answer = (status: number, body: string): void => {
      let code: string | undefined
      try { code = (JSON.parse(body) as { code?: unknown }).code as string | undefined } catch { code = undefined }
      resolve({ status, code: typeof code === 'string' ? code : undefined, body })
    }
    request.on('upgrade', (response, socket) => {
      socket.destroy()
      answer(response.statusCode ?? 0, '')
    })
    request.on('response', (response) => {
      let body = ''
      response.setEncoding('utf8')
      response.on('data', (chunk: string) => { body += chunk })
      response.on('end', () => answer(response.statusCode ?? 0, body))
      response.on('error', reject)
    })
    request.on('error', reject)
    request.setTimeout(5000, () => request.destroy(new Error('no answer within 5 s')))
    request.end(options.body)
  })
}

/** Builds a bare Fastify app with `build`, readies it and returns the start-up error (fails the test if start-up succeeds). */
export async function readyError (build: (app: FastifyInstance) => void | Promise<void>, what = 'start-up'): Promise<Error & { code?: string }> {
  const app = Fastify({ logger: false })
  try {
    await build(app)
    await app.ready()
  } catch (error) {
    return error as Error & { code?: string }
  } finally {
    await app.close().catch(() => {})
  }
  assert.fail(`${what} should have failed`)
}

/** Starts an app that must fail to register; returns the error, after closing whatever was built. */
export async function registrationError (options: StartOptions): Promise<Error & { code?: string }> {
  let app: FastifyInstance | undefined
  const beforeAuth = options.beforeAuth
  try {
    const started = await startApp({
      ...options,
      beforeAuth: async (instance) => {
        app = instance
        await beforeAuth?.(instance)
      }
    })
    await started.close()
  } catch (error) {
    return error as Error & { code?: string }
  } finally {
    await app?.close().catch(() => {})
  }
  throw new Error('registration should have been refused, but the app started')
}
