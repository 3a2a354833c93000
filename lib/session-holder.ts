import type { IncomingMessage } from 'node:http'
import { inspect } from 'node:util'
import type { FastifySessionObject } from '@fastify/session'
import stringify from 'safe-stable-stringify'
import { SessionConflictError, SessionGoneError } from './errors'
import type { SessionAccess, StoredSession } from './store-access'
import { expiryOf } from './store-access'
import type { WriteGuard } from './write-guard'
import type { RevocationReason } from './types'

type Callback = (err?: unknown) => void
export type EndListener = (previous: FastifySessionObject, reason: RevocationReason) => void

export interface HolderDeps {
  access: SessionAccess
  writes: WriteGuard
  /** Called when the socket's session is destroyed or regenerated from a socket handler. */
  onEnd: EndListener
}

/**
 * The `request` that a socket's @fastify/session Session belongs to.
 * @fastify/session writes `request.session` when a session is reloaded,
 * regenerated or destroyed; this holder turns those writes into events, so
 * `socket.data.session.destroy()` in a socket handler logs the session out
 * everywhere, just as it does over HTTP.
 */
export class SessionHolder {
  readonly sessionId: string
  /** The session's key (safe to log; names its room). */
  readonly key: string
  readonly #deps: HolderDeps
  readonly #request: IncomingMessage
  #user: unknown = undefined
  // Built on first use: many sockets never read their session (no rule reads
  // it, handlers do not), and a @fastify/session Session costs an object with
  // its cookie, a signature and a hash.
  #current: FastifySessionObject | undefined
  // The record `#current` is (or will be) built from.
  #record: StoredSession
  // What the store held when `#current` was loaded or last saved: the record
  // itself (kept as is, to spend nothing per handshake) or its fingerprint.
  #base: StoredSession | string
  // When `#base` was read: a revocation or HTTP change after it is not in it.
  #baseAt: number

  constructor (request: IncomingMessage, deps: HolderDeps, record: StoredSession, sessionId: string, key: string, readAt: number) {
    this.#request = request
    this.#deps = deps
    this.sessionId = sessionId
    this.key = key
    this.#record = record
    this.#base = record
    this.#baseAt = readAt
  }

