import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import type { IncomingMessage } from 'node:http'
import { expectAdmitted, expectRefusedByGate, startApp } from './support/app'
import { TestStore } from './support/store'

const TRANSPORTS = ['polling', 'websocket'] as const
const TIMEOUT = { timeout: 60_000 }
const EVIL = 'https://evil.example.net'
const APP = 'https://app.example.com'

describe('handshake: Origin (cross-site WebSocket hijacking)', TIMEOUT, () => {
  for (const transport of TRANSPORTS) {
    test(`default policy over ${transport}: same origin and no Origin admitted; other origins and "null" refused`, async (t) => {
      const app = await startApp()
      t.after(() => app.close())
      const cookie = await app.login()
      await expectAdmitted(app.url, { cookie, origin: app.origin, transports: [transport] })
      await expectAdmitted(app.url, { cookie, transports: [transport] })
      await expectRefusedByGate(app.url, 'ORIGIN_NOT_ALLOWED', { cookie, origin: EVIL, transports: [transport] })
      await expectRefusedByGate(app.url, 'ORIGIN_NOT_ALLOWED', { cookie, origin: 'null', transports: [transport] })
      // Same host, other port or scheme: another origin.
      const port = Number(new URL(app.url).port)
      await expectRefusedByGate(app.url, 'ORIGIN_NOT_ALLOWED', { cookie, origin: `http://127.0.0.1:${port + 1}`, transports: [transport] })
      await expectRefusedByGate(app.url, 'ORIGIN_NOT_ALLOWED', { cookie, origin: `http://127.0.0.1:${port}.evil.example.net`, transports: [transport] })
    })
  }

  test('the Origin check comes first: a cross-site handshake with a valid cookie reads nothing from the store', async (t) => {
    const store = new TestStore()
    const app = await startApp({ session: { store } })
    t.after(() => app.close())
    const cookie = await app.login()
    const gets = store.gets
    for (const transport of TRANSPORTS) {
      await expectRefusedByGate(app.url, 'ORIGIN_NOT_ALLOWED', { cookie, origin: EVIL, transports: [transport] })
      // Without a cookie too, the answer is about the Origin, not the session.
      await expectRefusedByGate(app.url, 'ORIGIN_NOT_ALLOWED', { origin: EVIL, transports: [transport] })
    }
    assert.equal(store.gets, gets, 'no store read for a refused Origin')
    await expectAdmitted(app.url, { cookie, origin: app.origin })
    assert.equal(store.gets, gets + 1, 'the counter sees an admitted handshake')
  })

  test('allowedOrigins array admits the listed origins, and still the app\'s own', async (t) => {
    const app = await startApp({ auth: { allowedOrigins: [APP, 'https://admin.example.com'] } })
    t.after(() => app.close())
    const cookie = await app.login()
    for (const transport of TRANSPORTS) {
      await expectAdmitted(app.url, { cookie, origin: APP, transports: [transport] })
      await expectAdmitted(app.url, { cookie, origin: 'https://admin.example.com', transports: [transport] })
      await expectAdmitted(app.url, { cookie, origin: app.origin, transports: [transport] })
      await expectRefusedByGate(app.url, 'ORIGIN_NOT_ALLOWED', { cookie, origin: EVIL, transports: [transport] })
      await expectRefusedByGate(app.url, 'ORIGIN_NOT_ALLOWED', { cookie, origin: 'http://app.example.com', transports: [transport] })
      await expectRefusedByGate(app.url, 'ORIGIN_NOT_ALLOWED', { cookie, origin: 'null', transports: [transport] })
    }
  })

  test('allowedOrigins function decides for every request with an Origin', async (t) => {
    const seen: Array<{ origin: string, host: string | undefined }> = []
    const app = await startApp({
      auth: {
        allowedOrigins: (origin: string, request: IncomingMessage) => {
          seen.push({ origin, host: request.headers.host })
          return origin.endsWith('.trusted.example')
        }
      }
    })
    t.after(() => app.close())
    const cookie = await app.login()
    const host = new URL(app.url).host
    for (const transport of TRANSPORTS) {
      seen.length = 0
      await expectAdmitted(app.url, { cookie, origin: 'https://a.trusted.example', transports: [transport] })
      await expectRefusedByGate(app.url, 'ORIGIN_NOT_ALLOWED', { cookie, origin: EVIL, transports: [transport] })
      // No Origin (not a browser): the function is not asked.
      await expectAdmitted(app.url, { cookie, transports: [transport] })
      // Asked for the requests that carried an Origin, with the request itself (polling: every GET and POST).
      assert.ok(seen.some((entry) => entry.origin === 'https://a.trusted.example'))
      assert.ok(seen.some((entry) => entry.origin === EVIL))
      assert.ok(seen.every((entry) => [EVIL, 'https://a.trusted.example'].includes(entry.origin) && entry.host === host), JSON.stringify(seen))
    }
  })

  test('an exact cors.origin is allowed without repeating it; cors.origin "*" does not widen the check', async (t) => {
    const exact = await startApp({ auth: { cors: { origin: APP, credentials: true } } })
    t.after(() => exact.close())
    const exactCookie = await exact.login()
    for (const transport of TRANSPORTS) {
      await expectAdmitted(exact.url, { cookie: exactCookie, origin: APP, transports: [transport] })
      await expectRefusedByGate(exact.url, 'ORIGIN_NOT_ALLOWED', { cookie: exactCookie, origin: EVIL, transports: [transport] })
    }

    const listed = await startApp({ auth: { cors: { origin: [APP, 'https://two.example.com'] } } })
    t.after(() => listed.close())
    const listedCookie = await listed.login()
    await expectAdmitted(listed.url, { cookie: listedCookie, origin: 'https://two.example.com' })
    await expectRefusedByGate(listed.url, 'ORIGIN_NOT_ALLOWED', { cookie: listedCookie, origin: EVIL })

    const wildcard = await startApp({ auth: { cors: { origin: '*' } } })
    t.after(() => wildcard.close())
    const wildcardCookie = await wildcard.login()
    for (const transport of TRANSPORTS) {
      await expectRefusedByGate(wildcard.url, 'ORIGIN_NOT_ALLOWED', { cookie: wildcardCookie, origin: EVIL, transports: [transport] })
      await expectAdmitted(wildcard.url, { cookie: wildcardCookie, origin: wildcard.origin, transports: [transport] })
    }
  })
})
