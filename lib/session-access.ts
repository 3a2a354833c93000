import type { FastifyInstance } from 'fastify'
import type { FastifySessionObject, SessionStore } from '@fastify/session'
import { UnsupportedSessionPluginError } from './errors'

/**
 * The one door to @fastify/session's state. The user configures secrets and the
 * store once, on @fastify/session; this module reads those very objects from
 * a session that @fastify/session itself builds, so nothing is configured twice
 * and a secret rotation there is a rotation here.
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
  /** One store read, bounded by the timeout; never throws. */
  read (sessionId: string): Promise<StoreRead>
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

interface Signer { unsign (value: string): { valid: boolean, value: string | null } }
type SessionClass = new (
  store: SessionStore, request: object, idGenerator: unknown, cookieOpts: unknown,
  signer: Signer, record: unknown, sessionId: string
) => FastifySessionObject

export function readSessionAccess (fastify: FastifyInstance, timeout: number): SessionAccess {
  const probe: { session: unknown } = { session: null }
  // An empty cookie never verifies, so @fastify/session builds a fresh Session
  // synchronously without touching the store.
  fastify.decryptSession('', probe, () => {})
  const parts = probeParts(probe.session)
  const { store, signer, Session, idGenerator, cookieOpts, persistedHashKey } = parts
  // Called through the class: a session may hold data under these names.
  const saveSession = method(Session, 'save') as (this: FastifySessionObject, done: (err?: unknown) => void) => void
  const touchSession = method(Session, 'touch') as (this: FastifySessionObject) => void
  const isSavedSession = method(Session, 'isSaved') as (this: FastifySessionObject) => unknown

  const { cookieName, cookiePrefix } = probeCookie(fastify, (cookieOpts as { path?: string }).path ?? '/')

  return {
    timeout,
    cookieName,
    cookiePrefix,
    unsign (cookieValue) {
      const result = signer.unsign(cookieValue)
      return result.valid && typeof result.value === 'string' && result.value.length > 0 ? result.value : null
    },
    read (sessionId) {
      return callStore<unknown>((done) => store.get(sessionId, done), timeout).then(
        (record): StoreRead => {
          if (record === null || record === undefined) return MISSING
          return isStoredSession(record) ? { status: 'found', record } : MALFORMED
        },
        (error: unknown): StoreRead => (error as { code?: unknown } | null)?.code === 'ENOENT'
          ? MISSING
          : { status: 'unavailable', error }
      )
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
      touchSession.call(session)
      const id = session.sessionId
      const expires = session.cookie.expires ?? undefined
      // Not the store's touch(): @fastify/session judges expiry by the record's
      // cookie.expires, which touch() leaves as it was (connect-redis and
      // connect-pg-simple only move their own TTL), so the session would still
      // end on time at the next HTTP request. Write only the new expiry onto the
      // freshest record instead, so data an HTTP request saved meanwhile is kept.
      return callStore<unknown>((done) => store.get(id, done), timeout).then((record) => {
        if (!isStoredSession(record)) return undefined
        const cookie = record.cookie as StoredSession['cookie'] & { toJSON?: () => Record<string, unknown> }
        const fields = typeof cookie.toJSON === 'function' ? cookie.toJSON() : cookie
        const updated = { ...record, cookie: { ...fields, expires } }
        return callStore((done) => store.set(id, updated as never, done), timeout).then(() => expires)
      })
    },
    persistedHash (session) {
      return (session as unknown as Record<symbol, unknown>)[persistedHashKey]
    },
    isSaved (session) {
      return isSavedSession.call(session) === true
    }
  }
}

const MISSING: StoreRead = { status: 'missing' }
const MALFORMED: StoreRead = { status: 'malformed' }

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

function method (Session: SessionClass, name: string): (...args: never[]) => unknown {
  const fn = (Session.prototype as Record<string, unknown>)[name]
  if (typeof fn !== 'function') throw new UnsupportedSessionPluginError(`Session#${name} not found`)
  return fn as (...args: never[]) => unknown
}

/**
 * Runs one callback-style store call and settles exactly once: on the first
 * callback, on a synchronous throw, on a rejected promise the store returns,
 * or when the timeout passes. A late or repeated callback is ignored.
 */
