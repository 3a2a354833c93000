import type { IncomingMessage } from 'node:http'
import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { Server } from 'socket.io'
import {
  AlreadyRegisteredError, HandshakeRefusal as HandshakeRefusalClass, InvalidArgumentError, InvalidOptionError, REFUSALS,
  SecureSessionUnsupportedError, SessionPluginMissingError, WrongScopeError
} from './errors'
import { closeWithFastify } from './close'
import { createHandshakeGuard } from './handshake'
import { watchHttpSessions } from './http-watcher'
import { serveOnEveryAddress } from './listen-addresses'
import { redactError } from './log'
import { guardEveryNamespace } from './namespaces'
import type {
  OriginPolicy as Origins, PassportAuthenticator as Passport, ResolvedOptions, SessionRule as Rule, SessionSocketAuthOptions as Options,
  UserIdentifier as Identifier, UserLoader as Loader
} from './options'
import { EIO3_REFUSED, RECOVERY_REFUSED, resolveOptions } from './options'
import { buildOriginCheck } from './origin'
import { createRefusalLog } from './refusal-log'
import { createRequestGate } from './request-gate'
import { REVOCATION_REASONS, REVOKED_EVENT as REVOKED_EVENT_NAME, Revocation } from './revocation'
import { readSessionAccess } from './store-access'
import { createRules } from './rules'
import { sessionKey, sessionRoom as sessionRoomOf, userKey, userRoom as userRoomOf } from './hashed-ids'
import { requestOriginReader } from './upstream/fastify'
import { acceptsEio3, isSocketIoServer, prependEngineMiddleware, recoversConnectionState } from './upstream/socket-io'
import type * as Types from './types'
import type { RevocationReason, SessionSocketServer } from './types'
import './types'

/**
 * Socket.IO on Fastify, every connection admitted by the @fastify/session
 * session and bound to it for life.
 * @example
 * await app.register(fastifyCookie)
 * await app.register(fastifySession, { secret, store })
 * await app.register(fastifySessionSocketAuth, { authorize: (session) => Boolean(session.user) })
 * app.io.on('connection', (socket) => socket.emit('hello', socket.data.session.user))
 */
async function fastifySessionSocketAuth (fastify: FastifyInstance, options: Options): Promise<void> {
  const opts = resolveOptions(options)
  checkScope(fastify)
  // Every line this plugin logs says so in a field, not in a prefix of its message.
  const log = fastify.log.child({ plugin: 'fastify-session-socket-auth' })
  const access = readSessionAccess(fastify, opts.storeTimeout)
  const { io, owned } = adoptOrCreateServer(fastify, opts, log)
  const readCookieValue = cookieValueReader(access.cookieName, access.cookiePrefix)
  checkCookieOverrides(opts, access, log)
  const originRefusal = buildOriginCheck(opts.allowedOrigins, opts.socketIo.cors, requestOriginReader(fastify))

  // Every HTTP request of the Engine.IO endpoint, on every address, before Engine.IO acts on it.
  const logRefusal = createRefusalLog(log)
  prependEngineMiddleware(io, createRequestGate(originRefusal, logRefusal))
  serveOnEveryAddress(fastify)

  const rules = createRules(fastify, opts, log)
  const revocation = new Revocation({
    io,
    access,
    rules,
    identify: opts.identify,
    log,
    revalidateInterval: opts.revalidateInterval,
    keepAlive: opts.keepAlive,
    keepAliveInterval: opts.keepAliveInterval
  })
  const { writes } = revocation

  const guard = createHandshakeGuard({
    access,
    holder: {
      access,
      writes,
      onEnd: (previous, reason) => { revocation.revokeEverywhere(sessionKey(previous.sessionId), reason).catch(() => {}) }
    },
    readSessionCookie: (request: IncomingMessage) => {
      const header = request.headers.cookie
      return header ? readCookieValue(fastify.parseCookie(header)) : undefined
    },
    originRefusal,
    rules,
    log,
    logRefusal,
    revokedSince: (key, since) => revocation.revokedSince(key, since),
    changedSince: (key, since) => writes.changedSince(key, since),
    exposesUser: opts.loadUser !== undefined || opts.passport !== undefined
  })

  // Test hook, not API: the registry is internal, yet tests must see it empty
  // out when sockets go (no sessions or timers left behind). Symbol-keyed, so
  // it stays out of the typed surface and cannot clash with other decorators.
  fastify.decorate(Symbol.for('fastify-session-socket-auth.stats'), () => ({
    sessions: revocation.sessionCount,
    timers: revocation.timerCount
  }))

  guardEveryNamespace(io, guard, (socket) => {
    const admission = guard.admissionOf(socket)
    try {
      if (admission !== undefined) return revocation.bind(socket, admission)
      // Only reachable if something let a socket skip the middleware chain.
      log.error({ namespace: socket.nsp.name }, 'a socket connected without passing the session check; disconnected')
    } catch (error) {
      log.error({ err: redactError(error, admission?.sessionId), namespace: socket.nsp.name }, 'could not bind a socket to its session; disconnected')
    }
    socket.disconnect(true)
  })

  watchHttpSessions(fastify, {
    access,
    writes,
    readCookieValue,
    revoke: (key, reason) => revocation.revokeEverywhere(key, reason),
    changed: (key, expiresAt) => revocation.changedEverywhere(key, expiresAt)
  })

  fastify.decorate('disconnectSession', async (sessionId: string) => {
    if (typeof sessionId !== 'string' || sessionId.length === 0) {
      throw new InvalidArgumentError('disconnectSession(sessionId) takes the session id, e.g. request.session.sessionId')
    }
    await revocation.revokeEverywhere(sessionKey(sessionId), 'revoked')
  })

  fastify.decorate('disconnectUser', async (userId: string | number, reason: RevocationReason = 'revoked') => {
    revocation.revokeUserEverywhere(userKey(checkUserId(userId, 'disconnectUser')), checkReason(reason))
  })

  fastify.decorate('reauthorizeUser', async (userId: string | number) => {
    await revocation.reauthorizeUserEverywhere(userKey(checkUserId(userId, 'reauthorizeUser')))
  })

  closeWithFastify(fastify, io, {
    owned,
    preClose: opts.preClose,
    release: () => {
      revocation.close()
      releaseServer(fastify)
    }
  })
}

