// A handshake does only the work it needs (issue 12), and stays correct doing so:
// - with a store that answers synchronously (MemoryStore) and no async rule, the
//   guard decides in the turn it was asked, as Socket.IO would with no check;
//   a store that answers later is waited for;
// - rules and loaders that read fields of the session's data build no
//   @fastify/session Session (no signature, no hash); anything else they do
//   with the session (methods, cookie, id, writes, keys) is done on the real one.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { inspect } from 'node:util'
import { Signer } from '@fastify/cookie'
import { SECRET, ask, connectedFor, expectRefused, startApp } from './support/app'
import { guardOf, probeSocket } from './support/guard-probe'
import { TestStore } from './support/store'

test('a store that answers synchronously: the guard decides before it returns; one that answers later: after', async (t) => {
  for (const delay of [undefined, 20]) {
    const store = new TestStore({ delay })
    const app = await startApp({ session: { store } })
    t.after(() => app.close())
    const guard = guardOf(app.app.io)
    const cookie = await app.login()
    const socket = probeSocket({ cookie, host: new URL(app.url).host })
    let verdict: unknown = 'none yet'
    guard(socket, (err) => { verdict = err ?? 'admitted' })
    if (delay === undefined) {
      assert.equal(verdict, 'admitted', 'decided in the same turn')
    } else {
      assert.equal(verdict, 'none yet', 'waits for the store')
      await new Promise((resolve) => setTimeout(resolve, delay * 3))
      assert.equal(verdict, 'admitted')
    }
    // The socket is admitted with its session either way.
    assert.equal((socket.data.session as { user?: { name?: string } }).user?.name, 'ada')
  }
})

test('rules that read the session\'s data build no Session; reading socket.data.session later does', async (t) => {
  const signer = new Signer(SECRET)
  let signs = 0
  const seen: string[] = []
  const app = await startApp({
    // JSON records, as Redis or PostgreSQL keep them (MemoryStore's live Sessions carry their signature along).
    session: { store: new TestStore({ serialize: true }), secret: { sign: (value: string) => { signs++; return signer.sign(value) }, unsign: (value: string) => signer.unsign(value) } },
    auth: {
      loadUser: (session) => session.user,
      // A field the session does not have (an anonymous session's user, say) is answered from the data too.
      authorize: (session) => session.user?.role === 'user' && (session as { notStored?: unknown }).notStored === undefined,
      namespaces: { '/': (session, socket) => { seen.push(String(socket.data.user !== undefined)); return session.user !== undefined } }
    },
    setup: (app) => {
      app.io.on('connection', (socket) => {
        socket.on('cookie-expires', (reply: (expires: unknown) => void) => reply(socket.data.session.cookie.expires instanceof Date))
      })
    }
  })
  t.after(() => app.close())
  const cookie = await app.login('ada')
  const before = signs
  const socket = await connectedFor(t, app.url, { cookie })
  assert.deepEqual(seen, ['true'], 'the loader ran, then the rules')
  assert.equal(signs - before, 0, 'no Session was built for the loader and rules')
  assert.equal(await ask(socket, 'cookie-expires'), true)
  assert.equal(signs - before, 1, 'reading socket.data.session built it, once')

  // The data read is the stored data: a user the rule refuses is refused.
  await expectRefused(app.url, 'FORBIDDEN', { cookie: await app.login('bob', 'admin') })
})

test('a rule gets the whole session: methods, cookie, id, keys, JSON, inspect and writes act on the real one', async (t) => {
  const observed: Record<string, unknown> = {}
  const app = await startApp({
    auth: {
      authorize: (session, socket) => {
        observed.get = session.get('user')
        observed.has = 'user' in session && !('nothing' in session)
        observed.keys = Object.keys(session).sort()
        observed.json = JSON.parse(JSON.stringify(session)).user
        observed.cookie = session.cookie.expires instanceof Date
        observed.inspect = inspect(session).includes('ada')
        observed.save = typeof session.save
        session.seenByRule = 'yes'
        observed.id = session.sessionId === socket.data.session.sessionId
        return true
      }
    },
    setup: (app) => {
      app.io.on('connection', (socket) => {
        socket.on('seen', (reply: (value: unknown) => void) => reply(socket.data.session.seenByRule))
      })
    }
  })
  t.after(() => app.close())
  const socket = await connectedFor(t, app.url, { cookie: await app.login('ada') })
  assert.deepEqual(observed, {
    get: { name: 'ada', role: 'user' },
    has: true,
    keys: ['cookie', 'user'],
    json: { name: 'ada', role: 'user' },
    cookie: true,
    inspect: true,
    save: 'function',
    id: true
  })
  assert.equal(await ask(socket, 'seen'), 'yes', 'a write in the rule is on the socket\'s session')
})

test('a rule reading a method through the view gets its own socket\'s, not what an earlier socket left on the stored Session', async (t) => {
  // MemoryStore keeps the Session a socket saved, with that socket's save() on it (not enumerable, so not data).
  const seen: Array<{ save: unknown, own: unknown }> = []
  const app = await startApp({
    auth: {
      authorize: (session, socket) => {
        seen.push({ save: session.save, own: socket.data.session.save })
        return true
      }
    },
    setup: (instance) => {
      instance.io.on('connection', (socket) => socket.on('bump', async (reply: () => void) => {
        socket.data.session.counter = 1
        await socket.data.session.save()
        reply()
      }))
    }
  })
  t.after(() => app.close())
  const cookie = await app.login()
  const first = await connectedFor(t, app.url, { cookie })
  await ask(first, 'bump')
  first.close()
  await connectedFor(t, app.url, { cookie })
  assert.equal(seen.length, 2)
  assert.equal(seen[1]?.save, seen[1]?.own, 'the second socket\'s rule sees its own save()')
  assert.notEqual(seen[1]?.save, seen[0]?.own)
})
