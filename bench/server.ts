import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises'
import { serve } from './ipc'
import { startVariant, type ServerSpec } from './variants'

/**
 * One server variant in its own process. The orchestrator reads this
 * process's own CPU and memory accounting over IPC, so nothing the client
 * does is counted here.
 */
async function main (): Promise<void> {
  const spec = JSON.parse(process.argv[2] ?? '{}') as ServerSpec
  const server = await startVariant(spec)

  const collect = async (passes = 4): Promise<void> => {
    const gc = (globalThis as { gc?: () => void }).gc
    if (gc === undefined) throw new Error('bench server needs --expose-gc')
    // Several passes for memory figures: weak maps and finalizers release memory in later rounds.
    for (let i = 0; i < passes; i++) {
      gc()
      await nextTurn()
    }
  }

  serve({
    cpu: () => process.cpuUsage(),
    gc: (passes: number | null) => collect(passes ?? 4),
    memory: async () => {
      await collect()
      return process.memoryUsage()
    },
    counts: () => server.counts(),
    resetCounts: () => server.resetCounts(),
    clients: () => server.clients(),
    // Waits here rather than being polled over IPC, so the wait costs the server next to nothing.
    waitClients: async ({ count, timeoutMs }: { count: number, timeoutMs: number }) => {
      const deadline = Date.now() + timeoutMs
      while (server.clients() !== count && Date.now() < deadline) await sleep(5)
      return server.clients()
    },
    exit: async () => {
      await server.close()
      setImmediate(() => process.exit(0))
    }
  }, { url: server.url, pid: process.pid })
}

main().catch((error: unknown) => {
  console.error('bench server failed to start:', error)
  process.exit(1)
})
