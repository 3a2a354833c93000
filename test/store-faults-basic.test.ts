import { describe, test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { connected, refusedWith, sleep, startApp, type TestApp } from './support/app'
import { watchProcess } from './support/health'
import { TestStore, failWith, hang, type Fault } from './support/store'

const TRANSPORTS = ['polling', 'websocket'] as const
const TIMEOUT = { timeout: 60_000 }

/**
 * The ways a store's get() misbehaves here, as faults of the shared TestStore
 * (`late` answers with the real session, but only after the guard gave up;
 * its answers are kept in `lateAnswers` so that a test can wait for them).
 */
const lateAnswers: Array<Promise<void>> = []
const FAULTS = {
  'callback-error': failWith(new Error('connection refused by the database')),
  throw: () => { throw new Error('store exploded synchronously') },
  hang,
  reject: () => Promise.reject(new Error('store rejected')),
  enoent: failWith(Object.assign(new Error('no such session file'), { code: 'ENOENT' })),
  garbage: (answer) => answer(null, 'not a session'),
  late: (answer, record) => {
    const session = record()
    lateAnswers.push(sleep(400).then(() => answer(null, session)))
  }
} satisfies Record<string, Fault>
type Mode = keyof typeof FAULTS

/**
 * Fails the test if the process reports an unhandled rejection or an uncaught
 * exception while `body` runs (which closes its app itself, so that closing is
 * watched too) and for half a second after.
 */
async function withoutCrashes (t: TestContext, body: () => Promise<void>): Promise<void> {
  const health = watchProcess()
  t.after(() => health.stop())
  await body()
  // Let late callbacks and timers of the faults settle while we still listen.
  await sleep(500)
  health.stop()
  assert.deepEqual(health.problems, [], 'no unhandled rejection or uncaught exception')
}

/** An app on `store` with a short storeTimeout, closed when the test ends, and a logged-in cookie. */
async function faultyApp (t: TestContext, store: TestStore, storeTimeout = 200): Promise<{ app: TestApp, cookie: string, connections: () => number }> {
  const app = await startApp({ session: { store }, auth: { storeTimeout } })
  t.after(() => app.close())
  let count = 0
  app.app.io.on('connection', () => { count++ })
  const cookie = await app.login()
  return { app, cookie, connections: () => count }
}

// Each test has its own app and store, and mostly waits, so they run at once (a
// crash while several watch fails each of them).
describe('store faults never admit and never crash', { ...TIMEOUT, concurrency: true }, () => {
  const unavailable: Array<[Mode, string]> = [
    ['callback-error', 'store.get calls back with an error'],
    ['throw', 'store.get throws synchronously'],
    ['reject', 'store.get returns a rejected promise'],
    ['hang', 'store.get never calls back (storeTimeout 200 ms)'],
    ['late', 'store.get calls back only after storeTimeout']
  ]
  for (const [mode, title] of unavailable) {
    test(`${title} -> SESSION_STORE_UNAVAILABLE`, async (t) => {
      await withoutCrashes(t, async () => {
        const store = new TestStore()
        const { app, cookie, connections } = await faultyApp(t, store)
        // The set-up works: a healthy store admits this cookie.
        const healthy = await connected(app.url, { cookie })
        healthy.close()
        assert.equal(connections(), 1)

        store.readFault = FAULTS[mode]
        for (const transport of TRANSPORTS) {
          const gets = store.gets
          const refused = await refusedWith(app.url, { cookie, transports: [transport] })
          assert.equal(refused.code, 'SESSION_STORE_UNAVAILABLE')
          assert.equal((refused.data as { code?: unknown }).code, 'SESSION_STORE_UNAVAILABLE')
          assert.equal(store.gets, gets + 1, 'the store was asked')
        }
        await Promise.all(lateAnswers)
        assert.equal(connections(), 1, 'no socket admitted while the store failed, not even by a late answer')

        // Back to health: the next handshake is admitted again.
        store.readFault = undefined
        const again = await connected(app.url, { cookie })
        again.close()
        await app.close()
      })
    })
  }

  test('a store that reports ENOENT or returns something that is not a session -> SESSION_INVALID', async (t) => {
    await withoutCrashes(t, async () => {
      const store = new TestStore()
      const { app, cookie, connections } = await faultyApp(t, store)
      for (const mode of ['enoent', 'garbage'] as const) {
        store.readFault = FAULTS[mode]
        for (const transport of TRANSPORTS) {
          const refused = await refusedWith(app.url, { cookie, transports: [transport] })
          assert.equal(refused.code, 'SESSION_INVALID', mode)
        }
      }
      assert.equal(connections(), 0)
      await app.close()
    })
  })

  test('concurrent handshakes on a hung store are each refused after storeTimeout', async (t) => {
    await withoutCrashes(t, async () => {
      const store = new TestStore()
      const { app, cookie } = await faultyApp(t, store, 300)
      store.readFault = hang
      // Several handshakes waiting on the same hung store at once.
      const results = await Promise.all([1, 2, 3].map(() => refusedWith(app.url, { cookie })))
      assert.deepEqual(results.map((r) => r.code), ['SESSION_STORE_UNAVAILABLE', 'SESSION_STORE_UNAVAILABLE', 'SESSION_STORE_UNAVAILABLE'])
      await app.close()
    })
  })
})
