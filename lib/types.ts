import type { FastifySessionObject } from '@fastify/session'
import type { DefaultEventsMap, Server, Socket } from 'socket.io'
// The interfaces an app augments live on the exported namespace (index.ts), where
// `declare module 'fastify-session-socket-auth'` reaches them.
import type plugin = require('./index')

/** An event map as declared, or Socket.IO's default when nothing is. */
type Declared<Events> = keyof Events extends never ? DefaultEventsMap : Events

/**
 * What this plugin puts in `socket.data`, beside the app's own `SocketData`.
 * `session` is @fastify/session's own session type, so fields declared by
 * augmenting `fastify`'s `Session` interface show up here without a cast.
 */
export interface SessionSocketData {
  session: FastifySessionObject
  /** The user `loadUser` (or the `passport` preset) loaded for this session; undefined when none is logged in. */
  user: User | undefined
}

type Listen = Declared<plugin.ClientToServerEvents>
type Emit = Declared<plugin.ServerToClientEvents>
type InterServer = Declared<plugin.InterServerEvents>
type Data = plugin.SocketData & SessionSocketData

/** The app's user type, as declared by augmenting `SocketUser`; `unknown` until it is. */
export type User = keyof plugin.SocketUser extends never ? unknown : plugin.SocketUser

export type SessionSocketServer = Server<Listen, Emit, InterServer, Data>
export type SessionSocket = Socket<Listen, Emit, InterServer, Data>

/** Why the server ended a socket's session; sent with the `session:revoked` event just before it disconnects. */
export type RevocationReason = 'logout' | 'regenerate' | 'expired' | 'revoked' | 'forbidden'

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
    /**
     * Disconnect every socket of a user (every session, every device), on every node, with `session:revoked`
     * and the reason (default `'revoked'`). The user's sessions stay in the store: destroy them too to log out everywhere.
     * @example
     * await fastify.disconnectUser(String(user.id), 'logout')
     */
    disconnectUser(userId: string | number, reason?: RevocationReason): Promise<void>
    /**
     * Load the user again and run the rules again for every socket of a user, on every node, after a change
     * made outside an HTTP request (a role changed in the database). Sockets whose rules no longer pass leave
     * that namespace with `session:revoked` `{ reason: 'forbidden' }`; the others are untouched.
     * @example
     * await db.setRole(userId, 'user'); await fastify.reauthorizeUser(userId)
     */
    reauthorizeUser(userId: string | number): Promise<void>
  }
}
