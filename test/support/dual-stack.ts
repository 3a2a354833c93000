// Runs test/fixtures/dual-stack-app.ts in a child process whose `localhost`
// resolves to 127.0.0.1 and ::1 (preload test/fixtures/localhost-dual-stack.mjs),
// so that Fastify's listen({ host: 'localhost' }) binds a server on each.
import { createServer } from 'node:net'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import type { DualStackCommands, DualStackReady } from '../fixtures/dual-stack-app'
import { startChild } from './child-process'

const FIXTURES = join(__dirname, '..', 'fixtures')

/** The two loopback origins a dual-stack `localhost` app answers on. */
export const LOOPBACKS = [
  { name: '127.0.0.1', address: '127.0.0.1', urlHost: '127.0.0.1' },
  { name: '::1', address: '::1', urlHost: '[::1]' }
] as const

/**
 * True when a server can bind ::1 here. Otherwise the test skips with a
 * message; under CI=true it fails instead, because CI must run every test.
 */
export async function needIpv6Loopback (t: TestContext): Promise<boolean> {
  const error = await new Promise<Error | undefined>((resolve) => {
    const server = createServer()
    server.once('error', resolve)
    server.listen(0, '::1', () => server.close(() => resolve(undefined)))
  })
  if (error === undefined) return true
  const message = `the IPv6 loopback ::1 cannot be bound here (${error.message}); enable IPv6 on lo to run the dual-stack tests`
  if (process.env.CI === 'true') throw new Error(`${message}; under CI=true this test must run`)
  t.skip(message)
  return false
}

export interface DualStackApp {
  port: number
  addresses: DualStackReady['addresses']
  /** http://127.0.0.1:PORT or http://[::1]:PORT */
  urlOf (loopback: typeof LOOPBACKS[number]): string
  /** A session cookie from the child's app (plugin mode). */
  login (): Promise<string>
  /** The child runs app.close(); resolves once it has. */
  close (): Promise<void>
  /** Resolves with the exit code once the child has exited. */
  exited: Promise<number | null>
  stderr (): string
}

/** Starts the fixture in `mode` and waits until it listens; the child is killed after the test if it is still running. */
export async function startDualStackApp (t: TestContext, mode: 'plugin' | 'example'): Promise<DualStackApp> {
  const child = await startChild<DualStackReady, DualStackCommands>(t, join(FIXTURES, 'dual-stack-app.ts'), {
    args: [mode],
    execArgv: ['--import', join(FIXTURES, 'localhost-dual-stack.mjs')]
  })
  const { port, addresses } = child.ready
  return {
    port,
    addresses,
    urlOf: (loopback) => `http://${loopback.urlHost}:${port}`,
    login: () => child.call('login'),
    close: () => child.call('close'),
    exited: child.exited.then(({ code }) => code),
    stderr: child.stderr
  }
}
