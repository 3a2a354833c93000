import type { IncomingMessage } from 'node:http'
import type { ServerOptions } from 'socket.io'
import type { OriginPolicy } from './options'
import type { RequestOrigin } from './upstream/fastify'

/** Why a request's origin was refused, for the log; undefined when it is allowed. */
export type OriginCheck = (request: IncomingMessage) => string | undefined

/**
 * Browsers send cookies with WebSockets and with no-cors requests (a
 * `<script src>`, an `<img>`, a form POST) from any page, so any page a user
 * visits could act as that user (cross-site WebSocket hijacking, or the same
 * over polling). Two headers tell such a request apart, and a page cannot forge
 * either: Origin, and Fetch Metadata's Sec-Fetch-Site.
 *
 * Allowed: the app's own origin (same scheme and host as Fastify sees them),
 * exact origins from `allowedOrigins` and from Socket.IO's `cors.origin` (so
 * CORS and this check are configured once), or what a function policy says.
 * Without Origin (browsers omit it on no-cors GETs): allowed unless
 * Sec-Fetch-Site says another site's or another origin's page sent it, as
 * OWASP's resource isolation policy does. No Origin and no Fetch Metadata at
 * all is not a browser (socket.io-client in Node, a mobile app): it cannot
 * ride a user's cookie, and is judged on its cookie alone.
 */
export function buildOriginCheck (
  policy: OriginPolicy | undefined,
  cors: ServerOptions['cors'],
  readOrigin: (request: IncomingMessage) => RequestOrigin
): OriginCheck {
  if (typeof policy === 'function') {
    return (request) => {
      const origin = request.headers.origin
      if (origin === undefined) return fetchMetadataRefusal(request)
      return policy(origin, request) === true ? undefined : 'origin refused by the allowedOrigins function'
    }
  }
  const listed = new Set<string>([...(policy ?? []), ...corsOrigins(cors)].map(normalize).filter((origin) => origin !== ''))
  // Every request of a connection is judged, and origins repeat (the app's
  // own, a few allowed ones): each is parsed once. Bounded, as a hostile
  // client may send a new one every time (and a long one): past the bound,
  // origins are parsed each time, as before.
  const seen = new Map<string, string>()
  const normalizeSeen = (origin: string): string => {
    let normalized = seen.get(origin)
    if (normalized === undefined) {
      normalized = normalize(origin)
      if (seen.size < 256 && origin.length <= 256) seen.set(origin, normalized)
    }
    return normalized
  }
  return (request) => {
    const origin = request.headers.origin
    if (origin === undefined) return fetchMetadataRefusal(request)
    const normalized = normalizeSeen(origin)
    if (normalized === '') return 'Origin is not a single scheme://host[:port]'
    if (listed.has(normalized)) return undefined
    const own = readOrigin(request)
    const ownOrigin = `${own.protocol}://${own.host}`
    // A Host-less request has no origin of its own to match.
    if (own.host.length !== 0 && normalized === normalizeSeen(ownOrigin)) return undefined
    return `Origin ${normalized} is neither this app's origin as Fastify sees it (${ownOrigin}) nor listed in allowedOrigins`
  }
}

function fetchMetadataRefusal (request: IncomingMessage): string | undefined {
  const site = request.headers['sec-fetch-site']
  // 'none' is a navigation the user started (address bar, bookmark).
  if (site === undefined || site === 'same-origin' || site === 'none') return undefined
  return `no Origin, and Sec-Fetch-Site is ${site}`
}

// An origin's scheme (RFC 3986): what a browser puts before "://".
const ORIGIN = /^([a-z][a-z0-9+.-]*):\/\/([^/?#@\s,]+)$/i
const DEFAULT_PORTS: Readonly<Record<string, string>> = { http: ':80', https: ':443' }

/**
 * Lower case, without the scheme's default port, so that `https://a.example`
 * and `https://a.example:443` compare equal. Anything that is not a single
 * `scheme://host[:port]` ("null" from sandboxed frames and file: pages, two
 * Origin headers joined by a comma) maps to an empty string, which matches
 * nothing.
 */
function normalize (origin: string): string {
  const match = ORIGIN.exec(origin)
  if (match === null) return ''
  const scheme = (match[1] as string).toLowerCase()
  const host = (match[2] as string).toLowerCase()
  const port = DEFAULT_PORTS[scheme]
  return `${scheme}://${port !== undefined && host.endsWith(port) ? host.slice(0, -port.length) : host}`
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
