import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { FastifySessionObject } from '@fastify/session'
import type { SessionAccess } from './store-access'
import { expiryOf } from './store-access'
import { sessionKey } from './hashed-ids'
import type { WriteGuard } from './write-guard'
import type { RevocationReason } from './types'

export interface HttpWatchDeps {
  access: SessionAccess
  writes: WriteGuard
  readCookieValue: (cookies: Record<string, string | undefined>) => string | undefined
  /** Ends the session's sockets on every node; resolves once overlapping socket writes are undone. */
  revoke: (key: string, reason: RevocationReason) => Promise<void>
  /** An HTTP request changed the session, or moved its expiry earlier: tell every node (this one included). */
  changed: (key: string, expiresAt: number) => void
}

/** The session a request arrived with, as @fastify/session restored it from the cookie. */
interface Arrival {
  sessionId: string
  hash: unknown
  expiresAt: number
  at: number
}

/**
 * Turns what routes do to `request.session` into what sockets must see, with
 * no app code: note which stored session a request arrived with, and look
 * again once @fastify/session has saved it (its onSend runs before ours).
 * - destroyed → the session's sockets end with 'logout';
 * - regenerated → they end with 'regenerate';
 * - changed and saved → socket writes that read before the change are refused,
 *   and one that overlapped it is followed by the HTTP change again; an
 *   earlier expiry reaches the sockets' timers on every node.
 */
export function watchHttpSessions (fastify: FastifyInstance, deps: HttpWatchDeps): void {
  const { access, writes, readCookieValue, revoke, changed } = deps
  const arrivals = new WeakMap<FastifyRequest, Arrival>()

  // Runs after @fastify/session's onRequest, which has loaded request.session.
  fastify.addHook('onRequest', (request, _reply, done) => {
    const session = request.session as FastifySessionObject | null | undefined
    const sessionId = session?.sessionId
    if (sessionId !== undefined) {
      const value = readCookieValue(request.cookies)
      // Only a session restored from the cookie can have sockets; a new one
      // cannot. Verified with the handshake's own unsign, so that custom
      // signers, prefixes and rotated secrets all count.
      if (value !== undefined && (value === session?.encryptedSessionId || access.unsign(value) === sessionId)) {
        const restored = session as FastifySessionObject
        arrivals.set(request, { sessionId, hash: access.persistedHash(restored), expiresAt: expiryOf({ cookie: restored.cookie }), at: Date.now() })
      }
    }
    done()
  })

  fastify.addHook('onSend', async (request) => {
    const arrival = arrivals.get(request)
    if (arrival === undefined) return
    const key = sessionKey(arrival.sessionId)
    const now = request.session as FastifySessionObject | null | undefined
    if (now === null || now === undefined) return revoke(key, 'logout')
    if (now.sessionId !== arrival.sessionId) return revoke(key, 'regenerate')
    // Only what reached the store counts (@fastify/session saved it in its onSend, before this one).
    if (!access.isSaved(now)) return
    const expiresAt = expiryOf({ cookie: now.cookie })
    // A shorter life (session.options({ maxAge })) must reach the sockets' timers now, not at revalidation.
    if (access.persistedHash(now) === arrival.hash && expiresAt >= arrival.expiresAt) return
    changed(key, expiresAt)
    return writes.changed(key, arrival.at, () => access.save(now))
  })
}
