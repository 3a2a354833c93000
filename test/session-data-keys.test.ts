// Session data never crashes the server: a session holding user-chosen keys
// named like Session's methods (touch, save, reload, ...), stored with
// request.session.set(key, 'x'), with keep-alive writing on every socket event.
// The app runs in a child process, so a crash shows as an exit; socket events
// must keep being answered and keep-alive must still extend the expiry. One
// child serves every key (each test its own session), so a crash on one key
// fails that test and every later one.
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import { connected, sessionIdOf, sleep } from './support/app'
import { cookieFromResponse } from './support/cluster'

const KEYS = ['touch', 'save', 'reload', 'destroy', 'regenerate', 'get', 'set', 'isModified', 'options']

interface Child {
  url: string
  process: ChildProcess
  /** The exit, once it happened: code, signal and what the child wrote on stderr. */
  exited: () => string | undefined
}

/** Starts the fixture app in a child process; `stop()` kills it unless it has exited. */
async function startChild (): Promise<Child & { stop: () => void }> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(__dirname, 'fixtures', 'method-named-keys.ts')], {
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let stderr = ''
  let exit: string | undefined
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  child.once('exit', (code, signal) => {
    const error = stderr.split('\n').find((line) => /Error/.test(line)) ?? stderr.trim().slice(0, 300)
    exit = `exited with code ${code} (signal ${signal}): ${error.trim()}`
  })
  const url = await new Promise<string>((resolve, reject) => {
    let stdout = ''
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error('the fixture printed no URL within 20 s'))
    }, 20_000)
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString()
      const line = stdout.split('\n').find((l) => l.startsWith('http://'))
      if (line !== undefined) {
        clearTimeout(timer)
        resolve(line.trim())
      }
    })
    child.once('exit', () => {
      clearTimeout(timer)
      reject(new Error(`the fixture ${exit ?? 'exited'} before printing its URL`))
    })
  })
  return { url, process: child, exited: () => exit, stop: () => { if (exit === undefined) child.kill('SIGKILL') } }
}

interface Stored { found: boolean, expires: number | null, value: unknown }

async function stored (url: string, id: string, key: string): Promise<Stored> {
  const response = await fetch(`${url}/stored?id=${encodeURIComponent(id)}&key=${encodeURIComponent(key)}`)
  assert.equal(response.status, 200)
  return (await response.json()) as Stored
}

let child: Child & { stop: () => void }
before(async () => { child = await startChild() })
after(() => child?.stop())

for (const key of KEYS) {
  test(`a session holding the key "${key}" (set over HTTP), with keepAlive on every event: socket events are answered, the process stays up, the expiry moves forward`, async (t) => {
    const login = await fetch(`${child.url}/login`, { method: 'POST' })
    assert.equal(login.status, 200)
    const cookie = cookieFromResponse(login)
    const sessionId = sessionIdOf(cookie)
    // The reply may fail for keys @fastify/session itself calls (e.g. 'save'); the store holds the key either way.
    await fetch(`${child.url}/set?key=${encodeURIComponent(key)}`, { method: 'POST', headers: { cookie } })
    const before = await stored(child.url, sessionId, key)
    assert.equal(before.found, true)
    assert.equal(before.value, 'x', `the store holds ${key}: 'x'`)
    assert.ok(before.expires !== null)

    const socket = await connected(child.url, { cookie })
    t.after(() => socket.close())
    for (let i = 0; i < 5; i++) {
      await sleep(30) // past keepAliveInterval, so each event asks for a keep-alive write
      let answer: unknown
      try {
        answer = await socket.timeout(2000).emitWithAck('echo', `${key}-${i}`)
      } catch (error) {
        await sleep(300) // an exit, if that is what happened, is seen by now
        assert.fail(`event ${i} got no ack (${String(error)}); child ${child.exited() ?? 'still running'}`)
      }
      assert.equal(answer, `${key}-${i}`)
    }
    await sleep(100) // let the last keep-alive write land
    assert.equal(child.exited(), undefined, 'the server process is still running')
    assert.equal(child.process.exitCode, null)
    assert.ok(socket.connected, 'the socket is still connected')

    const after = await stored(child.url, sessionId, key)
    assert.equal(after.found, true)
    assert.equal(after.value, 'x', 'keep-alive kept the session data')
    assert.ok(after.expires !== null && after.expires > before.expires, `keep-alive extended the stored expiry (${before.expires} -> ${after.expires})`)
  })
}
