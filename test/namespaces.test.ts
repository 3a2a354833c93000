import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { Manager, type Socket as ClientSocket } from 'socket.io-client'
import type { Namespace } from 'socket.io'
import { sessionRoom } from '../lib/index'
import type { SessionSocket } from '../lib/types'
import { ask, connected, expectRefused, sessionIdOf, startApp } from './support/app'
import { TestStore } from './support/store'

const TRANSPORTS = ['polling', 'websocket'] as const
const TIMEOUT = { timeout: 60_000 }

/** Answers 'whoami' with what the handler sees in socket.data.session, and counts connections. */
function answerWhoami (nsp: Namespace, seen: string[]): void {
  nsp.on('connection', (socket: SessionSocket) => {
    seen.push(socket.nsp.name)
    socket.on('whoami', (ack: (user: unknown) => void) => ack(socket.data.session?.user ?? null))
  })
}

describe('every namespace is guarded', TIMEOUT, () => {
  test('a namespace created with io.of() after register (and after listen)', async (t) => {
    const app = await startApp()
    t.after(() => app.close())
    const seen: string[] = []
    answerWhoami(app.app.io.of('/late'), seen)
    const cookie = await app.login('ada')
    for (const transport of TRANSPORTS) {
      await expectRefused(app.url, 'SESSION_REQUIRED', { namespace: '/late', transports: [transport] })
      await expectRefused(app.url, 'SESSION_INVALID', { namespace: '/late', cookie: `${cookie}x`, transports: [transport] })
      assert.deepEqual(seen, [], 'the handler never saw a refused socket')
      const socket = await connected(app.url, { namespace: '/late', cookie, transports: [transport] })
      assert.deepEqual(await ask(socket, 'whoami'), { name: 'ada', role: 'user' })
      socket.close()
      seen.length = 0
    }
  })

  test('dynamic namespaces from a RegExp: children are guarded, and so is parent middleware', async (t) => {
    const app = await startApp()
    t.after(() => app.close())
    const seen: string[] = []
    const middlewareSaw: Array<{ nsp: string, hasSession: boolean }> = []
    const rooms = app.app.io.of(/^\/room-\d+$/)
    rooms.use((socket, next) => {
      middlewareSaw.push({ nsp: socket.nsp.name, hasSession: socket.data.session !== undefined })
      next()
    })
    answerWhoami(rooms as unknown as Namespace, seen)
    const cookie = await app.login('ada')
    for (const transport of TRANSPORTS) {
      // Refused first: the child namespace is created by the refused handshake itself.
      const fresh = transport === 'polling' ? '/room-11' : '/room-22'
      await expectRefused(app.url, 'SESSION_REQUIRED', { namespace: fresh, transports: [transport] })
      await expectRefused(app.url, 'SESSION_REQUIRED', { namespace: '/room-1', transports: [transport] })
      assert.deepEqual(seen, [])
      assert.equal(middlewareSaw.length, 0, 'parent middleware never sees an unauthenticated socket')
      for (const name of [fresh, '/room-1']) {
        const socket = await connected(app.url, { namespace: name, cookie, transports: [transport] })
        assert.deepEqual(await ask(socket, 'whoami'), { name: 'ada', role: 'user' })
        socket.close()
      }
      // Once the child exists, it stays guarded.
      await expectRefused(app.url, 'SESSION_REQUIRED', { namespace: fresh, transports: [transport] })
      assert.equal(seen.length, 2)
      assert.ok(middlewareSaw.every((entry) => entry.hasSession), 'middleware runs after the guard, with the session')
      assert.equal(middlewareSaw.length, 2)
      seen.length = 0
      middlewareSaw.length = 0
    }
  })

  test('dynamic namespaces from a function', async (t) => {
    const app = await startApp()
    t.after(() => app.close())
    const seen: string[] = []
    const parent = app.app.io.of((name, _auth, next) => next(null, name.startsWith('/fn-')))
    answerWhoami(parent as unknown as Namespace, seen)
    const cookie = await app.login('grace', 'admin')
    for (const transport of TRANSPORTS) {
      await expectRefused(app.url, 'SESSION_REQUIRED', { namespace: `/fn-${transport}`, transports: [transport] })
      assert.deepEqual(seen, [])
      const socket = await connected(app.url, { namespace: `/fn-${transport}`, cookie, transports: [transport] })
      assert.deepEqual(await ask(socket, 'whoami'), { name: 'grace', role: 'admin' })
      socket.close()
      assert.deepEqual(seen, [`/fn-${transport}`])
      seen.length = 0
    }
  })

  test('io.use() middleware added after register never sees an unauthenticated socket', async (t) => {
    const app = await startApp()
    t.after(() => app.close())
    const saw: Array<{ user: unknown }> = []
    app.app.io.use((socket, next) => {
      saw.push({ user: socket.data.session?.user })
      next()
    })
    const late = app.app.io.of('/late')
    late.use((socket, next) => {
      saw.push({ user: socket.data.session?.user })
      next()
    })
    const cookie = await app.login('ada')
    for (const transport of TRANSPORTS) {
      for (const namespace of ['/', '/late']) {
        await expectRefused(app.url, 'SESSION_REQUIRED', { namespace, transports: [transport] })
        await expectRefused(app.url, 'SESSION_INVALID', { namespace, cookie: 'sessionId=forged.value', transports: [transport] })
      }
    }
    assert.deepEqual(saw, [])
    for (const namespace of ['/', '/late']) {
      const socket = await connected(app.url, { namespace, cookie })
      socket.close()
    }
    assert.deepEqual(saw, [{ user: { name: 'ada', role: 'user' } }, { user: { name: 'ada', role: 'user' } }])
  })

  test('every namespace a connection opens reads the session afresh, and rules run per namespace', async (t) => {
    const store = new TestStore()
    const app = await startApp({
      session: { store },
      auth: { namespaces: { '/admin': (session) => session.user?.role === 'admin' } }
    })
    t.after(() => app.close())
    const seen: string[] = []
    answerWhoami(app.app.io.of('/'), seen)
    answerWhoami(app.app.io.of('/chat'), seen)
    answerWhoami(app.app.io.of('/admin'), seen)
    const cookie = await app.login('ada', 'user')
    for (const transport of TRANSPORTS) {
      const manager = new Manager(app.url, { transports: [transport], extraHeaders: { cookie }, reconnection: false, timeout: 5000 })
      t.after(() => { manager.engine?.close() })
      const gets = store.gets
      const main = manager.socket('/')
      const chat = manager.socket('/chat')
      const admin = manager.socket('/admin')
      const admitted = (socket: ClientSocket): Promise<void> => new Promise((resolve, reject) => {
        socket.once('connect', resolve)
        socket.once('connect_error', reject)
      })
      const refusal = new Promise<string>((resolve, reject) => {
        admin.once('connect', () => reject(new Error('/admin admitted a non-admin')))
        admin.once('connect_error', (err) => resolve(err.message))
      })
      await Promise.all([admitted(main), admitted(chat)])
      assert.equal(await refusal, 'FORBIDDEN')
      assert.deepEqual(await ask(chat, 'whoami'), { name: 'ada', role: 'user' })
      assert.deepEqual(await ask(main, 'whoami'), { name: 'ada', role: 'user' })
      assert.equal(main.io.engine.id, chat.io.engine.id, 'one Engine.IO connection')
      // One read per namespace join: a verdict never outlives a change to the session.
      assert.equal(store.gets - gets, 3, 'one store read per namespace of the connection')
      seen.length = 0
    }
  })

  test('the socket joins its session room; no room name contains the raw session id', async (t) => {
    const app = await startApp()
    t.after(() => app.close())
    const rooms: string[][] = []
    app.app.io.on('connection', (socket) => { rooms.push([...socket.rooms]) })
    const cookie = await app.login()
    const id = sessionIdOf(cookie)
    const socket = await connected(app.url, { cookie })
    assert.equal(rooms.length, 1)
    assert.ok(rooms[0].includes(sessionRoom(id)), `the socket is in ${sessionRoom(id)}: ${rooms[0].join(', ')}`)
    const all = [...app.app.io.of('/').adapter.rooms.keys()]
    assert.ok(all.includes(sessionRoom(id)))
    for (const room of all) assert.ok(!room.includes(id), 'a room name contains the raw session id')
    socket.close()
  })
})
