import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import type { FastifyInstance } from 'fastify'
import { MemoryStore } from '@fastify/session'
import type { Socket as ClientSocket } from 'socket.io-client'
import { connectedFor, sessionIdOf, startApp, type TestApp } from './support/app'
import { redisClient, startRedisNode, uniquePrefix } from './support/cluster'
import { needRedis } from './support/services'

// Reading and writing the session from socket handlers: save() reaches the
// store the HTTP routes read; reload() sees what HTTP saved; a save that would
// overwrite newer HTTP data is refused with SESSION_CONFLICT.

type Reply = { counter: number | null } | { error: string }
type Ack = (reply: Reply) => void

function errorCode (err: unknown): string {
  return String((err as { code?: unknown }).code ?? err)
}

/** Socket handlers that use socket.data.session, and an HTTP route that writes the counter. */
function sessionRoutes (app: FastifyInstance): void {
  app.post<{ Body: { counter: number } }>('/counter', async (request) => {
    request.session.counter = request.body.counter
    return { ok: true }
  })
  app.io.on('connection', (socket) => {
    const session = (): typeof socket.data.session => socket.data.session
    socket.on('increment', async (ack: Ack) => {
      session().counter = (session().counter ?? 0) + 1
      try {
        await session().save()
        ack({ counter: session().counter ?? null })
      } catch (err) { ack({ error: errorCode(err) }) }
    })
    socket.on('set', async (value: number, ack: Ack) => {
      session().counter = value
      try {
        await session().save()
        ack({ counter: value })
      } catch (err) { ack({ error: errorCode(err) }) }
    })
    socket.on('set-with-callback', (value: number, ack: Ack) => {
      session().counter = value
      session().save((err?: unknown) => ack(err ? { error: errorCode(err) } : { counter: value }))
    })
    socket.on('reload', async (ack: Ack) => {
      try {
        await session().reload()
        ack({ counter: session().counter ?? null })
      } catch (err) { ack({ error: errorCode(err) }) }
    })
    socket.on('reload-and-set', async (value: number, ack: Ack) => {
      try {
        await session().reload()
        session().counter = value
        await session().save()
        ack({ counter: value })
      } catch (err) { ack({ error: errorCode(err) }) }
    })
  })
}

async function httpCounter (url: string, cookie: string): Promise<number | null> {
  const response = await fetch(`${url}/whoami`, { headers: { cookie } })
  assert.equal(response.status, 200)
  const body = (await response.json()) as { user: unknown, counter: number | null }
  assert.notEqual(body.user, null, 'still logged in over HTTP')
  return body.counter
}

async function httpSetCounter (url: string, cookie: string, counter: number): Promise<void> {
  const response = await fetch(`${url}/counter`, { method: 'POST', headers: { cookie, 'content-type': 'application/json' }, body: JSON.stringify({ counter }) })
  assert.equal(response.status, 200)
}

const ask = (socket: ClientSocket, event: string, ...args: unknown[]): Promise<Reply> => socket.timeout(3000).emitWithAck(event, ...args)

/** The full read/write/conflict scenario, against whichever store the app uses. */
async function saveScenario (t: TestContext, app: TestApp): Promise<void> {
  const cookie = await app.login('ada')
  const socket = await connectedFor(t, app.url, { cookie })
  // A socket write, then an HTTP read.
  assert.deepEqual(await ask(socket, 'increment'), { counter: 1 })
  assert.equal(await httpCounter(app.url, cookie), 1, 'the next HTTP request sees the socket\'s save')
  assert.deepEqual(await ask(socket, 'increment'), { counter: 2 }, 'a rolling HTTP save of the same data is no conflict')
  assert.equal(await httpCounter(app.url, cookie), 2)

  // An HTTP write, then a socket reload.
  await httpSetCounter(app.url, cookie, 42)
  assert.deepEqual(await ask(socket, 'reload'), { counter: 42 }, 'reload() sees what HTTP saved')

  // Conflict: HTTP saves after the socket loaded; the socket's save is refused.
  await httpSetCounter(app.url, cookie, 100)
  assert.deepEqual(await ask(socket, 'set', 7), { error: 'FST_SESSION_SOCKET_AUTH_SESSION_CONFLICT' })
  assert.equal(await httpCounter(app.url, cookie), 100, 'the newer HTTP data was not overwritten')
  // Callback form: the same refusal.
  assert.deepEqual(await ask(socket, 'set-with-callback', 8), { error: 'FST_SESSION_SOCKET_AUTH_SESSION_CONFLICT' })
  assert.equal(await httpCounter(app.url, cookie), 100)

  // reload(), change, save(): accepted.
  assert.deepEqual(await ask(socket, 'reload-and-set', 9), { counter: 9 })
  assert.equal(await httpCounter(app.url, cookie), 9)
  // Callback form, no conflict.
  assert.deepEqual(await ask(socket, 'set-with-callback', 10), { counter: 10 })
  assert.equal(await httpCounter(app.url, cookie), 10)
}

