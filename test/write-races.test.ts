// No resurrection, no lost HTTP update. With a store that takes ~40 ms per
// call, a socket-side session.save() or a keep-alive write that overlaps an
// HTTP logout never leaves the session in the store (a fresh handshake with the
// old cookie is refused SESSION_INVALID), and a socket save that overlaps an
// HTTP demotion never writes the old role back. Each race is run with the
// socket side shifted from 60 ms before to 60 ms after the HTTP request.
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import type { FastifyInstance } from 'fastify'
import type { Socket as ClientSocket } from 'socket.io-client'
import { connected, connectedFor, refusedWith, saveOnSocketEvent, sessionIdOf, sleep, startApp, type StartOptions, type TestApp } from './support/app'
import { TestStore } from './support/store'

const LATENCY = 40
/** Where the socket side starts, relative to the HTTP request, in ms. */
const OFFSETS = [-60, -40, -20, 0, 20, 40, 60]
/** Long enough for any write in flight (a read and a write, 80 ms) to land. */
const SETTLE = 300
const CONFLICT = 'FST_SESSION_SOCKET_AUTH_SESSION_CONFLICT'

function raceRoutes (app: FastifyInstance): void {
  app.post('/demote', async (request) => {
    const user = request.session.user
    // A new object, so @fastify/session sees the session as modified and saves it.
    request.session.user = { name: user?.name ?? 'ada', role: 'user' }
    return { ok: true }
  })
  saveOnSocketEvent(app, 'bump')
}

async function slowApp (t: { after: (fn: () => Promise<void>) => void }, auth: StartOptions['auth'] = {}): Promise<{ app: TestApp, store: TestStore }> {
  const store = new TestStore({ delay: LATENCY, serialize: true })
  const app = await startApp({
    session: { store, cookie: { secure: false, maxAge: 60_000 } },
    auth: { storeTimeout: 2000, ...auth },
    setup: raceRoutes
  })
  t.after(() => app.close())
  return { app, store }
}

/** Starts the HTTP request and the socket action `offset` ms apart (negative: the socket first); resolves when both have. */
async function overlap<A, B> (offset: number, http: () => Promise<A>, socket: () => Promise<B>): Promise<[A, B]> {
  const lead = Math.max(0, -offset)
  return Promise.all([sleep(lead).then(http), sleep(lead + offset).then(socket)])
}

/** Runs the race at every offset; returns what failed, one line per offset (so a report shows every losing timing). */
async function eachOffset (run: (offset: number, label: string) => Promise<void>, what = 'socket save'): Promise<string[]> {
  const failures: string[] = []
  for (const offset of OFFSETS) {
    const label = `${what} at ${offset} ms`
    try {
      await run(offset, label)
    } catch (error) {
      failures.push((error as Error).message.split('\n')[0] ?? String(error))
    }
  }
  return failures
}

/** The socket's bump ack, or why there was none (the logout may disconnect the socket first). */
function bump (socket: ClientSocket): Promise<unknown> {
  return socket.timeout(2000).emitWithAck('bump').catch((error: unknown) => `no ack: ${String(error)}`)
}

async function post (url: string, path: string, cookie: string): Promise<number> {
  const response = await fetch(`${url}${path}`, { method: 'POST', headers: { cookie } })
  await response.arrayBuffer()
  return response.status
}

/** After a logout that raced a write: nothing in the store, and the old cookie is refused. */
async function assertGone (app: TestApp, store: TestStore, cookie: string, label: string): Promise<void> {
  assert.equal(store.peek(sessionIdOf(cookie)), undefined, `${label}: the store holds no record for the logged-out session`)
  assert.equal((await refusedWith(app.url, { cookie })).code, 'SESSION_INVALID', `${label}: a fresh handshake with the old cookie is refused`)
}

// Each race has its own app and store, so the three run at once (their offsets in turn).
describe('write races', { concurrency: true }, () => {
  test('a socket-side session.save() overlapping an HTTP logout (socket 60 ms before .. 60 ms after) never brings the session back', async (t) => {
    const { app, store } = await slowApp(t, { revalidateInterval: false })
    // The socket save does write, when nothing races it.
    const warmup = await app.login('ada')
    const warm = await connected(app.url, { cookie: warmup })
    assert.equal(await bump(warm), 'ok')
    assert.equal(store.peek(sessionIdOf(warmup))?.counter, 1)
    warm.close()

    const failures = await eachOffset(async (offset, label) => {
      const cookie = await app.login('ada')
      const socket = await connectedFor(t, app.url, { cookie })
      const [status] = await overlap(offset, () => post(app.url, '/logout', cookie), () => bump(socket))
      assert.equal(status, 200, `${label}: logout answered`)
      await sleep(SETTLE)
      await assertGone(app, store, cookie, label)
    })
    assert.deepEqual(failures, [])
  })

  test('a keep-alive write overlapping an HTTP logout (event 60 ms before .. 60 ms after) never brings the session back', async (t) => {
    const { app, store } = await slowApp(t, { keepAlive: true, keepAliveInterval: 1, revalidateInterval: false })
    // An event does start a keep-alive write, when nothing races it.
    const warmup = await app.login('ada')
    const warm = await connected(app.url, { cookie: warmup })
    const setsBefore = store.sets
    await sleep(5)
    warm.emit('typing')
    await sleep(SETTLE)
    assert.ok(store.sets > setsBefore, 'the event wrote the session (keep-alive)')
    warm.close()

    const failures = await eachOffset(async (offset, label) => {
      const cookie = await app.login('ada')
      const socket = await connectedFor(t, app.url, { cookie })
      await sleep(5) // past keepAliveInterval since the handshake
      const [status] = await overlap(offset, () => post(app.url, '/logout', cookie), async () => { socket.emit('typing') })
      assert.equal(status, 200, `${label}: logout answered`)
      await sleep(SETTLE)
      await assertGone(app, store, cookie, label)
    }, 'keep-alive event')
    assert.deepEqual(failures, [])
  })

  test('a socket save overlapping an HTTP demotion (socket 60 ms before .. 60 ms after) never writes the old role back', async (t) => {
    const { app, store } = await slowApp(t, { revalidateInterval: false })
    const failures = await eachOffset(async (offset, label) => {
      const cookie = await app.login('ada', 'admin')
      const sessionId = sessionIdOf(cookie)
      const socket = await connectedFor(t, app.url, { cookie })
      const [status, ack] = await overlap(offset, () => post(app.url, '/demote', cookie), () => bump(socket))
      assert.equal(status, 200, `${label}: the demotion answered`)
      assert.ok(ack === 'ok' || ack === CONFLICT, `${label}: the socket save resolved or was refused as a conflict, got ${String(ack)}`)
      await sleep(SETTLE)
      const record = store.peek(sessionId) as { user?: { role?: string } } | undefined
      assert.equal(record?.user?.role, 'user', `${label}: the HTTP demotion stands`)
    })
    assert.deepEqual(failures, [])
  })
})