function checkUserId (userId: unknown, method: string): string | number {
  if ((typeof userId === 'string' && userId.length > 0) || (typeof userId === 'number' && Number.isFinite(userId))) return userId
  throw new InvalidArgumentError(`${method}(userId) takes the user's id as identify() gives it (by default what @fastify/passport serialized), got ${typeof userId}`)
}

function checkReason (reason: unknown): RevocationReason {
  if (REVOCATION_REASONS.has(reason as RevocationReason)) return reason as RevocationReason
  throw new InvalidArgumentError(`the reason must be one of ${[...REVOCATION_REASONS].join(', ')}, got ${String(reason)}`)
}

// On the HTTP server, so that a second copy of this package sees it too.
const REGISTERED = Symbol.for('fastify-session-socket-auth.registered')

/**
 * One Socket.IO server per HTTP server: a second one would also answer every
 * upgrade, and Node ends the process when two handle the same socket. And the
 * scope of @fastify/session: the hooks that see logouts run only for routes in
 * the scope they are added to.
 */
function checkScope (fastify: FastifyInstance): void {
  const server = fastify.server as unknown as Record<symbol, unknown>
  if (server[REGISTERED] === true) throw new AlreadyRegisteredError()
  if (!fastify.hasDecorator('decryptSession')) {
    throw fastify.hasDecorator('decodeSecureSession') ? new SecureSessionUnsupportedError() : new SessionPluginMissingError()
  }
  if (!Object.hasOwn(fastify, 'decryptSession')) throw new WrongScopeError()
  server[REGISTERED] = true
}

function releaseServer (fastify: FastifyInstance): void {
  delete (fastify.server as unknown as Record<symbol, unknown>)[REGISTERED]
}

function adoptOrCreateServer (fastify: FastifyInstance, opts: ResolvedOptions, log: FastifyBaseLogger): { io: SessionSocketServer, owned: boolean } {
  if (fastify.hasDecorator('io')) {
    const existing: unknown = fastify.io
    if (!isSocketIoServer(existing)) {
      throw new InvalidOptionError('"fastify.io" is already decorated with something that is not a Socket.IO Server')
    }
    if (recoversConnectionState(existing)) throw new InvalidOptionError(RECOVERY_REFUSED)
    if (acceptsEio3(existing)) throw new InvalidOptionError(EIO3_REFUSED)
    log.debug('guarding the Socket.IO server another plugin created')
    const ignored = Object.keys(opts.socketIo)
    if (ignored.length !== 0) {
      log.warn({ options: ignored }, 'fastify.io already exists, so these Socket.IO options were not applied; set them where that server is created')
    }
    return { io: existing as SessionSocketServer, owned: false }
  }
  const io: SessionSocketServer = new Server(fastify.server, opts.socketIo)
  fastify.decorate('io', io)
  return { io, owned: true }
}

