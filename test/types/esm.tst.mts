// ESM-mode twin of plugin.tst.ts: default and named imports of the built package,
// as a project with "type": "module" (or a .mts file) sees them under node16/nodenext resolution.
import { expect, test } from 'tstyche'
import Fastify from 'fastify'
import fastifyCookie from '@fastify/cookie'
import fastifySession from '@fastify/session'
import type { Server } from 'socket.io'
import sessionSocketAuth, { fastifySessionSocketAuth as named, REFUSAL_CODES, REVOKED_EVENT, sessionRoom } from 'fastify-session-socket-auth'
import type { SessionSocketAuthOptions, SessionSocketServer } from 'fastify-session-socket-auth'

declare module 'fastify' {
  interface Session {
    user?: { name: string, role: 'user' | 'admin' }
  }
}

const app = Fastify()

test('default import and named import are the plugin', () => {
  expect(named).type.toBe<typeof sessionSocketAuth>()
  expect(sessionSocketAuth).type.toBeCallableWith(app, {})
  expect(REVOKED_EVENT).type.toBe<'session:revoked'>()
  expect(sessionRoom('id')).type.toBe<string>()
  expect(REFUSAL_CODES).type.toHaveProperty('SESSION_REQUIRED')
})

test('registers next to @fastify/cookie and @fastify/session, and decorates io', async () => {
  await app.register(fastifyCookie)
  await app.register(fastifySession, { secret: 'a-secret-with-at-least-32-characters-in-it' })
  expect(app.register(sessionSocketAuth, { cors: { origin: true } })).type.not.toRaiseError()
  expect(app.register(named, { authorize: (session) => session.user?.role === 'admin' })).type.not.toRaiseError()
  expect(app.io).type.toBeAssignableTo<Server>()
  expect(app.io).type.toBe<SessionSocketServer>()
  app.io.on('connection', (socket) => {
    expect(socket.data.session.user).type.toBe<{ name: string, role: 'user' | 'admin' } | undefined>()
  })
  expect(app.disconnectSession('id')).type.toBe<Promise<void>>()
})

test('options type rejects unknown keys and wrong types', () => {
  expect(app.register(sessionSocketAuth, { unknownKey: 1 })).type.toRaiseError('unknownKey')
  expect(app.register(sessionSocketAuth, { storeTimeout: '1s' })).type.toRaiseError()
  expect<{ unknownKey: 1 }>().type.not.toBeAssignableTo<SessionSocketAuthOptions>()
  expect<{ path: string, cookieName: string }>().type.toBeAssignableTo<SessionSocketAuthOptions>()
})
