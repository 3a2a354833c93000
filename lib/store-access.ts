import type { FastifyInstance } from 'fastify'
import type { FastifySessionObject } from '@fastify/session'
import { StoreFailedError, StoreTimeoutError } from './errors'
import { readFastifySession } from './upstream/fastify-session'

/**
 * The one door to the session store and signer, which the user configured
 * once, on @fastify/session (lib/upstream/fastify-session.ts finds them), so
 * nothing is configured twice and a secret rotation there is a rotation here.
 *
 * Why not only `fastify.decryptSession`: it regenerates (and so writes) expired
 * sessions, reads the store for cookies whose signature is forged, and admits
 * records that are not sessions at all. The guard must do none of that.
 */
export interface SessionAccess {
  /** @fastify/session's cookie name, and the prefix of its value ('' for none). */
  readonly cookieName: string
  readonly cookiePrefix: string
  /** The session id inside a signed cookie value, or null when no secret verifies it. */
  unsign (cookieValue: string): string | null
  /**
   * One store read, bounded by the timeout; never throws or rejects. Answered
   * synchronously when the store answers synchronously (MemoryStore), so a
   * handshake on such a store completes in the turn it started, as it would
   * with no check at all.
   */
  read (sessionId: string): StoreRead | Promise<StoreRead>
  /** A live @fastify/session Session for a stored record, bound to `holder` as its request. */
  restore (holder: object, record: StoredSession, sessionId: string): FastifySessionObject
  /** Session#save, called through the class (session data cannot shadow it), bounded by the timeout. */
  save (session: FastifySessionObject): Promise<void>
  /** Store#destroy, bounded by the timeout. */
  destroy (sessionId: string): Promise<void>
  /** Extend a rolling session in the store: its new expiry written onto the freshest record. Resolves with that expiry, if any. */
  extend (session: FastifySessionObject): Promise<Date | undefined>
  /**
   * A fingerprint of the data @fastify/session last read or wrote for this
   * session (its private persisted hash): it differs after a request that
   * changed the session and saved it.
   */
  persistedHash (session: FastifySessionObject): unknown
  /** Whether @fastify/session's Session has a member of this name (a method or getter, its own or Object's). */
  isSessionMember (name: string): boolean
  /** Whether the session was saved since it was loaded (Session#isSaved, through the class). */
  isSaved (session: FastifySessionObject): boolean
  readonly timeout: number
}

export interface StoredSession {
  cookie: { expires?: string | Date | null, originalMaxAge?: number | null } & Record<string, unknown>
  [key: string]: unknown
}

export type StoreRead =
  | { status: 'found', record: StoredSession }
  | { status: 'missing' }
  | { status: 'malformed' }
  | { status: 'unavailable', error: unknown }

export function readSessionAccess (fastify: FastifyInstance, timeout: number): SessionAccess {
  const { store, signer, Session, idGenerator, cookieOpts, persistedHashKey, cookieName, cookiePrefix, methods } = readFastifySession(fastify)
  const { save: saveSession, isSaved: isSavedSession } = methods

  return {
    timeout,
    cookieName,
    cookiePrefix,
    unsign (cookieValue) {
      const result = signer.unsign(cookieValue)
      return result.valid && typeof result.value === 'string' && result.value.length > 0 ? result.value : null
    },
    read (sessionId) {
      const answer = askStore<unknown>((done) => store.get(sessionId, done), timeout)
      return answer instanceof Promise ? answer.then(toStoreRead) : toStoreRead(answer)
    },
    restore (holder, record, sessionId) {
      return new Session(store, holder, idGenerator, cookieOpts, signer, record, sessionId)
    },
    save (session) {
      return callStore((done) => { saveSession.call(session, done) }, timeout).then(() => {})
    },
    destroy (sessionId) {
      return callStore((done) => store.destroy(sessionId, done), timeout).then(() => {})
    },
    extend (session) {
      const id = session.sessionId
      // Not the store's touch(): @fastify/session judges expiry by the record's
      // cookie.expires, which touch() leaves as it was (connect-redis and
      // connect-pg-simple only move their own TTL), so the session would still
      // end on time at the next HTTP request. Write only the new expiry onto the
      // freshest record instead, so data an HTTP request saved meanwhile is kept.
      return callStore<unknown>((done) => store.get(id, done), timeout).then((record) => {
        if (!isStoredSession(record)) return undefined
        const cookie = record.cookie as StoredSession['cookie'] & { toJSON?: () => Record<string, unknown> }
        const fields = typeof cookie.toJSON === 'function' ? cookie.toJSON() : cookie
        // The session's life as the store holds it now, as Session#touch
        // would use it: a route may have changed maxAge since the socket read it.
        const maxAge = fields.originalMaxAge
        if (typeof maxAge !== 'number' || !(maxAge > 0)) return undefined
        const expires = new Date(Date.now() + maxAge)
        session.cookie.expires = expires
        const updated = { ...record, cookie: { ...fields, expires } }
        return callStore((done) => store.set(id, updated as never, done), timeout).then(() => expires)
      })
    },
    persistedHash (session) {
      return (session as unknown as Record<symbol, unknown>)[persistedHashKey]
    },
    isSessionMember (name) {
      return name in Session.prototype
    },
    isSaved (session) {
      return isSavedSession.call(session) === true
    }
  }
}

