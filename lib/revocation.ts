import type { FastifyBaseLogger } from 'fastify'
import type { Admission } from './handshake'
import { isWriteRefusal } from './errors'
import { redactError } from './log'
import type { SessionAccess } from './session-access'
import { expiryOf } from './session-access'
import { roomOfKey } from './session-key'
import { SessionWrites } from './session-writes'
import { reachesOtherNodes } from './upstream/socket-io'
import type { RevocationReason, RevokedPayload, SessionSocket, SessionSocketServer } from './types'

type EngineSocket = SessionSocket['conn']

/** The event a client receives, with `{ reason }`, just before the server ends its socket for a session reason. */
export const REVOKED_EVENT = 'session:revoked'

// Carried between the nodes of a cluster by the adapter's serverSideEmit.
const CLUSTER_EVENT = 'fastify-session-socket-auth:revoke'
const CHANGE_EVENT = 'fastify-session-socket-auth:changed'
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

/** All sockets and Engine.IO connections of one session on this node, and the one timer that watches that session. */
interface Entry {
  readonly key: string
  readonly sessionId: string
  readonly sockets: Set<SessionSocket>
  // A connection outlives its sockets (a client may leave every namespace and
  // open one later): it is ended with its session even with no socket open.
  readonly conns: Set<EngineSocket>
  expiresAt: number
  nextCheckAt: number
  lastTouch: number
  timer: NodeJS.Timeout | undefined
}

/**
 * Keeps every open socket true to its session: ends sockets and their
 * connections on logout, regenerate, expiry and out-of-band deletion, here and
 * on every other node.
 *
 * Work is per session, not per socket: one timer and one store read per
 * interval for a session, however many tabs and namespaces it has open.
 */
export class Revocation {
  /** This node's writes to sessions, kept from undoing what a revocation did (they consult its memory). */
  readonly writes: SessionWrites
  readonly #opts: RevocationOptions
  readonly #entries = new Map<string, Entry>()
  // Recent revocations by session key, oldest first. A handshake verifies its
  // session, then binds its socket a moment later: a revocation in between
  // finds no socket to end, so bind() looks here instead.
  readonly #recent = new Map<string, { at: number, reason: RevocationReason }>()
  // Which entry a bound socket or connection belongs to. With the handlers
  // below, shared by all of them, binding allocates no closure per socket.
  readonly #entryOf = new WeakMap<SessionSocket | EngineSocket, Entry>()
  readonly #onEnd: (this: SessionSocket | EngineSocket) => void
  #closed = false

