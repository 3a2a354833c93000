// Proves, in a real headless Chromium, that a page on another port of the same host (same-site,
// so the browser sends the user's session cookie whatever its SameSite) cannot use the user's
// session over Engine.IO: not through a JSONP <script> handshake (which would hand the page the
// open packet and let it CONNECT), not by POSTing a CONNECT packet into a known sid, not by
// opening or upgrading a WebSocket. Checked on the server: no socket connects, no Engine.IO
// connection is left open, the store is not read, and the page never sees a packet.
import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { TestContext } from 'node:test'
import type { BrowserContext } from 'playwright-core'
import type { FastifySessionOptions } from '@fastify/session'
import { sleep, startApp, type TestApp } from '../support/app'
import { closeChromium, newBrowserContext } from '../support/browser'
import { TestStore } from '../support/store'

after(closeChromium)

const TIMEOUT = { timeout: 60_000 }
const WAIT = 20_000

interface Seen { method: string, url: string, status: number, headers: IncomingHttpHeaders }

interface Target {
  app: TestApp
  store: TestStore
  /** Sockets that joined "/" on the app. */
  connections: () => number
  /** Every Engine.IO HTTP request the app answered, with its status. */
  requests: Seen[]
  /** Every WebSocket upgrade request that reached the app. */
  upgrades: IncomingHttpHeaders[]
}

/** The app, with a GET /enter that logs the browser in by a top-level navigation (so the browser stores the cookie as sent). */
async function startTarget (t: TestContext, session: Partial<FastifySessionOptions> = {}): Promise<Target> {
  const store = new TestStore()
  let connections = 0
  const app = await startApp({
    session: { store, ...session },
    setup: (instance) => {
      instance.get('/enter', async (request, reply) => {
        await request.session.regenerate()
        request.session.user = { name: 'ada', role: 'user' }
        reply.type('text/html; charset=utf-8')
        return '<!doctype html><title>app</title><p>logged in</p>'
      })
      instance.io.on('connection', () => { connections++ })
    }
  })
  t.after(() => app.close())
  const requests: Seen[] = []
  const upgrades: IncomingHttpHeaders[] = []
  // Listeners ahead of Engine.IO's own, watching only.
  app.app.server.prependListener('request', (request: IncomingMessage, response: ServerResponse) => {
    if (!request.url?.startsWith('/socket.io/')) return
    response.once('finish', () => requests.push({ method: request.method ?? '', url: request.url ?? '', status: response.statusCode, headers: request.headers }))
  })
  app.app.server.prependListener('upgrade', (request: IncomingMessage) => { upgrades.push(request.headers) })
  return { app, store, connections: () => connections, requests, upgrades }
}

