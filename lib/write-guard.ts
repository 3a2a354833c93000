import type { FastifyBaseLogger } from 'fastify'
import { SessionConflictError, SessionGoneError } from './errors'
import { redactError } from './log'
import type { SessionAccess } from './store-access'
import type { RevocationReason } from './types'

/** After these, @fastify/session has taken the session out of the store: it must stay out. */
const DESTROYED = new Set<RevocationReason>(['logout', 'regenerate'])

/** This node's writes to one session. */
interface Track {
  readonly sessionId: string
  /** The last write queued: the next one starts when it settles. */
  queue: Promise<void>
  pending: number
  lastEnd: number
}

export interface WriteGuardOptions {
  access: SessionAccess
  log: FastifyBaseLogger
  /** The revocation memory: what ended this session after `since`, if anything. */
  revokedSince: (key: string, since: number) => RevocationReason | undefined
  /** How long a finished write, and an HTTP change, are remembered (ms). */
  memory: number
}

/**
 * Every write this plugin makes to a session (a socket's `save()`, keep-alive)
 * goes through here, because the store API has no compare-and-set: a write
 * that read before a logout or an HTTP change, and lands after it, would bring
 * the session back or undo the change. So, per session on this node:
 * - writes run one at a time;
 * - a write is refused if the session was revoked, or changed by an HTTP
 *   request, since the data it carries was read;
 * - a logout or regenerate that overlaps a write of ours (here, or on another
 *   node: the revocation reaches every node) is applied again once that write
 *   has landed: the session is destroyed again;
 * - an HTTP change on this node that overlaps a write of ours is saved again
 *   once that write has landed, so the HTTP request's data wins.
 */
export class WriteGuard {
  readonly #opts: WriteGuardOptions
  // Oldest first (re-inserted on every change), so pruning stops at the first recent one.
  readonly #tracks = new Map<string, Track>()
  readonly #changes = new Map<string, number>()

  constructor (opts: WriteGuardOptions) {
    this.#opts = opts
  }

  /**
   * Runs `write` after this session's earlier writes on this node. Rejects
   * with SessionGoneError or SessionConflictError if the session was revoked
   * or changed over HTTP since `since` (before the write, or while it ran);
   * a write that `carriesData: false` (keep-alive) is refused only for a revocation.
   */
  run (key: string, sessionId: string, since: number, write: () => Promise<void>, { carriesData = true } = {}): Promise<void> {
    let track = this.#tracks.get(key)
    if (track === undefined) {
      track = { sessionId, queue: Promise.resolve(), pending: 0, lastEnd: 0 }
    }
    this.#touch(this.#tracks, key, track)
    const current = track
    current.pending++
    const result = current.queue.then(async () => {
      this.#check(key, since, carriesData)
      const startedAt = Date.now()
      await write()
      // What happened meanwhile is repaired by revoked()/changed(); the caller learns its write did not stand.
      this.#check(key, startedAt, carriesData)
    })
    current.queue = result.then(settle, settle)
    function settle (): void {
      current.pending--
      current.lastEnd = Date.now()
    }
    return result
  }

  /**
   * A session was revoked (here or on another node). Resolves once any write
   * of ours that may have landed after the destroy has been undone.
   */
  revoked (key: string, reason: RevocationReason): Promise<void> {
    this.#prune()
    const track = this.#tracks.get(key)
    if (track === undefined || !DESTROYED.has(reason)) return Promise.resolve()
    return track.queue.then(() => this.#opts.access.destroy(track.sessionId)).catch((error: unknown) => {
      this.#opts.log.error({ session: key, err: redactError(error, track.sessionId) }, 'could not destroy again a session that a socket write overlapped')
    })
  }

  /**
   * An HTTP request that began at `requestStart` ended with this session
   * changed and saved. Resolves once a write of ours that may have landed
   * after that save has been followed by `saveAgain`.
   */
  changed (key: string, requestStart: number, saveAgain: () => Promise<void>): Promise<void> {
    this.#touch(this.#changes, key, Date.now())
    this.#prune()
    const track = this.#tracks.get(key)
    if (track === undefined || (track.pending === 0 && track.lastEnd < requestStart)) return Promise.resolve()
    return track.queue.then(saveAgain).catch((error: unknown) => {
      this.#opts.log.error({ session: key, err: redactError(error, track.sessionId) }, 'could not save again an HTTP change that a socket write overlapped')
    })
  }

  /** An HTTP change reported by another node: later socket writes that read before it are refused. */
  changedElsewhere (key: string): void {
    this.#touch(this.#changes, key, Date.now())
    this.#prune()
  }

  /** Whether an HTTP request (on any node that told this one) changed the session at or after `since`. */
  changedSince (key: string, since: number): boolean {
    const changedAt = this.#changes.get(key)
    return changedAt !== undefined && changedAt >= since
  }

  #check (key: string, since: number, carriesData: boolean): void {
    if (this.#opts.revokedSince(key, since) !== undefined) throw new SessionGoneError()
    if (carriesData && this.changedSince(key, since)) throw new SessionConflictError()
  }

  #touch<V> (map: Map<string, V>, key: string, value: V): void {
    map.delete(key)
    map.set(key, value)
  }

  #prune (): void {
    const oldest = Date.now() - this.#opts.memory
    for (const [key, track] of this.#tracks) {
      if (track.pending !== 0 || track.lastEnd >= oldest) break
      this.#tracks.delete(key)
    }
    for (const [key, at] of this.#changes) {
      if (at >= oldest) break
      this.#changes.delete(key)
    }
  }
}
