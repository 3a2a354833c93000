import { ServerResponse, type IncomingMessage } from 'node:http'
import type { RefusalCode } from './errors'
import { REFUSALS, refusal as refusalError } from './errors'
import type { OriginCheck } from './origin'
import type { RefusalLog } from './refusal-log'
import { engineQuery } from './upstream/socket-io'

/** Engine.IO's middleware signature (`io.engine.use`). */
export type EngineMiddleware = (request: IncomingMessage, response: ServerResponse, next: (err?: Error) => void) => void

/**
 * Judges every HTTP request the Engine.IO endpoint serves, before Engine.IO
 * acts on it: the handshake, every polling GET and POST of a live connection,
 * and every WebSocket upgrade. A connection's id is a bearer token for it, so
 * a request that reuses it from a foreign page must be refused as surely as
 * the handshake was. Refused requests get a 403 with `{ code, message }`;
 * nothing reads the cookie or the store for them.
 */
export function createRequestGate (originRefusal: OriginCheck, logRefusal: RefusalLog): EngineMiddleware {
  return (request, response, next) => {
    const refusal = judge(request, originRefusal)
    if (refusal === undefined) return next()
    logRefusal(refusal.code, {
      reason: refusal.reason,
      origin: request.headers.origin,
      secFetchSite: request.headers['sec-fetch-site'],
      host: request.headers.host,
      method: request.method
    })
    refuse(request, response, refusal.code)
    // Engine.IO sees the response already sent (or the socket gone) and adds nothing.
    next(refusalError(refusal.code))
  }
}

function judge (request: IncomingMessage, originRefusal: OriginCheck): { code: RefusalCode, reason: string } | undefined {
  // Node keeps the first of two Host headers; a proxy may have used the last.
  if (countHostHeaders(request.rawHeaders) > 1) return { code: 'ORIGIN_NOT_ALLOWED', reason: 'two Host headers' }
  // JSONP answers with a script that any page may load and run, cookies
  // included: there is no Origin to judge, and its response is not protected
  // by CORS. Engine.IO clients since v4 never use it.
  if (engineQuery(request).j !== undefined) {
    return { code: 'JSONP_NOT_ALLOWED', reason: 'JSONP polling' }
  }
  const reason = originRefusal(request)
  return reason === undefined ? undefined : { code: 'ORIGIN_NOT_ALLOWED', reason }
}

function countHostHeaders (raw: string[]): number {
  let count = 0
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string
    if (name.length === 4 && name.toLowerCase() === 'host') count++
  }
  return count
}

function refuse (request: IncomingMessage, response: ServerResponse, code: RefusalCode): void {
  const body = JSON.stringify({ code, message: REFUSALS[code] })
  if (response instanceof ServerResponse) {
    response.writeHead(403, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' })
    response.end(body)
    return
  }
  // An upgrade: Engine.IO's stand-in response cannot send a status line.
  const socket = request.socket
  if (socket.writable) {
    socket.end(`HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`)
  }
}
