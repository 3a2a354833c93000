// Socket.IO v2 clients (Engine.IO protocol 3, `allowEIO3`) are refused at
// registration. The last test measures why: with protocol 3, Socket.IO joins
// "/" during the Engine.IO handshake itself, so one GET with no Origin and no
// Fetch Metadata (what a browser sends for a cross-site <img> to a plain-http
// site) runs the app's connection handler as whoever's cookie it carried.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { AddressInfo } from 'node:net'
import Fastify from 'fastify'
import { Server } from 'socket.io'
import type { SessionSocketAuthOptions } from '../lib/options'
import { engineRequest, registrationError } from './support/app'

function assertRefusedForEio3 (error: Error & { code?: string }): void {
  assert.equal(error.code, 'FST_SESSION_SOCKET_AUTH_INVALID_OPTION')
  assert.match(error.message, /"allowEIO3" is not supported/)
}

test('the plugin option allowEIO3: true fails at registration with INVALID_OPTION', async () => {
  assertRefusedForEio3(await registrationError({ auth: { allowEIO3: true } as SessionSocketAuthOptions }))
})

test('an existing fastify.io created with allowEIO3 is refused when adopted', async () => {
  let io: Server | undefined
  const error = await registrationError({
    beforeAuth (app) {
      io = new Server(app.server, { allowEIO3: true })
      app.decorate('io', io)
    }
  })
  assertRefusedForEio3(error)
  io?.close()
})

test('why: with allowEIO3, one GET without Origin or Fetch Metadata runs the connection handler (Socket.IO, no plugin)', async (t) => {
  const app = Fastify({ logger: false, forceCloseConnections: true })
  const io = new Server(app.server, { allowEIO3: true })
  t.after(async () => { io.close(); await app.close() })
  // The session check an app would write, run by Socket.IO itself: it sees the victim's cookie.
  io.use((socket, next) => { next(socket.request.headers.cookie === 'sid=victim' ? undefined : new Error('no session')) })
  const handled: string[] = []
  io.on('connection', (socket) => { handled.push(socket.request.headers.cookie ?? '') })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`

  // What an <img src> on another site's page sends: the cookie, nothing else.
  const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 100))
  assert.equal((await engineRequest(url, 'EIO=4&transport=polling', { cookie: 'sid=victim' })).status, 200)
  await settle()
  assert.deepEqual(handled, [], 'protocol 4 joins no namespace without a CONNECT packet (a POST or a WebSocket, which carry Origin)')
  assert.equal((await engineRequest(url, 'EIO=3&transport=polling', { cookie: 'sid=victim' })).status, 200)
  await settle()
  assert.deepEqual(handled, ['sid=victim'], 'protocol 3 joined "/" with no CONNECT packet, on a GET a foreign page can send')
})
