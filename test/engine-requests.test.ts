// Proves that every Engine.IO HTTP request is judged before Engine.IO acts on it, not only the
// Socket.IO CONNECT: the handshake GET, every polling GET/POST that carries a live sid, and every
// WebSocket upgrade. Raw HTTP (node:http, node:net) so that the exact headers a browser would send
// (Origin, Sec-Fetch-Site, a JSONP `j`, two Host headers, X-Forwarded-*) reach the server as written.
// Refusals are 403 `{ code, message }` that read no cookie and no store; non-browser clients keep working.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http'
import { connect as netConnect } from 'node:net'
import type { TestContext } from 'node:test'
import type { Socket as ClientSocket } from 'socket.io-client'
import { connected, startApp, type StartOptions, type TestApp } from './support/app'
import { TestStore } from './support/store'

const TIMEOUT = { timeout: 60_000 }
const HANDSHAKE = '/socket.io/?EIO=4&transport=polling'
const EVIL = 'http://evil.example'

interface RawResponse { status: number, headers: IncomingHttpHeaders, body: string }

async function start (t: TestContext, options: StartOptions = {}): Promise<TestApp> {
  const app = await startApp(options)
  t.after(() => app.close())
  return app
}

/** One HTTP request on a fresh connection, headers exactly as given (plus Host). */
function send (url: string, path: string, options: { method?: string, headers?: Record<string, string>, body?: string } = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url + path, { method: options.method ?? 'GET', headers: options.headers ?? {}, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { body += chunk })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
      res.on('error', reject)
    })
    req.setTimeout(10_000, () => req.destroy(new Error(`no answer to ${options.method ?? 'GET'} ${path} within 10 s`)))
    req.on('error', reject)
    req.end(options.body)
  })
}

function assertRefused (response: RawResponse, code: string): void {
  assert.equal(response.status, 403, `expected 403 ${code}, got ${response.status}: ${response.body.slice(0, 200)}`)
  const body = JSON.parse(response.body) as { code?: unknown, message?: unknown }
  assert.equal(body.code, code)
  assert.equal(typeof body.message, 'string')
  assert.ok((body.message as string).length > 0, 'the refusal says why')
}

/** The sid of an Engine.IO open packet (`0{"sid":...}`), failing unless the body is one. */
function sidOf (response: RawResponse): string {
  assert.equal(response.status, 200, `expected an admitted handshake, got ${response.status}: ${response.body.slice(0, 200)}`)
  assert.equal(response.body[0], '0', `expected an open packet, got ${response.body.slice(0, 200)}`)
  const open = JSON.parse(response.body.slice(1)) as { sid?: unknown, upgrades?: unknown }
  assert.equal(typeof open.sid, 'string')
  return open.sid as string
}

/** An admitted polling handshake as a non-browser client makes it: cookie, no Origin. */
async function openPolling (app: TestApp, cookie: string): Promise<string> {
  return sidOf(await send(app.url, HANDSHAKE, { headers: { cookie } }))
}

interface Upgrade { statusLine: string, body: string, closedByServer: boolean }

/**
 * A WebSocket upgrade request written byte for byte on a raw socket. Resolves with the status
 * line, and for a non-101 answer the body and whether the server closed the socket.
 */
function rawUpgrade (url: string, path: string, headers: Record<string, string>): Promise<Upgrade> {
  const { hostname, port } = new URL(url)
  return new Promise((resolve, reject) => {
    const socket = netConnect(Number(port), hostname)
    let data = ''
    let settled = false
    const timer = setTimeout(() => finish(new Error(`no complete answer to the upgrade within 5 s: ${JSON.stringify(data.slice(0, 200))}`)), 5000)
    function finish (error?: Error, value?: Upgrade): void {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.destroy()
      if (error !== undefined) reject(error)
      else resolve(value as Upgrade)
    }
    function parse (closedByServer: boolean): Upgrade {
      const end = data.indexOf('\r\n\r\n')
      return { statusLine: data.slice(0, data.indexOf('\r\n')), body: end === -1 ? '' : data.slice(end + 4), closedByServer }
    }
    socket.setEncoding('utf8')
    socket.on('connect', () => {
      const lines = [
        `GET ${path} HTTP/1.1`,
        `Host: ${hostname}:${port}`,
        'Connection: Upgrade',
        'Upgrade: websocket',
        'Sec-WebSocket-Version: 13',
        `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
        ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`)
      ]
      socket.write(lines.join('\r\n') + '\r\n\r\n')
    })
    socket.on('data', (chunk: string) => {
      data += chunk
      // A switched protocol stays open: the status line is the answer.
      if (data.startsWith('HTTP/1.1 101') && data.includes('\r\n\r\n')) finish(undefined, parse(false))
    })
    socket.on('end', () => finish(undefined, parse(true)))
    socket.on('close', () => finish(undefined, parse(true)))
    socket.on('error', (error) => finish(error))
  })
}

