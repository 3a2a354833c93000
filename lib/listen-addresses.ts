import type { FastifyInstance } from 'fastify'
import { secondaryServers } from './upstream/fastify'

/**
 * Socket.IO answers on every server Fastify listens on. `listen({ host:
 * 'localhost' })` binds a second server where localhost is also ::1; Fastify
 * hands that server's upgrades to the main one, but its plain requests go
 * straight to Fastify's router, past Engine.IO (which hooked the main server
 * only): polling would 404 there, and browsers start with polling. So each
 * extra server's requests take the main server's path too: Socket.IO's client
 * files, then Engine.IO, then Fastify, exactly as on the main server.
 */
export function serveOnEveryAddress (fastify: FastifyInstance): void {
  // Checked at registration, so that a Fastify without the list fails now, not at listen.
  secondaryServers(fastify)
  // Fastify runs onListen once every address is bound.
  fastify.addHook('onListen', (done) => {
    const main = fastify.server
    for (const server of secondaryServers(fastify)) {
      server.removeAllListeners('request')
      server.on('request', (request, response) => main.emit('request', request, response))
    }
    done()
  })
}
