import type { FastifySessionObject } from '@fastify/session'
import type { DefaultEventsMap, Server, Socket } from 'socket.io'
// The interfaces an app augments live on the exported namespace (index.ts), where
// `declare module 'fastify-session-socket-auth'` reaches them.
import type sessionSocketAuth = require('./index')

/** An event map as declared, or Socket.IO's default when nothing is. */
type Declared<Events> = keyof Events extends never ? DefaultEventsMap : Events

/**
 * What this plugin puts in `socket.data`, beside the app's own `SocketData`.
 * `session` is @fastify/session's own session type, so fields declared by
 * augmenting `fastify`'s `Session` interface show up here without a cast.
 */
export interface SessionSocketData {
  session: FastifySessionObject
}

type Listen = Declared<sessionSocketAuth.ClientToServerEvents>
type Emit = Declared<sessionSocketAuth.ServerToClientEvents>
type InterServer = Declared<sessionSocketAuth.InterServerEvents>
type Data = sessionSocketAuth.SocketData & SessionSocketData

export type SessionSocketServer = Server<Listen, Emit, InterServer, Data>
export type SessionSocket = Socket<Listen, Emit, InterServer, Data>

/** Why the server ended a socket's session; sent with the `session:revoked` event just before it disconnects. */
export type RevocationReason = 'logout' | 'regenerate' | 'expired' | 'revoked'

export interface RevokedPayload {
  reason: RevocationReason
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The Socket.IO server, every namespace guarded by the session, typed by the app's declared events. */
    io: SessionSocketServer
    /**
     * Disconnect every socket of a session, on every node, with reason `revoked`.
     * @example
     * await fastify.disconnectSession(request.session.sessionId) // "log out everywhere"
     */
    disconnectSession(sessionId: string): Promise<void>
  }
}
