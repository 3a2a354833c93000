// The one queue every session's expiry and revalidation deadline waits in
// (lib/deadlines.ts), checked on its own with real timers: order, moves,
// removals, and that it holds one Node timer however many deadlines it has.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { Deadlines, type Deadline } from '../lib/deadlines'
import { prng } from './support/prng'
import { waitFor } from './support/app'

interface Item extends Deadline { name: string }
const item = (name: string): Item => ({ name, dueAt: Infinity, slot: -1 })

/** Counts the Node timers alive while `run` runs (the queue's are unref'd, so process.getActiveResourcesInfo() would not list them). */
function timersDuring (t: TestContext, run: () => void): { most: number, left: number } {
  const live = new Set<unknown>()
  let most = 0
  const { setTimeout: set, clearTimeout: clear } = globalThis
  const setSpy = t.mock.method(globalThis, 'setTimeout', (fn: () => void, ms?: number) => {
    const timer = set(() => { live.delete(timer); fn() }, ms)
    live.add(timer)
    most = Math.max(most, live.size)
    return timer
  })
  const clearSpy = t.mock.method(globalThis, 'clearTimeout', (timer?: NodeJS.Timeout) => { live.delete(timer); clear(timer) })
  try {
    run()
  } finally {
    setSpy.mock.restore()
    clearSpy.mock.restore()
  }
  return { most, left: live.size }
}

test('deadlines come in order, each at or after its time, moved and removed ones as last set, on one Node timer', async (t) => {
  const fired: Array<{ name: string, late: number }> = []
  const queue = new Deadlines<Item>((it) => fired.push({ name: it.name, late: Date.now() - it.dueAt }))
  t.after(() => queue.clear())
  const random = prng(12)
  const now = Date.now()
  const items = Array.from({ length: 200 }, (_, i) => item(`#${i}`))
  const expected = new Map<Item, number>()
  const timers = timersDuring(t, () => {
    for (const it of items) {
      const at = now + 20 + Math.floor(random() * 200)
      queue.set(it, at)
      expected.set(it, at)
    }
    // Move some earlier and some later, take some out, and one out by Infinity.
    for (const it of items.slice(0, 40)) { const at = now + 10 + Math.floor(random() * 300); queue.set(it, at); expected.set(it, at) }
    for (const it of items.slice(40, 60)) { queue.delete(it); expected.delete(it) }
    queue.set(items[60] as Item, Infinity)
    expected.delete(items[60] as Item)
  })
  assert.deepEqual(timers, { most: 1, left: 1 }, '200 deadlines, one Node timer')
  assert.equal(queue.size, expected.size)

  await waitFor('every deadline served', () => fired.length === expected.size, 3000)
  assert.equal(queue.size, 0)
  const order = [...expected].sort((a, b) => a[1] - b[1]).map(([it]) => it.name)
  const dueOf = new Map([...expected].map(([it, at]) => [it.name, at]))
  assert.deepEqual(fired.map((f) => f.name).sort(), [...order].sort(), 'each queued deadline served once; removed ones never')
  for (let i = 1; i < fired.length; i++) {
    assert.ok((dueOf.get((fired[i - 1] as { name: string }).name) as number) <= (dueOf.get((fired[i] as { name: string }).name) as number), 'served in the order of their deadlines')
  }
  assert.ok(fired.every((f) => f.late >= 0), 'never before its time')
  t.diagnostic(`measured: lateness max ${Math.max(...fired.map((f) => f.late))} ms over ${fired.length} deadlines`)
})

test('a deadline set again from its own callback, even for now, is served in a later turn, not in a loop', async (t) => {
  let served = 0
  const queue: Deadlines<Item> = new Deadlines<Item>((it) => { if (++served < 5) queue.set(it, Date.now()) })
  t.after(() => queue.clear())
  queue.set(item('again'), Date.now())
  assert.equal(served, 0, 'nothing is served synchronously')
  await waitFor('served five times', () => served === 5, 1000)
  assert.equal(queue.size, 0)
})

test('delete() of the last deadline and clear() disarm the timer; nothing is served after', async (t) => {
  let served = 0
  const queue = new Deadlines<Item>(() => { served++ })
  const items = [item('a'), item('b'), item('c')]
  const timers = timersDuring(t, () => {
    for (const it of items) queue.set(it, Date.now() + 30)
    queue.delete(items[2] as Item)
    queue.clear()
    const last = item('last')
    queue.set(last, Date.now() + 30)
    queue.delete(last)
  })
  assert.deepEqual(timers, { most: 1, left: 0 })
  assert.equal(queue.size, 0)
  assert.ok(items.every((it) => it.slot === -1))
  await new Promise((resolve) => setTimeout(resolve, 60))
  assert.equal(served, 0)
})