/** save() after the session left the store is refused with SESSION_GONE (both forms); nothing is recreated. */
async function goneScenario (t: TestContext, app: TestApp, deleteOutOfBand: (sessionId: string) => Promise<void>, exists: (sessionId: string) => Promise<boolean>): Promise<void> {
  const cookie = await app.login('ada')
  const socket = await connectedFor(t, app.url, { cookie })
  const sessionId = sessionIdOf(cookie)
  await deleteOutOfBand(sessionId)
  assert.deepEqual(await ask(socket, 'set', 5), { error: 'FST_SESSION_SOCKET_AUTH_SESSION_GONE' })
  assert.deepEqual(await ask(socket, 'set-with-callback', 6), { error: 'FST_SESSION_SOCKET_AUTH_SESSION_GONE' })
  assert.equal(await exists(sessionId), false, 'the save did not bring the session back')
}

test('MemoryStore: socket save()/reload() meet HTTP; a stale save is refused with SESSION_CONFLICT', async (t) => {
  const app = await startApp({ setup: sessionRoutes })
  t.after(() => app.close())
  await saveScenario(t, app)
})

test('MemoryStore: save() after the session was deleted is refused with SESSION_GONE', async (t) => {
  const store = new MemoryStore()
  const app = await startApp({ session: { store, cookie: { secure: false, maxAge: 60_000 } }, auth: { revalidateInterval: false }, setup: sessionRoutes })
  t.after(() => app.close())
  const has = (id: string): Promise<boolean> => new Promise((resolve) => store.get(id, (_err, s) => resolve(s != null)))
  await goneScenario(t, app, (id) => new Promise((resolve) => store.destroy(id, () => resolve())), has)
})

async function redisApp (t: TestContext, revalidateInterval: number | false = 60_000): Promise<TestApp & { prefix: string }> {
  const prefix = uniquePrefix('socket-save')
  const node = await startRedisNode(t, { sessionPrefix: prefix, auth: { revalidateInterval }, setup: sessionRoutes })
  return { ...node, prefix }
}

test('Redis (connect-redis): socket save()/reload() meet HTTP; a stale save is refused with SESSION_CONFLICT', async (t) => {
  if (!await needRedis(t)) return
  const app = await redisApp(t)
  const admin = await redisClient(t)
  await saveScenario(t, app)
  const keys: string[] = []
  for await (const batch of admin.scanIterator({ MATCH: `${app.prefix}*` })) keys.push(...batch)
  await admin.del(keys)
})

test('Redis (connect-redis): save() after the key was deleted is refused with SESSION_GONE', async (t) => {
  if (!await needRedis(t)) return
  const app = await redisApp(t, false)
  const admin = await redisClient(t)
  await goneScenario(
    t,
    app,
    async (id) => { await admin.del(app.prefix + id) },
    async (id) => (await admin.exists(app.prefix + id)) === 1
  )
  const keys: string[] = []
  for await (const batch of admin.scanIterator({ MATCH: `${app.prefix}*` })) keys.push(...batch)
  if (keys.length > 0) await admin.del(keys)
})
