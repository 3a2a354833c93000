// Runs test/fixtures/dual-stack-app.ts in a child process whose `localhost`
// resolves to 127.0.0.1 and ::1 (preload test/fixtures/localhost-dual-stack.mjs),
// so that Fastify's listen({ host: 'localhost' }) binds a server on each.
import { fork, type ChildProcess } from 'node:child_process'
import { createServer } from 'node:net'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import type { ChildMessage, ParentMessage } from '../fixtures/dual-stack-app'

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
  child: ChildProcess
  port: number
  addresses: Array<{ address: string, family: string, port: number }>
  /** http://127.0.0.1:PORT or http://[::1]:PORT */
  urlOf (loopback: typeof LOOPBACKS[number]): string
  /** A session cookie from the child's app (plugin mode). */
  login (): Promise<string>
  /** Sends 'close' (the child runs app.close()); resolves when the child says it closed. */
  close (): Promise<void>
  /** Resolves with the exit code once the child has exited. */
  exited: Promise<number | null>
  stderr (): string
}

/** Starts the fixture in `mode` and waits until it listens; the child is killed after the test if it is still running. */
export async function startDualStackApp (t: TestContext, mode: 'plugin' | 'example'): Promise<DualStackApp> {
  const child = fork(join(FIXTURES, 'dual-stack-app.ts'), [mode], {
    execArgv: ['--import', 'tsx', '--import', join(FIXTURES, 'localhost-dual-stack.mjs')],
    stdio: ['ignore', 'pipe', 'pipe', 'ipc']
  })
  let stderr = ''
  child.stderr?.setEncoding('utf8')
  child.stderr?.on('data', (chunk: string) => { stderr += chunk })
  child.stdout?.resume()
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })

  const ready = await new Promise<Extract<ChildMessage, { type: 'ready' }>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the dual-stack app did not start within 20 s: ${stderr}`)), 20_000)
    child.on('message', (message: ChildMessage) => {
      if (message.type !== 'ready') return
      clearTimeout(timer)
      resolve(message)
    })
    exited.then((code) => {
      clearTimeout(timer)
      reject(new Error(`the dual-stack app exited (${code}) before listening: ${stderr}`))
    }, reject)
  })

  let nextId = 0
  const ask = <T extends ChildMessage>(message: ParentMessage, answer: (reply: ChildMessage) => reply is T): Promise<T> => new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer to ${message.type} within 10 s: ${stderr}`)), 10_000)
    const onMessage = (reply: ChildMessage): void => {
      if (!answer(reply)) return
      clearTimeout(timer)
      child.off('message', onMessage)
      resolve(reply)
    }
    child.on('message', onMessage)
    child.send(message)
  })

  return {
    child,
    port: ready.port,
    addresses: ready.addresses,
    urlOf: (loopback) => `http://${loopback.urlHost}:${ready.port}`,
    async login () {
      const id = ++nextId
      const reply = await ask({ type: 'login', id }, (m): m is Extract<ChildMessage, { type: 'login' }> => m.type === 'login' && m.id === id)
      return reply.cookie
    },
    async close () {
      await ask({ type: 'close' }, (m): m is Extract<ChildMessage, { type: 'closed' }> => m.type === 'closed')
    },
    exited,
    stderr: () => stderr
  }
}