/** A request with two Host headers, written on a raw socket; the answer is parsed by hand. */
function rawTwoHosts (url: string, path: string, hosts: string[], headers: Record<string, string>): Promise<RawResponse> {
  const { hostname, port } = new URL(url)
  return new Promise((resolve, reject) => {
    const socket = netConnect(Number(port), hostname)
    let data = ''
    socket.setTimeout(5000, () => socket.destroy(new Error('no answer within 5 s')))
    socket.setEncoding('utf8')
    socket.on('connect', () => {
      const lines = [
        `GET ${path} HTTP/1.1`,
        ...hosts.map((host) => `Host: ${host}`),
        'Connection: close',
        ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`)
      ]
      socket.write(lines.join('\r\n') + '\r\n\r\n')
    })
    socket.on('data', (chunk: string) => { data += chunk })
    socket.on('error', reject)
    socket.on('close', () => {
      const end = data.indexOf('\r\n\r\n')
      if (end === -1) return reject(new Error(`no HTTP answer: ${JSON.stringify(data.slice(0, 200))}`))
      const head = data.slice(0, end).split('\r\n')
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head[0] ?? '')?.[1] ?? 0)
      const headers: IncomingHttpHeaders = {}
      for (const line of head.slice(1)) {
        const colon = line.indexOf(':')
        headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
      }
      let body = data.slice(end + 4)
      if (headers['transfer-encoding'] === 'chunked') body = dechunk(body)
      resolve({ status, headers, body })
    })
  })
}

function dechunk (chunked: string): string {
  let out = ''
  let rest = chunked
  for (;;) {
    const lineEnd = rest.indexOf('\r\n')
    const size = parseInt(rest.slice(0, lineEnd), 16)
    if (!(size > 0)) return out
    out += rest.slice(lineEnd + 2, lineEnd + 2 + size)
    rest = rest.slice(lineEnd + 2 + size + 2)
  }
}

/** Counts Socket.IO connections on `/` and answers `echo` with what the server saw. */
function echoServer (options: StartOptions = {}): StartOptions & { connections: () => number } {
  let connections = 0
  return {
    ...options,
    setup: (app) => {
      app.io.on('connection', (socket) => {
        connections++
        socket.on('echo', (value: unknown, ack: (answer: unknown) => void) => {
          ack({ value, user: socket.data.session.user?.name ?? null, transport: socket.conn.transport.name })
        })
      })
    },
    connections: () => connections
  }
}

test('a JSONP handshake (j=0) with a valid session cookie is refused 403 JSONP_NOT_ALLOWED, and the store is not read', TIMEOUT, async (t) => {
  const store = new TestStore()
  const app = await start(t, { session: { store } })
  const cookie = await app.login()
  const gets = store.gets
  const response = await send(app.url, `${HANDSHAKE}&j=0`, { headers: { cookie } })
  assertRefused(response, 'JSONP_NOT_ALLOWED')
  assert.doesNotMatch(response.body, /___eio/, 'no script that calls back into the page')
  assert.equal(store.gets, gets, 'a refused request reads nothing from the store')
  assert.equal(app.app.io.engine.clientsCount, 0, 'no Engine.IO connection was opened')
})

for (const site of ['cross-site', 'same-site']) {
  test(`a handshake with no Origin but Sec-Fetch-Site: ${site} is refused 403 ORIGIN_NOT_ALLOWED, and the store is not read`, TIMEOUT, async (t) => {
    const store = new TestStore()
    const app = await start(t, { session: { store } })
    const cookie = await app.login()
    const gets = store.gets
    assertRefused(await send(app.url, HANDSHAKE, { headers: { cookie, 'sec-fetch-site': site } }), 'ORIGIN_NOT_ALLOWED')
    assert.equal(store.gets, gets, 'a refused request reads nothing from the store')
    assert.equal(app.app.io.engine.clientsCount, 0, 'no Engine.IO connection was opened')
  })
}

for (const site of ['same-origin', 'none']) {
  test(`a handshake with no Origin and Sec-Fetch-Site: ${site} is admitted (200 with an open packet)`, TIMEOUT, async (t) => {
    const app = await start(t)
    const cookie = await app.login()
    sidOf(await send(app.url, HANDSHAKE, { headers: { cookie, 'sec-fetch-site': site } }))
    assert.equal(app.app.io.engine.clientsCount, 1)
  })
}

test('a handshake whose Origin is the app\'s host:port under another scheme (https://, ws://) is refused 403 ORIGIN_NOT_ALLOWED', TIMEOUT, async (t) => {
  const app = await start(t)
  const cookie = await app.login()
  const { host } = new URL(app.url)
  for (const origin of [`https://${host}`, `ws://${host}`]) {
    assertRefused(await send(app.url, HANDSHAKE, { headers: { cookie, origin } }), 'ORIGIN_NOT_ALLOWED')
  }
  assert.equal(app.app.io.engine.clientsCount, 0)
  // The exact own origin, for contrast.
  sidOf(await send(app.url, HANDSHAKE, { headers: { cookie, origin: app.origin } }))
})

test('an origin listed in allowedOrigins is admitted even with Sec-Fetch-Site: cross-site (a CORS front-end)', TIMEOUT, async (t) => {
  const app = await start(t, { auth: { allowedOrigins: ['http://front.example'] } })
  const cookie = await app.login()
  sidOf(await send(app.url, HANDSHAKE, { headers: { cookie, origin: 'http://front.example', 'sec-fetch-site': 'cross-site' } }))
  // Not listed, same headers otherwise: refused.
  assertRefused(await send(app.url, HANDSHAKE, { headers: { cookie, origin: 'http://back.example', 'sec-fetch-site': 'cross-site' } }), 'ORIGIN_NOT_ALLOWED')
})

test('a handshake with two Host headers is refused 403 ORIGIN_NOT_ALLOWED, even when the first matches the Origin', TIMEOUT, async (t) => {
  const store = new TestStore()
  const app = await start(t, { session: { store } })
  const cookie = await app.login()
  const { host } = new URL(app.url)
  const gets = store.gets
  // The same request with one Host header is the app's own origin.
  sidOf(await rawTwoHosts(app.url, HANDSHAKE, [host], { cookie, origin: app.origin }))
  assertRefused(await rawTwoHosts(app.url, HANDSHAKE, [host, 'evil.example'], { cookie, origin: app.origin }), 'ORIGIN_NOT_ALLOWED')
  assertRefused(await rawTwoHosts(app.url, HANDSHAKE, [host, host], { cookie }), 'ORIGIN_NOT_ALLOWED')
  assert.equal(store.gets, gets, 'no store read at the Engine.IO level')
  assert.equal(app.app.io.engine.clientsCount, 1, 'only the one-Host handshake opened a connection')
})

test('a polling POST carrying an admitted sid but a foreign Origin is refused 403; the same POST without Origin works', TIMEOUT, async (t) => {
  const options = echoServer()
  const store = new TestStore()
  const app = await start(t, { ...options, session: { store } })
  const cookie = await app.login()
  const sid = await openPolling(app, cookie)
  const path = `${HANDSHAKE}&sid=${sid}`
  const gets = store.gets

  // A CONNECT packet for "/" from a foreign page that learned the sid.
  assertRefused(await send(app.url, path, { method: 'POST', headers: { cookie, origin: EVIL, 'content-type': 'text/plain;charset=UTF-8' }, body: '40' }), 'ORIGIN_NOT_ALLOWED')
  assert.equal(store.gets, gets, 'the refused POST read nothing from the store')
  assert.equal(options.connections(), 0, 'no socket joined "/" from the refused POST')

  const ok = await send(app.url, path, { method: 'POST', headers: { cookie, 'content-type': 'text/plain;charset=UTF-8' }, body: '40' })
  assert.equal(ok.status, 200)
  assert.equal(ok.body, 'ok')
  const poll = await send(app.url, path, { headers: { cookie } })
  assert.equal(poll.status, 200)
  assert.match(poll.body, /^40\{"sid":/, 'the CONNECT was acknowledged')
  assert.equal(options.connections(), 1)
})

test('a polling GET carrying an admitted sid but Sec-Fetch-Site: cross-site (no Origin) is refused 403; the same GET without it works', TIMEOUT, async (t) => {
  const options = echoServer()
  const app = await start(t, options)
  const cookie = await app.login()
  const sid = await openPolling(app, cookie)
  const path = `${HANDSHAKE}&sid=${sid}`
  // Something is waiting to be read: the CONNECT acknowledgement.
  const posted = await send(app.url, path, { method: 'POST', headers: { cookie, 'content-type': 'text/plain;charset=UTF-8' }, body: '40' })
  assert.equal(posted.status, 200)

  assertRefused(await send(app.url, path, { headers: { cookie, 'sec-fetch-site': 'cross-site' } }), 'ORIGIN_NOT_ALLOWED')
  // The refused GET took nothing: the acknowledgement is still there for the real client.
  const poll = await send(app.url, path, { headers: { cookie } })
  assert.equal(poll.status, 200)
  assert.match(poll.body, /^40\{"sid":/)
  assert.equal(options.connections(), 1)
})

test('a WebSocket upgrade with transport=websocket&sid=<admitted sid> and a foreign Origin gets a 403 status line and a closed socket', TIMEOUT, async (t) => {
  const app = await start(t)
  const cookie = await app.login()
  const sid = await openPolling(app, cookie)
  const path = `/socket.io/?EIO=4&transport=websocket&sid=${sid}`

  const refused = await rawUpgrade(app.url, path, { cookie, Origin: EVIL })
  assert.equal(refused.statusLine, 'HTTP/1.1 403 Forbidden')
  assert.equal(refused.closedByServer, true, 'the server closed the socket after the 403')
  assert.equal((JSON.parse(refused.body) as { code?: unknown }).code, 'ORIGIN_NOT_ALLOWED')

  // A WebSocket handshake (no sid) from the foreign Origin: refused the same way.
  const fresh = await rawUpgrade(app.url, '/socket.io/?EIO=4&transport=websocket', { cookie, Origin: EVIL })
  assert.equal(fresh.statusLine, 'HTTP/1.1 403 Forbidden')
  assert.equal(fresh.closedByServer, true)
  assert.equal(app.app.io.engine.clientsCount, 1, 'only the admitted polling connection exists')

  // The same upgrade without Origin (a non-browser client) switches protocols.
  const upgraded = await rawUpgrade(app.url, path, { cookie })
  assert.equal(upgraded.statusLine, 'HTTP/1.1 101 Switching Protocols')
})

async function echo (socket: ClientSocket): Promise<unknown> {
  return socket.timeout(5000).emitWithAck('echo', 'hi')
}

for (const transport of ['polling', 'websocket'] as const) {
  test(`a non-browser socket.io-client with only a cookie connects over ['${transport}'] and gets acks`, TIMEOUT, async (t) => {
    const options = echoServer()
    const app = await start(t, options)
    const socket = await connected(app.url, { cookie: await app.login(), transports: [transport] })
    t.after(() => socket.close())
    assert.equal(socket.io.engine.transport.name, transport)
    assert.deepEqual(await echo(socket), { value: 'hi', user: 'ada', transport })
  })
}

test('a non-browser socket.io-client with only a cookie connects over [\'polling\', \'websocket\'], upgrades to websocket and gets acks', TIMEOUT, async (t) => {
  const options = echoServer()
  const app = await start(t, options)
  const socket = await connected(app.url, { cookie: await app.login(), transports: ['polling', 'websocket'] })
  t.after(() => socket.close())
  const engine = socket.io.engine
  if (engine.transport.name !== 'websocket') {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no upgrade to websocket within 5 s')), 5000)
      engine.once('upgrade', () => { clearTimeout(timer); resolve() })
      engine.once('upgradeError', (error: Error) => { clearTimeout(timer); reject(error) })
    })
  }
  assert.equal(socket.io.engine.transport.name, 'websocket')
  assert.deepEqual(await echo(socket), { value: 'hi', user: 'ada', transport: 'websocket' })
})

const PROXIED = { origin: 'https://public.example', 'x-forwarded-host': 'public.example', 'x-forwarded-proto': 'https' }

test('with trustProxy, an Origin equal to X-Forwarded-Proto://X-Forwarded-Host is the app\'s own origin: 200, and the socket connects', TIMEOUT, async (t) => {
  const options = echoServer({ fastify: { trustProxy: true } })
  const app = await start(t, options)
  const cookie = await app.login()
  sidOf(await send(app.url, HANDSHAKE, { headers: { cookie, ...PROXIED } }))
  for (const transport of ['polling', 'websocket'] as const) {
    const socket = await connected(app.url, { transports: [transport], extra: { extraHeaders: { cookie, ...PROXIED } } })
    assert.deepEqual(await echo(socket), { value: 'hi', user: 'ada', transport })
    socket.close()
  }
})

test('without trustProxy, X-Forwarded-Host/-Proto are ignored: the same proxied handshake is refused 403 ORIGIN_NOT_ALLOWED', TIMEOUT, async (t) => {
  const app = await start(t)
  const cookie = await app.login()
  assertRefused(await send(app.url, HANDSHAKE, { headers: { cookie, ...PROXIED } }), 'ORIGIN_NOT_ALLOWED')
})

test('with trustProxy, an http:// Origin does not match X-Forwarded-Proto: https: refused 403 ORIGIN_NOT_ALLOWED', TIMEOUT, async (t) => {
  const app = await start(t, { fastify: { trustProxy: true } })
  const cookie = await app.login()
  assertRefused(await send(app.url, HANDSHAKE, { headers: { cookie, ...PROXIED, origin: 'http://public.example' } }), 'ORIGIN_NOT_ALLOWED')
})
