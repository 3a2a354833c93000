import { describe, test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { Manager } from 'socket.io-client'
import { MemoryStore } from '@fastify/session'
import { sessionIdOf, sleep, startApp, type StartOptions, type TestApp } from './support/app'

// A verdict never outlives its session, on a live Engine.IO connection:
// - a revocation (logout, disconnectSession) closes a "spare" Engine.IO
//   connection that has left every namespace, so it cannot re-open one later;
// - every later namespace join re-reads the session and re-runs the rules
//   (a demoted user cannot open /admin; a session deleted from the store
//   cannot open /chat), instead of reusing the verdict of the first join.

const TIMEOUT = { timeout: 60_000 }
const WAIT_MS = 2000

type Outcome = { kind: 'connect' } | { kind: 'connect_error', code: string } | { kind: 'timeout' }

/** One Engine.IO connection carrying the login cookie; nothing opens until a namespace is joined. */
function openManager (t: TestContext, url: string, cookie: string): Manager {
  const manager = new Manager(url, {
    transports: ['websocket'],
    extraHeaders: { cookie },
    reconnection: false,
    autoConnect: false,
    timeout: 5000
  })
  t.after(() => { manager.engine?.close() })
  return manager
}

/** Joins a namespace on the manager's connection: admitted, refused (with its code) or nothing within `ms`. */
function join (manager: Manager, nsp: string, ms = WAIT_MS): Promise<Outcome> {
  const socket = manager.socket(nsp)
  return new Promise((resolve) => {
    const done = (outcome: Outcome): void => {
      clearTimeout(timer)
      socket.off('connect', onConnect)
      socket.off('connect_error', onError)
      resolve(outcome)
    }
    const onConnect = (): void => done({ kind: 'connect' })
    const onError = (err: Error): void => done({ kind: 'connect_error', code: err.message })
    const timer = setTimeout(() => done({ kind: 'timeout' }), ms)
    socket.on('connect', onConnect)
    socket.on('connect_error', onError)
    socket.connect()
  })
}

async function joined (manager: Manager, nsp: string): Promise<void> {
  assert.deepEqual(await join(manager, nsp), { kind: 'connect' }, `${nsp} was not admitted`)
}

/** Starts an app, logs `name` in and joins `/` on one Engine.IO connection carrying its cookie. */
async function joinedRoot (t: TestContext, options: StartOptions, name: string, role?: 'user' | 'admin'): Promise<{ app: TestApp, cookie: string, manager: Manager }> {
  const app = await startApp(options)
  t.after(() => app.close())
  const cookie = await app.login(name, role)
  const manager = openManager(t, app.url, cookie)
  await joined(manager, '/')
  return { app, cookie, manager }
}

/**
 * socket.io-client closes the Engine.IO connection as soon as its last
 * namespace socket is inactive. A client that keeps the connection anyway (a
 * hand-written or modified client) is what this stands in for: an extra entry
 * that always reports itself active, so `socket.disconnect()` leaves the
 * Manager's engine open. Nothing is sent on the wire for it.
 */
function keepEngineOpen (manager: Manager): void {
  const nsps = (manager as unknown as { nsps: Record<string, { active: boolean }> }).nsps
  nsps['\0spare'] = { active: true }
}

/** Connects `/`, then leaves it client-side while the Engine.IO connection stays open. */
async function spareConnection (t: TestContext, app: TestApp, cookie: string): Promise<Manager> {
  const manager = openManager(t, app.url, cookie)
  keepEngineOpen(manager)
  await joined(manager, '/')
  const main = manager.socket('/')
  const left = new Promise<void>((resolve) => {
    const nsp = app.app.io.of('/')
    const check = (): void => { if (nsp.sockets.size === 0) resolve(); else setTimeout(check, 10) }
    check()
  })
  main.disconnect()
  await left
  assert.equal(main.connected, false)
  assert.equal(manager.engine.readyState, 'open', 'the Engine.IO connection outlives the namespace socket')
  assert.equal(app.app.io.engine.clientsCount, 1, 'the server still holds the Engine.IO connection')
  return manager
}

/** Resolves when the manager's engine closes, or with false after `ms`. */
function engineCloses (manager: Manager, ms = WAIT_MS): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms)
    manager.engine.once('close', () => {
      clearTimeout(timer)
      resolve(true)
    })
  })
}

