import type { IncomingMessage, Server } from 'node:http'
import type { FastifyInstance } from 'fastify'
import { UnsupportedUpstreamError } from '../errors'

/**
 * The only place that touches Fastify's internals.
 *
 * The Origin check must see a request's host and scheme exactly as Fastify's
 * own `request.host` and `request.protocol` do: with `trustProxy`, Fastify
 * takes X-Forwarded-Host/Proto only from a trusted peer, through a trust
 * function (address list, hop count, function) it compiles privately. Engine.IO
 * requests never become Fastify requests, so this borrows those two getters
 * from the instance's Request class (private symbol `fastify.Request`) and runs
 * them on the raw request. Public API that would replace it: a way to get
 * `request.host`/`request.protocol` for a raw IncomingMessage, e.g.
 * `fastify.requestHost(raw)` (proposed in docs/upstream.md).
 */
export interface RequestOrigin {
  readonly protocol: string
  readonly host: string
}

export function requestOriginReader (fastify: FastifyInstance): (request: IncomingMessage) => RequestOrigin {
  const Request = findRequestClass(fastify)
  const proto = Request.prototype as object
  const host = getter(proto, 'host')
  const protocol = getter(proto, 'protocol')
  const read = (request: IncomingMessage): RequestOrigin => {
    // The getters read `raw`, `headers` and `socket`, all three from the raw request.
    const view = { raw: request, headers: request.headers, socket: request.socket }
    return { protocol: String(protocol.call(view) ?? ''), host: String(host.call(view) ?? '') }
  }
  // Registration-time check that the borrowed getters still work this way.
  const probe = read({ headers: { host: 'probe.invalid' }, socket: {} } as unknown as IncomingMessage)
  if (probe.host !== 'probe.invalid' || probe.protocol !== 'http') {
    throw new UnsupportedUpstreamError('fastify', `Request#host/protocol answered ${JSON.stringify(probe)} for a plain request`)
  }
  return read
}

function findRequestClass (fastify: FastifyInstance): { prototype: unknown } {
  for (let object: object | null = fastify; object !== null; object = Object.getPrototypeOf(object)) {
    const symbol = Object.getOwnPropertySymbols(object).find((s) => s.description === 'fastify.Request')
    if (symbol !== undefined) {
      const Request = (object as Record<symbol, unknown>)[symbol]
      if (typeof Request === 'function') return Request as { prototype: unknown }
    }
  }
  throw new UnsupportedUpstreamError('fastify', 'the Request class (symbol fastify.Request) was not found')
}

function getter (proto: object, name: string): (this: unknown) => unknown {
  for (let object: object | null = proto; object !== null; object = Object.getPrototypeOf(object)) {
    const descriptor = Object.getOwnPropertyDescriptor(object, name)
    if (descriptor?.get !== undefined) return descriptor.get
  }
  throw new UnsupportedUpstreamError('fastify', `Request#${name} is not a getter`)
}

/**
 * The extra HTTP servers Fastify listens on besides `fastify.server` (private
 * symbol `fastify.serverBindings`): `listen({ host: 'localhost' })` binds one
 * per address localhost resolves to (127.0.0.1 and ::1 on most machines).
 * Public API that would replace it: `fastify.servers()`, or secondary servers
 * that re-emit 'request' on the main one as they already do 'upgrade'.
 */
export function secondaryServers (fastify: FastifyInstance): Server[] {
  for (let object: object | null = fastify; object !== null; object = Object.getPrototypeOf(object)) {
    const symbol = Object.getOwnPropertySymbols(object).find((s) => s.description === 'fastify.serverBindings')
    if (symbol !== undefined) {
      const bindings = (object as Record<symbol, unknown>)[symbol]
      if (Array.isArray(bindings)) return bindings.filter((server): server is Server => server !== fastify.server)
    }
  }
  throw new UnsupportedUpstreamError('fastify', 'the list of server bindings (symbol fastify.serverBindings) was not found')
}
