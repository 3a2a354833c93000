// Refusals a developer can act on: each is logged once, at a level Fastify's
// default logger (info) shows, with the compared values and the fix; a flood is
// held to a few lines a minute at info, the rest at debug.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import { engineRequest, refusedWith, startApp } from './support/app'

interface Line { level: number, msg: string, plugin?: string, code?: string, reason?: string, origin?: string, fix?: string, refusals?: number }

function capture (): { stream: Writable, lines: Line[] } {
  const lines: Line[] = []
  const stream = new Writable({
    write (chunk: Buffer, _encoding, done) {
      for (const text of chunk.toString('utf8').split('\n')) if (text.length > 0) lines.push(JSON.parse(text) as Line)
      done()
    }
  })
  return { stream, lines }
}

const INFO = 30
const refusals = (lines: Line[]): Line[] => lines.filter((line) => line.msg === 'refused' && line.plugin === 'fastify-session-socket-auth')

test('with a default logger, a refused Origin is logged at info with both origins compared and the fix', async (t) => {
  const { stream, lines } = capture()
  const app = await startApp({ fastify: { logger: { stream } } })
  t.after(() => app.close())
  const answer = await engineRequest(app.url, 'transport=polling', { origin: 'https://front.example' })
  assert.equal(answer.status, 403)
  const [line] = refusals(lines)
  assert.ok(line !== undefined, 'the refusal was logged')
  assert.equal(line.level, INFO)
  assert.equal(line.code, 'ORIGIN_NOT_ALLOWED')
  assert.equal(line.origin, 'https://front.example')
  assert.match(line.reason ?? '', new RegExp(`https://front\\.example .*\\(${app.url.replace(/\./g, '\\.')}\\)`))
  assert.match(line.fix ?? '', /allowedOrigins/)
  assert.match(line.fix ?? '', /trustProxy/)
})

test('a session refusal is logged at info with its code and fix, without the cookie', async (t) => {
  const { stream, lines } = capture()
  const app = await startApp({ fastify: { logger: { stream } } })
  t.after(() => app.close())
  assert.equal((await refusedWith(app.url)).code, 'SESSION_REQUIRED')
  const [line] = refusals(lines)
  assert.equal(line?.level, INFO)
  assert.equal(line?.code, 'SESSION_REQUIRED')
  assert.match(line?.fix ?? '', /log in over HTTP first/)
})

test('a flood is held to 20 lines a minute at info; the rest go to debug', async (t) => {
  const { stream, lines } = capture()
  const app = await startApp({ fastify: { logger: { level: 'debug', stream } } })
  t.after(() => app.close())
  await Promise.all(Array.from({ length: 30 }, () => engineRequest(app.url, 'transport=polling&j=0')))
  const logged = refusals(lines)
  assert.equal(logged.length, 30, 'every refusal is logged once')
  assert.equal(logged.filter((line) => line.level === INFO).length, 20)
  assert.ok(logged.every((line) => line.code === 'JSONP_NOT_ALLOWED'))
})
