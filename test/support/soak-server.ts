/**
 * The server side of test/slow/soak.test.ts, in its own process so that its heap
 * holds only the server (the clients live in the test process) and so that it
 * can run with --expose-gc. Started by the test with
 *   node --expose-gc --import tsx test/support/soak-server.ts
 * and driven over IPC: { id, cmd: 'login' | 'snapshot' | 'close', ... }.
 */
import { setImmediate as tick } from 'node:timers/promises'
import type { EventEmitter } from 'node:events'
import { registryStats, startApp } from './app'
import { LEVEL, logCapture, watchProcess } from './health'

export interface SoakSnapshot {
  heapUsed: number
  counts: Record<string, number>
  errorsLogged: string[]
  problems: string[]
}

type Request =
  | { id: number, cmd: 'login', count: number }
  | { id: number, cmd: 'snapshot', gc: boolean }
  | { id: number, cmd: 'close' }

const gc = (globalThis as { gc?: () => void }).gc

async function main (): Promise<void> {
  if (typeof process.send !== 'function') throw new Error('soak-server must be started with an IPC channel')
  const send = process.send.bind(process)
  const logs = logCapture()
  const health = watchProcess()
  const t = await startApp({
    fastify: { logger: { level: 'warn', stream: logs.stream } },
    session: { cookie: { secure: false, maxAge: 3_600_000 } },
    // Short rounds, so revalidation timers come and go many times during the soak.
    auth: { revalidateInterval: Number(process.env.SOAK_REVALIDATE ?? 300) }
  })
  // Typical app code: a handler per socket that the socket's end must release.
  t.app.io.on('connection', (socket) => {
    socket.on('echo', (value: unknown, ack: (value: unknown) => void) => { if (typeof ack === 'function') ack(value) })
  })

  const io = t.app.io
  const listeners = (emitter: EventEmitter): number =>
    emitter.eventNames().reduce((sum, name) => sum + emitter.listenerCount(name), 0)

  function counts (): Record<string, number> {
    const nsp = io.of('/')
    const stats = registryStats(t.app)
    const resources: Record<string, number> = {}
    for (const type of process.getActiveResourcesInfo()) resources[type] = (resources[type] ?? 0) + 1
    return {
      'engine.clients': io.engine.clientsCount,
      'namespace.sockets': nsp.sockets.size,
      'adapter.rooms': nsp.adapter.rooms.size,
      'adapter.sids': nsp.adapter.sids.size,
      'registry.sessions': stats.sessions,
      'registry.timers': stats.timers,
      'listeners.io': listeners(io as unknown as EventEmitter),
      'listeners.namespace': listeners(nsp as unknown as EventEmitter),
      'listeners.engine': listeners(io.engine as unknown as EventEmitter),
      'listeners.httpServer': listeners(t.app.server),
      'listeners.process': listeners(process),
      'active.timers': resources.Timeout ?? 0,
      'active.tcpSockets': resources.TCPSocketWrap ?? 0,
      'active.immediates': resources.Immediate ?? 0
    }
  }

  async function heapAfterGc (): Promise<number> {
    if (gc === undefined) throw new Error('soak-server needs --expose-gc')
    // Several full collections with turns of the event loop in between, so
    // that finalizers and weak references settle; the lowest reading is kept.
    let lowest = Infinity
    for (let i = 0; i < 6; i++) {
      gc()
      await tick()
      await new Promise((resolve) => setTimeout(resolve, 20))
      lowest = Math.min(lowest, process.memoryUsage().heapUsed)
    }
    return lowest
  }

  process.on('message', (message: Request) => {
    (async () => {
      switch (message.cmd) {
        case 'login': {
          const cookies: string[] = []
          for (let i = 0; i < message.count; i++) cookies.push(await t.login(`soak-${i}`))
          send({ id: message.id, cookies })
          break
        }
        case 'snapshot': {
          const heapUsed = message.gc ? await heapAfterGc() : process.memoryUsage().heapUsed
          const snapshot: SoakSnapshot = {
            heapUsed,
            counts: counts(),
            errorsLogged: logs.atLeast(LEVEL.error).map((line) => String(line.msg)),
            problems: health.problems
          }
          send({ id: message.id, snapshot })
          break
        }
        case 'close':
          await t.close()
          health.stop()
          send({ id: message.id, closed: true }, () => process.exit(0))
          break
      }
    })().catch((error: unknown) => {
      console.error('soak-server:', error)
      process.exit(1)
    })
  })
  send({ ready: true, url: t.url })
}

main().catch((error: unknown) => {
  console.error(error)
  process.exit(1)
})
