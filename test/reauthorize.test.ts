import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import type { FastifyInstance } from 'fastify'
import type { Socket as ClientSocket } from 'socket.io-client'
import type { SessionSocketAuthOptions } from '../lib/options'
import { connectedFor, connectedTab, loginAs, postAs, refusedWith, sleep, startApp, userRoutes, type TestApp } from './support/app'
import { ending, report, startCluster, staysConnected, type Ending } from './support/cluster'
import { needRedis } from './support/services'

// Authorization follows the session: when an HTTP request changes and saves a
// session (on any node), or the app calls reauthorizeUser after a change
// outside any request, every socket of it on every node gets the new session,
// loads its user again and runs the rules again. A socket whose rule no longer
// passes leaves that namespace only ('forbidden'); the others are untouched.

type Role = 'user' | 'admin'
interface LoadedUser { id: string | number | undefined, name: string | undefined, role: Role | undefined }
interface Who { id: string, name: string | undefined, role: Role | undefined, user: LoadedUser }

/**
 * The rules under test: a global rule (no user named 'suspended'), and /admin
 * for an admin by both the session and the loaded user. The user is loaded
 * from the session, its role overridden by the in-memory "database" `db`
 * (which nothing in a request touches: only reauthorizeUser makes sockets see it).
 */
function auth (db: Map<string | number, Role>): SessionSocketAuthOptions {
  return {
    loadUser: (session) => session.user === undefined
      ? null
      : { id: session.passport, name: session.user.name, role: db.get(session.passport ?? '') ?? session.user.role },
    authorize: (session) => session.user?.name !== 'suspended',
    namespaces: {
      '/admin': (session, socket) => session.user?.role === 'admin' && (socket.data.user as LoadedUser | undefined)?.role === 'admin'
    }
  }
}

/** userRoutes, and the socket event 'who' on /, /chat and /admin: the server's socket id, its session's user, and socket.data.user. */
function setup (app: FastifyInstance): void {
  userRoutes(app)
  for (const name of ['/', '/chat', '/admin']) {
    app.io.of(name).on('connection', (socket) => {
      socket.on('who', (ack: (who: Who) => void) => ack({
        id: socket.id,
        name: socket.data.session.user?.name,
        role: socket.data.session.user?.role,
        user: socket.data.user as LoadedUser
      }))
    })
  }
}

async function start (t: TestContext, db = new Map<string | number, Role>()): Promise<TestApp> {
  const app = await startApp({ setup, auth: auth(db) })
  t.after(() => app.close())
  return app
}

async function who (socket: ClientSocket): Promise<Who> {
  return socket.timeout(3000).emitWithAck('who')
}

async function tab (t: TestContext, url: string, cookie: string, namespaces: string[]): Promise<ClientSocket[]> {
  const sockets = await connectedTab(url, namespaces, { cookie })
  t.after(() => { for (const socket of sockets) socket.close() })
  return sockets
}

/** Counts `session:revoked` events from now on, over all the sockets. */
function revokedCount (sockets: ClientSocket[]): () => number {
  let count = 0
  for (const socket of sockets) socket.on('session:revoked', () => { count++ })
  return () => count
}

/** Polls `check` every 20 ms until it holds or `ms` pass; returns whether it held. */
async function eventually (check: () => Promise<boolean>, ms = 2000): Promise<boolean> {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (await check()) return true
    await sleep(20)
  }
  return false
}

function assertForbidden (end: Ending, what: string): void {
  assert.equal(end.reason, 'forbidden', what)
  assert.ok(end.revokedFirst, `${what}: session:revoked before the disconnect`)
  assert.equal(end.disconnect, 'io server disconnect', what)
}

