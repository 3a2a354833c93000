import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { RedisStore } from 'connect-redis'
import type { Socket as ClientSocket } from 'socket.io-client'
import { connected, sessionIdOf, sleep, startApp, whoami, type StartOptions, type TestApp } from '../support/app'
import { TestStore } from '../support/store'
import { ending, redisClient, report, startRedisNode, uniquePrefix } from '../support/cluster'
import { needRedis } from '../support/services'

// Keep-alive: socket activity extends a rolling session, so a user who only
// talks over the socket is not logged out; at most one store write per
// keepAliveInterval per session.

const MAX_AGE = 1500
const KEEP_ALIVE_INTERVAL = 300

/** An app on a TestStore whose sessions last MAX_AGE, closed when the test ends. */
async function memoryApp (t: TestContext, auth: StartOptions['auth']): Promise<{ app: TestApp, store: TestStore }> {
  const store = new TestStore()
  const app = await startApp({ session: { store, cookie: { secure: false, maxAge: MAX_AGE } }, auth })
  t.after(() => app.close())
  return { app, store }
}

/** Emits an event every `every` ms until `until`: a user who only talks over the socket. */
async function chatter (socket: ClientSocket, until: number, every = 25): Promise<number> {
  let sent = 0
  while (Date.now() < until && socket.connected) {
    socket.emit('typing', sent++)
    await sleep(every)
  }
  return sent
}

test('keepAlive (MemoryStore, no touch): socket activity keeps the session alive past its original expiry, one write per interval per session', async (t) => {
  const { app, store } = await memoryApp(t, { keepAlive: true, keepAliveInterval: KEEP_ALIVE_INTERVAL, revalidateInterval: false })
  const cookie = await app.login('ada')
  const sessionId = sessionIdOf(cookie)
  const originalExpiry = store.expiryOf(sessionId)
  const socket = await connected(app.url, { cookie })
  const tab2 = await connected(app.url, { cookie })
  t.after(() => { socket.close(); tab2.close() })
  const end = ending(socket, 10_000)
  end.catch(() => {})

  // Two tabs of one session, both busy: still one write per interval for the session.
  const since = Date.now()
  const [sent, sent2] = await Promise.all([chatter(socket, originalExpiry + 1000), chatter(tab2, originalExpiry + 1000, 10)])
  const elapsed = Date.now() - since
  const writes = store.writes.filter((at) => at >= since).length
  assert.equal(socket.connected, true, 'connected 1 s past the original expiry, with no HTTP request')
  const extended = store.expiryOf(sessionId)
  assert.ok(extended > originalExpiry + 500, 'the store holds a later expiry')
  const most = Math.floor(elapsed / KEEP_ALIVE_INTERVAL) + 1
  assert.ok(writes >= 2, `only ${writes} keep-alive writes`)
  assert.ok(writes <= most, `${writes} store writes for ${sent + sent2} events in ${elapsed} ms (at most ${most}: one per ${KEEP_ALIVE_INTERVAL} ms)`)
  report(t, `keep-alive (MemoryStore): ${sent + sent2} events from 2 tabs in ${elapsed} ms -> ${writes} store writes; expiry moved ${extended - originalExpiry} ms`)

  // The socket user then stops; the session ends at the extended expiry.
  tab2.close()
  const ended = await end
  assert.equal(ended.reason, 'expired')
  const lateness = ended.disconnectedAt - store.expiryOf(sessionId)
  assert.ok(Number.isNaN(lateness) || (lateness >= 0 && lateness < 1000), `expired ${lateness} ms after the extended expiry`)
})

test('keepAlive (MemoryStore): the user is still logged in over HTTP after talking only over the socket', async (t) => {
  const { app, store } = await memoryApp(t, { keepAlive: true, keepAliveInterval: KEEP_ALIVE_INTERVAL, revalidateInterval: false })
  const cookie = await app.login('ada')
  const originalExpiry = store.expiryOf(sessionIdOf(cookie))
  const socket = await connected(app.url, { cookie })
  t.after(() => socket.close())
  await chatter(socket, originalExpiry + 800)
  assert.deepEqual((await whoami(app.url, cookie)).user, { name: 'ada', role: 'user' })
})

