import { Agent, request } from 'node:http'
import { performance } from 'node:perf_hooks'
import { io, type Socket } from 'socket.io-client'
import { serve } from './ipc'

/**
 * The load generator, in a process of its own: real socket.io-client sockets
 * over the websocket transport to 127.0.0.1, a bounded number in flight.
 */

export interface LoginArgs { url: string, count: number, concurrency: number, /** Log out again: the cookie stays validly signed but names no session. */ stale?: boolean }
export interface HandshakeArgs { url: string, cookies: string[], count: number, concurrency: number }
export interface HandshakeBatch {
  /** Handshake latencies in ms, from io() to 'connect' or 'connect_error'. */
  latencies: number[]
  wallMs: number
  admitted: number
  refused: number
  /** connect_error messages and how often each came. */
  codes: Record<string, number>
}
export interface RevocationArgs { loginUrl: string, socketUrl: string, logoutUrl: string, count: number, warmup: number, timeoutMs: number }
export interface RevocationBatch {
  /** ms from the logout HTTP response (body read) to the client's 'disconnect'; negative when the disconnect came first. */
  afterResponse: number[]
  /** ms from sending the logout request to the client's 'disconnect'. */
  afterRequest: number[]
  missed: number
  reasons: Record<string, number>
  revokedEvents: number
}

let held: Socket[] = []

function open (url: string, cookie: string): Socket {
  return io(url, {
    transports: ['websocket'],
    forceNew: true,
    reconnection: false,
    timeout: 20_000,
    extraHeaders: { cookie }
  })
}

/** Runs `count` jobs with at most `concurrency` in flight. */
async function pool (count: number, concurrency: number, job: (index: number) => Promise<void>): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < count) await job(next++)
  }
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, count)) }, worker))
}

// Plain keep-alive HTTP (cheaper for the client than fetch, so logins do not dominate the run).
const agent = new Agent({ keepAlive: true, maxSockets: 64 })

function post (url: string, path: string, cookie?: string): Promise<{ status: number, setCookie: string[] }> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}${path}`, { method: 'POST', agent, headers: cookie === undefined ? {} : { cookie } }, (res) => {
      res.resume()
      res.once('end', () => resolve({ status: res.statusCode ?? 0, setCookie: res.headers['set-cookie'] ?? [] }))
      res.once('error', reject)
    })
    req.once('error', reject)
    req.end()
  })
}

async function login (url: string, stale: boolean): Promise<string> {
  const response = await post(url, '/login')
  const setCookie = response.setCookie[0]
  if (response.status !== 200 || setCookie === undefined) throw new Error(`login at ${url} failed: status ${response.status}`)
  const cookie = setCookie.split(';', 1)[0] as string
  if (stale) await logout(url, cookie)
  return cookie
}

async function logout (url: string, cookie: string): Promise<void> {
  const response = await post(url, '/logout', cookie)
  if (response.status !== 200) throw new Error(`logout at ${url} failed: status ${response.status}`)
}

async function logins ({ url, count, concurrency, stale }: LoginArgs): Promise<string[]> {
  const cookies = new Array<string>(count)
  await pool(count, concurrency, async (i) => { cookies[i] = await login(url, stale === true) })
  return cookies
}

/** Opens sockets and keeps them open (until closeAll), so closing is never inside the measured window. */
async function handshakes ({ url, cookies, count, concurrency }: HandshakeArgs): Promise<HandshakeBatch> {
  const latencies = new Array<number>(count)
  const codes: Record<string, number> = {}
  let admitted = 0
  let refused = 0
  const started = performance.now()
  await pool(count, concurrency, (i) => new Promise<void>((resolve) => {
    const t0 = performance.now()
    const socket = open(url, cookies[i % cookies.length] as string)
    held.push(socket)
    socket.once('connect', () => {
      latencies[i] = performance.now() - t0
      admitted++
      resolve()
    })
    socket.once('connect_error', (err: Error) => {
      latencies[i] = performance.now() - t0
      refused++
      codes[err.message] = (codes[err.message] ?? 0) + 1
      resolve()
    })
  }))
  return { latencies, wallMs: performance.now() - started, admitted, refused, codes }
}

function closeAll (): number {
  const count = held.length
  for (const socket of held) socket.close()
  held = []
  return count
}

async function revocations (args: RevocationArgs): Promise<RevocationBatch> {
  const result: RevocationBatch = { afterResponse: [], afterRequest: [], missed: 0, reasons: {}, revokedEvents: 0 }
  for (let i = 0; i < args.warmup + args.count; i++) {
    const measured = i >= args.warmup
    const cookie = await login(args.loginUrl, false)
    const socket = open(args.socketUrl, cookie)
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve())
      socket.once('connect_error', (err: Error) => reject(new Error(`revocation socket refused: ${err.message}`)))
    })
    let revoked = false
    socket.once('session:revoked', () => { revoked = true })
    const disconnected = new Promise<{ at: number, reason: string } | null>((resolve) => {
      const timer = setTimeout(() => resolve(null), args.timeoutMs)
      socket.once('disconnect', (reason: string) => {
        clearTimeout(timer)
        resolve({ at: performance.now(), reason })
      })
    })
    const sent = performance.now()
    await logout(args.logoutUrl, cookie)
    const answered = performance.now()
    const end = await disconnected
    socket.close()
    if (!measured) continue
    if (end === null) {
      result.missed++
      continue
    }
    result.afterResponse.push(end.at - answered)
    result.afterRequest.push(end.at - sent)
    result.reasons[end.reason] = (result.reasons[end.reason] ?? 0) + 1
    if (revoked) result.revokedEvents++
  }
  return result
}

serve({
  logins: (arg: LoginArgs) => logins(arg),
  handshakes: (arg: HandshakeArgs) => handshakes(arg),
  closeAll,
  revocations: (arg: RevocationArgs) => revocations(arg),
  exit: () => {
    closeAll()
    agent.destroy()
    setImmediate(() => process.exit(0))
  }
}, { pid: process.pid })
