import type { EventEmitter } from 'node:events'
import type { Namespace } from 'socket.io'
import type { SessionSocket, SessionSocketServer } from './types'
import { namespacesOf, prependNamespaceMiddleware } from './upstream/socket-io'

type Middleware = Parameters<Namespace['use']>[0]

/**
 * Puts the guard in front of every namespace: those that exist now, those
 * created later with `io.of()`, and the children of dynamic (regex or
 * function) namespaces, which Socket.IO creates on first connect.
 *
 * The guard goes first in the middleware list, even on a server another plugin
 * created and gave middleware to already: no middleware or handler of the app
 * ever sees a socket the session has not admitted.
 */
export function guardEveryNamespace (io: SessionSocketServer, guard: Middleware, onConnection: (socket: SessionSocket) => void): void {
  const guarded = new WeakSet<Namespace>()
  const install = (nsp: Namespace): void => {
    if (guarded.has(nsp)) return
    guarded.add(nsp)
    prependNamespaceMiddleware(nsp, guard)
    // 'connect' fires just before 'connection': first in line for both.
    ;(nsp as unknown as EventEmitter).prependListener('connect', onConnection)
  }
  for (const nsp of namespacesOf(io)) install(nsp)
  io.on('new_namespace', install)
}
