import type { FastifyBaseLogger } from 'fastify'
import type { Admission } from './handshake'
import { isWriteRefusal } from './errors'
import { redactError } from './log'
import type { SessionAccess } from './store-access'
import { expiryOf } from './store-access'
import type { UserIdentifier } from './options'
import type { Rules } from './rules'
import { roomOfKey, roomOfUserKey, userKey } from './hashed-ids'
import type { SessionHolder } from './session-holder'
import { sessionView } from './session-holder'
import { holderOf } from './handshake'
import { WriteGuard } from './write-guard'
import type { Deadline } from './deadlines'
import { Deadlines } from './deadlines'
import { reachesOtherNodes } from './upstream/socket-io'
import type { RevocationReason, RevokedPayload, SessionSocket, SessionSocketServer } from './types'

type EngineSocket = SessionSocket['conn']

/** The event a client receives, with `{ reason }`, just before the server ends its socket for a session reason. */
export const REVOKED_EVENT = 'session:revoked'

// Carried between the nodes of a cluster by the adapter's serverSideEmit.
const CLUSTER_EVENT = 'fastify-session-socket-auth:revoke'
const CHANGE_EVENT = 'fastify-session-socket-auth:changed'
const USER_REVOKE_EVENT = 'fastify-session-socket-auth:revoke-user'
const USER_REAUTHORIZE_EVENT = 'fastify-session-socket-auth:reauthorize-user'
export const REVOCATION_REASONS: ReadonlySet<RevocationReason> = new Set<RevocationReason>(['logout', 'regenerate', 'expired', 'revoked', 'forbidden'])
// How long a revocation is remembered beyond the store timeout, for handshakes
// that read the store before it and reach bind() after it (async authorize rules included).
const LATE_HANDSHAKE_MARGIN = 30_000

export interface RevocationOptions {
  io: SessionSocketServer
  access: SessionAccess
  /** Loads the user and runs the app's rules again, when the session changes elsewhere. */
  rules: Rules
  identify: UserIdentifier
  log: FastifyBaseLogger
  revalidateInterval: number | false
  keepAlive: boolean
  keepAliveInterval: number
}

/** All sockets and Engine.IO connections of one session on this node, and its next deadline (expiry or revalidation). */
interface Entry extends Deadline {
  readonly key: string
  readonly sessionId: string
  /** The user's key, from `identify` on the session as last read; undefined when the session has no user. */
  userKey: string | undefined
  // Arrays, not a Map and a Set: most sessions have one or a few sockets, and
  // an array of one costs a tenth of a Map's table. Order means nothing.
  readonly sockets: SessionSocket[]
  // A connection outlives its sockets (a client may leave every namespace and
  // open one later): it is ended with its session even with no socket open.
  readonly conns: EngineSocket[]
  expiresAt: number
  nextCheckAt: number
  lastTouch: number
  /** A keep-alive write is in flight: events meanwhile add none (a slow store would queue one per interval). */
  extending: boolean
  /** A refresh after a change elsewhere is running; another change meanwhile runs one more. */
  refreshing: Promise<void> | undefined
  refreshAgain: boolean
  /** A change could not be read (store outage): the next successful revalidation judges the sockets again. */
  stale: boolean
}

/**
 * Keeps every open socket true to its session: ends sockets and their
 * connections on logout, regenerate, expiry and out-of-band deletion, here and
 * on every other node.
 *
 * Work is per session, not per socket: one deadline and one store read per
 * interval for a session, however many tabs and namespaces it has open.
 */
