/** Something with one deadline at a time; `slot` is the queue's own bookkeeping (-1 when not queued). */
export interface Deadline {
  dueAt: number
  slot: number
}

const MAX_TIMEOUT = 2 ** 31 - 1

/**
 * Every session's next deadline (expiry or revalidation) in one queue, served
 * by one Node timer. A timer per session costs a `Timeout` and, as the
 * revalidation jitter makes every delay different, one of Node's per-duration
 * timer lists each: about 300 bytes a session, and a heap insert and removal
 * in Node's timer queue at every reschedule. Here a deadline is two numbers on
 * the object that has it, kept in a binary min-heap.
 */
export class Deadlines<T extends Deadline> {
  readonly #heap: T[] = []
  readonly #onDue: (item: T) => void
  #timer: NodeJS.Timeout | undefined
  /** When the armed timer fires (Infinity when none is armed). */
  #armedFor = Infinity

  /** `onDue` is called for each item whose deadline has come, after it has left the queue; it must not throw. */
  constructor (onDue: (item: T) => void) {
    this.#onDue = onDue
  }

  get size (): number {
    return this.#heap.length
  }

  /** Queues `item` for `at`, or moves it there. Infinity takes it out: that deadline never comes. */
  set (item: T, at: number): void {
    if (at === Infinity) return this.delete(item)
    item.dueAt = at
    if (item.slot === -1) {
      item.slot = this.#heap.length
      this.#heap.push(item)
    }
    this.#up(item.slot)
    this.#down(item.slot)
    this.#arm()
  }

  delete (item: T): void {
    const slot = item.slot
    if (slot === -1) return
    item.slot = -1
    const last = this.#heap.pop() as T
    if (slot < this.#heap.length) {
      this.#heap[slot] = last
      last.slot = slot
      this.#up(slot)
      this.#down(last.slot)
    }
    if (this.#heap.length === 0) this.#disarm()
  }

  clear (): void {
    for (const item of this.#heap) item.slot = -1
    this.#heap.length = 0
    this.#disarm()
  }

  #fire (): void {
    this.#timer = undefined
    this.#armedFor = Infinity
    const now = Date.now()
    // Taken out first, then served: an item that `onDue` queues again, even for now, waits for the next round.
    const due: T[] = []
    for (let head = this.#heap[0]; head !== undefined && head.dueAt <= now; head = this.#heap[0]) {
      this.delete(head)
      due.push(head)
    }
    for (const item of due) this.#onDue(item)
    this.#arm()
  }

  // Armed for the earliest deadline; a later head (after a delete) lets the timer fire early and re-arm.
  #arm (): void {
    const head = this.#heap[0]
    if (head === undefined || head.dueAt >= this.#armedFor) return
    this.#disarm()
    this.#armedFor = head.dueAt
    this.#timer = setTimeout(() => this.#fire(), Math.min(Math.max(head.dueAt - Date.now(), 0), MAX_TIMEOUT))
    // Deadlines never keep the process alive: open sockets do, and they go at close.
    this.#timer.unref()
  }

  #disarm (): void {
    clearTimeout(this.#timer)
    this.#timer = undefined
    this.#armedFor = Infinity
  }

  #up (slot: number): void {
    const heap = this.#heap
    const item = heap[slot] as T
    while (slot > 0) {
      const parentSlot = (slot - 1) >> 1
      const parent = heap[parentSlot] as T
      if (parent.dueAt <= item.dueAt) break
      heap[slot] = parent
      parent.slot = slot
      slot = parentSlot
    }
    heap[slot] = item
    item.slot = slot
  }

  #down (slot: number): void {
    const heap = this.#heap
    const item = heap[slot] as T
    const length = heap.length
    for (;;) {
      let child = 2 * slot + 1
      if (child >= length) break
      const right = child + 1
      if (right < length && (heap[right] as T).dueAt < (heap[child] as T).dueAt) child = right
      const smaller = heap[child] as T
      if (smaller.dueAt >= item.dueAt) break
      heap[slot] = smaller
      smaller.slot = slot
      slot = child
    }
    heap[slot] = item
    item.slot = slot
  }
}
