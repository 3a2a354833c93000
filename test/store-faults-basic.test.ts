import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import type { Session } from 'fastify'
import type { SessionStore } from '@fastify/session'
import { connected, refusedWith, sleep, startApp, type TestApp } from './support/app'

const TRANSPORTS = ['polling', 'websocket'] as const
const TIMEOUT = { timeout: 60_000 }

type Mode = 'ok' | 'callback-error' | 'throw' | 'hang' | 'reject' | 'late' | 'enoent' | 'garbage'
type Callback = (err?: unknown, session?: Session | null) => void

/**
 * A fake store for faults only: it keeps sessions in a Map like a real one,
 * and its get() misbehaves in the chosen way.
 */
class FaultyStore implements SessionStore {
  readonly map = new Map<string, Session>()
  mode: Mode = 'ok'
  gets = 0
  readonly lateCallbacks: Array<Promise<void>> = []

  set (sessionId: string, session: Session, callback: (err?: unknown) => void): void {
    this.map.set(sessionId, session)
    callback()
  }

  destroy (sessionId: string, callback: (err?: unknown) => void): void {
    this.map.delete(sessionId)
    callback()
  }

  get (sessionId: string, callback: Callback): unknown {
    this.gets++
    const session = this.map.get(sessionId) ?? null
    switch (this.mode) {
      case 'ok': return callback(null, session)
      case 'callback-error': return callback(new Error('connection refused by the database'))
      case 'throw': throw new Error('store exploded synchronously')
      case 'hang': return undefined
      case 'reject': return Promise.reject(new Error('store rejected'))
      case 'enoent': return callback(Object.assign(new Error('no such session file'), { code: 'ENOENT' }))
      case 'garbage': return callback(null, 'not a session' as unknown as Session)
      case 'late':
        // Answers with the real session, but only after the guard gave up.
        this.lateCallbacks.push(sleep(400).then(() => callback(null, session)))
        return undefined
    }
  }
}

/** Fails the test if the process reports an unhandled rejection or an uncaught exception while `body` runs. */
async function withoutCrashes (body: () => Promise<void>): Promise<void> {
  const crashes: unknown[] = []
  const onRejection = (reason: unknown): void => { crashes.push(reason) }
  const onException = (error: unknown): void => { crashes.push(error) }
  process.on('unhandledRejection', onRejection)
  process.on('uncaughtException', onException)
  try {
    await body()
    // Let late callbacks and timers of the faults settle while we still listen.
    await sleep(500)
  } finally {
    process.off('unhandledRejection', onRejection)
    process.off('uncaughtException', onException)
  }
  assert.deepEqual(crashes, [], 'no unhandled rejection or uncaught exception')
}

async function faultyApp (store: FaultyStore): Promise<{ t: TestApp, cookie: string, connections: () => number }> {
  const t = await startApp({ session: { store }, auth: { storeTimeout: 200 } })
  let count = 0
  t.app.io.on('connection', () => { count++ })
  const cookie = await t.login()
  return { t, cookie, connections: () => count }
}

describe('store faults never admit and never crash', TIMEOUT, () => {
  const unavailable: Array<[Mode, string]> = [
    ['callback-error', 'store.get calls back with an error'],
    ['throw', 'store.get throws synchronously'],
    ['reject', 'store.get returns a rejected promise'],
    ['hang', 'store.get never calls back (storeTimeout 200 ms)'],
    ['late', 'store.get calls back only after storeTimeout']
  ]
  for (const [mode, title] of unavailable) {
    test(`${title} -> SESSION_STORE_UNAVAILABLE`, async () => {
      await withoutCrashes(async () => {
        const store = new FaultyStore()
        const { t, cookie, connections } = await faultyApp(store)
        try {
          // The set-up works: a healthy store admits this cookie.
          const healthy = await connected(t.url, { cookie })
          healthy.close()
          assert.equal(connections(), 1)

          store.mode = mode
          for (const transport of TRANSPORTS) {
            const gets = store.gets
            const refused = await refusedWith(t.url, { cookie, transports: [transport] })
            assert.equal(refused.code, 'SESSION_STORE_UNAVAILABLE')
            assert.equal((refused.data as { code?: unknown }).code, 'SESSION_STORE_UNAVAILABLE')
            assert.equal(store.gets, gets + 1, 'the store was asked')
          }
          await Promise.all(store.lateCallbacks)
          assert.equal(connections(), 1, 'no socket admitted while the store failed, not even by a late answer')

          // Back to health: the next handshake is admitted again.
          store.mode = 'ok'
          const again = await connected(t.url, { cookie })
          again.close()
        } finally { await t.close() }
      })
    })
  }

  test('a store that reports ENOENT or returns something that is not a session -> SESSION_INVALID', async () => {
    await withoutCrashes(async () => {
      const store = new FaultyStore()
      const { t, cookie, connections } = await faultyApp(store)
      try {
        for (const mode of ['enoent', 'garbage'] as const) {
          store.mode = mode
          for (const transport of TRANSPORTS) {
            const refused = await refusedWith(t.url, { cookie, transports: [transport] })
            assert.equal(refused.code, 'SESSION_INVALID', mode)
          }
        }
        assert.equal(connections(), 0)
      } finally { await t.close() }
    })
  })

  test('concurrent handshakes on a hung store are each refused after storeTimeout', async () => {
    await withoutCrashes(async () => {
      const store = new FaultyStore()
      const t = await startApp({ session: { store }, auth: { storeTimeout: 300 } })
      try {
        const cookie = await t.login()
        store.mode = 'hang'
        // Several handshakes waiting on the same hung store at once.
        const results = await Promise.all([1, 2, 3].map(() => refusedWith(t.url, { cookie })))
        assert.deepEqual(results.map((r) => r.code), ['SESSION_STORE_UNAVAILABLE', 'SESSION_STORE_UNAVAILABLE', 'SESSION_STORE_UNAVAILABLE'])
      } finally { await t.close() }
    })
  })
})