export class Revocation {
  /** This node's writes to sessions, kept from undoing what a revocation did (they consult its memory). */
  readonly writes: WriteGuard
  readonly #opts: RevocationOptions
  readonly #entries = new Map<string, Entry>()
  readonly #byUser = new Map<string, Set<Entry>>()
  // Recent revocations by session key, oldest first. A handshake verifies its
  // session, then binds its socket a moment later: a revocation in between
  // finds no socket to end, so bind() looks here instead.
  readonly #recent = new Map<string, { at: number, reason: RevocationReason }>()
  // Which entry a bound connection belongs to (a socket finds its own by its
  // holder's key). With the handlers below, shared by all of them, binding
  // allocates no closure per socket.
  readonly #entryOf = new WeakMap<EngineSocket, Entry>()
  readonly #onSocketEnd: (this: SessionSocket) => void
  readonly #onConnEnd: (this: EngineSocket) => void
  readonly #deadlines = new Deadlines<Entry>((entry) => {
    this.#check(entry).catch((error: unknown) => {
      this.#logFailure('revalidation', error, entry.sessionId)
      // Judged as a store outage: kept, checked again an interval on, unless its expiry has come.
      if (this.#entries.get(entry.key) !== entry) return
      const now = Date.now()
      if (now >= entry.expiresAt) return this.#revokeAfterCheck(entry, 'expired')
      entry.nextCheckAt = this.#nextRevalidation(now)
      this.#schedule(entry)
    })
  })

  #closed = false

  constructor (opts: RevocationOptions) {
    this.#opts = opts
    this.writes = new WriteGuard({
      access: opts.access,
      log: opts.log,
      revokedSince: (key, since) => this.revokedSince(key, since),
      memory: opts.access.timeout + LATE_HANDSHAKE_MARGIN
    })
    const revocation = this
    this.#onSocketEnd = function (this: SessionSocket) { revocation.#unbindSocket(this) }
    this.#onConnEnd = function (this: EngineSocket) { revocation.#unbindConn(this) }
    opts.io.on(CLUSTER_EVENT, (key: unknown, reason: unknown) => {
      if (typeof key === 'string' && REVOCATION_REASONS.has(reason as RevocationReason)) this.#guarded('a revocation from another node', () => this.revokeLocal(key, reason as RevocationReason))
    })
    opts.io.on(CHANGE_EVENT, (key: unknown, expiresAt: unknown) => {
      if (typeof key !== 'string' || typeof expiresAt !== 'number') return
      this.#guarded('a session change from another node', () => {
        this.writes.changedElsewhere(key)
        this.#changedLocal(key, expiresAt >= Number.MAX_VALUE ? Infinity : expiresAt)
      })
    })
    opts.io.on(USER_REVOKE_EVENT, (userKey: unknown, reason: unknown) => {
      if (typeof userKey === 'string' && REVOCATION_REASONS.has(reason as RevocationReason)) this.#guarded('a user revocation from another node', () => this.#revokeUserLocal(userKey, reason as RevocationReason))
    })
    opts.io.on(USER_REAUTHORIZE_EVENT, (userKey: unknown) => {
      if (typeof userKey === 'string') this.#guarded('a user re-authorization from another node', () => this.#reauthorizeUserLocal(userKey))
    })
  }

  /** How many sessions have sockets or connections on this node (for tests and metrics). */
  get sessionCount (): number {
    return this.#entries.size
  }

  /** Sessions with a deadline queued (for tests: they must go when the sockets go). */
  get timerCount (): number {
    return this.#deadlines.size
  }

  /** Called when an admitted socket connects to its namespace. */
  bind (socket: SessionSocket, admission: Admission): void {
    if (this.#closed || !socket.connected) return
    const late = this.revokedSince(admission.key, admission.checkedAt)
    if (late !== undefined) return this.#end([socket], [], late, admission.sessionId)
    const conn = socket.conn
    let newConn = true
    let entry = this.#entries.get(admission.key)
    if (entry === undefined) {
      const now = Date.now()
      entry = {
        key: admission.key,
        sessionId: admission.sessionId,
        userKey: undefined,
        // Made with their first member: an array grown from [] reserves room for 16.
        sockets: [socket],
        conns: [conn],
        expiresAt: admission.expiresAt,
        nextCheckAt: this.#nextRevalidation(now),
        lastTouch: now,
        extending: false,
        dueAt: Infinity,
        slot: -1,
        refreshing: undefined,
        refreshAgain: false,
        stale: false
      }
      this.#entries.set(entry.key, entry)
    } else {
      entry.sockets.push(socket)
      newConn = !entry.conns.includes(conn)
      if (newConn) entry.conns.push(conn)
    }
    // This socket's read is the session's latest: it may name another user (a login or logout done in place).
    const user = this.#userKeyOf(admission.holder)
    if (user !== entry.userKey) this.#setUser(entry, user)
    else if (user !== undefined) socket.join(roomOfUserKey(user))
    // This read may be fresher than the entry's (or older, from a slow rule):
    // keep the later expiry, unless an HTTP change since the read may have
    // shortened it (the refresh below reads it again).
    const stale = this.writes.changedSince(entry.key, admission.checkedAt)
    if (!stale && admission.expiresAt > entry.expiresAt) entry.expiresAt = admission.expiresAt

    socket.join(roomOfKey(entry.key))
    // on, not once (which wraps the shared handler in a closure per socket); unbinding takes it off.
    socket.on('disconnect', this.#onSocketEnd)
    if (newConn) {
      this.#entryOf.set(conn, entry)
      conn.on('close', this.#onConnEnd)
    }
    // Changed over HTTP after this socket's store read: it was judged on stale data.
    if (stale) {
      this.#refresh(entry).catch((error: unknown) => this.#logFailure('refreshing a changed session', error, entry?.sessionId))
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

  /** An HTTP request on this node changed and saved a session: its sockets here and on every node see it. */
  changedEverywhere (key: string, expiresAt: number): void {
    this.#changedLocal(key, expiresAt)
    // JSON has no Infinity (a session without maxAge): sent as the largest time instead.
    this.#tellOtherNodes(CHANGE_EVENT, key, Math.min(expiresAt, Number.MAX_VALUE))
  }

  /** Every socket of a user on every node ends, with `session:revoked` and the reason. */
  revokeUserEverywhere (userKey: string, reason: RevocationReason): void {
    this.#revokeUserLocal(userKey, reason)
    this.#tellOtherNodes(USER_REVOKE_EVENT, userKey, reason)
  }

  /** Every socket of a user on every node loads the user again and runs the rules again. */
  reauthorizeUserEverywhere (userKey: string): Promise<void> {
    const done = this.#reauthorizeUserLocal(userKey)
    this.#tellOtherNodes(USER_REAUTHORIZE_EVENT, userKey)
    return done
  }

  #revokeUserLocal (userKey: string, reason: RevocationReason): void {
    for (const entry of [...(this.#byUser.get(userKey) ?? [])]) this.revokeLocal(entry.key, reason).catch(() => {})
  }

  #reauthorizeUserLocal (userKey: string): Promise<void> {
    return Promise.all([...(this.#byUser.get(userKey) ?? [])].map((entry) => this.#refresh(entry))).then(() => {})
  }

  #changedLocal (key: string, expiresAt: number): void {
    const entry = this.#entries.get(key)
    if (entry === undefined) return
    // A session's life was shortened: its deadline moves to the new end.
    if (expiresAt < entry.expiresAt) {
      entry.expiresAt = expiresAt
      this.#schedule(entry)
    }
    this.#refresh(entry).catch((error: unknown) => this.#logFailure('refreshing a changed session', error, entry.sessionId))
  }

  /**
   * The session changed elsewhere: one store read for all its sockets here,
   * then each socket's session is the new one, its user is loaded again and
   * the rules run again. A socket whose rules no longer pass leaves that
   * namespace (its other namespaces stay) with `{ reason: 'forbidden' }`.
   */
  #refresh (entry: Entry): Promise<void> {
    if (entry.refreshing !== undefined) {
      entry.refreshAgain = true
      return entry.refreshing
    }
    const run = async (): Promise<void> => {
      do {
        entry.refreshAgain = false
        const readAt = Date.now()
        const read = await this.#opts.access.read(entry.sessionId)
        if (this.#entries.get(entry.key) !== entry) return
        if (read.status === 'missing' || read.status === 'malformed') {
          this.revokeLocal(entry.key, 'revoked').catch(() => {})
          return
        }
        if (read.status === 'unavailable') {
          // Judged again at the next successful revalidation: a change is never dropped.
          entry.stale = true
          this.#opts.log.warn({ session: entry.key, err: redactError(read.error, entry.sessionId) }, 'could not read a changed session; its sockets are judged again at the next successful check')
          return
        }
        entry.stale = false
        // What the change left of the session's life: longer (a rolling
        // request) or shorter, this read is the latest word on it.
        const expiresAt = expiryOf(read.record)
        if (expiresAt <= Date.now()) {
          this.revokeLocal(entry.key, 'expired').catch(() => {})
          return
        }
        entry.expiresAt = expiresAt
        this.#schedule(entry)
        for (const socket of entry.sockets) holderOf(socket).refresh(read.record, readAt)
        const [first] = entry.sockets
        const user = first === undefined ? undefined : this.#userKeyOf(holderOf(first))
        if (user !== entry.userKey) this.#setUser(entry, user)
        await Promise.all(entry.sockets.map(async (socket) => {
          const verdict = await this.#opts.rules(holderOf(socket), socket)
          // A user that cannot be loaded after a change fails closed too: the change may be what took access away.
          if (verdict.ok || !socket.connected) return
          this.#opts.log.debug({ session: entry.key, namespace: socket.nsp.name, code: verdict.code, reason: verdict.reason }, 'a changed session no longer passes the rules; the socket leaves the namespace')
          this.#guarded('ending a socket the rules no longer admit', () => {
            socket.emit(REVOKED_EVENT, { reason: 'forbidden' } satisfies RevokedPayload)
            socket.disconnect()
          }, entry.sessionId)
        }))
      } while (entry.refreshAgain)
    }
    entry.refreshing = run().finally(() => { entry.refreshing = undefined })
    return entry.refreshing
  }

  #userKeyOf (holder: SessionHolder): string | undefined {
    try {
      const id = this.#opts.identify(sessionView(holder))
      if (id === undefined || id === null || id === '') return undefined
      // Anything else would name one shared room for every user it is given for ('[object Object]', 'NaN').
      if (!(typeof id === 'string' || (typeof id === 'number' && Number.isFinite(id)))) {
        this.#opts.log.warn({ session: holder.key, type: typeof id }, 'identify returned neither a string nor a finite number; the socket joins no user room')
        return undefined
      }
      return userKey(id)
    } catch (error) {
      this.#logFailure('identify', error, holder.sessionId)
      return undefined
    }
  }

  // The session names a user (another one, or none, after a change): index and rooms follow.
  #setUser (entry: Entry, next: string | undefined): void {
    const previous = entry.userKey
    if (previous !== undefined) {
      const entries = this.#byUser.get(previous)
      entries?.delete(entry)
      if (entries?.size === 0) this.#byUser.delete(previous)
    }
    entry.userKey = next
    if (next !== undefined) {
      let entries = this.#byUser.get(next)
      if (entries === undefined) this.#byUser.set(next, entries = new Set())
      entries.add(entry)
    }
    for (const socket of entry.sockets) {
      if (previous !== undefined && previous !== next) socket.leave(roomOfUserKey(previous))
      if (next !== undefined) socket.join(roomOfUserKey(next))
    }
  }

  /** Ends the session's sockets and connections on this node; resolves once writes of ours that overlapped it are undone. */
  revokeLocal (key: string, reason: RevocationReason): Promise<void> {
    this.#remember(key, reason)
    const repaired = this.writes.revoked(key, reason)
    const entry = this.#entries.get(key)
    if (entry !== undefined) {
      this.#forget(entry)
      this.#end([...entry.sockets], [...entry.conns], reason, entry.sessionId)
      this.#opts.log.debug({ session: key, reason, sockets: entry.sockets.length, connections: entry.conns.length }, 'session ended its sockets')
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
    for (const entry of [...this.#entries.values()]) this.#forget(entry)
    this.#deadlines.clear()
    this.#recent.clear()
  }

  #tellOtherNodes (event: string, ...args: Array<string | number>): void {
    // The in-memory adapter has no other nodes to tell (and warns if asked).
    if (reachesOtherNodes(this.#opts.io.of('/').adapter)) {
      this.#guarded('telling the other nodes', () => this.#opts.io.serverSideEmit(event, ...args))
    }
  }

  #end (sockets: SessionSocket[], conns: EngineSocket[], reason: RevocationReason, sessionId: string): void {
    const payload: RevokedPayload = { reason }
    // Every socket is told before any is ended: ending one socket ends every
    // namespace on its connection, and those would go untold (and, leaving
    // the registry mid-loop, unvisited).
    // Each one guarded: the app's 'disconnect' handlers run inside these
    // calls, and one that throws must not leave the session's other sockets open.
    for (const socket of sockets) this.#guarded('telling a socket its session ended', () => socket.emit(REVOKED_EVENT, payload), sessionId)
    for (const socket of sockets) {
      this.#guarded('ending a socket of an ended session', () => {
        if (reason === 'regenerate') {
          // The browser holds a new cookie by now: close the transport so the
          // client reconnects on its own and presents it.
          socket.conn.close()
        } else {
          // A server-side disconnect tells the client not to reconnect.
          socket.disconnect(true)
        }
      }, sessionId)
    }
    // Connections with no socket left open still carry the session's verdict.
    for (const conn of conns) this.#guarded('closing a connection of an ended session', () => { if (conn.readyState !== 'closed') conn.close() }, sessionId)
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

  // A socket that disconnected, or a connection that closed, leaves its entry.
  #unbindSocket (socket: SessionSocket): void {
    socket.off('disconnect', this.#onSocketEnd)
    const entry = this.#entries.get(holderOf(socket).key)
    if (entry !== undefined && removeFrom(entry.sockets, socket)) this.#forgetIfEmpty(entry)
  }

  #unbindConn (conn: EngineSocket): void {
    conn.off('close', this.#onConnEnd)
    const entry = this.#entryOf.get(conn)
    this.#entryOf.delete(conn)
    if (entry !== undefined && removeFrom(entry.conns, conn)) this.#forgetIfEmpty(entry)
  }

  #forgetIfEmpty (entry: Entry): void {
    if (entry.sockets.length === 0 && entry.conns.length === 0) this.#forget(entry)
  }

  #forget (entry: Entry): void {
    this.#deadlines.delete(entry)
    if (this.#entries.get(entry.key) === entry) this.#entries.delete(entry.key)
    if (entry.userKey === undefined) return
    const entries = this.#byUser.get(entry.userKey)
    entries?.delete(entry)
    if (entries?.size === 0) this.#byUser.delete(entry.userKey)
    entry.userKey = undefined
  }

  #nextRevalidation (now: number): number {
    const interval = this.#opts.revalidateInterval
    if (interval === false) return Infinity
    // Jitter, so sessions that connected together are not all read together;
    // only downwards, so a deletion is still seen within the interval.
    return now + interval * (0.75 + Math.random() * 0.25)
  }

  #schedule (entry: Entry): void {
    if (this.#closed || this.#entries.get(entry.key) !== entry) return
    this.#deadlines.set(entry, Math.min(entry.expiresAt, entry.nextCheckAt))
  }

  async #check (entry: Entry): Promise<void> {
    const readAt = Date.now()
    const read = await this.#opts.access.read(entry.sessionId)
    if (this.#entries.get(entry.key) !== entry) return
    const now = Date.now()
    const dueToExpire = now >= entry.expiresAt
    switch (read.status) {
      case 'found': {
        // Changed over HTTP while this read ran: its expiry may be the old
        // one; the refresh that change started sets the new one.
        if (this.writes.changedSince(entry.key, readAt)) break
        const expiresAt = expiryOf(read.record)
        if (expiresAt <= now) return this.#revokeAfterCheck(entry, 'expired')
        entry.expiresAt = expiresAt
        if (entry.stale) this.#refresh(entry).catch((error: unknown) => this.#logFailure('refreshing a changed session', error, entry.sessionId))
        break
      }
      case 'unavailable':
        // Policy: a store outage does not end live sockets (that would log out
        // everyone at once); they are checked again next round. An expiry that
        // cannot be confirmed as extended still ends the session: fail closed.
        if (dueToExpire) return this.#revokeAfterCheck(entry, 'expired')
        this.#opts.log.warn({ session: entry.key, err: redactError(read.error, entry.sessionId) }, 'could not revalidate a session; keeping its sockets until the next check')
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
    if (entry.extending || now - entry.lastTouch < this.#opts.keepAliveInterval) return
    entry.lastTouch = now
    const session = admission.holder.session
    // Only a rolling session (one with maxAge) has an expiry to push forward.
    if (!session.cookie.originalMaxAge) return
    let extended: Date | undefined
    let startedAt = 0
    entry.extending = true
    // Keep-alive carries no data of its own (it writes the new expiry onto the
    // freshest record), so only a revocation, not an HTTP change, refuses it.
    this.writes.run(entry.key, entry.sessionId, admission.checkedAt, async () => {
      startedAt = Date.now()
      extended = await this.#opts.access.extend(session)
    }, { carriesData: false }).finally(() => { entry.extending = false }).then(() => {
      // An HTTP change while it ran may have shortened the session: the refresh that change started sets the expiry.
      if (extended !== undefined && this.#entries.get(entry.key) === entry && !this.writes.changedSince(entry.key, startedAt)) {
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
    this.#opts.log.warn({ err: redactError(error, sessionId) }, `${what} failed`)
  }
}

/** Takes `item` out of `list` (order is not kept); whether it was there. */
function removeFrom<T> (list: T[], item: T): boolean {
  const at = list.indexOf(item)
  if (at === -1) return false
  const last = list.pop() as T
  if (at < list.length) list[at] = last
  return true
}
