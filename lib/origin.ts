import type { IncomingMessage } from 'node:http'
import type { ServerOptions } from 'socket.io'
import type { OriginPolicy } from './options'

export type OriginCheck = (request: IncomingMessage) => boolean

/**
 * Browsers apply no CORS to WebSockets and send cookies with them, so any page
 * a user visits could open a socket as that user (cross-site WebSocket
 * hijacking). The Origin header is the one thing such a page cannot forge.
 *
 * Allowed: no Origin at all (not a browser; it cannot ride a user's cookie),
 * the app's own origin (Origin's host equals the Host header), exact origins
 * from `allowedOrigins`, and exact origins already listed in Socket.IO's
 * `cors.origin`, so that CORS and this check are configured once.
 * A function policy decides alone for every request that carries an Origin.
 */
export function buildOriginCheck (policy: OriginPolicy | undefined, cors: ServerOptions['cors']): OriginCheck {
  if (typeof policy === 'function') {
    return (request) => {
      const origin = request.headers.origin
      return origin === undefined || policy(origin, request) === true
    }
  }
  const listed = new Set<string>([...(policy ?? []), ...corsOrigins(cors)].map((origin) => origin.toLowerCase()))
  return (request) => {
    const origin = request.headers.origin
    if (origin === undefined) return true
    if (listed.size !== 0 && listed.has(origin.toLowerCase())) return true
    return isSameOrigin(origin, request)
  }
}

// An origin's scheme (RFC 3986): what a browser puts before "://".
const SCHEME = /^[a-z][a-z0-9+.-]*$/i

// Behind a proxy that rewrites Host, list the public origin in allowedOrigins.
function isSameOrigin (origin: string, request: IncomingMessage): boolean {
  const scheme = origin.indexOf('://')
  // "null" (sandboxed frames, file: pages) and anything else unparsable is not our origin,
  // nor are two Origin headers joined by a comma ("null, http://host").
  if (scheme <= 0 || !SCHEME.test(origin.slice(0, scheme))) return false
  const host = request.headers.host
  return host !== undefined && host.length > 0 && origin.slice(scheme + 3).toLowerCase() === host.toLowerCase()
}

function corsOrigins (cors: ServerOptions['cors']): string[] {
  if (cors === undefined || typeof cors === 'function') return []
  const origin = cors.origin
  // Wildcards and functions say "anyone may read", which is no reason to let
  // anyone ride a user's cookie: only exact origins carry over.
  if (typeof origin === 'string') return origin === '*' ? [] : [origin]
  if (Array.isArray(origin)) return origin.filter((entry): entry is string => typeof entry === 'string' && entry !== '*')
  return []
}
