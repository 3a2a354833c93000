import { MemoryStore } from '@fastify/session'

type GetCallback = Parameters<MemoryStore['get']>[1]
type SetCallback = Parameters<MemoryStore['set']>[2]
type DestroyCallback = Parameters<MemoryStore['destroy']>[1]

export interface SlowStoreOptions {
  /** Latency of every call, in ms: the call takes effect, then answers, after this long. */
  delay?: number
  /**
   * Keep JSON copies, as Redis or PostgreSQL would, instead of the live
   * Session objects @fastify/session's MemoryStore keeps. Default true.
   */
  serialize?: boolean
}

/**
 * @fastify/session's real MemoryStore behind a network-like latency: every
 * get/set/destroy waits `delay` ms, then takes effect and answers (so two calls
 * in flight land in the order they arrive, as on one Redis connection). Counts
 * the calls; `peek` reads what the store holds now, without latency.
 */
export class SlowStore extends MemoryStore {
  /** What the store holds: JSON strings, or the Session objects themselves without `serialize`. */
  readonly map: Map<string, unknown>
  delay: number
  readonly serialize: boolean
  gets = 0
  sets = 0
  destroys = 0

  constructor (options: SlowStoreOptions = {}) {
    const map = new Map<string, unknown>()
    super(map as never)
    this.map = map
    this.delay = options.delay ?? 40
    this.serialize = options.serialize ?? true
  }

  /** What the store holds for the id right now (undefined if nothing), without latency. */
  peek (sessionId: string): Record<string, unknown> | undefined {
    const record = this.map.get(sessionId)
    if (record === undefined) return undefined
    return (this.serialize ? JSON.parse(record as string) : record) as Record<string, unknown>
  }

  override get (sessionId: string, callback: GetCallback): void {
    this.gets++
    setTimeout(() => {
      const record = this.map.get(sessionId)
      if (record === undefined) return callback(null, null)
      callback(null, (this.serialize ? JSON.parse(record as string) : record) as never)
    }, this.delay)
  }

  override set (sessionId: string, session: Parameters<MemoryStore['set']>[1], callback: SetCallback): void {
    this.sets++
    // Serialised when the call is made, as a client library would send it.
    const value = this.serialize ? JSON.stringify(session) : session
    setTimeout(() => {
      this.map.set(sessionId, value)
      callback()
    }, this.delay)
  }

  override destroy (sessionId: string, callback: DestroyCallback): void {
    this.destroys++
    setTimeout(() => {
      this.map.delete(sessionId)
      callback()
    }, this.delay)
  }
}
