import { test } from 'node:test'
import assert from 'node:assert/strict'
import { startApp, connected, refusedWith } from './support/app'

test('smoke', async () => {
  const t = await startApp()
  try {
    t.app.io.on('connection', (socket) => socket.emit('hello', socket.data.session.user?.name))
    const cookie = await t.login('grace')
    const socket = await connected(t.url, { cookie })
    socket.close()
    const refused = await refusedWith(t.url)
    assert.equal(refused.code, 'SESSION_REQUIRED')
  } finally { await t.close() }
})
