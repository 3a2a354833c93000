import { describe, test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes, randomUUID } from 'node:crypto'
import { sign } from '@fastify/cookie'
import { MemoryStore, type SessionStore } from '@fastify/session'
import { RedisStore } from 'connect-redis'
import connectPgSimple from 'connect-pg-simple'
import expressSession from 'express-session'
import pg from 'pg'
import { SECRET, ask, connected, cookieValueOf, once, refusedWith, sleep, startApp } from './support/app'
import { deferCleanup, deleteKeys, redisClient, uniquePrefix } from './support/cluster'
import { PG_URL, needPostgres, needRedis } from './support/services'

const TRANSPORTS = ['polling', 'websocket'] as const
const TIMEOUT = { timeout: 60_000 }
// The expired session's life: long enough to log in and connect once on a loaded machine.
const SHORT_MAX_AGE = 1500
// Redis keys outlive their sessions' cookies (by default connect-redis lets Redis
// expire a key with its cookie, in whole seconds, which can fall in the middle of
// the check): the record is still there when the guard looks, so its own expiry
// rule is what refuses, and the count of keys moves only if a handshake writes.
const REDIS_TTL_SECONDS = 60

interface StoreUnderTest {
  store: SessionStore
  /** How many sessions the store holds. */
  count: () => Promise<number>
}

/**
 * The core scenario, the same for every store: an HTTP login is admitted,
 * forged and unknown cookies are refused, a logout ends the session, an
 * expired session is refused, and no refusal changes what the store holds.
 */
async function coreScenario (t: TestContext, { store, count }: StoreUnderTest): Promise<void> {
  const app = await startApp({ session: { store } })
  deferCleanup(t, () => app.close())
  app.app.io.on('connection', (socket) => {
    socket.on('whoami', (ack: (user: unknown) => void) => ack(socket.data.session.user))
  })
  assert.equal(await count(), 0, 'a fresh store')
  const cookie = await app.login('ada', 'admin')
  assert.equal(await count(), 1, 'login stored one session')

  for (const transport of TRANSPORTS) {
    const socket = await connected(app.url, { cookie, transports: [transport] })
    assert.deepEqual(await ask(socket, 'whoami'), { name: 'ada', role: 'admin' })
    socket.close()
  }

  const value = cookieValueOf(cookie)
  const dot = value.lastIndexOf('.')
  const forged = `sessionId=${encodeURIComponent(`${value.slice(0, dot + 1)}${value[dot + 1] === 'A' ? 'B' : 'A'}${value.slice(dot + 2)}`)}`
  const unknown = `sessionId=${encodeURIComponent(sign(randomBytes(24).toString('base64url'), SECRET))}`
  for (const transport of TRANSPORTS) {
    assert.equal((await refusedWith(app.url, { cookie: forged, transports: [transport] })).code, 'SESSION_INVALID')
    assert.equal((await refusedWith(app.url, { cookie: unknown, transports: [transport] })).code, 'SESSION_INVALID')
    assert.equal((await refusedWith(app.url, { transports: [transport] })).code, 'SESSION_REQUIRED')
  }
  assert.equal(await count(), 1, 'refused handshakes leave the store as it was')

  const open = await connected(app.url, { cookie })
  const ended = once(open, 'disconnect', 2000)
  await app.logout(cookie)
  await ended
  assert.equal(await count(), 0, 'logout destroyed the session')
  for (const transport of TRANSPORTS) {
    assert.equal((await refusedWith(app.url, { cookie, transports: [transport] })).code, 'SESSION_INVALID')
  }
  assert.equal(await count(), 0)

  const short = await startApp({ session: { store, cookie: { secure: false, maxAge: SHORT_MAX_AGE } } })
  deferCleanup(t, () => short.close())
  const expiring = await short.login('grace')
  const fresh = await connected(short.url, { cookie: expiring })
  fresh.close()
  await sleep(SHORT_MAX_AGE + 200)
  const before = await count()
  for (const transport of TRANSPORTS) {
    assert.equal((await refusedWith(short.url, { cookie: expiring, transports: [transport] })).code, 'SESSION_INVALID')
  }
  assert.equal(await count(), before, 'refusing an expired session creates no session')
}

// Each store its own app and data, so the three run at once.
describe('the core scenario against real stores', { ...TIMEOUT, concurrency: true }, () => {
  test('@fastify/session MemoryStore', async (t) => {
    const map = new Map()
    await coreScenario(t, { store: new MemoryStore(map), count: async () => map.size })
  })

  test('Redis through connect-redis', async (t) => {
    if (!await needRedis(t)) return
    const client = await redisClient(t)
    const prefix = uniquePrefix('stores')
    deferCleanup(t, () => deleteKeys(client, prefix))
    const store = new RedisStore({ client, prefix, ttl: () => REDIS_TTL_SECONDS }) as unknown as SessionStore
    await coreScenario(t, { store, count: async () => (await client.keys(`${prefix}*`)).length })
  })

  test('PostgreSQL through connect-pg-simple', async (t) => {
    if (!await needPostgres(t)) return
    const pool = new pg.Pool({ connectionString: PG_URL, max: 4 })
    // connect-pg-simple names its primary key and index the same for every
    // table, so a schema of our own keeps parallel runs apart.
    const schemaName = `sst_${randomUUID().replaceAll('-', '')}`
    const tableName = `sessions_${randomUUID().replaceAll('-', '')}`
    const PgStore = connectPgSimple(expressSession)
    const pgStore = new PgStore({ pool, schemaName, tableName, createTableIfMissing: true, pruneSessionInterval: false })
    deferCleanup(t, async () => {
      pgStore.close()
      await pool.query(`DROP SCHEMA IF EXISTS "${schemaName}" CASCADE`)
      await pool.end()
    })
    await pool.query(`CREATE SCHEMA "${schemaName}"`)
    const count = async (): Promise<number> => {
      const exists = await pool.query('SELECT to_regclass($1::text) AS t', [`"${schemaName}"."${tableName}"`])
      if (exists.rows[0].t === null) return 0
      const result = await pool.query(`SELECT count(*)::int AS n FROM "${schemaName}"."${tableName}"`)
      return result.rows[0].n as number
    }
    await coreScenario(t, { store: pgStore as unknown as SessionStore, count })
  })
})
