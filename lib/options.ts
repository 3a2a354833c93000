import type { IncomingMessage } from 'node:http'
import type { FastifyInstance } from 'fastify'
import type { FastifySessionObject } from '@fastify/session'
import type { ServerOptions } from 'socket.io'
import { InvalidOptionError } from './errors'
import type { SessionSocket, User } from './types'

/**
 * A rule that admits (`true`) or refuses (`false`) a handshake whose session
 * is already verified. It may be async. A rule that throws refuses.
 */
export type SessionRule = (session: FastifySessionObject, socket: SessionSocket) => boolean | Promise<boolean>

/** Loads the session's user, once per socket, with the app's own code; nothing (undefined, null, false) means no user. */
export type UserLoader = (session: FastifySessionObject, socket: SessionSocket) => User | undefined | null | false | Promise<User | undefined | null | false>

/** Names a session's user for per-user rooms and `disconnectUser`; undefined when no user is logged in. */
export type UserIdentifier = (session: FastifySessionObject) => string | number | undefined | null

/**
 * What the `passport` option needs of @fastify/passport's Authenticator (the
 * default export, or a `new Authenticator()`): its session key and deserializers.
 */
export interface PassportAuthenticator {
  key: string
  deserializeUser: (stored: never, request: never) => Promise<unknown>
}

/**
 * Exact origins (`'https://app.example.com'`) allowed besides the app's own,
 * or a function that decides for every request that carries an Origin header.
 */
export type OriginPolicy = readonly string[] | ((origin: string, request: IncomingMessage) => boolean)

export interface SessionSocketAuthOwnOptions {
  /** @deprecated Read from @fastify/session; if given, it must equal @fastify/session's `cookieName`. */
  cookieName?: string
  /** @deprecated Read from @fastify/session; if given, it must equal @fastify/session's `cookiePrefix`. */
  cookiePrefix?: string
  /** Global rule, run for every namespace. */
  authorize?: SessionRule
  /** Loads the user for every socket, from its session, before the rules run; the result is `socket.data.user`. */
  loadUser?: UserLoader
  /** @fastify/passport's Authenticator: `socket.data.user` is what its registered deserializers give, as `request.user` over HTTP. */
  passport?: PassportAuthenticator
  /** Refuse sockets whose session has no user (`USER_REQUIRED`). Default `false`. */
  userRequired?: boolean
  /** Names the user of a session. Default: the user @fastify/passport serialized into the session, when it is a string or number. */
  identify?: UserIdentifier
  /** Rules per namespace name (`'/admin'`), run after the global rule. */
  namespaces?: Readonly<Record<string, SessionRule>>
  /** Origins allowed besides the app's own. Default: same origin only (plus exact origins listed in `cors.origin`). */
  allowedOrigins?: OriginPolicy
  /** How long a session store call may take before the handshake is refused with SESSION_STORE_UNAVAILABLE, in ms. Default 5000. */
  storeTimeout?: number
  /** How often each connected session is re-read from the store, in ms, to catch out-of-band revocation; `false` turns it off. Default 60000. */
  revalidateInterval?: number | false
  /** Let socket activity extend a rolling session's expiry. Default `false`. */
  keepAlive?: boolean
  /** With `keepAlive`, the most often one session is written to the store, in ms. Default 60000. */
  keepAliveInterval?: number
  /** Replaces the default pre-close step (disconnect this node's sockets), as in fastify-socket.io. `this` is the Fastify instance. */
  preClose?: (this: FastifyInstance, done: () => void) => void
}

/** Every Socket.IO `ServerOptions` key, at the top level, plus this plugin's own. */
export type SessionSocketAuthOptions = Partial<ServerOptions> & SessionSocketAuthOwnOptions

export interface ResolvedOptions {
  /** Deprecated overrides, checked against @fastify/session's own. */
  cookieName: string | undefined
  cookiePrefix: string | undefined
  authorize: SessionRule | undefined
  /** From `loadUser` or the `passport` preset; the passport preset still needs the Fastify instance. */
  loadUser: UserLoader | undefined
  passport: PassportAuthenticator | undefined
  userRequired: boolean
  identify: UserIdentifier
  namespaces: Map<string, SessionRule>
  allowedOrigins: OriginPolicy | undefined
  storeTimeout: number
  revalidateInterval: number | false
  keepAlive: boolean
  keepAliveInterval: number
  preClose: ((this: FastifyInstance, done: () => void) => void) | undefined
  socketIo: Partial<ServerOptions>
}