const bans: Array<{ title: string, ban: (app: TestApp, cookie: string, store: MemoryStore) => Promise<void> }> = [
  {
    title: 'destroyed in the store and disconnectSession(id)',
    async ban (app, cookie, store) {
      const id = sessionIdOf(cookie)
      await new Promise<void>((resolve, reject) => store.destroy(id, (err) => { if (err) reject(err); else resolve() }))
      await app.app.disconnectSession(id)
    }
  },
  {
    title: 'HTTP POST /logout',
    async ban (app, cookie) { await app.logout(cookie) }
  }
]

describe('a revocation closes Engine.IO connections that left every namespace', TIMEOUT, () => {
  for (const revalidateInterval of [undefined, false] as const) {
    const config = revalidateInterval === false ? ' (revalidateInterval: false)' : ''
    for (const { title, ban } of bans) {
      test(`session ${title}: the spare connection closes within 2 s and cannot re-open /${config}`, async (t) => {
        const store = new MemoryStore()
        const options: StartOptions = { session: { store } }
        if (revalidateInterval !== undefined) options.auth = { revalidateInterval }
        const app = await startApp(options)
        t.after(() => app.close())
        const cookie = await app.login('ada')
        const manager = await spareConnection(t, app, cookie)

        const closed = engineCloses(manager)
        await ban(app, cookie, store)
        assert.equal(await closed, true, 'the spare Engine.IO connection was not closed by the revocation')
        assert.equal(app.app.io.engine.clientsCount, 0, 'the server dropped the connection')

        const again = await join(manager, '/')
        assert.notEqual(again.kind, 'connect', 'the revoked session re-opened / on the spare connection')
        if (again.kind === 'connect_error') assert.equal(again.code, 'SESSION_INVALID')
      })
    }
  }

  test('without a revocation, the spare connection stays open and re-opens / on the same connection', async (t) => {
    const app = await startApp()
    t.after(() => app.close())
    const cookie = await app.login('ada')
    const manager = await spareConnection(t, app, cookie)
    const engineId = manager.engine.id
    assert.equal(await engineCloses(manager, 500), false, 'nothing closes an unrevoked connection')
    await joined(manager, '/')
    assert.equal(manager.engine.id, engineId, 'the same Engine.IO connection')
  })
})

describe('every namespace join re-reads the session and re-runs the rules', TIMEOUT, () => {
  const adminOnly: StartOptions = {
    auth: { namespaces: { '/admin': (session) => session.user?.role === 'admin' } },
    setup: (app) => {
      app.io.of('/admin')
      app.post('/demote', async (request) => {
        request.session.user = { ...request.session.user!, role: 'user' }
        return { ok: true }
      })
    }
  }

  test('an admin demoted over HTTP cannot open /admin later on the connection it already has (FORBIDDEN)', async (t) => {
    const { app, cookie, manager } = await joinedRoot(t, adminOnly, 'grace', 'admin')
    const engineId = manager.engine.id

    const response = await fetch(`${app.url}/demote`, { method: 'POST', headers: { cookie } })
    assert.equal(response.status, 200)

    const outcome = await join(manager, '/admin')
    assert.deepEqual(outcome, { kind: 'connect_error', code: 'FORBIDDEN' })
    assert.equal(manager.engine.id, engineId, 'asked on the same Engine.IO connection')
  })

  test('an admin who is not demoted opens /admin later on the connection it already has', async (t) => {
    const { manager } = await joinedRoot(t, adminOnly, 'grace', 'admin')
    const engineId = manager.engine.id
    await sleep(100)
    await joined(manager, '/admin')
    assert.equal(manager.engine.id, engineId, 'the same Engine.IO connection')
  })

  test('a session deleted from the store (out of band) cannot open /chat on its open connection (SESSION_INVALID)', async (t) => {
    const store = new MemoryStore()
    const { cookie, manager } = await joinedRoot(t, { session: { store }, setup: (app) => { app.io.of('/chat') } }, 'ada')

    await new Promise<void>((resolve, reject) => store.destroy(sessionIdOf(cookie), (err) => { if (err) reject(err); else resolve() }))

    const outcome = await join(manager, '/chat')
    assert.deepEqual(outcome, { kind: 'connect_error', code: 'SESSION_INVALID' })
  })

  test('with the session intact, /chat opens later on the same connection (control)', async (t) => {
    const { manager } = await joinedRoot(t, { setup: (app) => { app.io.of('/chat') } }, 'ada')
    const engineId = manager.engine.id
    await joined(manager, '/chat')
    assert.equal(manager.engine.id, engineId)
  })
})