/** Asserts each socket is still connected after `ms`, under the same id, and answers. */
async function assertUntouched (sockets: ClientSocket[], ids: string[], what: string, ms = 300): Promise<Who[]> {
  const stayed = await Promise.all(sockets.map((socket) => staysConnected(socket, ms)))
  assert.deepEqual(stayed, sockets.map(() => true), `${what}: still connected`)
  const answers = await Promise.all(sockets.map(who))
  assert.deepEqual(sockets.map((socket) => socket.id), ids, `${what}: same client socket ids`)
  assert.deepEqual(answers.map((answer) => answer.id), ids, `${what}: the same server sockets answer`)
  return answers
}

test('demotion over HTTP: the session\'s /admin sockets leave; / and /chat stay (same ids) and see the new role', async (t) => {
  const app = await start(t)
  const cookie = await loginAs(app.app, 'alice', 'admin')
  const [root, chat, admin] = await tab(t, app.url, cookie, ['/', '/chat', '/admin'])
  const otherTabAdmin = await connectedFor(t, app.url, { cookie, namespace: '/admin' })
  const rootCookie = await loginAs(app.app, 'root', 'admin')
  const [otherRoot, otherAdmin] = await tab(t, app.url, rootCookie, ['/', '/admin'])
  assert.equal((await who(root)).role, 'admin')
  const stayIds = [root.id, chat.id, otherRoot.id, otherAdmin.id] as string[]
  const othersRevoked = revokedCount([root, chat, otherRoot, otherAdmin])

  const endings = [ending(admin), ending(otherTabAdmin)]
  const started = Date.now()
  await postAs(app.url, '/role', cookie, { role: 'user' })
  const [adminEnd, otherTabEnd] = await Promise.all(endings)
  assertForbidden(adminEnd, '/admin on the shared connection')
  assertForbidden(otherTabEnd, '/admin in another tab')
  report(t, `demotion over HTTP -> /admin left after ${adminEnd.disconnectedAt - started} ms (other tab ${otherTabEnd.disconnectedAt - started} ms)`)

  const [rootNow, chatNow, otherRootNow, otherAdminNow] = await assertUntouched([root, chat, otherRoot, otherAdmin], stayIds, 'the remaining sockets')
  assert.equal(othersRevoked(), 0, 'no session:revoked for the sockets that stay')
  for (const answer of [rootNow, chatNow]) {
    assert.equal(answer.role, 'user', 'socket.data.session holds the new role')
    assert.deepEqual(answer.user, { id: 'alice', name: 'alice', role: 'user' }, 'the user was loaded again')
  }
  assert.equal(otherRootNow.role, 'admin', 'another admin\'s session is untouched')
  assert.equal(otherAdminNow.role, 'admin')
  assert.equal((await refusedWith(app.url, { cookie, namespace: '/admin' })).code, 'FORBIDDEN', 'a new /admin join is refused too')
})

test('a change that keeps every rule passing touches nothing, yet every socket sees it', async (t) => {
  const app = await start(t)
  const cookie = await loginAs(app.app, 'alice', 'admin')
  const sockets = await tab(t, app.url, cookie, ['/', '/chat', '/admin'])
  sockets.push(await connectedFor(t, app.url, { cookie, namespace: '/admin' }))
  const ids = sockets.map((socket) => socket.id as string)
  const revoked = revokedCount(sockets)
  const disconnects: string[] = []
  for (const socket of sockets) socket.on('disconnect', (reason) => disconnects.push(reason))

  await postAs(app.url, '/rename', cookie, { name: 'Alice II' })
  const seen = await eventually(async () => (await Promise.all(sockets.map(who))).every((answer) => answer.name === 'Alice II' && answer.user.name === 'Alice II'))
  assert.ok(seen, 'every socket sees the new name in its session and its reloaded user')
  const answers = await assertUntouched(sockets, ids, 'after the rename')
  for (const answer of answers) assert.equal(answer.role, 'admin')
  assert.equal(revoked(), 0, 'no session:revoked')
  assert.deepEqual(disconnects, [])
})

