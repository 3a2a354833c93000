import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { connected, refusedWith, sessionIdOf, sleep, startApp } from './support/app'
import { ending, report, staysConnected } from './support/cluster'
import { TestStore, answerLate } from './support/store'

// Expiry: a socket whose session expires is disconnected at the expiry time,
// unless the session was extended meanwhile (here: rolling HTTP requests).

const MAX_AGE = 1500

/** The expiry the store holds for a session, in ms since the epoch. */
function storedExpiry (store: TestStore, sessionId: string): number {
  const expires = store.expiryOf(sessionId)
  assert.ok(!Number.isNaN(expires), 'the store holds an expiry')
  return expires
}

async function expiringApp (rolling: boolean): Promise<{ app: Awaited<ReturnType<typeof startApp>>, store: TestStore }> {
  const store = new TestStore()
  const app = await startApp({
    session: { store, rolling, cookie: { secure: false, maxAge: MAX_AGE } },
    // Only the expiry timer may end the socket here, not a revalidation read.
    auth: { revalidateInterval: false }
  })
  return { app, store }
}

// Each test has its own app and mostly waits on timers, so they run at once.
describe('expiry', { concurrency: true }, () => {
  test('a socket is disconnected with reason "expired" at its session\'s expiry', async (t) => {
    const { app, store } = await expiringApp(false)
    t.after(() => app.close())
    const cookie = await app.login('ada')
    const expiresAt = storedExpiry(store, sessionIdOf(cookie))
    const socket = await connected(app.url, { cookie, reconnection: true, extra: { reconnectionDelay: 50 } })
    t.after(() => socket.close())

    const end = await ending(socket, MAX_AGE + 3000)
    const lateness = end.disconnectedAt - expiresAt
    assert.equal(end.reason, 'expired')
    assert.ok(end.revokedFirst)
    assert.equal(end.disconnect, 'io server disconnect', 'no reconnect into an expired session')
    assert.ok(lateness >= 0, `disconnected ${-lateness} ms before the session expired`)
    assert.ok(lateness < 1000, `disconnected ${lateness} ms after the expiry`)
    report(t, `expiry lateness: ${lateness} ms after the stored expiry (maxAge ${MAX_AGE} ms)`)

    assert.equal((await refusedWith(app.url, { cookie })).code, 'SESSION_INVALID')
  })

  test('rolling HTTP requests keep the socket connected past the original expiry; it expires after they stop', async (t) => {
    const { app, store } = await expiringApp(true)
    t.after(() => app.close())
    const cookie = await app.login('ada')
    const sessionId = sessionIdOf(cookie)
    const originalExpiry = storedExpiry(store, sessionId)
    const socket = await connected(app.url, { cookie })
    t.after(() => socket.close())
    const end = ending(socket, 10_000)
    end.catch(() => {})

    // The user keeps using HTTP: every request rolls the expiry forward.
    while (Date.now() < originalExpiry + 1000) {
      const response = await fetch(`${app.url}/touch`, { method: 'POST', headers: { cookie } })
      assert.equal(response.status, 200)
      await sleep(400)
    }
    assert.equal(socket.connected, true, 'still connected 1 s past the original expiry')
    const lastExpiry = storedExpiry(store, sessionId)
    assert.ok(lastExpiry > originalExpiry + 1000, 'the store holds the extended expiry')

    // The HTTP requests stop: the socket goes at the extended expiry.
    const ended = await end
    assert.equal(ended.reason, 'expired')
    const lateness = ended.disconnectedAt - lastExpiry
    assert.ok(lateness >= 0 && lateness < 1000, `expired ${lateness} ms after the extended expiry`)
    report(t, `rolling: connected ${ended.disconnectedAt - originalExpiry} ms past the original expiry; lateness after the extended expiry ${lateness} ms`)
  })

  test('without maxAge the session never expires: the socket stays', async (t) => {
    const app = await startApp({ session: { cookie: { secure: false } }, auth: { revalidateInterval: false } })
    t.after(() => app.close())
    const socket = await connected(app.url, { cookie: await app.login('ada') })
    t.after(() => socket.close())
    assert.ok(await staysConnected(socket, 500))
  })

  test('a route that shortens the session moves the socket\'s expiry at once (no revalidation needed)', async (t) => {
    const app = await startApp({
      session: { cookie: { secure: false, maxAge: 60_000 } },
      auth: { revalidateInterval: false },
      setup: (instance) => {
        instance.post('/short', async (request) => {
          request.session.options({ maxAge: 300 })
          return { ok: true }
        })
      }
    })
    t.after(() => app.close())
    const cookie = await app.login()
    const socket = await connected(app.url, { cookie })
    t.after(() => socket.close())
    const end = ending(socket, 3000)
    const shortenedAt = Date.now()
    await fetch(`${app.url}/short`, { method: 'POST', headers: { cookie } })
    const ended = await end
    assert.equal(ended.reason, 'expired')
    // Within the new life plus timer slack, far below the old 60 s.
    assert.ok(ended.disconnectedAt - shortenedAt < 1500, `ended ${ended.disconnectedAt - shortenedAt} ms after the shortening`)
  })

  // A route that shortens the session while a store read made before it is
  // still in flight: what that read says of the expiry is the old life, and
  // must not put it back (found by an outsider's attack pass).
  async function shorteningApp (auth: { revalidateInterval: number | false, slowRule?: () => boolean }): Promise<{ app: Awaited<ReturnType<typeof startApp>>, store: TestStore }> {
    const store = new TestStore()
    const app = await startApp({
      session: { store, cookie: { secure: false, maxAge: 60_000 } },
      auth: {
        revalidateInterval: auth.revalidateInterval,
        authorize: async () => { if (auth.slowRule?.() === true) await sleep(400); return true }
      },
      setup: (instance) => {
        instance.post('/short', async (request) => {
          request.session.options({ maxAge: 800 })
          return { ok: true }
        })
      }
    })
    return { app, store }
  }

  test('a join that read the session before a route shortened it does not bring the old expiry back', async (t) => {
    let slow = false
    const { app, store } = await shorteningApp({ revalidateInterval: false, slowRule: () => slow })
    t.after(() => app.close())
    const cookie = await app.login()
    const first = await connected(app.url, { cookie })
    t.after(() => first.close())
    slow = true
    const joining = connected(app.url, { cookie })
    await sleep(100) // the join has read the session (60 s left) and waits on its rule
    const shortenedAt = Date.now()
    await fetch(`${app.url}/short`, { method: 'POST', headers: { cookie } })
    const late = await joining
    t.after(() => late.close())
    const ended = await Promise.all([ending(first, 4000), ending(late, 4000)])
    assert.deepEqual(ended.map((e) => e.reason), ['expired', 'expired'])
    const storeEnd = storedExpiry(store, sessionIdOf(cookie)) - shortenedAt
    for (const e of ended) assert.ok(e.disconnectedAt - shortenedAt < storeEnd + 1000, `ended ${e.disconnectedAt - shortenedAt} ms after the shortening (store: ${storeEnd} ms)`)
  })

  test('a revalidation read in flight when a route shortens the session does not bring the old expiry back', async (t) => {
    // Long enough that the next revalidation comes well after the new expiry.
    const { app, store } = await shorteningApp({ revalidateInterval: 3000 })
    t.after(() => app.close())
    const cookie = await app.login()
    const sessionId = sessionIdOf(cookie)
    const socket = await connected(app.url, { cookie })
    t.after(() => socket.close())
    const end = ending(socket, 8000)
    let shortenedAt = 0
    // The next read is the revalidation's: it reads now and answers 300 ms later; the route shortens meanwhile.
    const shortened = new Promise<void>((resolve) => {
      store.faultNextRead(sessionId, answerLate(300, () => {
        shortenedAt = Date.now()
        fetch(`${app.url}/short`, { method: 'POST', headers: { cookie } }).then(() => resolve(), () => resolve())
      }))
    })
    await shortened
    const ended = await end
    assert.equal(ended.reason, 'expired')
    const storeEnd = storedExpiry(store, sessionId) - shortenedAt
    assert.ok(ended.disconnectedAt - shortenedAt < storeEnd + 600, `ended ${ended.disconnectedAt - shortenedAt} ms after the shortening (store: ${storeEnd} ms)`)
  })

  test('keep-alive after a route shortened the session extends it by the new maxAge only, and only while events come', async (t) => {
    // A store with latency, so keep-alive writes overlap the route and each other.
    const store = new TestStore({ delay: 30, serialize: true })
    const app = await startApp({
      session: { store, cookie: { secure: false, maxAge: 60_000 } },
      auth: { keepAlive: true, keepAliveInterval: 10, revalidateInterval: false },
      setup: (instance) => {
        instance.post('/short', async (request) => {
          request.session.options({ maxAge: 700 })
          return { ok: true }
        })
      }
    })
    t.after(() => app.close())
    const cookie = await app.login()
    const socket = await connected(app.url, { cookie })
    t.after(() => socket.close())
    const end = ending(socket, 5000)
    const events = (async () => { for (let i = 0; i < 40; i++) { socket.emit('activity'); await sleep(10) } })()
    await sleep(50)
    await fetch(`${app.url}/short`, { method: 'POST', headers: { cookie } })
    await events
    const lastEvent = Date.now()
    const ended = await end
    assert.equal(ended.reason, 'expired')
    report(t, `keep-alive with maxAge 700 ms: ended ${ended.disconnectedAt - lastEvent} ms after the last event`)
    assert.ok(ended.disconnectedAt - lastEvent < 700 + 600, `ended ${ended.disconnectedAt - lastEvent} ms after the last event`)
  })
})
