// Type tests of the public API, against the built declarations (dist/) that users get:
// the package is imported by its own name, resolved through package.json "exports".
// This file is CommonJS-mode TypeScript (`import x = require()`); esm.tst.mts is the ESM twin.
import { describe, expect, test } from 'tstyche'
import Fastify from 'fastify'
import type { FastifyInstance } from 'fastify'
import type { FastifySessionObject } from '@fastify/session'
import { Server } from 'socket.io'
import type { Socket } from 'socket.io'
import { Adapter } from 'socket.io-adapter'
import sessionSocketAuth = require('fastify-session-socket-auth')

// What a user writes to type their session fields; it must reach socket.data.session.
declare module 'fastify' {
  interface Session {
    user?: { name: string, role: 'user' | 'admin' }
    visits?: number
  }
}

type User = { name: string, role: 'user' | 'admin' } | undefined

const app = Fastify()

describe('exports (import x = require())', () => {
  test('the plugin, its default and its named export are one function', () => {
    expect(sessionSocketAuth.default).type.toBe<typeof sessionSocketAuth>()
    expect(sessionSocketAuth.fastifySessionSocketAuth).type.toBe<typeof sessionSocketAuth>()
    expect(sessionSocketAuth.sessionSocketAuth).type.toBe<typeof sessionSocketAuth>()
    expect(sessionSocketAuth).type.toBeCallableWith(app, {})
  })

  test('constants and helpers', () => {
    expect(sessionSocketAuth.REVOKED_EVENT).type.toBe<'session:revoked'>()
    expect(sessionSocketAuth.sessionRoom).type.toBe<(sessionId: string) => string>()
    expect<keyof typeof sessionSocketAuth.REFUSAL_CODES>().type.toBe<
      'SESSION_REQUIRED' | 'SESSION_INVALID' | 'FORBIDDEN' | 'USER_REQUIRED' | 'USER_UNAVAILABLE' | 'ORIGIN_NOT_ALLOWED' | 'JSONP_NOT_ALLOWED' | 'SESSION_STORE_UNAVAILABLE'
    >()
    expect<sessionSocketAuth.RefusalCode>().type.toBe<keyof typeof sessionSocketAuth.REFUSAL_CODES>()
    expect<sessionSocketAuth.RevokedPayload>().type.toBe<{ reason: 'logout' | 'regenerate' | 'expired' | 'revoked' | 'forbidden' }>()
    expect<sessionSocketAuth.RevocationReason>().type.toBe<'logout' | 'regenerate' | 'expired' | 'revoked' | 'forbidden'>()
  })

  test('HandshakeRefusal carries the code and { code, message }', () => {
    expect<sessionSocketAuth.HandshakeRefusal['code']>().type.toBe<sessionSocketAuth.RefusalCode>()
    expect<sessionSocketAuth.HandshakeRefusal['data']>().type.toBe<{ code: sessionSocketAuth.RefusalCode, message: string }>()
    expect<sessionSocketAuth.HandshakeRefusal>().type.toBeAssignableTo<Error>()
  })
})

describe('decorators', () => {
  test('fastify.io is a Socket.IO Server', () => {
    expect(app.io).type.toBeAssignableTo<Server>()
    expect(app.io).type.toBe<sessionSocketAuth.SessionSocketServer>()
    // Nothing declared (typed-events/ declares them in a project of its own): Socket.IO's defaults hold.
    expect(app.io.emit).type.toBeCallableWith('any-event', 1, 'two', { three: 3 })
    expect<sessionSocketAuth.SessionSocket['emit']>().type.toBeCallableWith('any-event', 1)
    expect<FastifyInstance['io']>().type.toBe<sessionSocketAuth.SessionSocketServer>()
    expect(app.io.of('/admin').use).type.toBeCallableWith((_socket: sessionSocketAuth.SessionSocket, next: (err?: Error) => void) => next())
  })

  test('socket.data.session is the @fastify/session Session, with the user\'s augmentation', () => {
    app.io.on('connection', (socket) => {
      expect(socket).type.toBeAssignableTo<Socket>()
      expect(socket.data.session).type.toBe<FastifySessionObject>()
      // No SocketUser declared: whatever loadUser gave, to be narrowed.
      expect(socket.data.user).type.toBe<unknown>()
      expect(socket.data.session.user).type.toBe<User>()
      expect(socket.data.session.visits).type.toBe<number | undefined>()
      expect(socket.data.session.sessionId).type.toBe<string>()
      expect(socket.data.session.reload()).type.toBe<Promise<void>>()
      expect(socket.data.session.save()).type.toBe<Promise<void>>()
      expect(socket.data.session.destroy()).type.toBe<Promise<void>>()
      expect(socket.data.session.get('user')).type.toBe<User>()
      expect(socket.data.session).type.not.toHaveProperty('notDeclared')
      expect(socket.data.session.set).type.not.toBeCallableWith('visits', 'many')
    })
    app.io.of('/chat').on('connection', (socket) => {
      expect(socket.data.session.user).type.toBe<User>()
    })
  })

  test('socket.data.session is typed in the disconnect handler too', () => {
    app.io.on('connection', (socket) => {
      socket.on('disconnect', () => {
        expect(socket.data.session.user).type.toBe<User>()
      })
    })
  })

  test('fastify.disconnectSession(sessionId) returns Promise<void>', () => {
    expect(app.disconnectSession('id')).type.toBe<Promise<void>>()
    expect(app.disconnectSession).type.not.toBeCallableWith(42)
    expect(app.disconnectSession).type.not.toBeCallableWith()
  })
})

