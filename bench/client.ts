import { Agent, request } from 'node:http'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { io, Manager, type Socket } from 'socket.io-client'
import { serve } from './ipc'

/** The load: real socket.io-client sockets, websocket transport, 127.0.0.1, a bounded number in flight. */
export interface Batch { admitted: number, refused: number, codes: Record<string, number> }
export type Mode = 'held' | 'cycle'

const agent = new Agent({ keepAlive: true, maxSockets: 32 })
let held: Socket[] = []

const open = (url: string, cookie: string): Socket =>
  io(url, { transports: ['websocket'], forceNew: true, reconnection: false, timeout: 20_000, extraHeaders: { cookie } })

function post (url: string, cookie?: string): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    request(url, { method: 'POST', agent, headers: cookie === undefined ? {} : { cookie } }, (res) => {
      res.resume().once('end', () => res.statusCode === 200 ? resolve(res.headers['set-cookie']?.[0]?.split(';', 1)[0]) : reject(new Error(`${url}: ${res.statusCode}`)))
    }).once('error', reject).end()
  })
}

async function pool (count: number, concurrency: number, job: (i: number) => Promise<void>): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => { while (next < count) await job(next++) }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker))
}

const connected = (socket: Socket): Promise<void> => new Promise((resolve, reject) => {
  socket.once('connect', resolve)
  socket.once('connect_error', reject)
})

/** Resolves with the time of the socket's 'disconnect', or NaN after 2 s. */
const disconnected = (socket: Socket): Promise<number> => new Promise((resolve) => {
  const timer = setTimeout(() => resolve(NaN), 2000)
  socket.once('disconnect', () => { clearTimeout(timer); resolve(performance.now()) })
})

async function logins ({ url, count, query = '' }: { url: string, count: number, query?: string }): Promise<string[]> {
  const cookies: string[] = []
  await pool(count, 16, async (i) => { cookies[i] = await post(`${url}/login${query}`) as string })
  return cookies
}

/** held: admitted sockets stay open until closeAll. cycle: each closes as soon as it is admitted. A refused one is closed at once. */
async function batch ({ url, cookies, count, concurrency, mode }: { url: string, cookies: string[], count: number, concurrency: number, mode: Mode }): Promise<Batch> {
  const result: Batch = { admitted: 0, refused: 0, codes: {} }
  await pool(count, concurrency, async (i) => {
    const socket = open(url, cookies[i % cookies.length] as string)
    try {
      await connected(socket)
      result.admitted++
      if (mode === 'held') held.push(socket)
      else socket.close()
    } catch (error) {
      result.refused++
      const code = (error as Error).message
      result.codes[code] = (result.codes[code] ?? 0) + 1
      socket.close()
    }
  })
  return result
}

/**
 * Revocation and users across two nodes A and B of one app (Redis store and adapter):
 * ms from sending the request on A to the disconnect of the socket(s) on B (and A).
 */
async function trial ({ kind, a, b }: { kind: 'logout' | 'demote' | 'disconnectUser', a: string, b: string }): Promise<number> {
  const id = Math.random().toString(36).slice(2)
  if (kind === 'disconnectUser') { // 3 sessions × 3 tabs, over both nodes
    const cookies = await Promise.all([0, 1, 2].map(() => post(`${a}/login?id=${id}`)))
    const sockets = cookies.flatMap((cookie, s) => [0, 1, 2].map((t) => open((s * 3 + t) % 2 === 0 ? a : b, cookie as string)))
    await Promise.all(sockets.map(connected))
    const ends = sockets.map(disconnected)
    const sent = performance.now()
    await post(`${a}/disconnect-user?id=${id}`)
    const last = Math.max(...await Promise.all(ends)) - sent
    for (const socket of sockets) socket.close()
    return last
  }
  const cookie = await post(`${a}/login?id=${id}&role=admin`) as string
  const manager = new Manager(b, { transports: ['websocket'], reconnection: false, extraHeaders: { cookie } })
  const main = manager.socket('/')
  const watched = kind === 'demote' ? manager.socket('/admin') : main
  await Promise.all([connected(main), connected(watched)])
  const end = disconnected(watched)
  const sent = performance.now()
  await post(`${a}/${kind}`, cookie)
  const ms = await end - sent
  // A demotion ends '/admin' only; '/' on the same connection stays.
  const ok = kind === 'logout' || main.connected
  main.close()
  watched.close()
  await sleep(1)
  return ok ? ms : NaN
}

serve({
  logins,
  batch,
  closeAll: () => { for (const socket of held) socket.close(); held = [] },
  trial,
  exit: () => setImmediate(() => process.exit(0))
}, {})