const SOCKET_IO_KEYS = new Set([
  // socket.io
  'path', 'serveClient', 'adapter', 'parser', 'connectTimeout', 'connectionStateRecovery', 'cleanupEmptyChildNamespaces',
  // engine.io
  'pingTimeout', 'pingInterval', 'upgradeTimeout', 'maxHttpBufferSize', 'allowRequest', 'transports', 'allowUpgrades',
  'perMessageDeflate', 'httpCompression', 'wsEngine', 'initialPacket', 'cookie', 'cors', 'allowEIO3',
  // engine.io attach
  'destroyUpgrade', 'destroyUpgradeTimeout', 'addTrailingSlash'
])

const OWN_KEYS = new Set<keyof SessionSocketAuthOwnOptions>([
  'cookieName', 'cookiePrefix', 'authorize', 'loadUser', 'passport', 'userRequired', 'identify', 'namespaces', 'allowedOrigins', 'storeTimeout',
  'revalidateInterval', 'keepAlive', 'keepAliveInterval', 'preClose'
])

export function resolveOptions (options: SessionSocketAuthOptions | undefined): ResolvedOptions {
  const opts = (options ?? {}) as Record<string, unknown>
  if (typeof opts !== 'object' || Array.isArray(opts)) {
    throw new InvalidOptionError('options must be an object, e.g. { authorize: (session) => Boolean(session.user) }')
  }
  const socketIo: Record<string, unknown> = {}
  for (const key of Object.keys(opts)) {
    if (SOCKET_IO_KEYS.has(key)) socketIo[key] = opts[key]
    else if (!OWN_KEYS.has(key as keyof SessionSocketAuthOwnOptions)) {
      // Fastify passes its own registration options (prefix, logLevel) through; they are not ours to judge.
      if (FASTIFY_REGISTER_KEYS.has(key)) continue
      throw new InvalidOptionError(`unknown option "${key}". Valid options are Socket.IO's ServerOptions and: ${[...OWN_KEYS].join(', ')}.`)
    }
  }

  const cookieName = optional<string | undefined>(opts, 'cookieName', 'string', undefined)
  if (cookieName === '') throw new InvalidOptionError('"cookieName" must not be empty; better, remove it: it is read from @fastify/session.')
  const cookiePrefix = optional<string | undefined>(opts, 'cookiePrefix', 'string', undefined)
  const authorize = optional<SessionRule | undefined>(opts, 'authorize', 'function', undefined)
  const loadUser = optional<UserLoader | undefined>(opts, 'loadUser', 'function', undefined)
  const passport = passportOption(opts.passport)
  if (loadUser !== undefined && passport !== undefined) {
    throw new InvalidOptionError('give either "loadUser" or "passport", not both: "passport" is a ready-made loadUser for @fastify/passport.')
  }
  const userRequired = optional(opts, 'userRequired', 'boolean', false)
  if (userRequired && loadUser === undefined && passport === undefined) {
    throw new InvalidOptionError('"userRequired" needs a way to load the user: set "loadUser" or "passport".')
  }
  const identify = optional<UserIdentifier>(opts, 'identify', 'function', passportIdentity(passport?.key ?? 'passport'))
  const preClose = optional<ResolvedOptions['preClose']>(opts, 'preClose', 'function', undefined)
  const storeTimeout = positiveMs(opts, 'storeTimeout', 5000)
  const keepAlive = optional(opts, 'keepAlive', 'boolean', false)
  const keepAliveInterval = positiveMs(opts, 'keepAliveInterval', 60_000)
  const revalidateInterval = opts.revalidateInterval === false ? false : positiveMs(opts, 'revalidateInterval', 60_000)

  return {
    cookieName,
    cookiePrefix,
    authorize,
    loadUser,
    passport,
    userRequired,
    identify,
    namespaces: namespaceRules(opts.namespaces),
    allowedOrigins: originPolicy(opts.allowedOrigins),
    storeTimeout,
    revalidateInterval,
    keepAlive,
    keepAliveInterval,
    preClose,
    socketIo: checkSocketIoOptions(socketIo)
  }
}

const FASTIFY_REGISTER_KEYS = new Set(['prefix', 'logLevel', 'logSerializers'])