  // What @fastify/session reads of a request (its Cookie: `protocol`, for `secure: 'auto'`),
  // as getters: nothing stored per socket that the socket's request already holds.
  get raw (): IncomingMessage { return this.#request }
  get headers (): IncomingMessage['headers'] { return this.#request.headers }
  get protocol (): 'http' | 'https' {
    return (this.#request.socket as { encrypted?: boolean } | null)?.encrypted === true ? 'https' : 'http'
  }

  /**
   * The session as the store holds it now, after a change elsewhere (an HTTP
   * request, on any node): what `socket.data.session` reads from here on.
   */
  refresh (record: StoredSession, readAt: number): void {
    this.#current = undefined
    this.#record = record
    this.#base = record
    this.#baseAt = readAt
  }

  /** The socket's user (`socket.data.user`): as the loader last loaded it, or as the app set it since. */
  get user (): unknown { return this.#user }

  /** The user a loader loaded, or the app assigned to `socket.data.user`. */
  useUser (user: unknown): void {
    this.#user = user
  }

  /** A field of the session's data, read without building the Session. */
  peek (field: string): unknown {
    return this.#data()[field]
  }

  /**
   * Whether the Session would answer this field from its data: a field it
   * copied from the stored record (enumerable: its for…in), or a name it has
   * no member for, which it would not have either. Its cookie and id are its own.
   */
  answersFromData (field: string): boolean {
    return !SESSION_OWN.has(field) && (this.#holds(field) || !this.#deps.access.isSessionMember(field))
  }

  /** Whether the session's data has this field (what `field in session` says of a field answered from data). */
  holdsData (field: string): boolean {
    return this.#holds(field)
  }

  #holds (field: string): boolean {
    return Object.prototype.propertyIsEnumerable.call(this.#data(), field)
  }

  #data (): Record<string, unknown> {
    return this.#current === undefined ? this.#record : this.#current as unknown as Record<string, unknown>
  }

  /** The socket's live session. After a destroy it stays readable, for disconnect handlers. */
  get session (): FastifySessionObject {
    if (this.#current === undefined) {
      this.#current = this.#deps.access.restore(this, this.#record, this.sessionId)
      this.#guardSave(this.#current)
    }
    return this.#current
  }

  set session (next: FastifySessionObject | null) {
    const previous = this.session
    if (next === null) {
      this.#deps.onEnd(previous, 'logout')
      return
    }
    this.#current = next
    this.#guardSave(next)
    if (next.sessionId !== previous.sessionId) {
      // A socket cannot hand the browser a new cookie, so a session
      // regenerated here would be orphaned: end the old one and make the
      // client come back through an HTTP login.
      this.#deps.onEnd(previous, 'regenerate')
      return
    }
    // reload(): what it read is the new base.
    this.#base = fingerprint(next)
    this.#baseAt = Date.now()
  }

  // save() compares the stored record with the one this socket loaded and
  // refuses to overwrite what someone else saved in between; the write itself
  // goes through WriteGuard, which keeps it from undoing a logout or an
  // HTTP change that lands while it runs.
  #guardSave (session: FastifySessionObject): void {
    const guarded = (callback?: Callback): Promise<void> | undefined => {
      const saving = this.#deps.writes.run(this.key, session.sessionId, this.#baseAt, () => this.#saveChecked(session))
      if (typeof callback !== 'function') return saving
      saving.then(() => callback(), callback)
      return undefined
    }
    Object.defineProperty(session, 'save', { value: guarded, enumerable: false, configurable: true, writable: true })
  }

  async #saveChecked (session: FastifySessionObject): Promise<void> {
    const { access } = this.#deps
    const readAt = Date.now()
    const read = await access.read(session.sessionId)
    if (read.status === 'unavailable') throw read.error
    if (read.status !== 'found') throw new SessionGoneError()
    const stored = read.record
    // An in-memory store may hold this very object; then no one else wrote it.
    if ((stored as unknown) !== session && fingerprint(stored) !== this.#baseFingerprint()) {
      throw new SessionConflictError()
    }
    // An HTTP request may have rolled the expiry forward meanwhile: keep the later one.
    const theirs = expiryOf(stored)
    const ours = session.cookie.expires?.getTime() ?? Infinity
    if (Number.isFinite(theirs) && theirs > ours) session.cookie.expires = new Date(theirs)
    await access.save(session)
    this.#base = fingerprint(session)
    this.#baseAt = readAt
  }

  #baseFingerprint (): string {
    if (typeof this.#base !== 'string') this.#base = fingerprint(this.#base)
    return this.#base
  }
}

// What @fastify/session's Session does not copy from the stored record: it has its own.
const SESSION_OWN: ReadonlySet<string> = new Set(['cookie', 'sessionId', 'encryptedSessionId'])

/**
 * The session as the app's rules and loaders see it. Reading a field of its
 * data reads the stored record, without building @fastify/session's Session
 * (a Cookie, an HMAC signature and a SHA-256 of the data: as much work again
 * as the rest of a handshake); anything else (the cookie, the id, a method, a
 * write, listing its keys) builds the real Session and is done on it.
 */
export function sessionView (holder: SessionHolder): FastifySessionObject {
  return new Proxy(new ViewTarget(holder), VIEW) as unknown as FastifySessionObject
}

// The view's holder, under a key no session field can have.
const VIEW_HOLDER = Symbol('fastify-session-socket-auth.view')

class ViewTarget {
  readonly [VIEW_HOLDER]: SessionHolder
  constructor (holder: SessionHolder) { this[VIEW_HOLDER] = holder }
  // util.inspect shows a proxy's target, calling this with the proxy as `this`: show the session instead.
  [inspect.custom] (): FastifySessionObject { return this[VIEW_HOLDER].session }
}

const VIEW: ProxyHandler<ViewTarget> = {
  get ({ [VIEW_HOLDER]: holder }, key) {
    if (typeof key === 'string' && holder.answersFromData(key)) return holder.peek(key)
    if (key === VIEW_HOLDER) return holder
    const session = holder.session
    return Reflect.get(session, key, session)
  },
  has: ({ [VIEW_HOLDER]: holder }, key) => typeof key === 'string' && holder.answersFromData(key) ? holder.holdsData(key) : Reflect.has(holder.session, key),
  set: ({ [VIEW_HOLDER]: holder }, key, value) => Reflect.set(holder.session, key, value, holder.session),
  deleteProperty: ({ [VIEW_HOLDER]: holder }, key) => Reflect.deleteProperty(holder.session, key),
  defineProperty: ({ [VIEW_HOLDER]: holder }, key, descriptor) => Reflect.defineProperty(holder.session, key, descriptor),
  ownKeys: ({ [VIEW_HOLDER]: holder }) => Reflect.ownKeys(holder.session),
  getOwnPropertyDescriptor: ({ [VIEW_HOLDER]: holder }, key) => Reflect.getOwnPropertyDescriptor(holder.session, key),
  getPrototypeOf: ({ [VIEW_HOLDER]: holder }) => Reflect.getPrototypeOf(holder.session)
}

/** The session's data as JSON would store it, without the cookie (which rolls on every request). */
function fingerprint (session: object): string {
  return stringify(session, function (this: unknown, key: string, value: unknown) {
    return this === session && key === 'cookie' ? undefined : value
  }) ?? ''
}
