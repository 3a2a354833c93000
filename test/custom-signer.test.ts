// HTTP logout and regenerate reach open sockets whatever the session cookie
// looks like: a custom signer object given to @fastify/session (value
// `base64url(id)~mac`, no dot), a `cookiePrefix`, and a cookie signed with an
// older secret after the secret was rotated (`secret: [NEW, OLD]`).
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto'
import { Signer } from '@fastify/cookie'
import { MemoryStore } from '@fastify/session'
import { OLD_SECRET, SECRET, connected, cookieValueOf, refusedWith, regenerateRoutes, startApp } from './support/app'
import { endingAfter } from './support/cluster'

/** A signer of @fastify/session's `secret: { sign, unsign }` shape whose values are `base64url(id)~mac`. */
function tildeSigner (key: string): { sign: (value: string) => string, unsign: (signed: string) => { valid: boolean, renew: boolean, value: string | null } } {
  const mac = (value: string): string => createHmac('sha256', key).update(value).digest('base64url')
  return {
    sign: (value) => `${Buffer.from(value).toString('base64url')}~${mac(value)}`,
    unsign: (signed) => {
      const at = signed.lastIndexOf('~')
      const invalid = { valid: false, renew: false, value: null }
      if (at <= 0) return invalid
      const value = Buffer.from(signed.slice(0, at), 'base64url').toString()
      const given = Buffer.from(signed.slice(at + 1))
      const expected = Buffer.from(mac(value))
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) return invalid
      return { valid: true, renew: false, value }
    }
  }
}

async function post (url: string, path: string, cookie: string): Promise<void> {
  const response = await fetch(`${url}${path}`, { method: 'POST', headers: { cookie } })
  assert.equal(response.status, 200, `${path} answered ${response.status}`)
}

/**
 * Connects a socket with `cookie`, POSTs `path` (/logout, /regenerate) over
 * HTTP and expects the socket to end with session:revoked `reason`, and with
 * whichever of `revokedFirst` and `disconnect` are given.
 */
async function postEndsSocket (t: TestContext, url: string, cookie: string, path: string, expected: { reason: string, revokedFirst?: boolean, disconnect?: string }): Promise<void> {
  const socket = await connected(url, { cookie })
  t.after(() => socket.close())
  const ended = await endingAfter(socket, () => post(url, path, cookie), 2000)
  assert.equal(ended.reason, expected.reason)
  if (expected.revokedFirst !== undefined) assert.equal(ended.revokedFirst, expected.revokedFirst, 'session:revoked arrived before the disconnect')
  if (expected.disconnect !== undefined) assert.equal(ended.disconnect, expected.disconnect)
}

const LOGGED_OUT = { reason: 'logout', revokedFirst: true, disconnect: 'io server disconnect' }

test('custom signer object (base64url(id)~mac): HTTP logout ends the open socket with reason logout', async (t) => {
  const app = await startApp({ session: { secret: tildeSigner(SECRET) } })
  t.after(() => app.close())
  const cookie = await app.login('ada')
  assert.ok(!decodeURIComponent(cookie).includes('.'), 'the cookie value has no dot: nothing to split a signature off by convention')
  await postEndsSocket(t, app.url, cookie, '/logout', LOGGED_OUT)
  assert.equal((await refusedWith(app.url, { cookie })).code, 'SESSION_INVALID')
})

test('custom signer object: HTTP regenerate ends the open socket with reason regenerate', async (t) => {
  const app = await startApp({ session: { secret: tildeSigner(SECRET) }, setup: regenerateRoutes })
  t.after(() => app.close())
  const cookie = await app.login('ada')
  await postEndsSocket(t, app.url, cookie, '/regenerate', { reason: 'regenerate', revokedFirst: true })
})

test('cookiePrefix "s:" on @fastify/session: HTTP logout ends the open socket', async (t) => {
  const app = await startApp({ session: { cookiePrefix: 's:' } })
  t.after(() => app.close())
  const cookie = await app.login('ada')
  assert.ok(decodeURIComponent(cookie).startsWith('sessionId=s:'), 'the cookie carries the prefix')
  await postEndsSocket(t, app.url, cookie, '/logout', LOGGED_OUT)
})

test('secret rotation: a cookie signed with the old secret, logged out over HTTP on an app with secret [NEW, OLD], ends its socket', async (t) => {
  const store = new MemoryStore()
  // Logged in while the app still signed with the old secret.
  const before = await startApp({ session: { secret: OLD_SECRET, store } })
  const cookie = await before.login('ada')
  await before.close()
  const oldSigned = new Signer(OLD_SECRET)
  const value = cookieValueOf(cookie)
  assert.equal(oldSigned.unsign(value).valid, true, 'the cookie is signed with the old secret')
  assert.equal(new Signer(SECRET).unsign(value).valid, false, 'and not with the new one')

  const app = await startApp({ session: { secret: [SECRET, OLD_SECRET], store } })
  t.after(() => app.close())
  await postEndsSocket(t, app.url, cookie, '/logout', LOGGED_OUT)
})

test('secret rotation: a session put in the store and signed with the old secret is logged out over HTTP and its socket ends', async (t) => {
  const store = new MemoryStore()
  const app = await startApp({ session: { secret: [SECRET, OLD_SECRET], store } })
  t.after(() => app.close())
  // A session written by a node that still signed with the old secret.
  const sessionId = randomUUID()
  await new Promise<void>((resolve, reject) => store.set(sessionId, {
    cookie: { originalMaxAge: 60_000, expires: new Date(Date.now() + 60_000), path: '/', httpOnly: true, secure: false },
    user: { name: 'ada', role: 'user' }
  } as never, (err) => (err ? reject(err) : resolve())))
  const cookie = `sessionId=${encodeURIComponent(new Signer(OLD_SECRET).sign(sessionId))}`
  await postEndsSocket(t, app.url, cookie, '/logout', { reason: 'logout', disconnect: 'io server disconnect' })
})
