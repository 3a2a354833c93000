import type { IncomingMessage } from 'node:http'
import type { FastifyBaseLogger } from 'fastify'
import type { ExtendedError } from 'socket.io'
import type { RefusalCode } from './errors'
import { refusal, SessionReplacedError } from './errors'
import { redactError } from './log'
import type { OriginCheck } from './origin'
import type { RefusalLog } from './refusal-log'
import type { Rules } from './rules'
import type { SessionAccess, StoreRead } from './store-access'
import { expiryOf } from './store-access'
import { sessionKey } from './hashed-ids'
import type { HolderDeps } from './session-holder'
import { SessionHolder } from './session-holder'
import type { RevocationReason, SessionSocket } from './types'

export interface HandshakeDeps {
  access: SessionAccess
  holder: HolderDeps
  readSessionCookie: (request: IncomingMessage) => string | undefined
  originRefusal: OriginCheck
  rules: Rules
  log: FastifyBaseLogger
  logRefusal: RefusalLog
  /** The revocation memory: what ended this session after `since`, if this node has heard of it. */
  revokedSince: (key: string, since: number) => RevocationReason | undefined
  /** Whether an HTTP request (on any node that told this one) changed the session at or after `since`. */
  changedSince: (key: string, since: number) => boolean
  /** Whether a user loader is configured, and so `socket.data.user` is the plugin's. */
  exposesUser: boolean
}

/** A socket the session admitted: its session, and when that session expires. */
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
  /** The admission of a socket that the guard let in, handed over once (the guard keeps nothing per socket after). */
  admissionOf: (socket: SessionSocket) => Admission | undefined
}

/**
 * The namespace middleware that admits or refuses every socket: every
 * namespace a connection opens, at any time, is judged on the session as it is
 * now (one store read per namespace join), never on a verdict from earlier.
 * The request gate has already judged every HTTP request of the connection.
 */
export function createHandshakeGuard (deps: HandshakeDeps): Guard {
  const { access, readSessionCookie, originRefusal, rules, log, logRefusal, revokedSince, changedSince, exposesUser } = deps
  const admissions = new WeakMap<SessionSocket, Admission>()

  // Read top to bottom: each step returns a verdict, or the next step's
  // promise when it had to wait (a store that answers later, an async rule).
  // Nothing waits when nothing must: with a store that answers synchronously
  // and synchronous rules, a socket is judged in the turn it asked, as
  // Socket.IO would admit it with no check at all.
  function admit (socket: SessionSocket): Verdict | Promise<Verdict> {
    const request = socket.request
    // The gate judged this request already; judged again here, the guard is whole on its own.
    const originReason = originRefusal(request)
    if (originReason !== undefined) return refused('ORIGIN_NOT_ALLOWED', originReason)

    const cookie = readSessionCookie(request)
    if (cookie === undefined) return refused('SESSION_REQUIRED', 'no session cookie')

    const sessionId = access.unsign(cookie)
    if (sessionId === null) return refused('SESSION_INVALID', 'cookie signature does not verify')

    return judgeSession(socket, sessionId, sessionKey(sessionId), 1)
  }

  // One store read and the rules on what it returned; again if the session
  // changed over HTTP meanwhile (a demotion must not be admitted on the data
  // from before it), a few times at most.
  function judgeSession (socket: SessionSocket, sessionId: string, key: string, attempt: number): Verdict | Promise<Verdict> {
    const checkedAt = Date.now()
    return then(access.read(sessionId), (read) => judgeStored(socket, read, sessionId, key, checkedAt, attempt))
  }

  function judgeStored (socket: SessionSocket, read: StoreRead, sessionId: string, key: string, checkedAt: number, attempt: number): Verdict | Promise<Verdict> {
    switch (read.status) {
      case 'unavailable': return refused('SESSION_STORE_UNAVAILABLE', `store failed: ${redactError(read.error, sessionId).message}`, key)
      case 'missing': return refused('SESSION_INVALID', 'session not in store', key)
      case 'malformed': return refused('SESSION_INVALID', 'store returned a record that is not a session', key)
    }

    const expiresAt = expiryOf(read.record)
    if (expiresAt <= Date.now()) return refused('SESSION_INVALID', 'session expired', key)

    let holder: SessionHolder
    try {
      holder = new SessionHolder(socket.request, deps.holder, read.record, sessionId, key, checkedAt)
    } catch (error) {
      log.error({ err: redactError(error, sessionId), session: key }, '@fastify/session could not restore a stored session; connection refused')
      return refused('SESSION_INVALID', 'stored session could not be restored', key)
    }
    // Before the rules, which may read them.
    exposeOn(socket.data, holder, exposesUser)
    return then(rules(holder, socket), (verdict) => {
      if (!verdict.ok) return refused(verdict.code, verdict.reason, key)
      // A logout while the store read or an async rule ran: what was read is
      // stale. Checked last, as Socket.IO emits 'connection' right after.
      const revoked = revokedSince(key, checkedAt)
      if (revoked !== undefined) return refused('SESSION_INVALID', `session ended (${revoked}) during the handshake`, key)
      if (changedSince(key, checkedAt)) {
        if (attempt < MAX_ATTEMPTS) return judgeSession(socket, sessionId, key, attempt + 1)
        return refused('SESSION_INVALID', `the session changed during each of ${MAX_ATTEMPTS} reads`, key)
      }
      return { ok: true, holder, key, sessionId, expiresAt, checkedAt }
    })
  }

  function decide (socket: SessionSocket, next: (err?: ExtendedError) => void, verdict: Verdict): void {
    if (verdict.ok) {
      admissions.set(socket, verdict)
      next()
      return
    }
    logRefusal(verdict.code, { reason: verdict.reason, namespace: socket.nsp.name, session: verdict.key })
    next(refusal(verdict.code))
  }

  function failClosed (next: (err?: ExtendedError) => void, error: unknown): void {
    // Nothing above should throw; if it does, the door stays shut.
    log.error({ err: redactError(error, undefined) }, 'handshake failed')
    next(refusal('SESSION_STORE_UNAVAILABLE'))
  }

  const guard = ((socket, next) => {
    let verdict: Verdict | Promise<Verdict>
    try {
      verdict = admit(socket)
    } catch (error) {
      return failClosed(next, error)
    }
    if (verdict instanceof Promise) verdict.then((v) => decide(socket, next, v), (error: unknown) => failClosed(next, error))
    else decide(socket, next, verdict)
  }) as Guard
  guard.admissionOf = (socket) => {
    const admission = admissions.get(socket)
    admissions.delete(socket)
    return admission
  }
  return guard
}