describe('options', () => {
  test('registers with no options, or with its own options', () => {
    expect(app.register(sessionSocketAuth)).type.not.toRaiseError()
    expect(app.register(sessionSocketAuth, {})).type.not.toRaiseError()
    expect(app.register(sessionSocketAuth, {
      cookieName: 'sid',
      cookiePrefix: 's:',
      authorize: (session) => session.user !== undefined,
      namespaces: {
        '/admin': (session) => session.user?.role === 'admin',
        '/async': async (session, socket) => socket.handshake.address !== '' && session.visits !== 0
      },
      allowedOrigins: ['https://app.example.com'],
      storeTimeout: 2000,
      revalidateInterval: false,
      keepAlive: true,
      keepAliveInterval: 30_000,
      preClose: (done) => { done() }
    })).type.not.toRaiseError()
    expect(app.register(sessionSocketAuth, {
      allowedOrigins: (origin, request) => origin.endsWith('.example.com') && request.headers.host !== undefined,
      revalidateInterval: 10_000
    })).type.not.toRaiseError()
  })

  test('rules see the typed session and socket', () => {
    const rule: sessionSocketAuth.SessionRule = (session, socket) => {
      expect(session.user).type.toBe<User>()
      expect(socket.data.session).type.toBe<FastifySessionObject>()
      return true
    }
    expect(rule).type.toBeAssignableTo<sessionSocketAuth.SessionSocketAuthOptions['authorize']>()
  })

  test('accepts Socket.IO ServerOptions at the top level (cors, path, adapter, transports...)', () => {
    expect(app.register(sessionSocketAuth, {
      cors: { origin: 'https://app.example.com', credentials: true },
      path: '/ws',
      adapter: Adapter,
      transports: ['websocket'],
      pingInterval: 10_000,
      connectionStateRecovery: { maxDisconnectionDuration: 60_000 },
      maxHttpBufferSize: 1e6
    })).type.not.toRaiseError()
    expect(app.register(sessionSocketAuth, { adapter: (nsp) => new Adapter(nsp) })).type.not.toRaiseError()
    expect<sessionSocketAuth.SessionSocketAuthOptions['cors']>().type.toBe<Server['engine']['opts']['cors']>()
  })

  test('rejects unknown option keys', () => {
    expect(app.register(sessionSocketAuth, { notAnOption: true })).type.toRaiseError('notAnOption')
    expect(app.register(sessionSocketAuth, { cookiename: 'sid' })).type.toRaiseError('cookiename')
    expect(app.register(sessionSocketAuth, { authorise: () => true })).type.toRaiseError('authorise')
  })

  test('rejects wrongly typed options', () => {
    expect(app.register(sessionSocketAuth, { cookieName: 42 })).type.toRaiseError()
    expect(app.register(sessionSocketAuth, { cookiePrefix: null })).type.toRaiseError()
    expect(app.register(sessionSocketAuth, { authorize: true })).type.toRaiseError()
    expect(app.register(sessionSocketAuth, { authorize: (session: string) => session === '' })).type.toRaiseError()
    expect(app.register(sessionSocketAuth, { namespaces: { '/admin': 'admin' } })).type.toRaiseError()
    expect(app.register(sessionSocketAuth, { namespaces: ['/admin'] })).type.toRaiseError()
    expect(app.register(sessionSocketAuth, { allowedOrigins: 'https://app.example.com' })).type.toRaiseError()
    expect(app.register(sessionSocketAuth, { allowedOrigins: [/example\.com$/] })).type.toRaiseError()
    expect(app.register(sessionSocketAuth, { storeTimeout: '5s' })).type.toRaiseError()
    expect(app.register(sessionSocketAuth, { revalidateInterval: true })).type.toRaiseError()
    expect(app.register(sessionSocketAuth, { keepAlive: 'yes' })).type.toRaiseError()
    expect(app.register(sessionSocketAuth, { preClose: 'close' })).type.toRaiseError()
    expect(app.register(sessionSocketAuth, { cors: 42 })).type.toRaiseError()
    expect(app.register(sessionSocketAuth, { path: 42 })).type.toRaiseError()
    expect(app.register(sessionSocketAuth, { transports: ['carrier-pigeon'] })).type.toRaiseError()
  })

  test('a rule must return a boolean (or a promise of one)', () => {
    expect(app.register(sessionSocketAuth, { authorize: () => 'yes' })).type.toRaiseError()
    expect(app.register(sessionSocketAuth, { authorize: async () => 1 })).type.toRaiseError()
  })
})
