/**
 * The server side of test/slow/soak.test.ts, in its own process so that its heap
 * holds only the server (the clients live in the test process) and so that it
 * can run with --expose-gc. Started by the test with `startChild` (./child-process)
 * and --expose-gc; it announces its url, and its commands are below.
 */
import { setImmediate as tick } from 'node:timers/promises'
import type { EventEmitter } from 'node:events'
import { registryStats, startApp } from './app'
import { serve } from './child-process'
import { LEVEL, logCapture, watchProcess } from './health'

export interface SoakSnapshot {
  heapUsed: number
  counts: Record<string, number>
  errorsLogged: string[]
  problems: string[]
}

export interface SoakReady { url: string }
export interface SoakCommands {
  /** Session cookies of `count` users, soak-0 to soak-<count - 1>. */
  login (count: number): Promise<string[]>
  /** The heap (after several GCs with `gc`), the counts, and what went wrong so far. */
  snapshot (gc: boolean): Promise<SoakSnapshot>
}

const gc = (globalThis as { gc?: () => void }).gc

serve<SoakReady, SoakCommands>(async () => {
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

  return {
    ready: { url: t.url },
    commands: {
      async login (count) {
        const cookies: string[] = []
        for (let i = 0; i < count; i++) cookies.push(await t.login(`soak-${i}`))
        return cookies
      },
      async snapshot (collect) {
        return {
          heapUsed: collect ? await heapAfterGc() : process.memoryUsage().heapUsed,
          counts: counts(),
          errorsLogged: logs.atLeast(LEVEL.error).map((line) => String(line.msg)),
          problems: health.problems
        }
      }
    }
  }
})
