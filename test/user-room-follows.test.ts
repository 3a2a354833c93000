import { test } from 'node:test'
import assert from 'node:assert/strict'
import { userRoom } from '../lib/index'
import { connected, loginAs, postAs, sleep, startApp, userRoutes } from './support/app'

// The user room follows the session: an HTTP request that changes who the
// session belongs to in place (no regenerate) moves its sockets' user room.
test('logging out in place (session.passport removed) takes the sockets out of the old user room', async (t) => {
  const app = await startApp({
    setup: (instance) => {
      userRoutes(instance)
      instance.post('/forget', async (request) => {
        request.session.passport = undefined
        request.session.user = undefined
        return { ok: true }
      })
    }
  })
  t.after(() => app.close())
  const cookie = await loginAs(app.app, 'alice')
  const before = await connected(app.url, { cookie })
  t.after(() => { before.close() })
  await postAs(app.url, '/forget', cookie)
  await sleep(200)
  const after = await connected(app.url, { cookie }) // a new socket of the now user-less session
  t.after(() => { after.close() })
  const inRoom = (await app.app.io.in(userRoom('alice')).fetchSockets()).map((s) => s.id)
  assert.deepEqual(inRoom, [], 'no socket of a session that no longer belongs to alice is in her room')
})

test('a session that logs in in place after its socket opened is reached by disconnectUser and the new user room', async (t) => {
  const app = await startApp({
    setup: (instance) => {
      userRoutes(instance)
      instance.post('/anon', async (request) => { request.session.counter = 1; return { ok: true } })
      instance.post('/claim', async (request) => { request.session.passport = 'carol'; return { ok: true } })
    }
  })
  t.after(() => app.close())
  const response = await app.app.inject({ method: 'POST', url: '/anon' })
  const cookie = `sessionId=${encodeURIComponent(response.cookies[0]!.value)}`
  const socket = await connected(app.url, { cookie })
  t.after(() => { socket.close() })
  await postAs(app.url, '/claim', cookie)
  await sleep(200)
  const later = await connected(app.url, { cookie })
  t.after(() => { later.close() })
  const inRoom = (await app.app.io.in(userRoom('carol')).fetchSockets()).map((s) => s.id)
  assert.deepEqual(inRoom.sort(), [socket.id, later.id].sort())
})