// Mirrors @fastify/session's own reading of its cookie, decided once here.
function cookieValueReader (cookieName: string, cookiePrefix: string): (cookies: Record<string, string | undefined>) => string | undefined {
  if (cookiePrefix.length === 0) {
    return (cookies) => cookies[cookieName] || undefined
  }
  return (cookies) => {
    const value = cookies[cookieName]
    return value?.startsWith(cookiePrefix) ? value.slice(cookiePrefix.length) || undefined : undefined
  }
}

// The cookie name and prefix are @fastify/session's; the old options may only repeat them.
function checkCookieOverrides (opts: ResolvedOptions, access: { cookieName: string, cookiePrefix: string }, log: FastifyBaseLogger): void {
  for (const [key, given, actual] of [['cookieName', opts.cookieName, access.cookieName], ['cookiePrefix', opts.cookiePrefix, access.cookiePrefix]] as const) {
    if (given === undefined) continue
    if (given !== actual) throw new InvalidOptionError(`"${key}" is read from @fastify/session now ("${actual}"), and "${given}" differs: remove the option.`)
    log.warn({ option: key }, `the "${key}" option is deprecated: it is read from @fastify/session; remove it`)
  }
}

fp(fastifySessionSocketAuth, {
  fastify: '5.x',
  name: 'fastify-session-socket-auth',
  // @fastify/session is checked by the plugin itself, to tell it apart from @fastify/secure-session.
  dependencies: ['@fastify/cookie']
})

declare namespace fastifySessionSocketAuth {
  /**
   * The app's Socket.IO event maps and socket data, declared once by
   * augmenting these interfaces (as @fastify/session's `Session` is):
   * @example
   * declare module 'fastify-session-socket-auth' {
   *   interface ClientToServerEvents { chat: (text: string) => void }
   *   interface ServerToClientEvents { tick: (count: number) => void }
   *   interface SocketData { joinedAt: number }
   * }
   * Then `fastify.io`, every socket, `emit`/`on` and `socket.data` carry them.
   * Left empty, each falls back to Socket.IO's default (any event, any payload).
   */
  export interface ClientToServerEvents {}
  /** Events the server emits to clients; see `ClientToServerEvents`. */
  export interface ServerToClientEvents {}
  /** Events between the nodes of a cluster (`serverSideEmit`); see `ClientToServerEvents`. */
  export interface InterServerEvents {}
  /** The app's own fields of `socket.data`, beside `session` and `user`; see `ClientToServerEvents`. */
  export interface SocketData {}
  /**
   * The type of `socket.data.user`, declared by the app (with @fastify/passport:
   * `interface SocketUser extends PassportUser {}`); `unknown` until it is.
   */
  export interface SocketUser {}
  export type SessionSocketAuthOptions = Options
  export type SessionRule = Rule
  export type OriginPolicy = Origins
  export type UserLoader = Loader
  export type UserIdentifier = Identifier
  export type PassportAuthenticator = Passport
  export type SessionSocketData = Types.SessionSocketData
  export type SessionSocketServer = Types.SessionSocketServer
  export type SessionSocket = Types.SessionSocket
  export type RevocationReason = Types.RevocationReason
  export type RevokedPayload = Types.RevokedPayload
  export type RefusalCode = keyof typeof REFUSALS
  export type HandshakeRefusal = HandshakeRefusalClass
  /** Refusal codes (`err.message` and `err.data.code` of `connect_error`) with their descriptions. */
  export const REFUSAL_CODES: typeof REFUSALS
  /** Name of the event sent with `{ reason }` before the server ends a socket for its session. */
  export const REVOKED_EVENT: typeof REVOKED_EVENT_NAME
  /** The room holding every socket of a session, on every node. */
  export const sessionRoom: typeof sessionRoomOf
  /** The room holding every socket of a user (all sessions, all devices), on every node. */
  export const userRoom: typeof userRoomOf
  /** @deprecated The same plugin under its old name: use `fastifySessionSocketAuth` (or the default export). */
  export const sessionSocketAuth: typeof fastifySessionSocketAuth
  export { fastifySessionSocketAuth, fastifySessionSocketAuth as default }
}

// Node finds the named exports of a CommonJS module by reading
// `module.exports.name =` lines, so each is spelled out.
module.exports = fastifySessionSocketAuth
module.exports.default = fastifySessionSocketAuth
module.exports.fastifySessionSocketAuth = fastifySessionSocketAuth
module.exports.sessionSocketAuth = fastifySessionSocketAuth
module.exports.REFUSAL_CODES = REFUSALS
module.exports.REVOKED_EVENT = REVOKED_EVENT_NAME
module.exports.sessionRoom = sessionRoomOf
module.exports.userRoom = userRoomOf
export = fastifySessionSocketAuth