/** A plain node:http server on another port of 127.0.0.1 serving `html` at every path. */
async function startAttacker (t: TestContext, html: string): Promise<string> {
  const server = createServer((_request, response) => {
    response.setHeader('content-type', 'text/html; charset=utf-8')
    response.end(html)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => new Promise<void>((resolve) => {
    server.closeAllConnections()
    server.close(() => resolve())
  }))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

/** Logs the browser in on the app and returns its session cookie as the browser holds it. */
async function logIn (context: BrowserContext, target: Target): Promise<{ value: string, sameSite: string }> {
  const page = await context.newPage()
  await page.goto(target.app.url + '/enter', { waitUntil: 'networkidle' })
  await page.close()
  const cookie = (await context.cookies(target.app.url)).find((entry) => entry.name === 'sessionId')
  assert.ok(cookie, 'the browser holds the session cookie')
  return { value: cookie.value, sameSite: cookie.sameSite }
}

/**
 * The attacker's script. `___eio[0](packet)` is what an Engine.IO JSONP response calls.
 * Without `knownSid`: (a) JSONP handshake; (b) POST a CONNECT packet into the leaked sid (JSONP
 * framing `d=40`) and poll it for the answer; (c) open a WebSocket and CONNECT on its open packet.
 * With `knownSid` (a sid the page learned elsewhere): POST a plain `40` into it, then upgrade it
 * to a WebSocket (probe, upgrade, CONNECT). Sets window.__done when finished.
 */
function attackerPage (appUrl: string, knownSid?: string): string {
  return `<!doctype html><title>another site</title><script>
const APP = ${JSON.stringify(appUrl)}
const KNOWN = ${JSON.stringify(knownSid ?? null)}
window.__packets = []
window.__ws = []
window.___eio = [function (packet) {
  if (window.__leak === undefined) window.__leak = packet
  window.__packets.push(packet)
}]
const within = (ms, promise) => Promise.race([promise, new Promise((resolve) => setTimeout(resolve, ms))])
const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
function jsonp (query) {
  return within(3000, new Promise((resolve) => {
    const script = document.createElement('script')
    script.src = APP + '/socket.io/?EIO=4&transport=polling&j=0' + query
    script.onload = () => resolve('load')
    script.onerror = () => resolve('error')
    document.head.appendChild(script)
  }))
}
function post (sid, body) {
  return within(3000, fetch(APP + '/socket.io/?EIO=4&transport=polling&sid=' + encodeURIComponent(sid), {
    method: 'POST', mode: 'no-cors', credentials: 'include', body
  }).then(() => 'sent', () => 'failed'))
}
function websocket (sid) {
  return new Promise((resolve) => {
    const ws = new WebSocket(APP.replace(/^http/, 'ws') + '/socket.io/?EIO=4&transport=websocket' + (sid ? '&sid=' + encodeURIComponent(sid) : ''))
    const timer = setTimeout(() => { ws.close(); resolve() }, 3000)
    ws.onopen = () => {
      window.__ws.push('open')
      if (sid) ws.send('2probe')
    }
    ws.onmessage = (event) => {
      const data = String(event.data)
      window.__ws.push('message:' + data)
      if (data[0] === '0') ws.send('40')
      if (data === '3probe') { ws.send('5'); ws.send('40') }
    }
    ws.onerror = () => window.__ws.push('error')
    ws.onclose = (event) => {
      window.__ws.push('close:' + event.code)
      clearTimeout(timer)
      resolve()
    }
  })
}
(async () => {
  if (KNOWN) {
    window.__post = await post(KNOWN, '40')
  } else {
    window.__jsonp = await jsonp('')
    const leaked = typeof window.__leak === 'string' ? JSON.parse(window.__leak.slice(1)).sid : undefined
    if (leaked) {
      window.__post = await post(leaked, 'd=40')
      await wait(300)
      await jsonp('&sid=' + encodeURIComponent(leaked))
    }
  }
  await websocket(KNOWN)
  window.__done = true
})()
</script>`
}

async function runAttack (context: BrowserContext, attackerOrigin: string): Promise<{ leak: unknown, packets: unknown, ws: string[], jsonp: unknown }> {
  const page = await context.newPage()
  await page.goto(attackerOrigin + '/')
  await page.waitForFunction('window.__done === true', null, { timeout: WAIT })
  const state = await page.evaluate('({ leak: window.__leak, packets: window.__packets, ws: window.__ws, jsonp: window.__jsonp })') as { leak: unknown, packets: unknown, ws: string[], jsonp: unknown }
  await page.close()
  // Let anything the server was still doing for those requests finish.
  await sleep(300)
  return state
}

const cookieSent = (headers: IncomingHttpHeaders, value: string): boolean =>
  headers.cookie?.split('; ').includes(`sessionId=${encodeURIComponent(value)}`) === true ||
  headers.cookie?.split('; ').includes(`sessionId=${value}`) === true

const VARIANTS: Array<{ name: string, session: Partial<FastifySessionOptions>, sameSite?: string }> = [
  { name: 'SameSite unset', session: {} },
  { name: 'SameSite=Lax', session: { cookie: { secure: false, sameSite: 'lax', maxAge: 60_000 } }, sameSite: 'Lax' },
  { name: 'SameSite=Strict', session: { cookie: { secure: false, sameSite: 'strict', maxAge: 60_000 } }, sameSite: 'Strict' }
]

for (const variant of VARIANTS) {
  test(`session cookie ${variant.name}: a page on another port gets no socket from JSONP, a no-cors POST of "d=40" or a WebSocket, and never sees an open packet`, TIMEOUT, async (t) => {
    const context = await newBrowserContext(t)
    if (context === undefined) return
    const target = await startTarget(t, variant.session)
    const cookie = await logIn(context, target)
    if (variant.sameSite !== undefined) assert.equal(cookie.sameSite, variant.sameSite)
    const gets = target.store.gets

    const attacker = await startAttacker(t, attackerPage(target.app.url))
    const seen = await runAttack(context, attacker)
    t.diagnostic(`sockets connected: ${target.connections()}; page saw: jsonp=${String(seen.jsonp)} packets=${JSON.stringify(seen.packets)} ws=${JSON.stringify(seen.ws)}; server answered ${JSON.stringify(target.requests.map((r) => `${r.method} ${r.status} ${r.url}`))}`)

    // Nothing came of it on the server, and the page learned nothing.
    assert.equal(target.connections(), 0, 'no socket connected for the attacker page')
    assert.equal(seen.leak, undefined, 'the page received no open packet')
    assert.deepEqual(seen.packets, [])
    assert.equal(target.app.app.io.engine.clientsCount, 0, 'no Engine.IO connection exists')
    assert.equal(target.store.gets, gets, 'the store was not read for the attacker\'s requests')
    assert.equal(seen.jsonp, 'error', 'the JSONP script failed to load')
    assert.deepEqual(seen.ws.filter((entry) => entry === 'open' || entry.startsWith('message:')), [], 'the WebSocket never opened')

    // The requests did reach the app, with the user's cookie: the browser did not stop them.
    const script = target.requests.find((request) => request.method === 'GET' && /[?&]j=0(&|$)/.test(request.url) && !/[?&]sid=/.test(request.url))
    assert.ok(script, 'the JSONP <script> request reached the app')
    assert.ok(cookieSent(script.headers, cookie.value), 'the JSONP request carried the session cookie')
    t.diagnostic(`JSONP request: Origin=${String(script.headers.origin)} Sec-Fetch-Site=${String(script.headers['sec-fetch-site'])}`)
    const upgrade = target.upgrades.find((headers) => headers.origin === attacker)
    assert.ok(upgrade, 'the WebSocket upgrade reached the app')
    assert.ok(cookieSent(upgrade, cookie.value), 'the WebSocket upgrade carried the session cookie')

    // Every Engine.IO request of the page was refused with 403.
    assert.deepEqual(target.requests.filter((request) => request.status !== 403).map((request) => `${request.method} ${request.status} ${request.url}`), [])
    assert.equal(script.status, 403)
  })
}

/** An admitted polling handshake from outside the browser (no Origin), with the browser's cookie. */
function pollingHandshake (url: string, cookie: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${url}/socket.io/?EIO=4&transport=polling`, { headers: { cookie }, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { body += chunk })
      res.on('end', () => {
        if (res.statusCode !== 200 || body[0] !== '0') return reject(new Error(`handshake not admitted: ${res.statusCode} ${body}`))
        resolve((JSON.parse(body.slice(1)) as { sid: string }).sid)
      })
    })
    req.on('error', reject)
    req.end()
  })
}

test('a page that learned the sid of the user\'s admitted connection can neither POST a CONNECT into it nor upgrade it to a WebSocket', TIMEOUT, async (t) => {
  const context = await newBrowserContext(t)
  if (context === undefined) return
  const target = await startTarget(t)
  const cookie = await logIn(context, target)
  const sid = await pollingHandshake(target.app.url, `sessionId=${encodeURIComponent(cookie.value)}`)
  const handshakes = target.requests.length
  const gets = target.store.gets

  const attacker = await startAttacker(t, attackerPage(target.app.url, sid))
  const seen = await runAttack(context, attacker)
  const attack = target.requests.slice(handshakes)
  t.diagnostic(`sockets connected: ${target.connections()}; page saw: ws=${JSON.stringify(seen.ws)}; server answered ${JSON.stringify(attack.map((r) => `${r.method} ${r.status} ${r.url}`))}`)

  assert.equal(target.connections(), 0, 'no socket joined through the stolen sid')
  const posted = attack.find((request) => request.method === 'POST' && request.url.includes(`sid=${sid}`))
  assert.ok(posted, 'the CONNECT POST reached the app')
  assert.equal(posted.headers.origin, attacker)
  assert.equal(posted.status, 403)
  const upgrade = target.upgrades.find((headers) => headers.origin === attacker)
  assert.ok(upgrade, 'the WebSocket upgrade reached the app')
  assert.deepEqual(attack.filter((request) => request.status !== 403).map((request) => `${request.method} ${request.status} ${request.url}`), [])

  assert.equal(target.store.gets, gets, 'the store was not read for the attacker\'s requests')
  assert.deepEqual(seen.ws.filter((entry) => entry === 'open' || entry.startsWith('message:')), [], 'the WebSocket never opened')
  assert.equal(seen.leak, undefined)
  assert.deepEqual(seen.packets, [])
  // The user's connection is untouched: still the only one, still on polling.
  const clients = (target.app.app.io.engine as unknown as { clients: Record<string, { transport: { name: string } }> }).clients
  assert.deepEqual(Object.keys(clients), [sid])
  assert.equal(clients[sid]?.transport.name, 'polling')
})