  constructor (opts: RevocationOptions) {
    this.#opts = opts
    this.writes = new SessionWrites({
      access: opts.access,
      log: opts.log,
      revokedSince: (key, since) => this.revokedSince(key, since),
      memory: opts.access.timeout + LATE_HANDSHAKE_MARGIN
    })
    const revocation = this
    this.#onEnd = function (this: SessionSocket | EngineSocket) { revocation.#unbind(this) }
    opts.io.on(CLUSTER_EVENT, (key: unknown, reason: unknown) => {
      if (typeof key === 'string' && REASONS.has(reason as RevocationReason)) this.#guarded('a revocation from another node', () => this.revokeLocal(key, reason as RevocationReason))
    })
    opts.io.on(CHANGE_EVENT, (key: unknown, expiresAt: unknown) => {
      if (typeof key !== 'string' || typeof expiresAt !== 'number') return
      this.#guarded('a session change from another node', () => {
        this.writes.changedElsewhere(key)
        this.#expiresBy(key, expiresAt >= Number.MAX_VALUE ? Infinity : expiresAt)
      })
    })
  }

  /** How many sessions have sockets or connections on this node (for tests and metrics). */
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
    const late = this.revokedSince(admission.key, admission.checkedAt)
    if (late !== undefined) return this.#end([socket], [], late)
    let entry = this.#entries.get(admission.key)
    if (entry === undefined) {
      const now = Date.now()
      entry = {
        key: admission.key,
        sessionId: admission.sessionId,
        sockets: new Set(),
        conns: new Set(),
        expiresAt: admission.expiresAt,
        nextCheckAt: this.#nextRevalidation(now),
        lastTouch: now,
        timer: undefined
      }
      this.#entries.set(entry.key, entry)
    }
    entry.sockets.add(socket)
    // This read may be fresher than the entry's (or older, from a slow rule): keep the later expiry.
    if (admission.expiresAt > entry.expiresAt) entry.expiresAt = admission.expiresAt

    socket.join(roomOfKey(entry.key))
    this.#entryOf.set(socket, entry)
    socket.once('disconnect', this.#onEnd)
    const conn = socket.conn
    if (!entry.conns.has(conn)) {
      entry.conns.add(conn)
      this.#entryOf.set(conn, entry)
      conn.once('close', this.#onEnd)
    }
    if (this.#opts.keepAlive) {
      const bound = entry
      socket.use((_packet, next) => {
        // Runs in Socket.IO's nextTick: nothing may escape.
        this.#guarded('keep-alive', () => this.#activity(bound, admission), admission.sessionId)
        next()
      })
    }
    this.#schedule(entry)
  }

  /** End every socket of a session on this node, and tell the other nodes to do the same. */
  revokeEverywhere (key: string, reason: RevocationReason): Promise<void> {
    const repaired = this.revokeLocal(key, reason)
    this.#tellOtherNodes(CLUSTER_EVENT, key, reason)
    return repaired
  }

  /** An HTTP request on this node changed and saved a session: apply its expiry here, and let the other nodes know. */
  changedEverywhere (key: string, expiresAt: number): void {
    this.#expiresBy(key, expiresAt)
    // JSON has no Infinity (a session without maxAge): sent as the largest time instead.
    this.#tellOtherNodes(CHANGE_EVENT, key, Math.min(expiresAt, Number.MAX_VALUE))
  }

  // A session's life was shortened: its timer must fire at the new end, not the old one.
  #expiresBy (key: string, expiresAt: number): void {
    const entry = this.#entries.get(key)
    if (entry === undefined || expiresAt >= entry.expiresAt) return
    entry.expiresAt = expiresAt
    this.#schedule(entry)
  }

  /** Ends the session's sockets and connections on this node; resolves once writes of ours that overlapped it are undone. */
  revokeLocal (key: string, reason: RevocationReason): Promise<void> {
    this.#remember(key, reason)
    const repaired = this.writes.revoked(key, reason)
    const entry = this.#entries.get(key)
    if (entry !== undefined) {
      this.#forget(entry)
      this.#end([...entry.sockets], [...entry.conns], reason)
      this.#opts.log.debug({ session: key, reason, sockets: entry.sockets.size, connections: entry.conns.size }, 'fastify-session-socket-auth: session ended its sockets')
    }
    return repaired
  }

  /** What ended this session at or after `since`, if this node has heard of it. */
  revokedSince (key: string, since: number): RevocationReason | undefined {
    this.#pruneRecent(Date.now())
    const revoked = this.#recent.get(key)
    return revoked !== undefined && revoked.at >= since ? revoked.reason : undefined
  }

  close (): void {
    this.#closed = true
    for (const entry of this.#entries.values()) this.#forget(entry)
    this.#recent.clear()
  }

  #tellOtherNodes (event: string, ...args: Array<string | number>): void {
    // The in-memory adapter has no other nodes to tell (and warns if asked).
    if (reachesOtherNodes(this.#opts.io.of('/').adapter)) {
      this.#guarded('telling the other nodes', () => this.#opts.io.serverSideEmit(event, ...args))
    }
  }

  #end (sockets: SessionSocket[], conns: EngineSocket[], reason: RevocationReason): void {
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
    // Connections with no socket left open still carry the session's verdict.
    for (const conn of conns) if (conn.readyState !== 'closed') conn.close()
  }

  #remember (key: string, reason: RevocationReason): void {
    const now = Date.now()
    this.#recent.delete(key) // re-inserted last, so the map stays oldest first
    this.#recent.set(key, { at: now, reason })
    this.#pruneRecent(now)
  }

  #pruneRecent (now: number): void {
    const keepFor = this.#opts.access.timeout + LATE_HANDSHAKE_MARGIN
    for (const [key, revoked] of this.#recent) {
      if (now - revoked.at <= keepFor) break
      this.#recent.delete(key)
    }
  }

  // A socket that disconnected or a connection that closed: whichever it is, it leaves its entry.
  #unbind (member: SessionSocket | EngineSocket): void {
    const entry = this.#entryOf.get(member)
    if (entry === undefined) return
    this.#entryOf.delete(member)
    entry.sockets.delete(member as SessionSocket)
    entry.conns.delete(member as EngineSocket)
    if (entry.sockets.size === 0 && entry.conns.size === 0) this.#forget(entry)
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

  #schedule (entry: Entry): void {
    clearTimeout(entry.timer)
    entry.timer = undefined
    const due = Math.min(entry.expiresAt, entry.nextCheckAt)
    if (due === Infinity || this.#closed) return
    const timer = setTimeout(() => {
      this.#check(entry).catch((error: unknown) => this.#logFailure('revalidation', error, entry.sessionId))
    }, Math.min(Math.max(due - Date.now(), 0), MAX_TIMEOUT))
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
        if (expiresAt <= now) return this.#revokeAfterCheck(entry, 'expired')
        entry.expiresAt = expiresAt
        break
      }
      case 'unavailable':
        // Policy: a store outage does not end live sockets (that would log out
        // everyone at once); they are checked again next round. An expiry that
        // cannot be confirmed as extended still ends the session: fail closed.
        if (dueToExpire) return this.#revokeAfterCheck(entry, 'expired')
        this.#opts.log.warn({ session: entry.key, err: redactError(read.error, entry.sessionId) }, 'fastify-session-socket-auth: could not revalidate a session; keeping its sockets until the next check')
        break
      default:
        return this.#revokeAfterCheck(entry, dueToExpire ? 'expired' : 'revoked')
    }
    // Every check is a store read, whichever deadline woke it: the next read is
    // an interval from this one. (Comparing with nextCheckAt instead would read
    // twice whenever a timer fires a millisecond early.)
    entry.nextCheckAt = this.#nextRevalidation(now)
    this.#schedule(entry)
  }

  // Its repair of overlapping writes settles on its own, and logs its own failures.
  #revokeAfterCheck (entry: Entry, reason: RevocationReason): void {
    this.revokeLocal(entry.key, reason).catch(() => {})
  }

  #activity (entry: Entry, admission: Admission): void {
    const now = Date.now()
    if (now - entry.lastTouch < this.#opts.keepAliveInterval) return
    entry.lastTouch = now
    const session = admission.holder.session
    // Only a rolling session (one with maxAge) has an expiry to push forward.
    if (!session.cookie.originalMaxAge) return
    let extended: Date | undefined
    // Keep-alive carries no data of its own (it writes the new expiry onto the
    // freshest record), so only a revocation, not an HTTP change, refuses it.
    this.writes.run(entry.key, entry.sessionId, admission.checkedAt, async () => {
      extended = await this.#opts.access.extend(session)
    }, { carriesData: false }).then(() => {
      if (extended !== undefined && this.#entries.get(entry.key) === entry) {
        entry.expiresAt = extended.getTime()
        this.#schedule(entry)
      }
    }, (error: unknown) => {
      // Refused because the session ended or changed meanwhile: nothing to extend.
      if (isWriteRefusal(error)) return
      this.#logFailure('keep-alive could not extend a session; it', error, entry.sessionId)
    })
  }

  // Timers, adapter events and Socket.IO's nextTick callbacks have no caller to
  // hand an error to: an escape would end the process.
  #guarded (what: string, run: () => unknown, sessionId?: string): void {
    try {
      const result = run() as { catch?: (onError: (error: unknown) => void) => void } | undefined
      result?.catch?.((error: unknown) => this.#logFailure(what, error, sessionId))
    } catch (error) {
      this.#logFailure(what, error, sessionId)
    }
  }

  #logFailure (what: string, error: unknown, sessionId: string | undefined): void {
    this.#opts.log.warn({ err: redactError(error, sessionId) }, `fastify-session-socket-auth: ${what} failed`)
  }
}
