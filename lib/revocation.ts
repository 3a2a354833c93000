import type { FastifyBaseLogger } from 'fastify'
import { Adapter } from 'socket.io-adapter'
import type { Admission } from './handshake'
import type { EndListener } from './socket-session'
import type { SessionAccess } from './session-access'
import { expiryOf } from './session-access'
import { roomOfKey, sessionKey } from './session-key'
import type { RevocationReason, RevokedPayload, SessionSocket, SessionSocketServer } from './types'

/** The event a client receives, with `{ reason }`, just before the server ends its socket for a session reason. */
export const REVOKED_EVENT = 'session:revoked'

// Carried between the nodes of a cluster by the adapter's serverSideEmit.
const CLUSTER_EVENT = 'fastify-session-socket-auth:revoke'
const REASONS = new Set<RevocationReason>(['logout', 'regenerate', 'expired', 'revoked'])
const MAX_TIMEOUT = 2 ** 31 - 1
// How long a revocation is remembered beyond the store timeout, for handshakes
// that read the store before it and reach bind() after it (async authorize rules included).
const LATE_HANDSHAKE_MARGIN = 30_000

export interface RevocationOptions {
  io: SessionSocketServer
  access: SessionAccess
  log: FastifyBaseLogger
  revalidateInterval: number | false
  keepAlive: boolean
  keepAliveInterval: number
}

/** All sockets of one session on this node, and the one timer that watches that session. */
interface Entry {
  readonly key: string
  readonly sessionId: string
  readonly sockets: Map<SessionSocket, Admission>
  expiresAt: number
  nextCheckAt: number
  lastTouch: number
  timer: NodeJS.Timeout | undefined
}

/**
 * Keeps every open socket true to its session: ends sockets on logout,
 * regenerate, expiry and out-of-band deletion, here and on every other node.
 *
 * Work is per session, not per socket: one timer and one store read per
 * interval for a session, however many tabs and namespaces it has open.
 */
export class Revocation {
  readonly #opts: RevocationOptions
  readonly #entries = new Map<string, Entry>()
  // Recent revocations by session key, oldest first. A handshake verifies its
  // session, then binds its socket a moment later: a revocation in between
  // finds no socket to end, so bind() looks here instead.
  readonly #recent = new Map<string, { at: number, reason: RevocationReason }>()
  // Which entry a bound socket belongs to. With the two handlers below, shared
  // by every socket, binding allocates no closure per socket.
  readonly #entryOf = new WeakMap<SessionSocket, Entry>()
  readonly #onDisconnect: (this: SessionSocket) => void
  readonly #onSessionEnd: EndListener
  #closed = false

  constructor (opts: RevocationOptions) {
    this.#opts = opts
    const revocation = this
    this.#onDisconnect = function (this: SessionSocket) { revocation.#unbind(this) }
    this.#onSessionEnd = (previous, reason) => this.revokeEverywhere(sessionKey(previous.sessionId), reason)
    opts.io.on(CLUSTER_EVENT, (key: unknown, reason: unknown) => {
      if (typeof key === 'string' && REASONS.has(reason as RevocationReason)) this.revokeLocal(key, reason as RevocationReason)
    })
  }

  /** How many sessions have sockets on this node (for tests and metrics). */
  get sessionCount (): number {
    return this.#entries.size
  }

  /** Timers this registry holds (for tests: they must go when the sockets go). */
  get timerCount (): number {
    let count = 0
    for (const entry of this.#entries.values()) if (entry.timer !== undefined) count++
    return count
  }

  /** Called when an admitted socket connects to its namespace. */
  bind (socket: SessionSocket, admission: Admission): void {
    if (this.#closed || !socket.connected) return
    const late = this.#revokedSince(admission.key, admission.checkedAt)
    if (late !== undefined) return this.#end([socket], late)
    let entry = this.#entries.get(admission.key)
    if (entry === undefined) {
      const now = Date.now()
      entry = {
        key: admission.key,
        sessionId: admission.sessionId,
        sockets: new Map(),
        expiresAt: admission.expiresAt,
        nextCheckAt: this.#nextRevalidation(now),
        lastTouch: now,
        timer: undefined
      }
      this.#entries.set(entry.key, entry)
    }
    entry.sockets.set(socket, admission)
    admission.holder.onEnd = this.#onSessionEnd
    if (admission.expiresAt !== entry.expiresAt) this.#setExpiry(entry, Math.max(admission.expiresAt, entry.expiresAt))

    socket.join(roomOfKey(entry.key))
    const bound = entry
    this.#entryOf.set(socket, entry)
    socket.once('disconnect', this.#onDisconnect)
    if (this.#opts.keepAlive) {
      socket.use((_packet, next) => {
        this.#activity(bound, admission)
        next()
      })
    }
    this.#schedule(entry)
  }

  /** End every socket of a session on this node, and tell the other nodes to do the same. */
  revokeEverywhere (key: string, reason: RevocationReason): void {
    this.revokeLocal(key, reason)
    const adapter = this.#opts.io.of('/').adapter
    // The in-memory adapter has no other nodes to tell (and warns if asked).
    if (adapter.serverSideEmit !== Adapter.prototype.serverSideEmit) {
      this.#opts.io.serverSideEmit(CLUSTER_EVENT, key, reason)
    }
  }

  revokeLocal (key: string, reason: RevocationReason): void {
    this.#remember(key, reason)
    const entry = this.#entries.get(key)
    if (entry === undefined) return
    this.#forget(entry)
    this.#end([...entry.sockets.keys()], reason)
    this.#opts.log.debug({ session: key, reason, sockets: entry.sockets.size }, 'fastify-session-socket-auth: session ended its sockets')
  }

  close (): void {
    this.#closed = true
    for (const entry of this.#entries.values()) this.#forget(entry)
    this.#recent.clear()
  }

  #end (sockets: SessionSocket[], reason: RevocationReason): void {
    const payload: RevokedPayload = { reason }
    // Every socket is told before any is ended: ending one socket ends every
    // namespace on its connection, and those would go untold (and, leaving
    // the registry mid-loop, unvisited).
    for (const socket of sockets) socket.emit(REVOKED_EVENT, payload)
    for (const socket of sockets) {
      if (reason === 'regenerate') {
        // The browser holds a new cookie by now: close the transport so the
        // client reconnects on its own and presents it.
        socket.conn.close()
      } else {
        // A server-side disconnect tells the client not to reconnect.
        socket.disconnect(true)
      }
    }
  }

  #remember (key: string, reason: RevocationReason): void {
    const now = Date.now()
    this.#recent.delete(key) // re-inserted last, so the map stays oldest first
    this.#recent.set(key, { at: now, reason })
    this.#pruneRecent(now)
  }

  #revokedSince (key: string, since: number): RevocationReason | undefined {
    this.#pruneRecent(Date.now())
    const revoked = this.#recent.get(key)
    return revoked !== undefined && revoked.at >= since ? revoked.reason : undefined
  }

  #pruneRecent (now: number): void {
    const keepFor = this.#opts.access.timeout + LATE_HANDSHAKE_MARGIN
    for (const [key, revoked] of this.#recent) {
      if (now - revoked.at <= keepFor) break
      this.#recent.delete(key)
    }
  }

