// Typed events, declared once by augmenting the plugin's interfaces, reach every
// place an app touches Socket.IO, with zero casts. A project of its own
// (tsconfig.json beside this file), so that ../plugin.tst.ts still sees the defaults.
import { describe, expect, test } from 'tstyche'
import Fastify from 'fastify'
import type { FastifyInstance } from 'fastify'
import type { Server } from 'socket.io'
import sessionSocketAuth = require('fastify-session-socket-auth')

declare module 'fastify-session-socket-auth' {
  interface ClientToServerEvents { chat: (text: string, ack: (ok: boolean) => void) => void }
  interface ServerToClientEvents { tick: (count: number) => void }
  interface InterServerEvents { ping: (from: string) => void }
  interface SocketData { joinedAt: number }
  interface SocketUser { id: string, role: 'user' | 'admin' }
}

declare module 'fastify' {
  interface Session { user?: { name: string } }
}

type Events = [sessionSocketAuth.ClientToServerEvents, sessionSocketAuth.ServerToClientEvents, sessionSocketAuth.InterServerEvents]
const app = Fastify()

describe('declared events and socket data', () => {
  test('fastify.io is the Server of the declared maps', () => {
    expect(app.io).type.toBe<Server<Events[0], Events[1], Events[2], sessionSocketAuth.SocketData & sessionSocketAuth.SessionSocketData>>()
    expect(app.io.emit).type.toBeCallableWith('tick', 1)
    expect(app.io.emit).type.not.toBeCallableWith('tick', 'one')
    expect(app.io.emit).type.not.toBeCallableWith('undeclared', 1)
    expect(app.io.serverSideEmit).type.toBeCallableWith('ping', 'node-a')
  })

  test('sockets in connection handlers, on every namespace', () => {
    app.io.on('connection', (socket) => {
      expect(socket.on).type.toBeCallableWith('chat', (text: string, ack: (ok: boolean) => void) => ack(text.length > 0))
      expect(socket.on).type.not.toBeCallableWith('chat', (text: number) => text)
      expect(socket.emit).type.not.toBeCallableWith('tick', 'one')
      expect(socket.data.joinedAt).type.toBe<number>()
      expect(socket.data.session.user).type.toBe<{ name: string } | undefined>()
      expect(socket.data.user).type.toBe<sessionSocketAuth.SocketUser | undefined>()
      expect(socket.data.user?.role).type.toBe<'user' | 'admin' | undefined>()
    })
    app.io.of('/admin').on('connection', (socket) => {
      expect(socket.emit).type.toBeCallableWith('tick', 2)
      expect(socket.emit).type.not.toBeCallableWith('tick', 'two')
    })
  })

  test('the exported SessionSocket and SessionSocketServer carry them', () => {
    const handler = (socket: sessionSocketAuth.SessionSocket): void => { socket.emit('tick', 3) }
    expect(handler).type.toBeAssignableTo<(socket: sessionSocketAuth.SessionSocket) => void>()
    expect<sessionSocketAuth.SessionSocket['emit']>().type.not.toBeCallableWith('tick', 'three')
    expect<sessionSocketAuth.SessionSocketServer>().type.toBe<FastifyInstance['io']>()
  })

  test('loadUser returns the declared user (or nothing); user ids are strings or numbers', () => {
    expect(app.register(sessionSocketAuth, { loadUser: async () => ({ id: 'u1', role: 'admin' as const }) })).type.not.toRaiseError()
    expect(app.register(sessionSocketAuth, { loadUser: () => undefined })).type.not.toRaiseError()
    expect(app.register(sessionSocketAuth, { loadUser: () => ({ id: 1 }) })).type.toRaiseError()
    expect(app.disconnectUser).type.toBeCallableWith('u1', 'logout')
    expect(app.disconnectUser).type.not.toBeCallableWith('u1', 'banned')
    expect(app.reauthorizeUser).type.toBeCallableWith(42)
  })

  test('rules and preClose see the typed socket and the Fastify instance', () => {
    expect(app.register(sessionSocketAuth, {
      authorize: (session, socket) => { socket.emit('tick', 0); return session.user !== undefined },
      preClose (done) {
        expect(this).type.toBe<FastifyInstance>()
        this.io.emit('tick', 4)
        done()
      }
    })).type.not.toRaiseError()
  })
})
