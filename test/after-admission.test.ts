// What runs after admission, hardened after a second outsider's pass over the
// user features: a change the plugin could not read or judge is never dropped,
// socket.data stays the app's where the plugin does not own it, and odd user
// ids or URL-encoded session ids cannot slip through.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import { userRoom } from '../lib/index'
import { ending } from './support/cluster'
import { ask, connected, loginAs, postAs, refusedWith, sleep, startApp, userRoutes, waitFor } from './support/app'
import { TestStore } from './support/store'

const adminRule = { '/admin': (session: { user?: { role?: string } }) => session.user?.role === 'admin' }

/** The user routes, and an /admin namespace for the rules to guard. */
function withAdmin (instance: Parameters<typeof userRoutes>[0]): void {
  userRoutes(instance)
  instance.io.of('/admin')
}

test('a demotion whose refresh read fails is judged again at the next successful revalidation: /admin leaves', async (t) => {
  const store = new TestStore()
  const app = await startApp({ session: { store }, auth: { namespaces: adminRule, revalidateInterval: 300 }, setup: withAdmin })
  t.after(() => app.close())
  const cookie = await loginAs(app.app, 'grace', 'admin')
  const main = await connected(app.url, { cookie })
  const admin = await connected(app.url, { cookie, namespace: '/admin' })
  t.after(() => { main.close(); admin.close() })
  const end = ending(admin, 3000)
  // The first read that sees the demotion (the refresh it triggers) fails; later ones answer.
  let failed = false
  store.readFault = (answer, record) => {
    const role = (record() as { user?: { role?: string } } | undefined)?.user?.role
    if (role === 'user' && !failed) {
      failed = true
      return answer(new Error('connection lost'))
    }
    return answer(null, record())
  }
  await postAs(app.url, '/role', cookie, { role: 'user' })
  const ended = await end
  assert.equal(failed, true, 'the refresh read failed, so revalidation had to catch up')
  assert.equal(ended.reason, 'forbidden')
  assert.equal(main.connected, true, '/ still passes its rules and stays')
})

test('a change after which the user cannot be loaded fails closed: the session\'s sockets leave with forbidden', async (t) => {
  let failLoads = false
  const app = await startApp({
    auth: {
      loadUser: (session) => {
        if (failLoads) throw new Error('user database down')
        return session.user
      },
      namespaces: { '/admin': (_session, socket) => (socket.data.user as { role?: string } | undefined)?.role === 'admin' }
    },
    setup: withAdmin
  })
  t.after(() => app.close())
  const cookie = await loginAs(app.app, 'grace', 'admin')
  const main = await connected(app.url, { cookie })
  const admin = await connected(app.url, { cookie, namespace: '/admin' })
  t.after(() => { main.close(); admin.close() })
  const ends = [ending(admin, 3000), ending(main, 3000)]
  failLoads = true
  await postAs(app.url, '/role', cookie, { role: 'user' })
  // The change may be what took access away, and the user cannot be checked: neither socket keeps it.
  for (const ended of await Promise.all(ends)) assert.equal(ended.reason, 'forbidden')
})

test('without a user loader, socket.data.user is the app\'s: a middleware may set it, as Socket.IO apps do', async (t) => {
  const app = await startApp({
    setup: (instance) => {
      instance.io.use((socket, next) => {
        socket.data.user = { from: 'middleware' }
        next()
      })
      instance.io.on('connection', (socket) => {
        socket.on('user', (ack: (user: unknown) => void) => ack(socket.data.user))
      })
    }
  })
  t.after(() => app.close())
  const socket = await connected(app.url, { cookie: await app.login() })
  t.after(() => socket.close())
  assert.deepEqual(await ask(socket, 'user'), { from: 'middleware' })
})

test('with a user loader, socket.data.user may be replaced; socket.data.session may not, with a clear TypeError', async (t) => {
  const errors: string[] = []
  const app = await startApp({
    auth: { loadUser: (session) => session.user },
    setup: (instance) => {
      instance.io.on('connection', (socket) => {
        socket.data.user = { replaced: true }
        try {
          (socket.data as { session: unknown }).session = {}
        } catch (error) {
          errors.push((error as Error).message)
        }
        socket.on('user', (ack: (user: unknown) => void) => ack(socket.data.user))
      })
    }
  })
  t.after(() => app.close())
  const socket = await connected(app.url, { cookie: await app.login() })
  t.after(() => socket.close())
  assert.deepEqual(await ask(socket, 'user'), { replaced: true })
  assert.match(errors[0] ?? '', /socket\.data\.session is the session this plugin admitted the socket with/)
})