  #unbind (socket: SessionSocket): void {
    const entry = this.#entryOf.get(socket)
    if (entry === undefined) return
    this.#entryOf.delete(socket)
    entry.sockets.delete(socket)
    if (entry.sockets.size === 0) this.#forget(entry)
  }

  #forget (entry: Entry): void {
    clearTimeout(entry.timer)
    entry.timer = undefined
    if (this.#entries.get(entry.key) === entry) this.#entries.delete(entry.key)
  }

  #nextRevalidation (now: number): number {
    const interval = this.#opts.revalidateInterval
    if (interval === false) return Infinity
    // Jitter, so sessions that connected together are not all read together;
    // only downwards, so a deletion is still seen within the interval.
    return now + interval * (0.75 + Math.random() * 0.25)
  }

  #setExpiry (entry: Entry, expiresAt: number): void {
    entry.expiresAt = expiresAt
    for (const admission of entry.sockets.values()) admission.expiresAt = expiresAt
  }

  #schedule (entry: Entry): void {
    clearTimeout(entry.timer)
    entry.timer = undefined
    const due = Math.min(entry.expiresAt, entry.nextCheckAt)
    if (due === Infinity || this.#closed) return
    const timer = setTimeout(() => { this.#check(entry) }, Math.min(Math.max(due - Date.now(), 0), MAX_TIMEOUT))
    timer.unref()
    entry.timer = timer
  }

  async #check (entry: Entry): Promise<void> {
    entry.timer = undefined
    const read = await this.#opts.access.read(entry.sessionId)
    if (this.#entries.get(entry.key) !== entry) return
    const now = Date.now()
    const dueToExpire = now >= entry.expiresAt
    switch (read.status) {
      case 'found': {
        const expiresAt = expiryOf(read.record)
        if (expiresAt <= now) return this.revokeLocal(entry.key, 'expired')
        this.#setExpiry(entry, expiresAt)
        break
      }
      case 'unavailable':
        // Policy: a store outage does not end live sockets (that would log out
        // everyone at once); they are checked again next round. An expiry that
        // cannot be confirmed as extended still ends the session: fail closed.
        if (dueToExpire) return this.revokeLocal(entry.key, 'expired')
        this.#opts.log.warn({ session: entry.key, err: read.error }, 'fastify-session-socket-auth: could not revalidate a session; keeping its sockets until the next check')
        break
      default:
        return this.revokeLocal(entry.key, dueToExpire ? 'expired' : 'revoked')
    }
    // Every check is a store read, whichever deadline woke it: the next read is
    // an interval from this one. (Comparing with nextCheckAt instead would read
    // twice whenever a timer fires a millisecond early.)
    entry.nextCheckAt = this.#nextRevalidation(now)
    this.#schedule(entry)
  }

  #activity (entry: Entry, admission: Admission): void {
    const now = Date.now()
    if (now - entry.lastTouch < this.#opts.keepAliveInterval) return
    entry.lastTouch = now
    const session = admission.holder.session
    // Only a rolling session (one with maxAge) has an expiry to push forward.
    if (!session.cookie.originalMaxAge) return
    this.#opts.access.touch(session).then(() => {
      const expires = session.cookie.expires
      if (expires instanceof Date && this.#entries.get(entry.key) === entry) {
        this.#setExpiry(entry, expires.getTime())
        this.#schedule(entry)
      }
    }, (error: unknown) => {
      this.#opts.log.warn({ session: entry.key, err: error }, 'fastify-session-socket-auth: keep-alive could not extend a session')
    })
  }
}