function callStore<T> (call: (done: (err?: unknown, value?: T) => void) => unknown, timeout: number): Promise<T | undefined> {
  return new Promise((resolve, reject) => {
    let settled = false
    let timer: NodeJS.Timeout | undefined
    const done = (err?: unknown, value?: T): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      if (err) reject(err)
      else resolve(value)
    }
    try {
      const returned = call(done) as { then?: unknown } | undefined
      if (returned && typeof returned.then === 'function') {
        (returned as Promise<unknown>).then(undefined, (err: unknown) => done(err ?? new Error('session store rejected')))
      }
    } catch (err) {
      done(err ?? new Error('session store threw'))
    }
    // A store that has answered already (MemoryStore answers synchronously)
    // needs no timer: one timer less per handshake and per revalidation.
    if (!settled) {
      timer = setTimeout(() => {
        settled = true
        reject(new Error(`session store did not answer within ${timeout} ms`))
      }, timeout)
    }
  })
}

/**
 * @fastify/session's cookie name and prefix live only in its closure. Its
 * onRequest hook (function `handleSession`, in Fastify's private hook list of
 * this scope, symbol `fastify.hooks`) reads exactly `request.cookies[name]`,
 * and with a prefix calls `.startsWith(prefix)` on the value: run once on a
 * probe request whose cookies record what is read, it says both. With an
 * empty value it only builds a fresh Session (no store, no signer); the
 * prefix probe's value makes it call the signer only when there is no prefix,
 * and whatever the signer does with it is ignored. Public API that would
 * replace it: `fastify.sessionCookie` ({ name, prefix }) from @fastify/session.
 */
function probeCookie (fastify: FastifyInstance, path: string): { cookieName: string, cookiePrefix: string } {
  const hook = sessionHook(fastify)
  let cookieName: string | undefined
  let cookiePrefix = ''
  const probe = (value: unknown): void => {
    const cookies = new Proxy({}, {
      get (_target, key) {
        if (typeof key !== 'string') return undefined
        cookieName = key
        return value
      }
    })
    const request = { raw: { url: path, headers: {} }, headers: {}, cookies, session: null }
    try {
      hook(request, {}, () => {})
    } catch {
      // A signer handed the probe value may throw; the names are read by then.
    }
  }
  probe('')
  probe({ startsWith (prefix: unknown) { cookiePrefix = typeof prefix === 'string' ? prefix : ''; return false } })
  if (cookieName === undefined) throw new UnsupportedSessionPluginError('its onRequest hook read no cookie')
  return { cookieName, cookiePrefix }
}

type Hook = (request: object, reply: object, done: () => void) => void

function sessionHook (fastify: FastifyInstance): Hook {
  for (let object: object | null = fastify; object !== null; object = Object.getPrototypeOf(object)) {
    const symbol = Object.getOwnPropertySymbols(object).find((s) => s.description === 'fastify.hooks')
    if (symbol === undefined) continue
    const hooks = (object as Record<symbol, { onRequest?: unknown }>)[symbol]?.onRequest
    const hook = Array.isArray(hooks) ? hooks.find((fn: unknown) => typeof fn === 'function' && fn.name === 'handleSession') : undefined
    if (typeof hook === 'function') return hook as Hook
  }
  throw new UnsupportedSessionPluginError('its onRequest hook (handleSession) was not found')
}

interface ProbeParts {
  store: SessionStore
  signer: Signer
  Session: SessionClass
  idGenerator: unknown
  cookieOpts: unknown
  persistedHashKey: symbol
}

function probeParts (session: unknown): ProbeParts {
  if (session === null || typeof session !== 'object') {
    throw new UnsupportedSessionPluginError('decryptSession produced no session')
  }
  const symbols = Object.getOwnPropertySymbols(session)
  const field = (name: string): unknown => {
    const symbol = symbols.find((s) => s.description === name)
    return symbol === undefined ? undefined : (session as Record<symbol, unknown>)[symbol]
  }
  const store = field('sessionStore') as SessionStore | undefined
  const signer = field('cookieSignerKey') as Signer | undefined
  const idGenerator = field('generateId')
  const cookieOpts = field('cookieOpts')
  if (!store || typeof store.get !== 'function' || typeof store.set !== 'function' || typeof store.destroy !== 'function') {
    throw new UnsupportedSessionPluginError('store not found')
  }
  if (!signer || typeof signer.unsign !== 'function') throw new UnsupportedSessionPluginError('signer not found')
  if (typeof idGenerator !== 'function' || cookieOpts === null || typeof cookieOpts !== 'object') {
    throw new UnsupportedSessionPluginError('session options not found')
  }
  const persistedHashKey = symbols.find((s) => s.description === 'persistedHash')
  if (persistedHashKey === undefined || typeof field('persistedHash') !== 'string') {
    throw new UnsupportedSessionPluginError('persisted hash not found')
  }
  return { store, signer, Session: (session as { constructor: SessionClass }).constructor, idGenerator, cookieOpts, persistedHashKey }
}
