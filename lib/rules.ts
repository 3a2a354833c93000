import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import type { RefusalCode } from './errors'
import { redactError } from './log'
import type { PassportAuthenticator, ResolvedOptions, UserLoader } from './options'
import type { SessionHolder } from './session-holder'
import { sessionView } from './session-holder'
import type { SessionSocket } from './types'

export type RuleVerdict = { ok: true } | { ok: false, code: RefusalCode, reason: string }

/** Loads the socket's user into its holder, then runs the app's rules: at every namespace join, and again when the session changes. */
export type Rules = (holder: SessionHolder, socket: SessionSocket) => RuleVerdict | Promise<RuleVerdict>

const ADMITTED: RuleVerdict = { ok: true }

/**
 * Who the session's user is, and whether the app lets this socket in: the
 * user from `loadUser` (or @fastify/passport's deserializers), `userRequired`,
 * then `authorize`, then the namespace's rule. A loader or rule that throws
 * refuses, and is logged with the session id cut out.
 */
export function createRules (fastify: FastifyInstance, opts: ResolvedOptions, log: FastifyBaseLogger): Rules {
  const { authorize, namespaces, userRequired } = opts
  const loadUser = opts.passport === undefined ? opts.loadUser : passportLoader(opts.passport, fastify)
  // Nothing to load or judge: every verified session passes, without building its Session or a promise.
  if (loadUser === undefined && authorize === undefined && namespaces.size === 0) return () => ADMITTED
  return async (holder, socket) => {
    // Rules and loaders that read fields of the session's data build no Session.
    const session = sessionView(holder)
    if (loadUser !== undefined) {
      let user: unknown
      try {
        user = await loadUser(session, socket)
      } catch (error) {
        logThrow(log, 'loading the user', error, holder, socket)
        return { ok: false, code: 'USER_UNAVAILABLE', reason: 'loadUser threw' }
      }
      // As in @fastify/passport, null and false mean no user.
      holder.useUser(user === null || user === false ? undefined : user)
    }
    if (userRequired && holder.user === undefined) return { ok: false, code: 'USER_REQUIRED', reason: 'the session has no user' }
    const rule = namespaces.get(socket.nsp.name)
    try {
      if (authorize !== undefined && await authorize(session, socket) !== true) {
        return { ok: false, code: 'FORBIDDEN', reason: 'authorize rule refused' }
      }
      if (rule !== undefined && await rule(session, socket) !== true) {
        return { ok: false, code: 'FORBIDDEN', reason: `rule for ${socket.nsp.name} refused` }
      }
    } catch (error) {
      logThrow(log, 'an authorize rule', error, holder, socket)
      return { ok: false, code: 'FORBIDDEN', reason: 'authorize rule threw' }
    }
    return ADMITTED
  }
}

/**
 * @fastify/passport's own deserialization, as its SessionStrategy does it for
 * `request.user`: the value under its key, through its registered
 * deserializers; `false` or `null` means no user. Deserializers get a
 * request-like object (raw, headers, session, log, server): there is no HTTP
 * request behind a socket event.
 */
function passportLoader (passport: PassportAuthenticator, fastify: FastifyInstance): UserLoader {
  return async (session, socket) => {
    const stored = (session as unknown as Record<string, unknown>)[passport.key]
    if (stored === undefined || stored === null) return undefined
    const request = { raw: socket.request, headers: socket.request.headers, session, log: fastify.log, server: fastify, socket: socket.request.socket }
    const user = await passport.deserializeUser(stored as never, request as never)
    // As @fastify/passport's SessionStrategy: `if (!user)` is no user ('' and 0 included).
    return user || undefined
  }
}

function logThrow (log: FastifyBaseLogger, what: string, error: unknown, holder: SessionHolder, socket: SessionSocket): void {
  log.error({ err: redactError(error, holder.sessionId), namespace: socket.nsp.name, session: holder.key }, `${what} threw; refused`)
}
