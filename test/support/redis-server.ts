import { spawn, type ChildProcess } from 'node:child_process'
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs'
import { createConnection, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import type { TestContext } from 'node:test'

/**
 * A private redis-server for tests that stop and restart Redis: it listens on
 * its own spare loopback port and keeps nothing on disk, so the shared Redis
 * on 6379 is never touched. Killing it loses every key, as a crash of a Redis
 * without persistence would.
 */
export interface OwnRedis {
  readonly port: number
  readonly url: string
  /** Start (or start again, on the same port) and wait until it answers PING. */
  start (): Promise<void>
  /** Kill it without a chance to save anything (SIGKILL), and wait for the process to exit. */
  kill (): Promise<void>
  readonly running: boolean
  /** Kill if running and remove its working folder. */
  close (): Promise<void>
}

/** The redis-server binary on PATH (or $REDIS_SERVER), or undefined. */
export function redisServerBinary (): string | undefined {
  const candidates = process.env.REDIS_SERVER !== undefined
    ? [process.env.REDIS_SERVER]
    : (process.env.PATH ?? '').split(delimiter).filter(Boolean).map((dir) => join(dir, 'redis-server')).concat('/usr/bin/redis-server', '/usr/local/bin/redis-server')
  for (const candidate of candidates) {
    try {
      accessSync(candidate, constants.X_OK)
      return candidate
    } catch {}
  }
  return undefined
}

/**
 * The redis-server binary, or: skip with a message locally, fail under CI=true
 * (CI must run every test).
 */
export function needRedisServerBinary (t: TestContext): string | undefined {
  const binary = redisServerBinary()
  if (binary !== undefined) return binary
  const message = 'redis-server is not installed (apt-get install redis-server); this test starts its own'
  if (process.env.CI === 'true') throw new Error(`${message}; under CI=true this test must run`)
  t.skip(message)
  return undefined
}

/** A loopback port nothing listens on right now. */
export function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}

function ping (port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port })
    let answer = ''
    const done = (ok: boolean): void => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(timeoutMs, () => done(false))
    socket.once('error', () => done(false))
    socket.once('connect', () => socket.write('PING\r\n'))
    socket.on('data', (chunk) => {
      answer += chunk.toString('latin1')
      if (answer.includes('\r\n')) done(answer.startsWith('+PONG'))
    })
  })
}

const running = new Set<ChildProcess>()
// Never leave a redis-server behind, whatever happens to the test process.
process.once('exit', () => { for (const child of running) child.kill('SIGKILL') })

export async function startOwnRedis (binary: string, port?: number): Promise<OwnRedis> {
  const chosen = port ?? await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'own-redis-'))
  let child: ChildProcess | undefined

  const redis: OwnRedis = {
    port: chosen,
    url: `redis://127.0.0.1:${chosen}`,
    get running () { return child !== undefined },
    async start () {
      if (child !== undefined) throw new Error('own redis already running')
      const spawned = spawn(binary, [
        '--port', String(chosen), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
        '--dir', dir, '--daemonize', 'no', '--loglevel', 'warning'
      ], { stdio: ['ignore', 'ignore', 'pipe'] })
      let stderr = ''
      spawned.stderr?.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
      child = spawned
      running.add(spawned)
      spawned.once('exit', () => {
        running.delete(spawned)
        if (child === spawned) child = undefined
      })
      const deadline = Date.now() + 10_000
      while (!(await ping(chosen))) {
        if (child !== spawned) throw new Error(`redis-server exited on start (port ${chosen}): ${stderr}`)
        if (Date.now() > deadline) throw new Error(`redis-server did not answer PING on port ${chosen} within 10 s: ${stderr}`)
        await new Promise((resolve) => setTimeout(resolve, 25))
      }
    },
    async kill () {
      const current = child
      if (current === undefined) return
      const exited = new Promise((resolve) => current.once('exit', resolve))
      current.kill('SIGKILL')
      await exited
    },
    async close () {
      await redis.kill()
      rmSync(dir, { recursive: true, force: true })
    }
  }
  await redis.start()
  return redis
}
