import type { FastifyBaseLogger } from 'fastify'
import type { RefusalCode } from './errors'

/** What to change, for the developer reading the log. */
const FIXES: Readonly<Record<RefusalCode, string>> = {
  ORIGIN_NOT_ALLOWED: 'if this Origin is your front-end, add it to allowedOrigins; behind a proxy that rewrites Host or ends TLS, set Fastify\'s trustProxy',
  JSONP_NOT_ALLOWED: 'use socket.io-client 3 or later (it has no JSONP) with the default transports',
  SESSION_REQUIRED: 'log in over HTTP first; if the user did, the cookie did not reach the socket (cookie.secure on plain http, another origin without withCredentials, or a cookie path that excludes the Socket.IO path)',
  SESSION_INVALID: 'log in again; right after a login, check that every node shares the session store and secrets',
  FORBIDDEN: 'the authorize option or the namespace\'s rule did not return true for this session',
  USER_REQUIRED: 'the session has no user (loadUser or the passport deserializer gave none): log in first, or drop userRequired',
  USER_UNAVAILABLE: 'loadUser or a passport deserializer threw: see the error logged with it',
  SESSION_STORE_UNAVAILABLE: 'check the session store; it failed or did not answer within storeTimeout'
}

const WINDOW = 60_000

export type RefusalLog = (code: RefusalCode, details: Record<string, unknown>) => void

/**
 * Logs every refusal once, with what was compared and what to change. The
 * first `perMinute` in each minute go out at info, which a default logger
 * shows; the rest at debug, so that a flood of hostile requests cannot fill
 * the disk, and one info line says how many were held back.
 */
export function createRefusalLog (log: FastifyBaseLogger, perMinute = 20): RefusalLog {
  let windowStart = 0
  let count = 0
  return (code, details) => {
    const now = Date.now()
    if (now - windowStart >= WINDOW) {
      if (count > perMinute) log.info({ refusals: count - perMinute }, 'more refusals in the last minute were logged at debug level only')
      windowStart = now
      count = 0
    }
    count++
    const level = count <= perMinute ? 'info' : 'debug'
    log[level]({ code, ...details, fix: FIXES[code] }, 'refused')
  }
}