test('without keepAlive the same chatty client is disconnected at the expiry', async (t) => {
  const { app, store } = await memoryApp(t, { revalidateInterval: false })
  const cookie = await app.login('ada')
  const expiresAt = store.expiryOf(sessionIdOf(cookie))
  const socket = await connected(app.url, { cookie })
  t.after(() => socket.close())
  const end = ending(socket, MAX_AGE + 3000)
  const since = Date.now()
  await chatter(socket, expiresAt + 1000)
  const ended = await end
  assert.equal(ended.reason, 'expired')
  const lateness = ended.disconnectedAt - expiresAt
  assert.ok(lateness >= 0 && lateness < 1000, `expired ${lateness} ms after the expiry`)
  assert.equal(store.writes.filter((at) => at >= since).length, 0, 'socket activity wrote nothing')
})

/** connect-redis, counting the plugin's writes: touch (EXPIRE) and set. */
class CountingRedisStore extends RedisStore {
  touches = 0
  sets = 0
  override touch (sid: string, sess: Parameters<RedisStore['touch']>[1], cb?: Parameters<RedisStore['touch']>[2]): Promise<unknown> {
    this.touches++
    return super.touch(sid, sess, cb)
  }

  override set (sid: string, sess: Parameters<RedisStore['set']>[1], cb?: Parameters<RedisStore['set']>[2]): Promise<unknown> {
    this.sets++
    return super.set(sid, sess, cb)
  }
}

test('keepAlive with connect-redis: the Redis TTL and the stored expiry move, and the user stays logged in', async (t) => {
  if (!await needRedis(t)) return
  const prefix = uniquePrefix('keep-alive')
  let store: CountingRedisStore | undefined
  const node = await startRedisNode(t, {
    sessionPrefix: prefix,
    makeStore: (client, prefix) => (store = new CountingRedisStore({ client, prefix })),
    session: { cookie: { secure: false, maxAge: MAX_AGE } },
    auth: { keepAlive: true, keepAliveInterval: KEEP_ALIVE_INTERVAL, revalidateInterval: 400 }
  })
  assert.ok(store)
  const admin = await redisClient(t)
  const cookie = await node.login('ada')
  const key = prefix + sessionIdOf(cookie)
  const storedExpiry = async (): Promise<number> => {
    const raw = await admin.get(key)
    return raw === null ? NaN : new Date((JSON.parse(raw) as { cookie: { expires: string } }).cookie.expires).getTime()
  }
  const originalExpiry = await storedExpiry()
  const socket = await connected(node.url, { cookie })
  t.after(() => socket.close())

  const since = Date.now()
  const writesBefore = store.touches + store.sets
  const sent = await chatter(socket, originalExpiry + 1500)
  const elapsed = Date.now() - since
  const writes = store.touches + store.sets - writesBefore
  assert.equal(socket.connected, true, 'connected past the original expiry, revalidated all along')
  // Without keep-alive the key (TTL ceil(1.5 s)) would be gone by now.
  const ttl = await admin.pTTL(key)
  assert.ok(ttl > 0, `the Redis key lives on (PTTL ${ttl})`)
  const expiry = await storedExpiry()
  assert.ok(expiry > originalExpiry + 1000, 'the expiry @fastify/session reads from the record moved too')
  const most = Math.floor(elapsed / KEEP_ALIVE_INTERVAL) + 1
  assert.ok(writes >= 2 && writes <= most, `${writes} writes in ${elapsed} ms (1..${most} allowed)`)
  report(t, `keep-alive (connect-redis): ${sent} events in ${elapsed} ms -> ${writes} writes (touch ${store.touches}, set ${store.sets - 1}); PTTL ${ttl} ms; expiry moved ${expiry - originalExpiry} ms`)

  // What the user cares about: the next page load is still logged in.
  assert.deepEqual((await whoami(node.url, cookie)).user, { name: 'ada', role: 'user' })
  await admin.del(key)
})
