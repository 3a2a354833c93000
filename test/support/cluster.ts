import { randomUUID } from 'node:crypto'
import type { TestContext } from 'node:test'
import { createClient, type RedisClientType } from 'redis'
import { RedisStore } from 'connect-redis'
import { createAdapter } from '@socket.io/redis-adapter'
import type { FastifySessionOptions } from '@fastify/session'
import type { Socket as ClientSocket } from 'socket.io-client'
import { startApp, type StartOptions, type TestApp } from './app'
import { REDIS_URL } from './services'

/**
 * Helpers for the live-session tests: watching how a client socket ends, and
 * Fastify nodes that share one Redis (session store + Socket.IO adapter).
 */

/** How a client socket ended: the `session:revoked` payload, then its disconnect, with timestamps. */
export interface Ending {
  reason: string | undefined
  revokedAt: number | undefined
  disconnect: string
  disconnectedAt: number
  /** The `session:revoked` event arrived before `disconnect`. */
  revokedFirst: boolean
}

/** Every `session:revoked` reason and `disconnect` reason the socket sees from now on. */
export function track (socket: ClientSocket): { revoked: string[], disconnected: string[] } {
  const seen = { revoked: [] as string[], disconnected: [] as string[] }
  socket.on('session:revoked', (payload: { reason: string }) => seen.revoked.push(payload.reason))
  socket.on('disconnect', (reason) => seen.disconnected.push(reason))
  return seen
}

/**
 * Starts watching a client socket now; resolves at its first `disconnect`
 * (rejects after `timeoutMs`). Call it before triggering the revocation.
 */
export function ending (socket: ClientSocket, timeoutMs = 5000): Promise<Ending> {
  return new Promise((resolve, reject) => {
    let reason: string | undefined
    let revokedAt: number | undefined
    const onRevoked = (payload: { reason?: string } | undefined): void => {
      reason = payload?.reason
      revokedAt = Date.now()
    }
    const timer = setTimeout(() => {
      socket.off('session:revoked', onRevoked)
      reject(new Error(`socket not disconnected within ${timeoutMs} ms (revoked: ${String(reason)})`))
    }, timeoutMs)
    socket.on('session:revoked', onRevoked)
    socket.once('disconnect', (disconnect: string) => {
      clearTimeout(timer)
      socket.off('session:revoked', onRevoked)
      const disconnectedAt = Date.now()
      resolve({ reason, revokedAt, disconnect, disconnectedAt, revokedFirst: revokedAt !== undefined && revokedAt <= disconnectedAt })
    })
  })
}

/**
 * Watches the socket, runs `revoke` (a logout, a regenerate, a
 * disconnectSession...) and resolves with how the socket then ended.
 */
export async function endingAfter (socket: ClientSocket, revoke: () => Promise<unknown>, timeoutMs = 5000): Promise<Ending> {
  const end = ending(socket, timeoutMs)
  try {
    await revoke()
  } catch (error) {
    end.catch(() => {})
    throw error
  }
  return await end
}

/** Resolves true if the socket stayed connected (no disconnect event) for `ms`. */
export function staysConnected (socket: ClientSocket, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    if (!socket.connected) return resolve(false)
    const onDisconnect = (): void => {
      clearTimeout(timer)
      resolve(false)
    }
    const timer = setTimeout(() => {
      socket.off('disconnect', onDisconnect)
      resolve(socket.connected)
    }, ms)
    socket.once('disconnect', onDisconnect)
  })
}

/** Prints a measured figure in the test output (node:test diagnostics). */
export function report (t: TestContext, text: string): void {
  t.diagnostic(`measured: ${text}`)
}

/** The `name=value` pair of a Set-Cookie header in a fetch response, ready to send back as a Cookie header. */
export function cookieFromResponse (response: Response, name = 'sessionId'): string {
  const header = response.headers.getSetCookie().find((line) => line.startsWith(`${name}=`))
  if (header === undefined) throw new Error(`response set no ${name} cookie (status ${response.status})`)
  return header.slice(0, header.indexOf(';'))
}

/** A unique prefix for Redis keys and channels, so tests sharing one Redis never meet. */
export function uniquePrefix (label: string): string {
  return `fssa-test:${label}:${randomUUID()}:`
}

