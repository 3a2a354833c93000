/**
 * The example app in a real headless Chromium (Debian's package, driven by
 * playwright-core): cookies come from the login form, as for a person, and the
 * page shows what the server decided. Without Chromium these tests skip with a
 * message locally and fail under CI=true.
 *
 * UPDATE_SCREENSHOT=1 also refreshes docs/example.png (the README's picture);
 * otherwise the screenshot goes to test-results/example.png.
 */
import { after, test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { createServer, type IncomingHttpHeaders } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import type { BrowserContext, Page } from 'playwright-core'
import { buildExampleApp, type ExampleOptions } from '../../example/app'
import { closeChromium, logInToExample, newBrowserContext } from '../support/browser'
import { needRedis, REDIS_URL } from '../support/services'
import { waitFor } from '../support/app'

after(closeChromium)

const ROOT = join(__dirname, '..', '..')
const WAIT = 10_000

interface Example { app: FastifyInstance, url: string }

async function startExample (t: TestContext, options: ExampleOptions = {}): Promise<Example> {
  const app = await buildExampleApp(options)
  t.after(() => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  return { app, url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}` }
}

/** A tab that fails the test on any uncaught error in the page's script. */
async function newPage (context: BrowserContext, errors: Error[]): Promise<Page> {
  const page = await context.newPage()
  page.on('pageerror', (error) => errors.push(error))
  return page
}

/** Logs in through the form (passport-local): the first login with a name creates that account, with this password. */
const logIn = (page: Page, url: string, name: string, options: { admin?: boolean } = {}): Promise<void> => logInToExample(page, url, name, { ...options, timeout: WAIT })

type Line = '#status-main' | '#status-admin'

/** Waits until a namespace's status line is in `state`, and returns what the page shows. */
async function statusLine (page: Page, line: Line, state: string): Promise<{ code: string, text: string }> {
  const element = await page.waitForSelector(`${line}[data-state="${state}"]`, { timeout: WAIT })
  return { code: (await element.getAttribute('data-code')) ?? '', text: (await element.textContent()) ?? '' }
}

/** GET /me with the page's cookies, as the page's own fetch would. */
async function me (page: Page, url: string): Promise<{ node: string, user: { name: string } | null, messages: number }> {
  const response = await page.context().request.get(url + '/me')
  return response.json() as Promise<{ node: string, user: { name: string } | null, messages: number }>
}

async function ticksReceived (page: Page): Promise<number> {
  return Number(await page.textContent('#tick-count'))
}

async function say (page: Page, text: string): Promise<void> {
  await page.fill('#chat-input', text)
  await page.click('#chat-send')
}

/** Waits for a chat line containing `text` and returns its author and text as shown. */
async function chatLine (page: Page, text: string): Promise<{ from: string, text: string }> {
  const item = page.locator('#chat-log li', { hasText: text }).last()
  await item.waitFor({ timeout: WAIT })
  return { from: await item.locator('.from').innerText(), text: await item.locator('.text').innerText() }
}

test('log in through the form: the socket connects as that user, ticks arrive, chat shows who said what', { timeout: 60_000 }, async (t) => {
  const context = await newBrowserContext(t, { viewport: { width: 1000, height: 720 } })
  if (context === undefined) return
  const other = await newBrowserContext(t, { viewport: { width: 1000, height: 720 } })
  if (other === undefined) return
  const { url } = await startExample(t)
  const errors: Error[] = []
  const ada = await newPage(context, errors)
  const bob = await newPage(other, errors)

  await logIn(ada, url, 'ada')
  assert.match((await statusLine(ada, '#status-main', 'connected')).text, /^connected as ada \(user\)/)
  await waitFor('two ticks', async () => await ticksReceived(ada) >= 2, WAIT, 50)
  const first = await ada.textContent('#tick')
  await waitFor('the next tick', async () => await ada.textContent('#tick') !== first, WAIT, 50)

  await logIn(bob, url, 'bob')
  await statusLine(bob, '#status-main', 'connected')

  // Markup in a message is shown as text, on every page that receives it.
  const attack = '<img src=x onerror="window.__xss=1">hi'
  await say(ada, attack)
  assert.deepEqual(await chatLine(bob, 'hi'), { from: 'ada', text: attack })
  assert.deepEqual(await chatLine(ada, 'hi'), { from: 'ada', text: attack })
  await say(bob, 'hello ada')
  assert.deepEqual(await chatLine(ada, 'hello ada'), { from: 'bob', text: 'hello ada' })
  for (const page of [ada, bob]) {
    assert.equal(await page.locator('#chat-log img').count(), 0)
    assert.equal(await page.evaluate('window.__xss'), undefined)
  }

  // The socket handler counted the message in the session; the next HTTP request sees it.
  await waitFor('the message count', async () => await ada.textContent('#messages') === '1', WAIT, 50)
  const state = await me(ada, url)
  assert.equal(state.user?.name, 'ada')
  assert.equal(state.messages, 1)
  assert.ok(await ticksReceived(ada) >= 2)
  assert.deepEqual(errors, [])
})

test('logging out in a second tab disconnects the first tab\'s socket, with the reason shown; it does not reconnect', { timeout: 60_000 }, async (t) => {
  const context = await newBrowserContext(t, { viewport: { width: 1000, height: 720 } })
  if (context === undefined) return
  const { url } = await startExample(t)
  const errors: Error[] = []
  const first = await newPage(context, errors)
  await logIn(first, url, 'ada')
  await statusLine(first, '#status-main', 'connected')

  // Same browser profile, so the same cookie and the same session.
  const second = await newPage(context, errors)
  await second.goto(url + '/')
  assert.match((await statusLine(second, '#status-main', 'connected')).text, /^connected as ada/)

  const clicked = Date.now()
  await second.click('#logout')
  const ended = await statusLine(first, '#status-main', 'disconnected')
  t.diagnostic(`first tab showed the disconnect ${Date.now() - clicked} ms after the logout click`)
  assert.equal(ended.code, 'logout')
  assert.match(ended.text, /session:revoked \(logout\)/)
  assert.match(ended.text, /io server disconnect/)
  assert.equal(await first.textContent('#http-user'), 'session ended (logout)')
  assert.equal(await first.isDisabled('#chat-send'), true)

  // The tab that logged out is back at the login form, and its page is refused.
  await second.waitForSelector('#login:not([hidden])', { timeout: WAIT })
  assert.equal((await statusLine(second, '#status-main', 'refused')).code, 'SESSION_REQUIRED')

  // A server disconnect is final: the first tab stays disconnected, no ticks come in.
  const ticks = await ticksReceived(first)
  await first.waitForTimeout(1500)
  assert.equal(await first.getAttribute('#status-main', 'data-state'), 'disconnected')
  assert.equal(await ticksReceived(first), ticks)
  assert.deepEqual(errors, [])
})

test('a page that never logged in is refused with SESSION_REQUIRED, shown on the page', { timeout: 60_000 }, async (t) => {
  const context = await newBrowserContext(t, { viewport: { width: 1000, height: 720 } })
  if (context === undefined) return
  const { url } = await startExample(t)
  const errors: Error[] = []
  const page = await newPage(context, errors)
  await page.goto(url + '/')

  const main = await statusLine(page, '#status-main', 'refused')
  assert.equal(main.code, 'SESSION_REQUIRED')
  assert.match(main.text, /^refused: SESSION_REQUIRED · The handshake carried no session cookie/)
  assert.equal((await statusLine(page, '#status-admin', 'refused')).code, 'SESSION_REQUIRED')
  assert.equal(await page.isVisible('#login'), true)
  assert.deepEqual(await context.cookies(), [])
  assert.deepEqual(errors, [])
})

test('a page from another origin, riding the user\'s cookie, is refused at the upgrade (403 ORIGIN_NOT_ALLOWED)', { timeout: 60_000 }, async (t) => {
  const context = await newBrowserContext(t, { viewport: { width: 1000, height: 720 } })
  if (context === undefined) return
  const { app, url } = await startExample(t)
  let connections = 0
  app.io.engine.on('connection', () => { connections++ })

  // What reached the server on each WebSocket upgrade.
  const upgrades: IncomingHttpHeaders[] = []
  app.server.on('upgrade', (request: { headers: IncomingHttpHeaders }) => upgrades.push(request.headers))

  // Another site on the same host (127.0.0.1, another port): same-site, so the
  // browser sends the user's SameSite=Lax cookie with its WebSocket.
  const evil = createServer((_request, response) => {
    response.setHeader('content-type', 'text/html; charset=utf-8')
    response.end(`<!doctype html><title>another site</title><p id="result" data-code="">trying…</p>
<script src="${url}/socket.io/socket.io.min.js"></script>
<script>
  const result = document.getElementById('result')
  const socket = io(${JSON.stringify(url)}, { transports: ['websocket'], reconnection: false })
  socket.on('connect', () => { result.dataset.code = 'CONNECTED'; result.textContent = 'connected: hijacked' })
  socket.on('connect_error', (err) => { result.dataset.code = err.message; result.textContent = 'refused: ' + err.message })
</script>`)
  })
  await new Promise<void>((resolve) => evil.listen(0, '127.0.0.1', resolve))
  t.after(() => new Promise<void>((resolve) => evil.close(() => resolve())))
  const evilOrigin = `http://127.0.0.1:${(evil.address() as AddressInfo).port}`

  const errors: Error[] = []
  const own = await newPage(context, errors)
  await logIn(own, url, 'ada')
  await statusLine(own, '#status-main', 'connected')
  const [cookie] = await context.cookies(url)
  assert.equal(cookie?.name, 'sessionId')

  const page = await newPage(context, errors)
  await page.goto(evilOrigin + '/')
  const result = await page.waitForSelector('#result:not([data-code=""])', { timeout: WAIT })
  // Refused before Engine.IO opened a connection: the page only sees its WebSocket fail.
  assert.equal(await result.getAttribute('data-code'), 'websocket error')
  const before = connections

  // The refusal is the Origin's doing: the browser did send the valid session cookie.
  const hijack = upgrades.find((headers) => headers.origin === evilOrigin)
  assert.ok(hijack, 'the cross-origin page opened a WebSocket to the app')
  assert.ok(hijack.cookie?.split('; ').includes(`sessionId=${cookie.value}`), 'the WebSocket upgrade carried the session cookie')

  // The same cookie from the app's own origin is admitted.
  const again = await newPage(context, errors)
  await again.goto(url + '/')
  assert.match((await statusLine(again, '#status-main', 'connected')).text, /^connected as ada/)
  assert.equal(connections, before + 1, 'only the own-origin page opened an Engine.IO connection')
  assert.deepEqual(errors, [])
})

test('the /admin namespace refuses a non-admin with FORBIDDEN while / works, and admits an admin', { timeout: 60_000 }, async (t) => {
  const userContext = await newBrowserContext(t, { viewport: { width: 1000, height: 720 } })
  if (userContext === undefined) return
  const adminContext = await newBrowserContext(t, { viewport: { width: 1000, height: 720 } })
  if (adminContext === undefined) return
  const { url } = await startExample(t)
  const errors: Error[] = []

  // The admin first, so that the admin's live feed sees the user arrive.
  const grace = await newPage(adminContext, errors)
  await logIn(grace, url, 'grace', { admin: true })
  assert.match((await statusLine(grace, '#status-main', 'connected')).text, /^connected as grace \(admin\)/)
  assert.match((await statusLine(grace, '#status-admin', 'connected')).text, /^connected as grace \(admin\)/)
  assert.equal(await grace.isVisible('#admin'), true)
  assert.equal(await grace.isVisible('#admin-refused'), false)

  const ada = await newPage(userContext, errors)
  await logIn(ada, url, 'ada')
  assert.match((await statusLine(ada, '#status-main', 'connected')).text, /^connected as ada \(user\)/)
  const refused = await statusLine(ada, '#status-admin', 'refused')
  assert.equal(refused.code, 'FORBIDDEN')
  assert.match(refused.text, /^refused: FORBIDDEN/)
  assert.equal(await ada.isVisible('#admin-refused'), true)
  assert.equal(await ada.isVisible('#admin'), false)

  // The admin's feed sees activity; the admin's announcement reaches everyone on /.
  await say(ada, 'hello from ada')
  await chatLine(grace, 'hello from ada')
  await say(grace, 'welcome, ada')
  await chatLine(ada, 'welcome, ada')
  await grace.fill('#announce-input', 'maintenance at noon')
  await grace.click('#announce-form button')
  assert.deepEqual(await chatLine(ada, 'maintenance at noon'), { from: 'announcement from grace', text: 'maintenance at noon' })
  await grace.locator('#activity li', { hasText: 'ada (user) logged in over HTTP' }).waitFor({ timeout: WAIT })
  await waitFor('a tick', async () => await ticksReceived(grace) >= 1, WAIT, 50)

  // The README's picture: an admin's page, with chat, ticks and the admin feed.
  const png = await grace.screenshot({ fullPage: true })
  assert.ok(png.length > 10_000, 'the screenshot has content')
  await mkdir(join(ROOT, 'test-results'), { recursive: true })
  await writeFile(join(ROOT, 'test-results', 'example.png'), png)
  const docs = join(ROOT, 'docs', 'example.png')
  if (process.env.UPDATE_SCREENSHOT === '1' || !existsSync(docs)) {
    await mkdir(join(ROOT, 'docs'), { recursive: true })
    await writeFile(docs, png)
  }
  assert.deepEqual(errors, [])
})

test('an admin demotes another admin live: that page loses /admin with \'forbidden\' while / stays connected', { timeout: 60_000 }, async (t) => {
  const graceContext = await newBrowserContext(t, { viewport: { width: 1000, height: 720 } })
  if (graceContext === undefined) return
  const linusContext = await newBrowserContext(t, { viewport: { width: 1000, height: 720 } })
  if (linusContext === undefined) return
  const { url } = await startExample(t)
  const errors: Error[] = []

  const grace = await newPage(graceContext, errors)
  await logIn(grace, url, 'grace', { admin: true })
  await statusLine(grace, '#status-admin', 'connected')
  const linus = await newPage(linusContext, errors)
  await logIn(linus, url, 'linus', { admin: true })
  assert.match((await statusLine(linus, '#status-admin', 'connected')).text, /^connected as linus \(admin\)/)
  await statusLine(linus, '#status-main', 'connected')
  assert.equal(await linus.isVisible('#admin'), true)

  // Grace's user list (sent over /admin) has linus as an admin; she demotes him.
  const demote = grace.locator('#users li[data-user="linus"] button[data-role="user"]')
  await demote.waitFor({ timeout: WAIT })
  const clicked = Date.now()
  await demote.click()

  // Linus's open page: /admin ended by the server with the reason, / untouched.
  const ended = await statusLine(linus, '#status-admin', 'disconnected')
  t.diagnostic(`the demoted page showed /admin ended ${Date.now() - clicked} ms after the click`)
  assert.equal(ended.code, 'forbidden')
  assert.match(ended.text, /session:revoked \(forbidden\)/)
  assert.match(ended.text, /io server disconnect/)
  assert.equal(await linus.getAttribute('#status-main', 'data-state'), 'connected')
  assert.equal(await linus.isVisible('#admin-revoked'), true)
  assert.equal(await linus.isVisible('#admin'), false)
  await waitFor('the new role on the page', async () => await linus.textContent('#me-role') === 'user', WAIT, 50)

  // / goes on: ticks keep coming, chat works and carries the new role; HTTP sees it too.
  const ticks = await ticksReceived(linus)
  await waitFor('another tick', async () => await ticksReceived(linus) > ticks, WAIT, 50)
  await say(linus, 'still here')
  const line = grace.locator('#chat-log li', { hasText: 'still here' }).last()
  await line.waitFor({ timeout: WAIT })
  assert.equal(await line.locator('.role').innerText(), 'user')
  const state = await linus.context().request.get(url + '/me')
  assert.equal(((await state.json()) as { user: { role: string } }).user.role, 'user')

  // The admin who demoted him keeps /admin, and sees the list updated.
  assert.equal(await grace.getAttribute('#status-admin', 'data-state'), 'connected')
  await grace.locator('#users li[data-user="linus"] button[data-role="admin"]').waitFor({ timeout: WAIT })
  // A reload of the demoted page is refused on /admin (FORBIDDEN), admitted on /.
  await linus.reload()
  assert.equal((await statusLine(linus, '#status-admin', 'refused')).code, 'FORBIDDEN')
  assert.match((await statusLine(linus, '#status-main', 'connected')).text, /^connected as linus \(user\)/)
  assert.deepEqual(errors, [])
})

test('with Redis, two app instances behave as one: chat crosses nodes, logout on one ends the socket on the other', { timeout: 60_000 }, async (t) => {
  if (!await needRedis(t)) return
  const context = await newBrowserContext(t, { viewport: { width: 1000, height: 720 } })
  if (context === undefined) return
  const redisPrefix = `example-e2e:${randomUUID()}:`
  const a = await startExample(t, { redisUrl: REDIS_URL, redisPrefix, nodeName: 'node A' })
  const b = await startExample(t, { redisUrl: REDIS_URL, redisPrefix, nodeName: 'node B' })
  const errors: Error[] = []

  const onA = await newPage(context, errors)
  await logIn(onA, a.url, 'ada')
  assert.match((await statusLine(onA, '#status-main', 'connected')).text, /^connected as ada \(user\) on node A$/)

  // Cookies are per host, not per port: the same browser is logged in on B,
  // because B reads the session from Redis.
  const onB = await newPage(context, errors)
  await onB.goto(b.url + '/')
  assert.match((await statusLine(onB, '#status-main', 'connected')).text, /^connected as ada \(user\) on node B$/)

  await say(onB, 'sent through node B')
  await chatLine(onA, 'sent through node B')
  assert.equal(await onA.locator('#chat-log li', { hasText: 'sent through node B' }).locator('.via').innerText(), 'via node B')
  // The socket handler on node B saved the count in the session in Redis; an HTTP request to node A reads it.
  await waitFor('the message count', async () => await onB.textContent('#messages') === '1', WAIT, 50)
  const state = await me(onA, a.url)
  assert.deepEqual({ node: state.node, messages: state.messages }, { node: 'node A', messages: 1 })

  await onB.click('#logout')
  const ended = await statusLine(onA, '#status-main', 'disconnected')
  assert.equal(ended.code, 'logout')
  assert.deepEqual(errors, [])
})
