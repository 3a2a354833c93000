import { MemoryStore } from '@fastify/session'

type GetCallback = Parameters<MemoryStore['get']>[1]
type SetCallback = Parameters<MemoryStore['set']>[2]
type DestroyCallback = Parameters<MemoryStore['destroy']>[1]
type StoredSession = Parameters<MemoryStore['set']>[1]

/** The caller's callback as a fault sees it: faults answer with anything, as a broken store would. */
export type FaultCallback = (err?: unknown, value?: unknown) => void

/**
 * What a read (or write) does instead of its real work: `answer` is the caller's
 * callback, `record()` what the store holds for the id now. The return value goes
 * back to the caller (a promise, for the cases of a store that returns one).
 */
export type Fault = (answer: FaultCallback, record: () => unknown, sessionId: string) => unknown

export interface TestStoreOptions {
  /**
   * Latency of every call in ms, as over a network: the call takes effect, then
   * answers, after this long (two calls in flight land in the order they arrive,
   * as on one Redis connection). Default: none, every call answers synchronously
   * as @fastify/session's MemoryStore does.
   */
  delay?: number
  /**
   * Keep JSON copies, as Redis or PostgreSQL would, instead of the live Session
   * objects MemoryStore keeps. Default false.
   */
  serialize?: boolean
}

/**
 * The one store of the tests: @fastify/session's real MemoryStore, instrumented.
 * It counts every call (`gets`, `sets`, `destroys`), logs each read (`reads`: which
 * session, when) and the time of each write (`writes`), can answer late (`delay`),
 * and can misbehave: while `readFault` (or `writeFault`) is set, it replaces every
 * get (set), e.g. with `failWith(...)`, `hang` or `answerLate(...)` below.
 * `peek`/`expiryOf` read what it holds now, without latency or faults.
 */
export class TestStore extends MemoryStore {
  /** What the store holds: Session objects, or JSON strings with `serialize`. */
  readonly map: Map<string, unknown>
  delay: number | undefined
  readonly serialize: boolean
  gets = 0
  sets = 0
  destroys = 0
  /** Calls a fault answered instead of the store. */
  faultedGets = 0
  faultedSets = 0
  readonly reads: Array<{ sessionId: string, at: number }> = []
  readonly writes: number[] = []
  readFault: Fault | undefined
  writeFault: Fault | undefined
  private readonly nextReadFaults = new Map<string, Fault>()

  constructor (options: TestStoreOptions = {}) {
    const map = new Map<string, unknown>()
    super(map as never)
    this.map = map
    this.delay = options.delay
    this.serialize = options.serialize ?? false
  }

  /** How many sessions the store holds. */
  get size (): number {
    return this.map.size
  }

  /** What the store holds for the id now (undefined if nothing). */
  peek (sessionId: string): Record<string, unknown> | undefined {
    const record = this.map.get(sessionId)
    if (record === undefined) return undefined
    return (this.serialize ? JSON.parse(record as string) : record) as Record<string, unknown>
  }

  /** The expiry the store holds for a session, in ms since the epoch (NaN if none). */
  expiryOf (sessionId: string): number {
    const expires = (this.peek(sessionId) as { cookie?: { expires?: unknown } } | undefined)?.cookie?.expires
    return expires == null ? NaN : new Date(expires as string | Date).getTime()
  }

  /** The reads since `since` (a Date.now() value). */
  readsSince (since: number): Array<{ sessionId: string, at: number }> {
    return this.reads.filter((read) => read.at >= since)
  }

  /** The reads after the first `count` (counting, not timing: a read and a connect can share a millisecond). */
  readsAfter (count: number): Array<{ sessionId: string, at: number }> {
    return this.reads.slice(count)
  }

  /** Replaces the next read of `sessionId` only (before `readFault`). */
  faultNextRead (sessionId: string, fault: Fault): void {
    this.nextReadFaults.set(sessionId, fault)
  }

  override get (sessionId: string, callback: GetCallback): void {
    this.gets++
    this.reads.push({ sessionId, at: Date.now() })
    const fault = this.nextReadFaults.get(sessionId) ?? this.readFault
    if (fault !== undefined) {
      this.nextReadFaults.delete(sessionId)
      this.faultedGets++
      return fault(callback as FaultCallback, () => this.peek(sessionId), sessionId) as void
    }
    this.later(() => callback(null, this.peek(sessionId) as never))
  }

  override set (sessionId: string, session: StoredSession, callback: SetCallback): void {
    this.sets++
    this.writes.push(Date.now())
    if (this.writeFault !== undefined) {
      this.faultedSets++
      return this.writeFault(callback as FaultCallback, () => this.peek(sessionId), sessionId) as void
    }
    // Serialised when the call is made, as a client library would send it.
    const value = this.serialize ? JSON.stringify(session) : session
    this.later(() => {
      this.map.set(sessionId, value)
      callback()
    })
  }

  override destroy (sessionId: string, callback: DestroyCallback): void {
    this.destroys++
    this.later(() => {
      this.map.delete(sessionId)
      callback()
    })
  }

  private later (fn: () => void): void {
    if (this.delay === undefined) fn()
    else setTimeout(fn, this.delay)
  }
}

/** Fault: calls back with `error` (or `error(sessionId)`), on the next turn with `async`. */
export function failWith (error: unknown, options: { async?: boolean } = {}): Fault {
  return (answer, _record, sessionId) => {
    const value = typeof error === 'function' ? (error as (id: string) => unknown)(sessionId) : error
    if (options.async === true) setImmediate(() => answer(value))
    else answer(value)
  }
}

/** Fault: never calls back. */
export const hang: Fault = () => undefined

/** Fault: reads the record now and answers with it `ms` later (then calls `onRead`, if given, at once). */
export function answerLate (ms: number, onRead?: () => void): Fault {
  return (answer, record) => {
    const value = record()
    onRead?.()
    setTimeout(() => answer(null, value), ms)
  }
}
