import type { IncomingMessage } from 'node:http'
import type { FastifyBaseLogger } from 'fastify'
import type { ExtendedError } from 'socket.io'
import type { RefusalCode } from './errors'
import { refusal } from './errors'
import type { SessionRule } from './options'
import type { OriginCheck } from './origin'
import type { SessionAccess } from './session-access'
import { expiryOf } from './session-access'
import { SessionHolder } from './socket-session'
import { sessionKey } from './session-key'
import type { SessionSocket } from './types'

export interface HandshakeDeps {
  access: SessionAccess
  readSessionCookie: (request: IncomingMessage) => string | undefined
  originAllowed: OriginCheck
  authorize: SessionRule | undefined
  namespaceRules: ReadonlyMap<string, SessionRule>
  log: FastifyBaseLogger
}

/** A verified Engine.IO connection: its session, and when that session expires. */
export interface Admission {
  ok: true
  holder: SessionHolder
  key: string
  sessionId: string
  expiresAt: number
  /** When the store read behind this admission began: a revocation after it may not be in what was read. */
  checkedAt: number
}

interface Refused {
  ok: false
  code: RefusalCode
  reason: string
  key?: string
}

type Verdict = Admission | Refused

export type Guard = ((socket: SessionSocket, next: (err?: ExtendedError) => void) => void) & {
  /** The admission of a socket that the guard let in. */
  admissionOf: (socket: SessionSocket) => Admission | undefined
}

/**
 * The namespace middleware that admits or refuses every socket. A handshake
 * reads top to bottom in `verifyConnection`; rules run per namespace.
 *
 * All namespaces of one Engine.IO connection share a single verification
 * (one cookie, one store read), kept as long as the connection lives.
 */
export function createHandshakeGuard (deps: HandshakeDeps): Guard {
  const { access, readSessionCookie, originAllowed, authorize, namespaceRules, log } = deps
  const verdicts = new WeakMap<object, Promise<Verdict>>()
  const admissions = new WeakMap<SessionSocket, Admission>()

  async function verifyConnection (request: IncomingMessage): Promise<Verdict> {
    // Origin first: it needs no cookie or store, and a cross-site page should
    // learn nothing about the user's session from the answer.
    if (!originAllowed(request)) return refused('ORIGIN_NOT_ALLOWED', 'origin not allowed')

    const cookie = readSessionCookie(request)
    if (cookie === undefined) return refused('SESSION_REQUIRED', 'no session cookie')

    const sessionId = access.unsign(cookie)
    if (sessionId === null) return refused('SESSION_INVALID', 'cookie signature does not verify')

    const key = sessionKey(sessionId)
    const checkedAt = Date.now()
    const read = await access.read(sessionId)
    switch (read.status) {
      case 'unavailable': return refused('SESSION_STORE_UNAVAILABLE', `store failed: ${errorText(read.error, sessionId)}`, key)
      case 'missing': return refused('SESSION_INVALID', 'session not in store', key)
      case 'malformed': return refused('SESSION_INVALID', 'store returned a record that is not a session', key)
    }

    const expiresAt = expiryOf(read.record)
    if (expiresAt <= Date.now()) return refused('SESSION_INVALID', 'session expired', key)

    return { ok: true, holder: new SessionHolder(request, access, read.record, sessionId), key, sessionId, expiresAt, checkedAt }
  }

  async function admit (socket: SessionSocket): Promise<Verdict> {
    let verdict = verdicts.get(socket.conn)
    if (verdict === undefined) {
      verdict = verifyConnection(socket.request)
      verdicts.set(socket.conn, verdict)
    }
    const result = await verdict
    if (!result.ok) return result
    // A connection outlives its first namespace; the session may not.
    if (result.expiresAt <= Date.now()) return refused('SESSION_INVALID', 'session expired', result.key)

    const session = result.holder.session
    try {
      if (authorize !== undefined && await authorize(session, socket) !== true) {
        return refused('FORBIDDEN', 'authorize rule refused', result.key)
      }
      const rule = namespaceRules.get(socket.nsp.name)
      if (rule !== undefined && await rule(session, socket) !== true) {
        return refused('FORBIDDEN', `rule for ${socket.nsp.name} refused`, result.key)
      }
    } catch (error) {
      log.error({ err: error, namespace: socket.nsp.name, session: result.key }, 'fastify-session-socket-auth: an authorize rule threw; connection refused')
      return refused('FORBIDDEN', 'authorize rule threw', result.key)
    }
    return result
  }

  const guard = ((socket, next) => {
    admit(socket).then((verdict) => {
      if (verdict.ok) {
        admissions.set(socket, verdict)
        Object.defineProperty(socket.data, 'session', {
          get: sessionGetter(verdict.holder),
          enumerable: true,
          configurable: true
        })
        next()
        return
      }
      log.debug({ code: verdict.code, reason: verdict.reason, namespace: socket.nsp.name, session: verdict.key }, 'fastify-session-socket-auth: handshake refused')
      next(refusal(verdict.code))
    }, (error: unknown) => {
      // Nothing above should throw; if it does, the door stays shut.
      log.error({ err: error }, 'fastify-session-socket-auth: handshake failed')
      next(refusal('SESSION_STORE_UNAVAILABLE'))
    })
  }) as Guard
  guard.admissionOf = (socket) => admissions.get(socket)
  return guard
}

// Made out here, so that the getter every socket keeps holds the holder only,
// not this middleware's scope (and through `next`, Socket.IO's handshake closures).
function sessionGetter (holder: SessionHolder): () => SessionHolder['session'] {
  return () => holder.session
}

function refused (code: RefusalCode, reason: string, key?: string): Refused {
  return { ok: false, code, reason, key }
}

// A store's error text could quote the key it failed on; the log must not.
function errorText (error: unknown, sessionId: string): string {
  return (error instanceof Error ? error.message : String(error)).split(sessionId).join('<session id>')
}
