import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import Fastify from 'fastify'
import fastifyCookie from '@fastify/cookie'
import fastifySession from '@fastify/session'
import { Server } from 'socket.io'
import type { Socket as ClientSocket } from 'socket.io-client'
import sessionSocketAuth from '../lib/index'
import type { SessionSocket } from '../lib/types'
import { SECRET, connected, refusedWith, startApp } from './support/app'

const TIMEOUT = { timeout: 60_000 }
const CLOSE_BOUND_MS = 2000

function disconnectReason (socket: ClientSocket, timeoutMs = CLOSE_BOUND_MS): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`client not disconnected within ${timeoutMs} ms`)), timeoutMs)
    socket.once('disconnect', (reason) => {
      clearTimeout(timer)
      resolve(reason)
    })
  })
}

describe('lifecycle', TIMEOUT, () => {
  test('fastify.io is a Socket.IO Server right after `await app.register(...)`, before ready()', async (t) => {
    const app = Fastify({ logger: false })
    t.after(() => app.close())
    await app.register(fastifyCookie)
    await app.register(fastifySession, { secret: SECRET })
    await app.register(sessionSocketAuth)
    assert.ok(app.io instanceof Server, 'fastify.io before ready()')
    assert.equal(typeof app.disconnectSession, 'function')
    const io = app.io
    io.of('/early').on('connection', () => {})
    await app.ready()
    assert.equal(app.io, io, 'the same server after ready()')
  })

  test('app.close() with polling and websocket clients connected disconnects them and resolves promptly', async (t) => {
    const app = await startApp({ setup: (app) => { app.io.of('/chat') } })
    t.after(() => app.close())
    const cookie = await app.login()
    const clients: Array<{ transport: string, namespace: string, socket: ClientSocket }> = []
    for (const transport of ['polling', 'websocket'] as const) {
      for (const namespace of ['/', '/chat', '/']) {
        clients.push({ transport, namespace, socket: await connected(app.url, { cookie, transports: [transport], namespace }) })
      }
    }
    assert.equal(app.app.io.engine.clientsCount, 6)
    const reasons = clients.map(({ socket }) => disconnectReason(socket))
    const started = performance.now()
    await app.close()
    const elapsed = performance.now() - started
    assert.ok(elapsed < CLOSE_BOUND_MS, `app.close() took ${Math.round(elapsed)} ms`)
    const ended = await Promise.all(reasons)
    assert.equal(app.app.io.of('/').sockets.size + app.app.io.of('/chat').sockets.size, 0)
    // A server-side disconnect in every namespace: the clients know not to
    // reconnect. (A long-poll may instead see its request cut by the closing
    // HTTP server, so only WebSocket clients are held to the exact reason.)
    clients.forEach(({ transport, namespace }, i) => {
      if (transport === 'websocket') assert.equal(ended[i], 'io server disconnect', `${transport} ${namespace}`)
    })
  })

  test('app.close() also ends Engine.IO connections that never joined a namespace', async (t) => {
    const app = await startApp({ auth: { storeTimeout: 200 } })
    t.after(() => app.close())
    // A refused handshake leaves its Engine.IO connection open until the client gives up.
    const refused = await refusedWith(app.url, { transports: ['polling'] })
    assert.equal(refused.code, 'SESSION_REQUIRED')
    const started = performance.now()
    await app.close()
    assert.ok(performance.now() - started < CLOSE_BOUND_MS)
  })

  test("socket.data.session is readable in the server's disconnect handler: after a client disconnect and after an HTTP logout", async (t) => {
    const app = await startApp()
    t.after(() => app.close())
    const seen: Array<{ reason: string, user: unknown, sessionId: string | undefined }> = []
    let onDisconnect: () => void = () => {}
    app.app.io.on('connection', (socket: SessionSocket) => {
      socket.on('disconnect', (reason) => {
        seen.push({ reason, user: socket.data.session?.user, sessionId: socket.data.session?.sessionId })
        onDisconnect()
      })
    })
    const serverSawDisconnect = (): Promise<void> => new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the server saw no disconnect within 2000 ms')), 2000)
      onDisconnect = () => {
        clearTimeout(timer)
        resolve()
      }
    })

    const cookie = await app.login('ada', 'admin')
    const first = await connected(app.url, { cookie })
    let done = serverSawDisconnect()
    first.close()
    await done
    assert.equal(seen[0].reason, 'client namespace disconnect')
    assert.deepEqual(seen[0].user, { name: 'ada', role: 'admin' })

    const second = await connected(app.url, { cookie, transports: ['polling'] })
    done = serverSawDisconnect()
    await app.logout(cookie)
    await done
    assert.equal(seen[1].reason, 'server namespace disconnect')
    assert.deepEqual(seen[1].user, { name: 'ada', role: 'admin' })
    assert.equal(seen[1].sessionId, seen[0].sessionId)
    second.close()
  })

  test('the preClose option replaces the default step, and its done() lets close() finish', async (t) => {
    const calls: Array<{ sockets: number }> = []
    let doneCalledAt = 0
    const app = await startApp({
      auth: {
        preClose (done) {
          calls.push({ sockets: app.app.io.of('/').sockets.size })
          setTimeout(() => {
            doneCalledAt = performance.now()
            done()
          }, 150)
        }
      }
    })
    t.after(() => app.close())
    const cookie = await app.login()
    const clients = [
      await connected(app.url, { cookie, transports: ['polling'] }),
      await connected(app.url, { cookie, transports: ['websocket'] })
    ]
    const reasons = clients.map((client) => disconnectReason(client))
    const started = performance.now()
    await app.close()
    const closedAt = performance.now()
    assert.deepEqual(calls, [{ sockets: 2 }], 'called once, with the sockets still connected')
    assert.ok(doneCalledAt > 0 && doneCalledAt <= closedAt, 'close() resolved only after done()')
    assert.ok(closedAt - started < CLOSE_BOUND_MS, `app.close() took ${Math.round(closedAt - started)} ms after done()`)
    // The default step would have sent a server-side disconnect; the clients
    // are still let go (their transport closes), so they can reconnect elsewhere.
    assert.deepEqual(await Promise.all(reasons), ['transport close', 'transport close'])
  })

  test('an existing fastify.io decorator is adopted and guarded, not replaced', async (t) => {
    let adopted: Server | undefined
    const middlewareSaw: Array<{ user: unknown }> = []
    const handlerSaw: unknown[] = []
    const app = await startApp({
      beforeAuth (app) {
        // What fastify-socket.io (or a fork) does: its own server, its own middleware and handlers.
        const io = new Server(app.server)
        io.use((socket, next) => {
          middlewareSaw.push({ user: socket.data.session?.user })
          next()
        })
        io.on('connection', (socket) => { handlerSaw.push(socket.data.session?.user) })
        app.decorate('io', io)
        adopted = io
        app.addHook('preClose', (done) => {
          io.local.disconnectSockets(true)
          done()
        })
        app.addHook('onClose', (_instance, done) => { io.close(() => done()) })
      }
    })
    t.after(() => app.close())
    assert.ok(adopted !== undefined)
    assert.equal(app.app.io, adopted, 'fastify.io is still the adopted server')
    for (const transport of ['polling', 'websocket'] as const) {
      const refused = await refusedWith(app.url, { transports: [transport] })
      assert.equal(refused.code, 'SESSION_REQUIRED')
    }
    assert.deepEqual(middlewareSaw, [], 'the earlier middleware never saw an unauthenticated socket')
    assert.deepEqual(handlerSaw, [])
    const cookie = await app.login('grace', 'admin')
    const socket = await connected(app.url, { cookie })
    socket.close()
    assert.deepEqual(middlewareSaw, [{ user: { name: 'grace', role: 'admin' } }], 'the earlier middleware runs after the guard')
    assert.deepEqual(handlerSaw, [{ name: 'grace', role: 'admin' }])
  })

  test('fastify.io decorated with something that is not a Socket.IO Server fails at start-up', async () => {
    const app = Fastify({ logger: false })
    await app.register(fastifyCookie)
    await app.register(fastifySession, { secret: SECRET })
    app.decorate('io', { not: 'a server' } as never)
    app.register(sessionSocketAuth)
    await assert.rejects(async () => { await app.ready() }, /fastify\.io" is already decorated with something that is not a Socket\.IO Server/)
    await app.close().catch(() => {})
  })
})

test('after app.close() with polling clients on several namespaces, the process exits by itself (no Engine.IO close timer left behind)', TIMEOUT, async () => {
  const started = Date.now()
  const child = spawn(process.execPath, ['--import', 'tsx', join(__dirname, 'fixtures', 'close-with-polling-client.ts')], {
    stdio: ['ignore', 'pipe', 'inherit']
  })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const exitCode = await new Promise<number | null>((resolve) => {
    const killer = setTimeout(() => child.kill('SIGKILL'), 20_000)
    child.once('exit', (code) => {
      clearTimeout(killer)
      resolve(code)
    })
  })
  const tookMs = Date.now() - started
  assert.equal(output.trim(), 'closed')
  assert.equal(exitCode, 0, 'the child was killed: something kept the event loop alive after close')
  // Engine.IO's polling close timer is 30 s; startup under tsx takes a few.
  assert.ok(tookMs < 15_000, `the process took ${tookMs} ms to exit after close`)
})
