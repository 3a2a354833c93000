import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { EventEmitter } from 'node:events'
import type { Socket as ClientSocket } from 'socket.io-client'
import type { SessionSocket } from '../lib/types'
import { connected, registryStats, startApp, waitFor } from './support/app'

// Cleanup: whatever way sockets go (client close, namespace leave, logout,
// disconnectSession), the plugin keeps nothing of them: no session entries, no
// timers, no session:* rooms, no listeners left on long-lived emitters.

const SESSIONS = 20
const CONNECTIONS_PER_SESSION = 5 // each with '/' and '/chat': 200 sockets

function listenerTotal (emitter: EventEmitter): number {
  return emitter.eventNames().reduce((sum, name) => sum + emitter.listenerCount(name), 0)
}

function sessionRooms (rooms: Map<string, Set<string>>): string[] {
  return [...rooms.keys()].filter((room) => room.startsWith('session:'))
}

function joinChat (socket: ClientSocket): Promise<ClientSocket> {
  const chat = socket.io.socket('/chat')
  return new Promise((resolve, reject) => {
    chat.once('connect', () => resolve(chat))
    chat.once('connect_error', reject)
  })
}

test('200 sockets of 20 sessions come and go: no sessions, timers, rooms or listeners are left', async (t) => {
  const serverSockets: SessionSocket[] = []
  const app = await startApp({
    // Every per-socket feature on: expiry + revalidation timers, keep-alive middleware.
    auth: { revalidateInterval: 60_000, keepAlive: true, keepAliveInterval: 60_000 },
    setup: (app) => {
      app.get('/sid', async (request) => ({ sessionId: request.session.sessionId }))
      app.io.on('connection', (socket) => { serverSockets.push(socket) })
      app.io.of('/chat').on('connection', (socket) => { serverSockets.push(socket) })
    }
  })
  t.after(() => app.close())
  const { io } = app.app
  const root = io.of('/')
  const chat = io.of('/chat')
  const longLived: Array<[string, EventEmitter]> = [
    ['io /', root as unknown as EventEmitter],
    ['io /chat', chat as unknown as EventEmitter],
    ['engine', io.engine as unknown as EventEmitter],
    ['http server', app.app.server]
  ]
  const baseline = longLived.map(([, emitter]) => listenerTotal(emitter))
  assert.deepEqual(registryStats(app.app), { sessions: 0, timers: 0 })

  const cookies: string[] = []
  for (let i = 0; i < SESSIONS; i++) cookies.push(await app.login(`user${i}`))
  const clients: ClientSocket[][] = cookies.map(() => [])
  const chats: ClientSocket[][] = cookies.map(() => [])
  t.after(() => { for (const list of clients) for (const socket of list) socket.close() })
  // In batches, to stay kind to a shared 2-core machine.
  for (let round = 0; round < CONNECTIONS_PER_SESSION; round++) {
    await Promise.all(cookies.map(async (cookie, i) => {
      const socket = await connected(app.url, { cookie })
      const chatSocket = await joinChat(socket)
      clients[i].push(socket, chatSocket)
      chats[i].push(chatSocket)
    }))
  }
  assert.equal(root.sockets.size + chat.sockets.size, SESSIONS * CONNECTIONS_PER_SESSION * 2)
  assert.deepEqual(registryStats(app.app), { sessions: SESSIONS, timers: SESSIONS }, 'one entry and one timer per session, not per socket')
  assert.equal(sessionRooms(root.adapter.rooms).length, SESSIONS)
  assert.equal(sessionRooms(chat.adapter.rooms).length, SESSIONS)
  for (const room of sessionRooms(root.adapter.rooms)) assert.equal(root.adapter.rooms.get(room)?.size, CONNECTIONS_PER_SESSION)

  // Sessions 0-4: HTTP logout.
  for (const cookie of cookies.slice(0, 5)) {
    const response = await fetch(`${app.url}/logout`, { method: 'POST', headers: { cookie } })
    assert.equal(response.status, 200)
  }
  // Sessions 5-9: disconnectSession.
  for (const cookie of cookies.slice(5, 10)) {
    const response = await fetch(`${app.url}/sid`, { headers: { cookie } })
    await app.app.disconnectSession(((await response.json()) as { sessionId: string }).sessionId)
  }
  await waitFor('revoked sessions to leave the registry', () => registryStats(app.app).sessions === SESSIONS - 10, 3000, 20)
  assert.deepEqual(registryStats(app.app), { sessions: SESSIONS - 10, timers: SESSIONS - 10 })

  // Sessions 10-14: the clients leave '/chat' first (the connection stays), then close.
  for (const list of chats.slice(10, 15)) for (const socket of list) socket.disconnect()
  await waitFor('/chat rooms of sessions 10-14 to go', () => sessionRooms(chat.adapter.rooms).length === SESSIONS - 15, 3000, 20)
  assert.equal(registryStats(app.app).sessions, SESSIONS - 10, 'the \'/\' sockets still hold those sessions')
  assert.equal(sessionRooms(root.adapter.rooms).length, SESSIONS - 10)
  // Sessions 10-19: the clients close.
  for (const list of clients.slice(10)) for (const socket of list) socket.close()

  await waitFor('every connection to close', () => io.engine.clientsCount === 0 && root.sockets.size === 0 && chat.sockets.size === 0, 5000, 20)
  assert.deepEqual(registryStats(app.app), { sessions: 0, timers: 0 }, 'no session entry or timer left')
  assert.deepEqual(sessionRooms(root.adapter.rooms), [])
  assert.deepEqual(sessionRooms(chat.adapter.rooms), [])
  assert.equal(root.adapter.rooms.size, 0, 'no room at all left on /')
  assert.equal(root.adapter.sids.size, 0)
  assert.equal(chat.adapter.sids.size, 0)
  longLived.forEach(([name, emitter], i) => assert.equal(listenerTotal(emitter), baseline[i], `listeners on ${name}`))
  assert.equal(serverSockets.length, SESSIONS * CONNECTIONS_PER_SESSION * 2)
  for (const socket of serverSockets) {
    assert.equal(socket.connected, false)
    // (Socket.IO itself keeps a no-op 'error' listener on every socket.)
    const names = (socket as unknown as EventEmitter).eventNames().filter((name) => name !== 'error')
    assert.deepEqual(names, [], 'no listener of the plugin left on a gone socket')
    assert.equal(socket.rooms.size, 0)
  }
})

test('a socket that disconnects before its session expires leaves no expiry timer behind', async (t) => {
  const app = await startApp({ session: { cookie: { secure: false, maxAge: 1000 } }, auth: { revalidateInterval: false } })
  t.after(() => app.close())
  const socket = await connected(app.url, { cookie: await app.login('ada') })
  assert.deepEqual(registryStats(app.app), { sessions: 1, timers: 1 }, 'the expiry timer is armed')
  socket.close()
  await waitFor('the connection to close', () => app.app.io.engine.clientsCount === 0, 3000, 20)
  await waitFor('the session to leave the registry', () => registryStats(app.app).sessions === 0, 1000, 20)
  assert.deepEqual(registryStats(app.app), { sessions: 0, timers: 0 })
})
