// Session data never crashes the server: a session holding user-chosen keys
// named like Session's methods (touch, save, reload, ...), stored with
// request.session.set(key, 'x'), with keep-alive writing on every socket event.
// The app runs in a child process, so a crash shows as an exit; socket events
// must keep being answered and keep-alive must still extend the expiry. One
// child serves every key (each test its own session), so a crash on one key
// fails that test and every later one.
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { connected, sessionIdOf, sleep } from './support/app'
import { startChild, type Child } from './support/child-process'
import { cookieFromResponse } from './support/cluster'
import type { MethodNamedKeysCommands, MethodNamedKeysReady } from './fixtures/method-named-keys'

const KEYS = ['touch', 'save', 'reload', 'destroy', 'regenerate', 'get', 'set', 'isModified', 'options']

// Started here, not in `before`, so that the kill is the file's `after` hook (node:test runs
// an `after` that `before` registers at once).
const starting = startChild<MethodNamedKeysReady, MethodNamedKeysCommands>({ after }, join(__dirname, 'fixtures', 'method-named-keys.ts'))
let child: Child<MethodNamedKeysReady, MethodNamedKeysCommands>
before(async () => { child = await starting })

/** 'still running', or how the child exited and what it wrote on stderr. */
function state (): string {
  const exit = child.exit()
  return exit === undefined ? 'still running' : `exited with code ${exit.code} (signal ${exit.signal})\n--- its stderr\n${child.stderr()}`
}

for (const key of KEYS) {
  test(`a session holding the key "${key}" (set over HTTP), with keepAlive on every event: socket events are answered, the process stays up, the expiry moves forward`, async (t) => {
    const login = await fetch(`${child.ready.url}/login`, { method: 'POST' })
    assert.equal(login.status, 200)
    const cookie = cookieFromResponse(login)
    const sessionId = sessionIdOf(cookie)
    // The reply may fail for keys @fastify/session itself calls (e.g. 'save'); the store holds the key either way.
    await fetch(`${child.ready.url}/set?key=${encodeURIComponent(key)}`, { method: 'POST', headers: { cookie } })
    const before = await child.call('stored', sessionId, key)
    assert.equal(before.found, true)
    assert.equal(before.value, 'x', `the store holds ${key}: 'x'`)
    assert.ok(before.expires !== null)

    const socket = await connected(child.ready.url, { cookie })
    t.after(() => socket.close())
    for (let i = 0; i < 5; i++) {
      await sleep(30) // past keepAliveInterval, so each event asks for a keep-alive write
      let answer: unknown
      try {
        answer = await socket.timeout(2000).emitWithAck('echo', `${key}-${i}`)
      } catch (error) {
        await Promise.race([child.exited, sleep(300)]) // an exit, if that is what happened, is seen by now
        assert.fail(`event ${i} got no ack (${String(error)}); child ${state()}`)
      }
      assert.equal(answer, `${key}-${i}`)
    }
    await sleep(100) // let the last keep-alive write land
    assert.equal(child.exit(), undefined, `the server process is still running; child ${state()}`)
    assert.ok(socket.connected, 'the socket is still connected')

    const after = await child.call('stored', sessionId, key)
    assert.equal(after.found, true)
    assert.equal(after.value, 'x', 'keep-alive kept the session data')
    assert.ok(after.expires !== null && after.expires > before.expires, `keep-alive extended the stored expiry (${before.expires} -> ${after.expires})`)
  })
}
