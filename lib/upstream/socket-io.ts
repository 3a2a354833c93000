import type { IncomingMessage } from 'node:http'
import type { Namespace, Server } from 'socket.io'
import { UnsupportedUpstreamError } from '../errors'

/**
 * The only place that touches Socket.IO's and Engine.IO's internals. Each
 * helper says which private it reads and what public API would replace it
 * (collected in docs/upstream.md).
 */

type Middleware = Parameters<Namespace['use']>[0]
type EngineMiddleware = Parameters<Server['engine']['use']>[0]

/**
 * Puts a middleware first on a namespace (private `_fns`), so that no
 * middleware another plugin added earlier sees a socket before the session
 * check. Public replacement: `nsp.use(fn, { prepend: true })`.
 */
export function prependNamespaceMiddleware (nsp: Namespace, fn: Middleware): void {
  const fns = (nsp as unknown as { _fns?: unknown })._fns
  if (!Array.isArray(fns)) throw new UnsupportedUpstreamError('socket.io', 'a namespace has no middleware list (_fns)')
  fns.unshift(fn)
}

/** The namespaces that exist now (private `_nsps`). Public replacement: `io.namespaces()`. */
export function namespacesOf (io: Server): Namespace[] {
  const nsps = (io as unknown as { _nsps?: unknown })._nsps
  if (!(nsps instanceof Map)) throw new UnsupportedUpstreamError('socket.io', 'the server has no namespace map (_nsps)')
  return [...nsps.values()] as Namespace[]
}

/**
 * Puts a middleware first on Engine.IO (its `middlewares` list, protected), so
 * that it judges every HTTP request before any other. Public replacement:
 * `engine.use(fn, { prepend: true })`.
 */
export function prependEngineMiddleware (io: Server, fn: EngineMiddleware): void {
  const list = (io.engine as unknown as { middlewares?: unknown }).middlewares
  if (!Array.isArray(list)) throw new UnsupportedUpstreamError('engine.io', 'the server has no middleware list')
  list.unshift(fn)
}

/**
 * The query of an Engine.IO HTTP request as Engine.IO parsed it (private
 * `_query`, set before middlewares run); parsed here from the URL if it ever
 * is not, so the request gate never judges a request without its query.
 * Public replacement: the parsed query handed to `engine.use` middleware.
 */
export function engineQuery (request: IncomingMessage): Readonly<Record<string, unknown>> {
  const parsed = (request as { _query?: unknown })._query
  if (parsed !== null && typeof parsed === 'object') return parsed as Record<string, unknown>
  return Object.fromEntries(new URL(request.url ?? '/', 'http://engine.invalid').searchParams)
}

/**
 * Whether the server replays a reconnecting client's missed packets and
 * rooms (`opts.connectionStateRecovery`, private). Socket.IO does that while
 * building the socket, before any middleware runs, so no session check can
 * come first.
 */
export function recoversConnectionState (io: Server): boolean {
  const opts = (io as unknown as { opts?: { connectionStateRecovery?: unknown } }).opts
  return Boolean(opts?.connectionStateRecovery)
}

/** Whether Engine.IO accepts protocol v3 (Socket.IO v2) clients (`engine.opts.allowEIO3`, private). */
export function acceptsEio3 (io: Server): boolean {
  const opts = (io.engine as unknown as { opts?: { allowEIO3?: unknown } }).opts
  return opts?.allowEIO3 === true
}

/**
 * Ends Engine.IO's wait (up to 30 s, on a timer that keeps the process alive)
 * for polling clients to fetch their close packet, once the HTTP server is
 * closed and they never will (private `clients`, `transport.shouldClose`).
 */
export function endPollingWaits (io: Server): void {
  const clients = (io.engine as unknown as { clients?: Record<string, { transport?: { shouldClose?: () => void } }> }).clients
  for (const client of Object.values(clients ?? {})) client.transport?.shouldClose?.()
}

/**
 * Whether a value is a Socket.IO server, by what it does rather than by
 * `instanceof`: the app's copy of socket.io and a plugin's could be two.
 */
export function isSocketIoServer (value: unknown): value is Server {
  const io = value as Partial<Server> | null
  return typeof io === 'object' && io !== null && typeof io.of === 'function' && typeof io.use === 'function' &&
    typeof io.serverSideEmit === 'function' && typeof io.engine?.use === 'function'
}

/**
 * Whether an adapter reaches other nodes: a cluster adapter overrides
 * `serverSideEmit`, which the in-memory adapter (the class that defines the
 * room bookkeeping, `addAll`) only warns about. Judged by where the methods
 * are defined, not by the identity of socket.io-adapter's class, which may
 * be loaded twice.
 */
export function reachesOtherNodes (adapter: object): boolean {
  return definedOn(adapter, 'serverSideEmit') !== definedOn(adapter, 'addAll')
}

function definedOn (object: object, name: string): object | null {
  for (let proto = Object.getPrototypeOf(object) as object | null; proto !== null; proto = Object.getPrototypeOf(proto)) {
    if (Object.hasOwn(proto, name)) return proto
  }
  return null
}
