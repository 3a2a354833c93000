import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import type { FastifySessionObject } from '@fastify/session'
import { expectAdmitted, expectRefused, sessionIdOf, startApp } from './support/app'
import type { SessionSocket } from '../lib/types'

const TRANSPORTS = ['polling', 'websocket'] as const
const TIMEOUT = { timeout: 60_000 }

describe('handshake: authorize and namespace rules', TIMEOUT, () => {
  const refusing: Array<[string, (session: FastifySessionObject) => boolean | Promise<boolean>]> = [
    ['returns false', () => false],
    ['throws', () => { throw new Error('rule failed') }],
    ['resolves false', async () => false],
    ['rejects', async () => { throw new Error('rule failed later') }]
  ]
  for (const [name, authorize] of refusing) {
    test(`authorize that ${name} -> FORBIDDEN, and no handler sees the socket`, async (t) => {
      const app = await startApp({ auth: { authorize } })
      let connections = 0
      app.app.io.on('connection', () => { connections++ })
      t.after(() => app.close())
      const cookie = await app.login()
      for (const transport of TRANSPORTS) await expectRefused(app.url, 'FORBIDDEN', { cookie, transports: [transport] })
      assert.equal(connections, 0)
    })
  }

  test('authorize receives the loaded session (with the user data) and the socket', async (t) => {
    const calls: Array<{ user: unknown, sessionId: string, namespace: string, hasCookie: boolean }> = []
    const app = await startApp({
      auth: {
        authorize: async (session: FastifySessionObject, socket: SessionSocket) => {
          calls.push({
            user: session.user,
            sessionId: session.sessionId,
            namespace: socket.nsp.name,
            hasCookie: typeof socket.request.headers.cookie === 'string'
          })
          return session.user?.name === 'ada'
        }
      }
    })
    t.after(() => app.close())
    const ada = await app.login('ada', 'admin')
    const bob = await app.login('bob', 'user')
    await expectAdmitted(app.url, { cookie: ada })
    await expectRefused(app.url, 'FORBIDDEN', { cookie: bob })
    assert.deepEqual(calls, [
      { user: { name: 'ada', role: 'admin' }, sessionId: sessionIdOf(ada), namespace: '/', hasCookie: true },
      { user: { name: 'bob', role: 'user' }, sessionId: sessionIdOf(bob), namespace: '/', hasCookie: true }
    ])
  })

  test("a namespace rule: '/admin' needs role admin while '/' admits any session", async (t) => {
    const app = await startApp({ auth: { namespaces: { '/admin': (session) => session.user?.role === 'admin' } } })
    const admins: unknown[] = []
    app.app.io.of('/admin').on('connection', (socket) => { admins.push(socket.data.session.user?.name) })
    t.after(() => app.close())
    const user = await app.login('bob', 'user')
    const admin = await app.login('grace', 'admin')
    for (const transport of TRANSPORTS) {
      await expectAdmitted(app.url, { cookie: user, transports: [transport] })
      await expectRefused(app.url, 'FORBIDDEN', { cookie: user, namespace: '/admin', transports: [transport] })
      await expectAdmitted(app.url, { cookie: admin, namespace: '/admin', transports: [transport] })
    }
    assert.deepEqual(admins, ['grace', 'grace'])
  })

  test('the global rule and the namespace rule both apply', async (t) => {
    const app = await startApp({
      auth: {
        authorize: (session) => session.user?.name !== 'banned',
        namespaces: { '/admin': async (session) => session.user?.role === 'admin' }
      }
    })
    app.app.io.of('/admin')
    t.after(() => app.close())
    const bannedAdmin = await app.login('banned', 'admin')
    const user = await app.login('bob', 'user')
    const admin = await app.login('grace', 'admin')
    for (const transport of TRANSPORTS) {
      // The global rule refuses, the namespace rule would admit.
      await expectRefused(app.url, 'FORBIDDEN', { cookie: bannedAdmin, namespace: '/admin', transports: [transport] })
      await expectRefused(app.url, 'FORBIDDEN', { cookie: bannedAdmin, transports: [transport] })
      // The global rule admits, the namespace rule refuses.
      await expectRefused(app.url, 'FORBIDDEN', { cookie: user, namespace: '/admin', transports: [transport] })
      await expectAdmitted(app.url, { cookie: user, transports: [transport] })
      // Both admit.
      await expectAdmitted(app.url, { cookie: admin, namespace: '/admin', transports: [transport] })
    }
  })
})