test('a global rule that no longer passes after an HTTP change ends the session\'s socket in every namespace', async (t) => {
  const app = await start(t)
  const cookie = await loginAs(app.app, 'alice', 'admin')
  const sockets = await tab(t, app.url, cookie, ['/', '/chat', '/admin'])
  const bob = await connectedFor(t, app.url, { cookie: await loginAs(app.app, 'bob') })
  const endings = sockets.map((socket) => ending(socket))
  await postAs(app.url, '/rename', cookie, { name: 'suspended' })
  for (const end of await Promise.all(endings)) assertForbidden(end, 'every namespace')
  assert.ok(await staysConnected(bob, 200), 'another session stays')
  assert.equal((await refusedWith(app.url, { cookie })).code, 'FORBIDDEN')
})

test('reauthorizeUser after a database change: every session of the user reloads its user and reruns the rules', async (t) => {
  const db = new Map<string | number, Role>()
  const app = await start(t, db)
  const [first, second] = [await loginAs(app.app, 'alice', 'admin'), await loginAs(app.app, 'alice', 'admin')]
  const [root, admin1] = await tab(t, app.url, first, ['/', '/admin'])
  const [admin2, chat] = await tab(t, app.url, second, ['/admin', '/chat'])
  const [bobRoot, bobAdmin] = await tab(t, app.url, await loginAs(app.app, 'bob', 'admin'), ['/', '/admin'])
  const stayIds = [root.id, chat.id, bobRoot.id, bobAdmin.id] as string[]

  db.set('alice', 'user')
  assert.ok(await staysConnected(admin1, 200), 'a database change alone reaches no socket')
  assert.equal((await who(root)).user.role, 'admin', 'and is not read per event')

  const endings = [ending(admin1), ending(admin2)]
  const started = Date.now()
  await app.app.reauthorizeUser('alice')
  for (const end of await Promise.all(endings)) assertForbidden(end, 'alice\'s /admin sockets')
  report(t, `reauthorizeUser -> /admin sockets left within ${Date.now() - started} ms`)
  const [rootNow, chatNow, bobRootNow] = await assertUntouched([root, chat, bobRoot, bobAdmin], stayIds, 'the other sockets')
  assert.deepEqual(rootNow.user, { id: 'alice', name: 'alice', role: 'user' }, 'the user was loaded again')
  assert.equal(chatNow.user.role, 'user')
  assert.equal(bobRootNow.user.role, 'admin', 'another user is untouched')

  // Promotion: nothing ends, the new role is loaded.
  db.set('alice', 'admin')
  await app.app.reauthorizeUser('alice')
  assert.equal((await who(root)).user.role, 'admin')
  assert.ok(await staysConnected(chat, 100))
  // An unknown user: nothing to do.
  await app.app.reauthorizeUser('nobody')
  assert.ok(await staysConnected(bobAdmin, 100))
})

test('two nodes on Redis: a demotion over HTTP on node A removes the user\'s /admin socket on node B within 1 s', async (t) => {
  if (!await needRedis(t)) return
  const [a, b] = await startCluster(t, 2, { setup, auth: auth(new Map()) })
  const cookie = await loginAs(a.app, 'alice', 'admin')
  const [rootB, adminB] = await tab(t, b.url, cookie, ['/', '/admin'])
  const adminA = await connectedFor(t, a.url, { cookie, namespace: '/admin' })
  const bobAdminB = await connectedFor(t, b.url, { cookie: await loginAs(b.app, 'bob', 'admin'), namespace: '/admin' })
  const stayIds = [rootB.id, bobAdminB.id] as string[]

  const endings = [ending(adminB), ending(adminA)]
  const started = Date.now()
  await postAs(a.url, '/role', cookie, { role: 'user' })
  const [endB, endA] = await Promise.all(endings)
  assertForbidden(endB, '/admin on node B')
  assertForbidden(endA, '/admin on node A')
  const latency = endB.disconnectedAt - started
  report(t, `demotion on A -> /admin on B left after ${latency} ms (on A ${endA.disconnectedAt - started} ms)`)
  assert.ok(latency < 1000, `node B's /admin socket left ${latency} ms after the demotion on A`)
  const [rootNow] = await assertUntouched([rootB, bobAdminB], stayIds, 'the others on B')
  assert.equal(rootNow.role, 'user', 'B\'s / socket holds the new session')
  assert.equal(rootNow.user.role, 'user')
})

