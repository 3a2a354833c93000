// The app behind a real reverse proxy (test/support/proxy.ts, in its own process):
// the Origin check must see the app's origin as Fastify does. With trustProxy naming
// the proxy, X-Forwarded-Host/-Proto make `https://public.example` the app's own origin;
// without trustProxy, or with trustProxy naming another peer, the forwarded headers
// count for nothing and the same client is refused. A dev-server proxy that rewrites
// Host (changeOrigin) and forwards nothing is a foreign origin unless listed in
// allowedOrigins. Clients are real socket.io-clients in Node, through the proxy.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import type { Socket as ClientSocket } from 'socket.io-client'
import { closeAfter, connected, engineRequest, refusedWith, startApp, upgraded, type StartOptions, type TestApp } from './support/app'
import { startProxy, type ProxyOptions, type RunningProxy } from './support/proxy'

const TIMEOUT = { timeout: 60_000 }
const PUBLIC_ORIGIN = 'https://public.example'
const FORWARDING: ProxyOptions = { forwardedHost: 'public.example', forwardedProto: 'https' }
type Transports = Array<'polling' | 'websocket'>
const EVERY_TRANSPORT: Transports[] = [['polling'], ['websocket'], ['polling', 'websocket']]

interface Seen { user: string | null, transport: string, host: string | null, forwardedHost: string | null }

/** An app whose socket event 'seen' acks the user, the transport and the Host / X-Forwarded-Host of the handshake. */
async function start (t: TestContext, options: StartOptions = {}): Promise<TestApp> {
  const app = await startApp({
    ...options,
    setup: (instance) => {
      instance.io.on('connection', (socket) => {
        socket.on('seen', (ack: (seen: Seen) => void) => {
          const header = (name: string): string | null => {
            const value = socket.handshake.headers[name]
            return typeof value === 'string' ? value : null
          }
          ack({ user: socket.data.session.user?.name ?? null, transport: socket.conn.transport.name, host: header('host'), forwardedHost: header('x-forwarded-host') })
        })
      })
    }
  })
  t.after(() => app.close())
  return app
}

async function seen (socket: ClientSocket): Promise<Seen> {
  return socket.timeout(5000).emitWithAck('seen') as Promise<Seen>
}

/** Connects over each transport set through `url`; each must be admitted and ack; returns what the app saw. */
async function admittedOverEveryTransport (t: TestContext, url: string, headers: Record<string, string>): Promise<Seen[]> {
  const result: Seen[] = []
  for (const transports of EVERY_TRANSPORT) {
    const socket = closeAfter(t, await connected(url, { transports, extra: { extraHeaders: headers } }))
    if (transports.length > 1) await upgraded(socket)
    const what = await seen(socket)
    assert.equal(what.user, 'ada', `${transports.join('→')}: the session's user`)
    assert.equal(what.transport, transports[transports.length - 1], `${transports.join('→')}: the transport the app sees`)
    result.push(what)
  }
  return result
}

/** Each transport set through `url` is refused at the transport (the request gate's 403), and the raw handshake and upgrade answer 403 ORIGIN_NOT_ALLOWED. */
async function refusedOverEveryTransport (url: string, headers: Record<string, string>): Promise<void> {
  for (const transports of EVERY_TRANSPORT) {
    const refused = await refusedWith(url, { transports, extra: { extraHeaders: headers } })
    assert.match(refused.code, /^(xhr poll error|websocket error)$/, `${transports.join('→')}: refused at the transport, got ${refused.code}`)
  }
  for (const query of ['transport=polling', 'transport=websocket']) {
    const answer = await engineRequest(url, query, headers)
    assert.equal(answer.status, 403, `${query} through the proxy: expected 403, got ${answer.status}: ${answer.body.slice(0, 200)}`)
    assert.equal(answer.code, 'ORIGIN_NOT_ALLOWED', `${query}: the refusal code`)
  }
}

test('(a) trustProxy names the proxy: Origin https://public.example (its X-Forwarded-Proto://X-Forwarded-Host) is admitted over polling, websocket and polling→websocket', TIMEOUT, async (t) => {
  const app = await start(t, { fastify: { trustProxy: '127.0.0.1' } })
  const proxy = await startProxy(t, { target: app.url, ...FORWARDING })
  const cookie = await app.login()
  const headers = { cookie, origin: PUBLIC_ORIGIN }

  const handshake = await engineRequest(proxy.url, 'transport=polling', headers)
  assert.equal(handshake.status, 200, `the handshake through the proxy: ${handshake.status} ${handshake.body.slice(0, 200)}`)
  assert.equal(handshake.body[0], '0', 'an Engine.IO open packet')

  for (const what of await admittedOverEveryTransport(t, proxy.url, headers)) {
    // Through the proxy: its X-Forwarded-Host reached the app, the Host is the proxy's.
    assert.deepEqual({ host: what.host, forwardedHost: what.forwardedHost }, { host: `127.0.0.1:${proxy.port}`, forwardedHost: 'public.example' })
  }

  // The same client straight to the app (no forwarded headers): its Origin is foreign there.
  await refusedOverEveryTransport(app.url, headers)
})

test('(b) without trustProxy, the proxy\'s X-Forwarded-Host/-Proto are ignored: the same client is refused (403 ORIGIN_NOT_ALLOWED)', TIMEOUT, async (t) => {
  const app = await start(t)
  const proxy = await startProxy(t, { target: app.url, ...FORWARDING })
  const cookie = await app.login()
  await refusedOverEveryTransport(proxy.url, { cookie, origin: PUBLIC_ORIGIN })
  // The cookie itself is good: the proxy's own origin is admitted.
  const socket = closeAfter(t, await connected(proxy.url, { cookie, origin: proxy.url, transports: ['polling'] }))
  assert.equal((await seen(socket)).user, 'ada')
})

test('(c) trustProxy names another peer (10.9.9.9), not the proxy: forwarded headers from the proxy are ignored, the same client is refused', TIMEOUT, async (t) => {
  const app = await start(t, { fastify: { trustProxy: '10.9.9.9' } })
  const proxy = await startProxy(t, { target: app.url, ...FORWARDING })
  const cookie = await app.login()
  await refusedOverEveryTransport(proxy.url, { cookie, origin: PUBLIC_ORIGIN })
})

test('(d) a dev-server proxy (changeOrigin, no forwarded headers): its origin is refused unless listed in allowedOrigins, then admitted over every transport', TIMEOUT, async (t) => {
  // Unlisted: the app sees Host 127.0.0.1:<app port>, the page's Origin is the proxy's.
  const plain = await start(t)
  const refusing = await startProxy(t, { target: plain.url, changeOrigin: true })
  const plainCookie = await plain.login()
  await refusedOverEveryTransport(refusing.url, { cookie: plainCookie, origin: refusing.url })

  // Listed: the app must know the proxy's origin, so the proxy starts first and is pointed at the app after.
  const proxy: RunningProxy = await startProxy(t, { changeOrigin: true })
  const app = await start(t, { auth: { allowedOrigins: [proxy.url] } })
  await proxy.setTarget(app.url)
  const cookie = await app.login()
  const appHost = new URL(app.url).host
  for (const what of await admittedOverEveryTransport(t, proxy.url, { cookie, origin: proxy.url })) {
    // The Host was rewritten: the origin matched allowedOrigins, not the app's own origin.
    assert.deepEqual({ host: what.host, forwardedHost: what.forwardedHost }, { host: appHost, forwardedHost: null })
  }
  // Another origin is still refused through the same proxy.
  await refusedOverEveryTransport(proxy.url, { cookie, origin: 'http://127.0.0.1:1' })
})
