import type { IncomingHttpHeaders } from 'node:http'
import type { Server } from 'socket.io'

/**
 * Runs the plugin's real handshake guard (the namespace middleware it puts
 * first on every namespace) on a synthetic connection, without a socket.
 *
 * Why: a property test needs tens of thousands of handshakes, and a real
 * Socket.IO handshake costs a TCP connection, an HTTP upgrade and an
 * Engine.IO open. The guard only reads `socket.request` (headers and the TCP
 * socket), `socket.conn` (the key it caches one verification per Engine.IO
 * connection under), `socket.nsp.name` and `socket.data`, so a plain object
 * with those fields runs every line of the verification: Origin policy,
 * cookie parsing with @fastify/cookie, signature check with @fastify/session's
 * signer, the read from @fastify/session's real store, expiry and rules.
 * End-to-end tests with real clients cover the wiring around it.
 */

export type GuardMiddleware = (socket: unknown, next: (err?: Error & { data?: unknown }) => void) => void

/** The guard the plugin installed on a namespace (found by its `admissionOf` method). */
export function guardOf (io: Server, namespace = '/'): GuardMiddleware {
  const fns = (io.of(namespace) as unknown as { _fns?: unknown })._fns
  if (!Array.isArray(fns)) throw new Error('Socket.IO namespace has no middleware list (_fns): the probe needs updating')
  const guard = fns.find((fn: unknown) => typeof fn === 'function' && typeof (fn as { admissionOf?: unknown }).admissionOf === 'function')
  if (guard === undefined) throw new Error(`no session guard on namespace ${namespace}`)
  if (fns[0] !== guard) throw new Error(`the session guard is not the first middleware of ${namespace}`)
  return guard as GuardMiddleware
}

/** The fields of a Socket.IO socket the guard reads, for a handshake with these headers. */
export function probeSocket (headers: IncomingHttpHeaders, namespace = '/'): { request: object, conn: object, nsp: { name: string }, data: Record<string, unknown>, id: string, handshake: { headers: IncomingHttpHeaders } } {
  const request = { headers, socket: {}, method: 'GET', url: '/socket.io/?EIO=4&transport=websocket' }
  return { request, conn: {}, nsp: { name: namespace }, data: {}, id: 'probe', handshake: { headers } }
}

export type ProbeResult =
  | { admitted: true, session: { sessionId: string } & Record<string, unknown> }
  | { admitted: false, code: string, data: unknown }

/** Misbehaviour seen across all probes: `next()` called again after the verdict. */
export const probeFaults = { extraNextCalls: 0 }

/**
 * One handshake through the guard. Resolves with the verdict; rejects only if
 * the guard throws synchronously or never answers within `timeoutMs` (which
 * the property tests count as a failure). A second `next()` is counted in
 * `probeFaults`.
 */
export function probeHandshake (
  guard: GuardMiddleware,
  headers: IncomingHttpHeaders,
  options: { namespace?: string, timeoutMs?: number } = {}
): Promise<ProbeResult> {
  const socket = probeSocket(headers, options.namespace)
  const data = socket.data
  return new Promise((resolve, reject) => {
    let calls = 0
    const timer = setTimeout(() => reject(new Error(`guard did not call next() within ${options.timeoutMs ?? 10_000} ms`)), options.timeoutMs ?? 10_000)
    try {
      guard(socket, (err) => {
        calls++
        if (calls > 1) {
          probeFaults.extraNextCalls++
          return
        }
        clearTimeout(timer)
        if (err === undefined) {
          resolve({ admitted: true, session: data.session as { sessionId: string } & Record<string, unknown> })
        } else {
          resolve({ admitted: false, code: err.message, data: err.data })
        }
      })
    } catch (error) {
      clearTimeout(timer)
      reject(new Error(`guard threw synchronously: ${String(error)}`))
    }
  })
}