/** Store reads a join makes at most while HTTP requests keep changing its session. */
const MAX_ATTEMPTS = 3

// Where socket.data keeps its holder: a symbol, so JSON, Object.keys and the adapter's serialization skip it.
const HOLDER = Symbol('fastify-session-socket-auth.holder')
type Exposed = Record<typeof HOLDER, SessionHolder>

/**
 * `socket.data.session` (and, with a user loader, `socket.data.user`) read
 * the holder, so that a reload or a refresh after a change elsewhere is what
 * handlers see. The accessors are shared by every socket: they find the
 * holder on `this`, so a socket costs no closure. Without a loader,
 * `socket.data.user` is left to the app, as Socket.IO apps commonly set it.
 */
const SESSION_PROPERTY: PropertyDescriptor = {
  get (this: Exposed) { return this[HOLDER].session },
  set () { throw new SessionReplacedError() },
  enumerable: true,
  configurable: true
}
const USER_PROPERTY: PropertyDescriptor = {
  get (this: Exposed) { return this[HOLDER].user },
  set (this: Exposed, user: unknown) { this[HOLDER].useUser(user) },
  enumerable: true,
  configurable: true
}

/** The holder of an admitted socket's session. */
export function holderOf (socket: SessionSocket): SessionHolder {
  return (socket.data as unknown as Exposed)[HOLDER]
}

function exposeOn (data: object, holder: SessionHolder, withUser: boolean): void {
  // Assigned, not defined (a third of the cost): a symbol key is skipped by JSON, Object.keys and for-in alike.
  (data as Exposed)[HOLDER] = holder
  Object.defineProperty(data, 'session', SESSION_PROPERTY)
  if (withUser) Object.defineProperty(data, 'user', USER_PROPERTY)
}

/** `next(value)`, now if `value` is here, or once it is. */
function then<T, R> (value: T | Promise<T>, next: (value: T) => R | Promise<R>): R | Promise<R> {
  return value instanceof Promise ? value.then(next) : next(value)
}

function refused (code: RefusalCode, reason: string, key?: string): Refused {
  return { ok: false, code, reason, key }
}
