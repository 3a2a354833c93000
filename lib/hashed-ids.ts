import * as crypto from 'node:crypto'

// crypto.hash (Node 20.12+) is the one-shot form, a third of createHash's cost.
const sha256 = typeof crypto.hash === 'function'
  ? (text: string): string => crypto.hash('sha256', text, 'base64url')
  : (text: string): string => crypto.createHash('sha256').update(text).digest('base64url')

/**
 * A stand-in for a session id that is safe to log, to use in room names and to
 * send between nodes: the first 128 bits of its SHA-256. Session ids are long
 * random strings, so the hash gives nothing back, yet every node derives the
 * same key for the same session without sharing a secret.
 */
export function sessionKey (sessionId: string): string {
  return sha256(sessionId).slice(0, 22)
}

/**
 * The room that holds every socket of a session, on every node.
 * @example
 * fastify.io.to(sessionRoom(request.session.sessionId)).emit('notice', 'saved')
 */
export function sessionRoom (sessionId: string): string {
  return roomOfKey(sessionKey(sessionId))
}

export function roomOfKey (key: string): string {
  return `session:${key}`
}

/**
 * The same stand-in for a user id: every node derives it, and a room named
 * with it does not reveal the id.
 */
export function userKey (userId: string | number): string {
  return sha256(`user:${String(userId)}`).slice(0, 22)
}

/**
 * The room that holds every socket of a user (every session, every device), on every node.
 * @example
 * fastify.io.to(userRoom(user.id)).emit('notice', 'your export is ready')
 */
export function userRoom (userId: string | number): string {
  return roomOfUserKey(userKey(userId))
}

export function roomOfUserKey (key: string): string {
  return `user:${key}`
}
