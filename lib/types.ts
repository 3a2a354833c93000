import type { FastifySessionObject } from '@fastify/session'
import type { DefaultEventsMap, Server, Socket } from 'socket.io'

/**
 * What this plugin puts in `socket.data`. `session` is @fastify/session's own
 * session type, so fields declared by augmenting `fastify`'s `Session`
 * interface show up here without a cast.
 */
export interface SessionSocketData {
  session: FastifySessionObject
}

export type SessionSocketServer = Server<DefaultEventsMap, DefaultEventsMap, DefaultEventsMap, SessionSocketData>
export type SessionSocket = Socket<DefaultEventsMap, DefaultEventsMap, DefaultEventsMap, SessionSocketData>

/** Why the server ended a socket's session; sent with the `session:revoked` event just before it disconnects. */
export type RevocationReason = 'logout' | 'regenerate' | 'expired' | 'revoked'

export interface RevokedPayload {
  reason: RevocationReason
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The Socket.IO server, every namespace guarded by the session. */
    io: SessionSocketServer
    /**
     * Disconnect every socket of a session, on every node, with reason `revoked`.
     * @example
     * await fastify.disconnectSession(request.session.sessionId) // "log out everywhere"
     */
    disconnectSession(sessionId: string): Promise<void>
  }
}