test('two nodes on Redis: disconnectUser on node A ends every socket of the user on both nodes (3 sessions, up to 3 tabs)', async (t) => {
  if (!await needRedis(t)) return
  const [a, b] = await startCluster(t, 2, { setup, auth: auth(new Map()) })
  const sessions = [await loginAs(a.app, 'alice'), await loginAs(b.app, 'alice'), await loginAs(a.app, 'alice')]
  const alice: ClientSocket[] = [
    await connectedFor(t, a.url, { cookie: sessions[0] }), await connectedFor(t, b.url, { cookie: sessions[0] }), await connectedFor(t, b.url, { cookie: sessions[0], namespace: '/chat' }),
    await connectedFor(t, b.url, { cookie: sessions[1] }), await connectedFor(t, a.url, { cookie: sessions[1], namespace: '/chat' }),
    await connectedFor(t, b.url, { cookie: sessions[2] })
  ]
  const bobCookie = await loginAs(a.app, 'bob')
  const bob = [await connectedFor(t, a.url, { cookie: bobCookie }), await connectedFor(t, b.url, { cookie: bobCookie })]

  const endings = alice.map((socket) => ending(socket))
  const started = Date.now()
  await a.app.disconnectUser('alice', 'logout')
  const ended = await Promise.all(endings)
  for (const end of ended) {
    assert.equal(end.reason, 'logout')
    assert.ok(end.revokedFirst)
    assert.equal(end.disconnect, 'io server disconnect')
  }
  const latencies = ended.map((end) => end.disconnectedAt - started)
  report(t, `disconnectUser on A -> ${alice.length} sockets ended after ${latencies.join(', ')} ms`)
  assert.ok(Math.max(...latencies) < 2000)
  for (const socket of bob) assert.ok(await staysConnected(socket, 200), 'bob stays on both nodes')
  // The sessions stay in Redis: a new handshake is admitted on either node.
  assert.equal((await who(await connectedFor(t, b.url, { cookie: sessions[0] }))).user.id, 'alice')
  assert.equal((await who(await connectedFor(t, a.url, { cookie: sessions[1] }))).user.id, 'alice')
})

test('two nodes on Redis: reauthorizeUser on node A reaches the user\'s sockets on node B', async (t) => {
  if (!await needRedis(t)) return
  const db = new Map<string | number, Role>() // one database for both nodes
  const [a, b] = await startCluster(t, 2, { setup, auth: auth(db) })
  const cookie = await loginAs(a.app, 'alice', 'admin')
  const [rootB, adminB] = await tab(t, b.url, cookie, ['/', '/admin'])
  const bobAdminB = await connectedFor(t, b.url, { cookie: await loginAs(a.app, 'bob', 'admin'), namespace: '/admin' })

  db.set('alice', 'user')
  const end = ending(adminB)
  const started = Date.now()
  await a.app.reauthorizeUser('alice') // node A holds none of her sockets
  const ended = await end
  assertForbidden(ended, '/admin on node B')
  const latency = ended.disconnectedAt - started
  report(t, `reauthorizeUser on A -> /admin on B left after ${latency} ms`)
  assert.ok(latency < 2000)
  const [rootNow] = await assertUntouched([rootB, bobAdminB], [rootB.id, bobAdminB.id] as string[], 'the others on B')
  assert.deepEqual(rootNow.user, { id: 'alice', name: 'alice', role: 'user' }, 'B loaded the user again')
})