test('an identify that returns an object or NaN puts the socket in no user room, and says so in the log', async (t) => {
  const lines: string[] = []
  const stream = new Writable({ write (chunk: Buffer, _encoding, done) { lines.push(chunk.toString('utf8')); done() } })
  let id: unknown = { name: 'ada' }
  const app = await startApp({ fastify: { logger: { level: 'warn', stream } }, auth: { identify: () => id as string } })
  t.after(() => app.close())
  const first = await connected(app.url, { cookie: await app.login('ada') })
  id = Number.NaN
  const second = await connected(app.url, { cookie: await app.login('bob') })
  t.after(() => { first.close(); second.close() })
  for (const room of [userRoom('[object Object]'), userRoom('NaN')]) {
    assert.deepEqual(await app.app.io.in(room).fetchSockets(), [], `nobody is in ${room}`)
  }
  await waitFor('two warnings', () => lines.filter((line) => line.includes('identify returned neither a string nor a finite number')).length === 2)
})

test('a session id that URL-encoding changes is cut from logged errors in both forms', async (t) => {
  const lines: string[] = []
  const stream = new Writable({ write (chunk: Buffer, _encoding, done) { lines.push(chunk.toString('utf8')); done() } })
  const store = new TestStore()
  const rawId = 'ab+cd/ef:gh=='
  const app = await startApp({
    fastify: { logger: { level: 'trace', stream } },
    session: { store, idGenerator: () => rawId },
    auth: { authorize: (session) => { throw new Error(`no ${session.sessionId} / ${encodeURIComponent(session.sessionId)}`) } }
  })
  t.after(() => app.close())
  const cookie = await app.login()
  store.readFault = (answer) => answer(new Error(`GET sess:${encodeURIComponent(rawId)} failed`))
  await connected(app.url, { cookie }).then((socket) => socket.close(), () => {})
  store.readFault = undefined
  await connected(app.url, { cookie }).then((socket) => socket.close(), () => {})
  await sleep(50)
  const text = lines.filter((line) => line.includes('fastify-session-socket-auth')).join('')
  assert.ok(text.includes('<session id>'), 'the failures were logged, with the id cut out')
  assert.ok(!text.includes(rawId), 'no raw id')
  assert.ok(!text.includes(encodeURIComponent(rawId)), 'no URL-encoded id')
})

test('the passport preset reads "no user" as @fastify/passport does (!user): a deserializer giving "" or 0 is refused USER_REQUIRED', async (t) => {
  for (const given of ['', 0]) {
    // What the preset needs of an Authenticator: its key and its deserializeUser (the real one is in passport.test.ts).
    const passport = { key: 'passport', deserializeUser: async () => given }
    const app = await startApp({ auth: { passport, userRequired: true }, setup: userRoutes })
    t.after(() => app.close())
    const cookie = await loginAs(app.app, 'u1')
    assert.equal((await refusedWith(app.url, { cookie })).code, 'USER_REQUIRED', `deserializer gave ${JSON.stringify(given)}`)
  }
})

test('a join whose slow loader runs while an HTTP request demotes the user is judged on the demoted session', async (t) => {
  const reached: string[] = []
  const app = await startApp({
    auth: {
      revalidateInterval: false,
      loadUser: async (session) => { await sleep(300); return session.user }, // a database lookup, say
      namespaces: { '/admin': (_session, socket) => (socket.data.user as { role?: string } | undefined)?.role === 'admin' }
    },
    setup: (instance) => {
      withAdmin(instance)
      instance.io.of('/admin').on('connection', (socket) => { reached.push(String(socket.data.session.user?.role)) })
    }
  })
  t.after(() => app.close())
  const cookie = await loginAs(app.app, 'mallory', 'admin')
  const joining = refusedWith(app.url, { cookie, namespace: '/admin' })
  await sleep(80) // the join has read the session and waits on the loader
  const demoted = await postAs(app.url, '/role', cookie, { role: 'user' })
  assert.equal(demoted.status, 200)
  assert.equal((await joining).code, 'FORBIDDEN')
  assert.deepEqual(reached, [], 'the /admin connection handler never ran')
})