const cleanups = new WeakMap<TestContext, Array<() => Promise<void>>>()

/**
 * Runs `fn` when the test ends, after everything registered later (last in,
 * first out: apps close before the Redis clients they use).
 */
export function deferCleanup (t: TestContext, fn: () => Promise<void>): void {
  let stack = cleanups.get(t)
  if (stack === undefined) {
    const fresh: Array<() => Promise<void>> = []
    stack = fresh
    cleanups.set(t, fresh)
    t.after(async () => {
      for (const cleanup of fresh.reverse()) await cleanup().catch(() => {})
    })
  }
  stack.push(fn)
}

/** A connected node-redis client; closed when the test ends. */
export async function redisClient (t: TestContext): Promise<RedisClientType> {
  const client: RedisClientType = createClient({ url: REDIS_URL })
  client.on('error', () => {}) // errors surface through the failing calls
  await client.connect()
  deferCleanup(t, async () => {
    if (client.isOpen) await client.close()
  })
  return client
}

/** Deletes every key under a prefix (only ours: never FLUSHALL a shared Redis). */
export async function deleteKeys (client: RedisClientType, prefix: string): Promise<void> {
  const keys: string[] = []
  for await (const batch of client.scanIterator({ MATCH: `${prefix}*`, COUNT: 100 })) keys.push(...batch)
  if (keys.length > 0) await client.del(keys)
}

export interface RedisNodeOptions extends StartOptions {
  /** Session key prefix (connect-redis `prefix`): the same on every node of one cluster. */
  sessionPrefix: string
  /** Redis adapter key (`createAdapter(..., { key })`): the same on every node of one cluster. Omit for no adapter. */
  adapterKey?: string
  /** Replace the store (e.g. a counting subclass of RedisStore). */
  makeStore?: (client: RedisClientType, prefix: string) => RedisStore
}

export interface RedisNode extends TestApp {
  store: RedisStore
  /** The node's own Redis client for the session store. */
  redis: RedisClientType
}

/**
 * A Fastify node whose sessions live in Redis (connect-redis) and, with
 * `adapterKey`, whose Socket.IO server uses @socket.io/redis-adapter. Each node
 * has its own Redis clients, as separate processes would. Closed when the test
 * ends (close() may also be called earlier; it is idempotent).
 */
export async function startRedisNode (t: TestContext, options: RedisNodeOptions): Promise<RedisNode> {
  const redis = await redisClient(t)
  const store = options.makeStore?.(redis, options.sessionPrefix) ?? new RedisStore({ client: redis, prefix: options.sessionPrefix })
  let adapter: StartOptions['auth'] = {}
  if (options.adapterKey !== undefined) {
    const pub = await redisClient(t)
    const sub = pub.duplicate()
    sub.on('error', () => {})
    await sub.connect()
    deferCleanup(t, async () => {
      if (sub.isOpen) await sub.close()
    })
    adapter = { adapter: createAdapter(pub, sub, { key: options.adapterKey }) }
  }
  const node = await startApp({
    ...options,
    session: { ...options.session, store: store as unknown as FastifySessionOptions['store'] },
    auth: { ...adapter, ...options.auth }
  })
  let closing: Promise<void> | undefined
  const close = (): Promise<void> => (closing ??= node.app.close())
  deferCleanup(t, close)
  return { ...node, close, store, redis }
}

/**
 * Two or more nodes of one cluster: same SECRET (startApp's), same session
 * prefix, same adapter key; Redis keys under the prefix are deleted afterwards.
 */
export async function startCluster (t: TestContext, count: number, options: Partial<RedisNodeOptions> = {}): Promise<RedisNode[]> {
  const sessionPrefix = options.sessionPrefix ?? uniquePrefix('sess')
  const adapterKey = options.adapterKey ?? uniquePrefix('adapter')
  const janitor = await redisClient(t)
  deferCleanup(t, () => deleteKeys(janitor, sessionPrefix))
  const nodes: RedisNode[] = []
  for (let i = 0; i < count; i++) nodes.push(await startRedisNode(t, { ...options, sessionPrefix, adapterKey }))
  return nodes
}
