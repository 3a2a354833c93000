// Socket.IO answers on every server Fastify listens on. listen({ host: 'localhost' })
// binds one server per address localhost resolves to (Fastify's multipleBindings):
// the secondary servers share Fastify's request handler and forward 'upgrade' to the
// main server, but Engine.IO intercepts 'request' on the main server only. The app
// runs in a child process whose `localhost` resolves to 127.0.0.1 and ::1
// (test/fixtures/localhost-dual-stack.mjs), as on a machine with both in /etc/hosts;
// every check is made over both addresses.
import { after, test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Socket as ClientSocket } from 'socket.io-client'
import type { BrowserContext } from 'playwright-core'
import type { Where } from './fixtures/dual-stack-app'
import { closeAfter, connected, engineRequest, once, upgraded } from './support/app'
import { closeChromium, logInToExample, needChromium } from './support/browser'
import { LOOPBACKS, needIpv6Loopback, startDualStackApp, type DualStackApp } from './support/dual-stack'

after(closeChromium)

const TIMEOUT = { timeout: 60_000 }
const WAIT = 10_000

async function startPluginApp (t: TestContext): Promise<DualStackApp | undefined> {
  if (!await needIpv6Loopback(t)) return undefined
  return startDualStackApp(t, 'plugin')
}

async function where (socket: ClientSocket): Promise<Where> {
  return socket.timeout(5000).emitWithAck('where') as Promise<Where>
}

test('listen({ host: \'localhost\' }) on a dual-stack localhost: app.addresses() has 127.0.0.1 and ::1, on one port', TIMEOUT, async (t) => {
  const app = await startPluginApp(t)
  if (app === undefined) return
  const addresses = app.addresses.map(({ address, port }) => `${address} ${port}`).sort()
  assert.deepEqual(addresses, [`127.0.0.1 ${app.port}`, `::1 ${app.port}`])
})

for (const loopback of LOOPBACKS) {
  test(`over ${loopback.name}: the polling handshake with a valid cookie answers 200 with an open packet`, TIMEOUT, async (t) => {
    const app = await startPluginApp(t)
    if (app === undefined) return
    const cookie = await app.login()
    const answer = await engineRequest(app.urlOf(loopback), 'transport=polling', { cookie })
    assert.equal(answer.status, 200, `expected an Engine.IO open packet over ${loopback.name}, got ${answer.status}: ${answer.body.slice(0, 200)}`)
    assert.equal(answer.body[0], '0', `expected an open packet, got ${answer.body.slice(0, 200)}`)
    const open = JSON.parse(answer.body.slice(1)) as { sid?: unknown, upgrades?: unknown }
    assert.equal(typeof open.sid, 'string')
    assert.deepEqual(open.upgrades, ['websocket'])
  })

  test(`over ${loopback.name}: socket.io-client connects over polling, over websocket and polling→websocket, and gets an ack`, TIMEOUT, async (t) => {
    const app = await startPluginApp(t)
    if (app === undefined) return
    const cookie = await app.login()
    const url = app.urlOf(loopback)

    const polling = closeAfter(t, await connected(url, { cookie, transports: ['polling'] }))
    assert.deepEqual(await where(polling), { user: 'ada', transport: 'polling', localAddress: loopback.address })

    const websocket = closeAfter(t, await connected(url, { cookie, transports: ['websocket'] }))
    assert.deepEqual(await where(websocket), { user: 'ada', transport: 'websocket', localAddress: loopback.address })

    const upgrading = closeAfter(t, await connected(url, { cookie, transports: ['polling', 'websocket'] }))
    await upgraded(upgrading)
    assert.equal(upgrading.io.engine.transport.name, 'websocket')
    // The handshake came in over polling on this address; the ack comes back over the WebSocket.
    assert.deepEqual(await where(upgrading), { user: 'ada', transport: 'websocket', localAddress: loopback.address })
  })
}

test('app.close() ends the sockets on both addresses, and the process exits within a few seconds', TIMEOUT, async (t) => {
  const app = await startPluginApp(t)
  if (app === undefined) return
  const cookie = await app.login()
  const sockets: Array<{ label: string, socket: ClientSocket }> = []
  for (const loopback of LOOPBACKS) {
    for (const transports of [['polling'], ['websocket']] as Array<Array<'polling' | 'websocket'>>) {
      const socket = closeAfter(t, await connected(app.urlOf(loopback), { cookie, transports }))
      assert.equal((await where(socket)).localAddress, loopback.address)
      sockets.push({ label: `${transports.join('+')} over ${loopback.name}`, socket })
    }
  }

  const disconnects = sockets.map(({ label, socket }) => once<string>(socket, 'disconnect', 5000).then(
    (reason) => ({ label, reason }),
    (error: Error) => { throw new Error(`${label}: ${error.message}`) }
  ))
  const closing = Date.now()
  await app.close()
  const ended = await Promise.all(disconnects)
  t.diagnostic(`disconnect reasons: ${ended.map(({ label, reason }) => `${label}: ${reason}`).join('; ')}`)
  for (const { label, socket } of sockets) assert.equal(socket.connected, false, `${label} is still connected`)

  const code = await Promise.race([app.exited, sleep(5000).then(() => 'still running' as const)])
  assert.equal(code, 0, `the child should exit by itself after app.close(); ${String(code)} after ${Date.now() - closing} ms. stderr: ${app.stderr()}`)
  t.diagnostic(`the child exited ${Date.now() - closing} ms after the close was sent`)
})

test('in Chromium, the example app opened at http://127.0.0.1:PORT/ and at http://[::1]:PORT/ logs in and connects on both', TIMEOUT, async (t) => {
  if (!await needIpv6Loopback(t)) return
  const browser = await needChromium(t)
  if (browser === undefined) return
  const app = await startDualStackApp(t, 'example')
  const context: BrowserContext = await browser.newContext()
  t.after(() => context.close())
  const errors: Error[] = []

  for (const loopback of LOOPBACKS) {
    const page = await context.newPage()
    page.on('pageerror', (error) => errors.push(error))
    const url = app.urlOf(loopback)
    await logInToExample(page, url, 'ada')
    const status = await page.waitForSelector('#status-main[data-state="connected"]', { timeout: WAIT }).catch(async (error: Error) => {
      const shown = await page.getAttribute('#status-main', 'data-state').catch(() => null)
      const text = await page.textContent('#status-main').catch(() => null)
      throw new Error(`${url}: the page never showed connected (data-state ${String(shown)}: ${String(text)}): ${error.message}`)
    })
    assert.match((await status.textContent()) ?? '', /^connected as ada \(user\)/, `${url}: what the page shows`)
  }
  assert.deepEqual(errors, [])
})
