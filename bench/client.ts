import { Agent, request } from 'node:http'
import { performance } from 'node:perf_hooks'
import { io, Manager, type Socket } from 'socket.io-client'
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

export interface DemotionArgs {
  loginUrl: string
  socketUrl: string
  demoteUrl: string
  /** session: POST /demote changes the user's own session; reauthorize: POST /set-role changes the user database and calls reauthorizeUser. */
  mode: 'session' | 'reauthorize'
  count: number
  warmup: number
  timeoutMs: number
}
export interface DemotionBatch {
  /** ms from the demote HTTP response to the '/admin' socket's 'disconnect' (negative: the disconnect came first). */
  afterResponse: number[]
  /** ms from sending the demote request to that 'disconnect'. */
  afterRequest: number[]
  missed: number
  /** '/admin' disconnects that came with session:revoked { reason: 'forbidden' }. */
  forbidden: number
  /** Trials where '/' was not connected 50 ms after '/admin' left (it must stay). */
  mainLost: number
}
export interface UserDisconnectArgs { loginUrl: string, socketUrls: string[], disconnectUrl: string, sessions: number, tabs: number, count: number, warmup: number, timeoutMs: number }
export interface UserDisconnectBatch {
  /** ms from the disconnectUser HTTP response to the last of the user's sockets' 'disconnect'. */
  afterResponse: number[]
  afterRequest: number[]
  /** Trials where some socket was still connected at the timeout. */
  missed: number
  sockets: number
  /** Sockets that got session:revoked before their disconnect. */
  revokedEvents: number
  /** Sockets per node, in the first trial (to show the spread). */
  perNode: number[]
}

let held: Socket[] = []
let trialId = 0

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

async function login (url: string, stale: boolean, user?: { id: string, role: 'user' | 'admin' }): Promise<string> {
  const response = await post(url, user === undefined ? '/login' : `/login?id=${encodeURIComponent(user.id)}&role=${user.role}`)
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

function connected (socket: Socket): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (socket.connected) return resolve()
    socket.once('connect', () => resolve())
    socket.once('connect_error', (err: Error) => reject(new Error(`socket refused: ${err.message}`)))
  })
}

function disconnectedWithin (socket: Socket, timeoutMs: number): Promise<number | null> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), timeoutMs)
    socket.once('disconnect', () => {
      clearTimeout(timer)
      resolve(performance.now())
    })
  })
}

/**
 * Demotion across nodes: an admin's tab on `socketUrl` (node B) holds '/' and
 * '/admin' on one connection; the user's own session is changed over HTTP on
 * `demoteUrl` (node A). Timed to the '/admin' socket's disconnect.
 */
async function demotions (args: DemotionArgs): Promise<DemotionBatch> {
  const result: DemotionBatch = { afterResponse: [], afterRequest: [], missed: 0, forbidden: 0, mainLost: 0 }
  for (let i = 0; i < args.warmup + args.count; i++) {
    const measured = i >= args.warmup
    const id = `demoted-${process.pid}-${trialId++}`
    const cookie = await login(args.loginUrl, false, { id, role: 'admin' })
    const manager = new Manager(args.socketUrl, { transports: ['websocket'], reconnection: false, timeout: 20_000, extraHeaders: { cookie } })
    const main = manager.socket('/')
    const admin = manager.socket('/admin')
    await Promise.all([connected(main), connected(admin)])
    let reason: string | undefined
    admin.once('session:revoked', (payload: { reason: string }) => { reason = payload.reason })
    const left = disconnectedWithin(admin, args.timeoutMs)
    const sent = performance.now()
    const response = args.mode === 'session'
      ? await post(args.demoteUrl, '/demote', cookie)
      : await post(args.demoteUrl, `/set-role?id=${encodeURIComponent(id)}&role=user`)
    const answered = performance.now()
    if (response.status !== 200) throw new Error(`demote failed: status ${response.status}`)
    const at = await left
    if (at !== null) await new Promise((resolve) => setTimeout(resolve, 50))
    const mainStayed = main.connected
    main.close()
    admin.close()
    if (!measured) continue
    if (at === null) {
      result.missed++
      continue
    }
    result.afterResponse.push(at - answered)
    result.afterRequest.push(at - sent)
    if (reason === 'forbidden') result.forbidden++
    if (!mainStayed) result.mainLost++
  }
  return result
}

/**
 * disconnectUser: one user, `sessions` logins × `tabs` sockets each, spread
 * round-robin over `socketUrls`; timed to the last socket's disconnect.
 */
async function userDisconnects (args: UserDisconnectArgs): Promise<UserDisconnectBatch> {
  const result: UserDisconnectBatch = { afterResponse: [], afterRequest: [], missed: 0, sockets: args.sessions * args.tabs, revokedEvents: 0, perNode: args.socketUrls.map(() => 0) }
  for (let i = 0; i < args.warmup + args.count; i++) {
    const measured = i >= args.warmup
    const user = { id: `user-${process.pid}-${trialId++}`, role: 'user' as const }
    const cookies = await Promise.all(Array.from({ length: args.sessions }, () => login(args.loginUrl, false, user)))
    const sockets: Socket[] = []
    cookies.forEach((cookie, s) => {
      for (let t = 0; t < args.tabs; t++) {
        const node = (s * args.tabs + t) % args.socketUrls.length
        if (i === 0) result.perNode[node] = (result.perNode[node] ?? 0) + 1
        sockets.push(open(args.socketUrls[node] as string, cookie))
      }
    })
    await Promise.all(sockets.map(connected))
    let revoked = 0
    for (const socket of sockets) socket.once('session:revoked', () => { revoked++ })
    const ends = sockets.map((socket) => disconnectedWithin(socket, args.timeoutMs))
    const sent = performance.now()
    const response = await post(args.disconnectUrl, `/disconnect-user?id=${encodeURIComponent(user.id)}`)
    const answered = performance.now()
    if (response.status !== 200) throw new Error(`disconnect-user failed: status ${response.status}`)
    const times = await Promise.all(ends)
    for (const socket of sockets) socket.close()
    if (!measured) continue
    if (times.some((at) => at === null)) {
      result.missed++
      continue
    }
    const last = Math.max(...(times as number[]))
    result.afterResponse.push(last - answered)
    result.afterRequest.push(last - sent)
    result.revokedEvents += revoked
  }
  return result
}

serve({
  demotions: (arg: DemotionArgs) => demotions(arg),
  userDisconnects: (arg: UserDisconnectArgs) => userDisconnects(arg),
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
