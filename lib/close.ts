import type { FastifyInstance } from 'fastify'
import { endPollingWaits, namespacesOf } from './upstream/socket-io'
import type { SessionSocketServer } from './types'

export interface CloseOptions {
  /** Whether this plugin created the server (and so closes it), or adopted another plugin's. */
  owned: boolean
  /** The app's replacement for the pre-close disconnect, if any. */
  preClose: ((this: FastifyInstance, done: () => void) => void) | undefined
  /** The plugin's own cleanup (timers, registries), run on close whoever owns the server. */
  release: () => void
}

/**
 * `app.close()` ends this node's sockets and Engine.IO's waits, so that the
 * process can exit at once; another node's sockets are not touched.
 */
export function closeWithFastify (fastify: FastifyInstance, io: SessionSocketServer, { owned, preClose, release }: CloseOptions): void {
  if (owned) {
    fastify.addHook('preClose', (done) => {
      // The user's step replaces the disconnect, not the engine close: without
      // it, open WebSockets would hold server.close() until their heartbeat ends.
      if (preClose !== undefined) {
        return preClose.call(fastify, () => {
          io.engine.close()
          done()
        })
      }
      // Only this node's sockets: a node shutting down must not disconnect the cluster.
      // Every namespace: io.local is the main one only, and a socket elsewhere
      // would see a bare transport close instead of a server disconnect.
      for (const nsp of namespacesOf(io)) nsp.local.disconnectSockets(true)
      // Engine.IO connections that never joined a namespace would otherwise
      // hold server.close() open until their heartbeat times out.
      io.engine.close()
      done()
    })
  }
  fastify.addHook('onClose', (_instance, done) => {
    release()
    if (!owned) return done()
    endPollingWaits(io)
    // Fastify has closed the HTTP server by now, so Socket.IO's own attempt to
    // close it reports an error that means nothing here.
    io.close(() => done())
  })
}
