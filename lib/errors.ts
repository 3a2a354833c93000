import createError from '@fastify/error'

/**
 * Every reason a handshake can be refused, with the text a developer reads in
 * `err.data.message`. The key is the stable code: clients switch on it, so a
 * code is never renamed or reused for another meaning.
 */
export const REFUSALS = {
  SESSION_REQUIRED: 'The handshake carried no session cookie: log in over HTTP first.',
  SESSION_INVALID: 'The session cookie is forged, or its session is unknown, destroyed or expired.',
  FORBIDDEN: 'The session is valid, but an authorize rule refused this connection.',
  USER_REQUIRED: 'The session is valid, but no user is logged in to it: log in first.',
  USER_UNAVAILABLE: 'The session\'s user could not be loaded; try again later.',
  ORIGIN_NOT_ALLOWED: 'The request came from an Origin (or, without one, a cross-site page) this server does not allow.',
  JSONP_NOT_ALLOWED: 'JSONP polling is refused: it lets any page read the response. Use the default transports.',
  SESSION_STORE_UNAVAILABLE: 'The session store failed or did not answer in time; try again later.'
} as const

export type RefusalCode = keyof typeof REFUSALS

export interface RefusalData {
  code: RefusalCode
  message: string
}

/**
 * What the client receives as `connect_error`: `err.message` is the code and
 * `err.data` is `{ code, message }`. Socket.IO sends only those two fields, so
 * nothing else (reasons, ids) can leak through it.
 */
export class HandshakeRefusal extends Error {
  readonly code: RefusalCode
  readonly data: RefusalData

  constructor (code: RefusalCode) {
    super(code)
    this.name = 'HandshakeRefusal'
    this.code = code
    this.data = { code, message: REFUSALS[code] }
  }
}

// Refusals carry no per-handshake detail, so one frozen instance per code
// serves every handshake: a flood of forged cookies allocates no Error objects.
const instances = new Map<RefusalCode, HandshakeRefusal>()
for (const code of Object.keys(REFUSALS) as RefusalCode[]) {
  instances.set(code, Object.freeze(new HandshakeRefusal(code)))
}

export function refusal (code: RefusalCode): HandshakeRefusal {
  return instances.get(code) as HandshakeRefusal
}

export const InvalidOptionError = createError(
  'FST_SESSION_SOCKET_AUTH_INVALID_OPTION',
  'fastify-session-socket-auth: %s',
  500,
  TypeError
)

export const InvalidArgumentError = createError(
  'FST_SESSION_SOCKET_AUTH_INVALID_ARGUMENT',
  'fastify-session-socket-auth: %s',
  500,
  TypeError
)

export const UnsupportedSessionPluginError = createError(
  'FST_SESSION_SOCKET_AUTH_UNSUPPORTED_SESSION',
  'fastify-session-socket-auth: could not read the store and signer of @fastify/session (%s). Register @fastify/session ^11 before this plugin.',
  500
)

export const UnsupportedUpstreamError = createError(
  'FST_SESSION_SOCKET_AUTH_UNSUPPORTED_UPSTREAM',
  'fastify-session-socket-auth: the installed %s does not work the way this version expects (%s). Use the versions in the peer dependency ranges, and report it if they match.',
  500
)

export const AlreadyRegisteredError = createError(
  'FST_SESSION_SOCKET_AUTH_ALREADY_REGISTERED',
  'fastify-session-socket-auth: registered twice on one HTTP server. Register it once, in the scope where @fastify/session is registered, and use fastify.io everywhere.',
  500
)

export const SessionPluginMissingError = createError(
  'FST_SESSION_SOCKET_AUTH_NO_SESSION_PLUGIN',
  'fastify-session-socket-auth: register @fastify/session before this plugin, in the same scope: await app.register(fastifyCookie); await app.register(fastifySession, { secret, store }); await app.register(fastifySessionSocketAuth).',
  500
)

export const SecureSessionUnsupportedError = createError(
  'FST_SESSION_SOCKET_AUTH_SECURE_SESSION',
  'fastify-session-socket-auth: @fastify/secure-session is not supported: its session lives only in the encrypted cookie, so there is no store to check a socket against, and no way to revoke one (logout cannot reach a copy of the cookie). Use @fastify/session with a store.',
  500
)

export const WrongScopeError = createError(
  'FST_SESSION_SOCKET_AUTH_WRONG_SCOPE',
  'fastify-session-socket-auth: register it in the same scope as @fastify/session (usually the root, right after it), so that its hooks see every route that can log a session out; it was registered inside another plugin\'s scope.',
  500
)

export const SessionConflictError = createError(
  'FST_SESSION_SOCKET_AUTH_SESSION_CONFLICT',
  'The session was changed in the store since this socket loaded it (by an HTTP request or another socket). Call session.reload(), apply your change again and save.',
  409
)

export const SessionGoneError = createError(
  'FST_SESSION_SOCKET_AUTH_SESSION_GONE',
  'The session no longer exists in the store (logged out, expired or revoked); it cannot be saved from a socket.',
  410
)

export const SessionReplacedError = createError(
  'FST_SESSION_SOCKET_AUTH_SESSION_READ_ONLY',
  'socket.data.session is the session this plugin admitted the socket with; change its fields and save() it instead of replacing it',
  500,
  TypeError
)

export const StoreTimeoutError = createError(
  'FST_SESSION_SOCKET_AUTH_STORE_TIMEOUT',
  'session store did not answer within %s ms',
  503
)

/** A store that failed without saying why: it threw or rejected with nothing. */
export const StoreFailedError = createError(
  'FST_SESSION_SOCKET_AUTH_STORE_FAILED',
  'session store %s without an error',
  503
)

/** A socket-side write refused because the session ended or changed meanwhile: expected, not a fault. */
export function isWriteRefusal (error: unknown): boolean {
  return error instanceof SessionConflictError || error instanceof SessionGoneError
}
