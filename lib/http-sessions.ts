import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { FastifySessionObject } from '@fastify/session'
import { sessionKey } from './session-key'
import type { RevocationReason } from './types'

/**
 * Turns `request.session.destroy()` and `request.session.regenerate()` in any
 * route into the end of that session's sockets, with no app code: note which
 * stored session a request arrived with, and look again once the route is done.
 */
export function watchHttpSessions (
  fastify: FastifyInstance,
  readCookieValue: (cookies: Record<string, string | undefined>) => string | undefined,
  revoke: (key: string, reason: RevocationReason) => void
): void {
  const arrivedWith = new WeakMap<FastifyRequest, string>()

  // Runs after @fastify/session's onRequest, which has loaded request.session.
  fastify.addHook('onRequest', (request, _reply, done) => {
    const session = request.session as FastifySessionObject | null | undefined
    const value = session?.sessionId === undefined ? undefined : readCookieValue(request.cookies)
    // Only a session restored from the cookie can have sockets; a new one cannot.
    if (value !== undefined && value.slice(0, value.lastIndexOf('.')) === session?.sessionId) {
      arrivedWith.set(request, session.sessionId)
    }
    done()
  })

  fastify.addHook('onSend', (request, _reply, payload, done) => {
    const sessionId = arrivedWith.get(request)
    if (sessionId !== undefined) {
      const now = request.session as FastifySessionObject | null | undefined
      if (now === null || now === undefined) revoke(sessionKey(sessionId), 'logout')
      else if (now.sessionId !== sessionId) revoke(sessionKey(sessionId), 'regenerate')
    }
    done(null, payload)
  })
}
