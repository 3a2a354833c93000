import { createConnection } from 'node:net'
import type { TestContext } from 'node:test'

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
export const PG_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

/** Whether something accepts TCP connections at the URL's host and port (or `defaultPort`). */
export function reachable (url: string, defaultPort?: number, timeoutMs = 1000): Promise<boolean> {
  const { hostname, port } = new URL(url)
  return new Promise((resolve) => {
    const socket = createConnection({ host: hostname, port: Number(port || defaultPort) })
    const done = (ok: boolean): void => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(timeoutMs, () => done(false))
    socket.once('connect', () => done(true))
    socket.once('error', () => done(false))
  })
}

/**
 * Tests that need a service call this first. Without the service they skip
 * with a message saying how to start it; under CI=true they fail instead,
 * because CI must run every test.
 */
async function need (t: TestContext, name: string, url: string, start: string): Promise<boolean> {
  const { hostname, port } = new URL(url)
  if (await reachable(url)) return true
  const message = `${name} is not reachable at ${hostname}:${port} (start it with: ${start})`
  if (process.env.CI === 'true') throw new Error(`${message}; under CI=true this test must run`)
  t.skip(message)
  return false
}

export const needRedis = (t: TestContext): Promise<boolean> =>
  need(t, 'Redis', REDIS_URL, 'redis-server --daemonize yes --port 6379')

export const needPostgres = (t: TestContext): Promise<boolean> =>
  need(t, 'PostgreSQL', PG_URL, 'pg_ctlcluster <version> main start')