const MISSING: StoreRead = { status: 'missing' }
const MALFORMED: StoreRead = { status: 'malformed' }

function toStoreRead (answer: Answer<unknown>): StoreRead {
  if (answer.failed) {
    return (answer.error as { code?: unknown } | null)?.code === 'ENOENT' ? MISSING : { status: 'unavailable', error: answer.error }
  }
  const record = answer.value
  if (record === null || record === undefined) return MISSING
  return isStoredSession(record) ? { status: 'found', record } : MALFORMED
}

/**
 * The moment @fastify/session considers a stored session expired: its cookie's
 * `expires`. A record without one (no maxAge) never expires.
 */
export function expiryOf (record: { cookie: { expires?: string | Date | null } }): number {
  const expires = record.cookie.expires
  if (expires === undefined || expires === null || expires === '') return Infinity
  const time = new Date(expires).getTime()
  return Number.isNaN(time) ? -Infinity : time
}

function isStoredSession (record: unknown): record is StoredSession {
  if (record === null || typeof record !== 'object' || Array.isArray(record)) return false
  const cookie = (record as { cookie?: unknown }).cookie
  if (cookie === null || typeof cookie !== 'object' || Array.isArray(cookie)) return false
  const expires = (cookie as { expires?: unknown }).expires
  if (expires !== undefined && expires !== null && !(expires instanceof Date) && typeof expires !== 'string') return false
  // JSON.parse makes "__proto__" an own key; @fastify/session's constructor
  // would assign it and so replace the session's prototype.
  if (Object.hasOwn(record, '__proto__')) return false
  return !(expiryOf(record as StoredSession) === -Infinity)
}

type Answer<T> = { failed: false, value: T | undefined } | { failed: true, error: unknown }

/** askStore, as a promise that rejects on failure. */
function callStore<T> (call: (done: (err?: unknown, value?: T) => void) => unknown, timeout: number): Promise<T | undefined> {
  return Promise.resolve(askStore(call, timeout)).then((answer) => answer.failed ? Promise.reject(answer.error) : answer.value)
}

/**
 * Runs one callback-style store call and settles exactly once: on the first
 * callback, on a synchronous throw, on a rejected promise the store returns,
 * or when the timeout passes. A late or repeated callback is ignored. A store
 * that answers synchronously (MemoryStore) is answered synchronously: no
 * promise, no timer.
 */
function askStore<T> (call: (done: (err?: unknown, value?: T) => void) => unknown, timeout: number): Answer<T> | Promise<Answer<T>> {
  let answer: Answer<T> | undefined
  let settle: ((answer: Answer<T>) => void) | undefined
  let timer: NodeJS.Timeout | undefined
  const finish = (result: Answer<T>): void => {
    if (answer !== undefined) return
    answer = result
    clearTimeout(timer)
    settle?.(result)
  }
  const done = (err?: unknown, value?: T): void => finish(err ? { failed: true, error: err } : { failed: false, value })
  try {
    const returned = call(done) as { then?: unknown } | undefined
    if (returned && typeof returned.then === 'function') {
      (returned as Promise<unknown>).then(undefined, (err: unknown) => done(err ?? new StoreFailedError('rejected')))
    }
  } catch (err) {
    done(err ?? new StoreFailedError('threw'))
  }
  if (answer !== undefined) return answer
  return new Promise((resolve) => {
    settle = resolve
    timer = setTimeout(() => finish({ failed: true, error: new StoreTimeoutError(timeout) }), timeout)
  })
}