function optional<T> (opts: Record<string, unknown>, key: string, type: 'string' | 'function' | 'boolean', fallback: T): T {
  const value = opts[key]
  if (value === undefined) return fallback
  const actual: string = typeof value
  if (actual !== type) {
    throw new InvalidOptionError(`"${key}" must be a ${type}, got ${describe(value)}.`)
  }
  return value as T
}

function positiveMs (opts: Record<string, unknown>, key: string, fallback: number): number {
  const value = opts[key]
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0 || value > 2 ** 31 - 1) {
    const off = key === 'revalidateInterval' ? ', or false to turn it off' : ''
    throw new InvalidOptionError(`"${key}" must be a number of milliseconds greater than 0${off}, got ${describe(value)}.`)
  }
  return value
}

function passportOption (value: unknown): PassportAuthenticator | undefined {
  if (value === undefined) return undefined
  const passport = value as Partial<PassportAuthenticator> | null
  if (passport === null || typeof passport !== 'object' || typeof passport.deserializeUser !== 'function' || typeof passport.key !== 'string') {
    throw new InvalidOptionError(`"passport" must be @fastify/passport's Authenticator (import fastifyPassport from '@fastify/passport'), got ${describe(value)}.`)
  }
  return passport as PassportAuthenticator
}

// @fastify/passport keeps what its serializer returned under its key ('passport').
function passportIdentity (key: string): UserIdentifier {
  return (session) => storedUserId((session as unknown as Record<string, unknown>)[key])
}

/** What the default identify takes for a user id: what @fastify/passport serialized, when it is a string or number. */
function storedUserId (stored: unknown): string | number | undefined {
  return typeof stored === 'string' || typeof stored === 'number' ? stored : undefined
}

function namespaceRules (value: unknown): Map<string, SessionRule> {
  const rules = new Map<string, SessionRule>()
  if (value === undefined) return rules
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new InvalidOptionError(`"namespaces" must be an object mapping a namespace name to a rule, e.g. { '/admin': (session) => session.user?.role === 'admin' }, got ${describe(value)}.`)
  }
  for (const [name, rule] of Object.entries(value)) {
    if (typeof rule !== 'function') {
      throw new InvalidOptionError(`the rule for namespace "${name}" must be a function (session, socket) => boolean, got ${describe(rule)}.`)
    }
    rules.set(name.startsWith('/') ? name : `/${name}`, rule as SessionRule)
  }
  return rules
}

function originPolicy (value: unknown): OriginPolicy | undefined {
  if (value === undefined || typeof value === 'function') return value as OriginPolicy | undefined
  if (Array.isArray(value) && value.every((origin) => typeof origin === 'string')) {
    for (const origin of value as string[]) {
      if (origin === '*' || !/^[a-z][a-z0-9+.-]*:\/\/[^/]+$/i.test(origin)) {
        throw new InvalidOptionError(`"allowedOrigins" entries must be exact origins such as "https://app.example.com" (scheme and host, no path, no wildcard), got "${origin}".`)
      }
    }
    return value as string[]
  }
  throw new InvalidOptionError(`"allowedOrigins" must be an array of origins or a function (origin, request) => boolean, got ${describe(value)}.`)
}

export const RECOVERY_REFUSED = '"connectionStateRecovery" is not supported: Socket.IO replays a recovered socket\'s missed packets and rooms while it builds the socket, before any middleware can check the session, so a client that has been logged out (or another user in the same browser) would receive them. Remove the option; clients reconnect with a fresh handshake and should fetch what they missed.'

export const EIO3_REFUSED = '"allowEIO3" is not supported: Socket.IO v2 clients join "/" during the Engine.IO handshake itself, and on plain-http sites browsers send a cross-site <img> or <script> request with the user\'s cookie and neither Origin nor Fetch Metadata, so any page could connect as the user. Upgrade clients to socket.io-client 3 or later.'

function checkSocketIoOptions (socketIo: Record<string, unknown>): Partial<ServerOptions> {
  if (socketIo.connectionStateRecovery !== undefined) throw new InvalidOptionError(RECOVERY_REFUSED)
  if (socketIo.allowEIO3 === true) throw new InvalidOptionError(EIO3_REFUSED)
  return socketIo as Partial<ServerOptions>
}

function describe (value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  return typeof value === 'string' ? `the string "${value}"` : typeof value
}
