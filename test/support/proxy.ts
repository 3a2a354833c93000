// A tiny reverse proxy built on node:http, as the tests put one in front of an
// app: it forwards requests, and WebSocket upgrades by piping the two sockets.
// `startProxy` runs it in its own process (test/fixtures/proxy-server.ts), so
// that the app sees a real peer connection from the proxy, never the test's.
import { createServer, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders, type Server } from 'node:http'
import { connect as netConnect, type Socket } from 'node:net'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import type { ProxyCommands, ProxyReady } from '../fixtures/proxy-server'
import { startChild } from './child-process'

export interface ProxyOptions {
  /** http://host:port of the app; may be set later with `setTarget`. */
  target?: string
  /** Sets X-Forwarded-Host to this value on every request and upgrade. */
  forwardedHost?: string
  /** Sets X-Forwarded-Proto to this value on every request and upgrade. */
  forwardedProto?: string
  /** Rewrites Host to the target's host:port (a dev server's `changeOrigin`). */
  changeOrigin?: boolean
}

// Hop-by-hop headers (RFC 9110 7.6.1): for one connection, never forwarded.
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade'])

export interface ProxyServer {
  server: Server
  setTarget (target: string): void
}

/** The proxy itself, not yet listening. */
export function createProxy (options: ProxyOptions): ProxyServer {
  let target = options.target === undefined ? undefined : new URL(options.target)

  const headersFor = (incoming: IncomingHttpHeaders, keep: (name: string) => boolean): OutgoingHttpHeaders => {
    const headers: OutgoingHttpHeaders = {}
    for (const [name, value] of Object.entries(incoming)) {
      if (value !== undefined && keep(name)) headers[name] = value
    }
    if (options.changeOrigin === true && target !== undefined) headers.host = target.host
    if (options.forwardedHost !== undefined) headers['x-forwarded-host'] = options.forwardedHost
    if (options.forwardedProto !== undefined) headers['x-forwarded-proto'] = options.forwardedProto
    return headers
  }

  const server = createServer((req, res) => {
    if (target === undefined) {
      res.writeHead(502).end('no target yet')
      return
    }
    const upstream = httpRequest({
      host: target.hostname,
      port: target.port,
      method: req.method,
      path: req.url,
      headers: headersFor(req.headers, (name) => !HOP_BY_HOP.has(name)),
      agent: false
    }, (answer) => {
      const headers: OutgoingHttpHeaders = {}
      for (const [name, value] of Object.entries(answer.headers)) {
        if (value !== undefined && !HOP_BY_HOP.has(name)) headers[name] = value
      }
      res.writeHead(answer.statusCode ?? 502, headers)
      answer.pipe(res)
      answer.on('error', () => res.destroy())
    })
    upstream.on('error', () => {
      if (!res.headersSent) res.writeHead(502)
      res.destroy()
    })
    req.pipe(upstream)
  })

  server.on('upgrade', (req: IncomingMessage, client: Socket, head: Buffer) => {
    if (target === undefined) {
      client.destroy()
      return
    }
    // The upgrade keeps Connection and Upgrade: they are what it asks for.
    const headers = headersFor(req.headers, (name) => name === 'connection' || name === 'upgrade' || !HOP_BY_HOP.has(name))
    const upstream = netConnect(Number(target.port), target.hostname)
    const lines = [`${req.method ?? 'GET'} ${req.url ?? '/'} HTTP/1.1`]
    for (const [name, value] of Object.entries(headers)) {
      for (const one of Array.isArray(value) ? value : [value]) lines.push(`${name}: ${String(one)}`)
    }
    upstream.on('connect', () => {
      upstream.write(lines.join('\r\n') + '\r\n\r\n')
      if (head.length > 0) upstream.write(head)
      upstream.pipe(client)
      client.pipe(upstream)
    })
    upstream.on('error', () => client.destroy())
    client.on('error', () => upstream.destroy())
    upstream.on('close', () => client.destroy())
    client.on('close', () => upstream.destroy())
  })

  return {
    server,
    setTarget (value) { target = new URL(value) }
  }
}

export interface RunningProxy {
  /** http://127.0.0.1:PORT of the proxy */
  url: string
  port: number
  /** Points the proxy at an app started after it (for an app that must know the proxy's origin). */
  setTarget (target: string): Promise<void>
}

/** Runs the proxy in a child process on a loopback port; it is killed after the test. */
export async function startProxy (t: TestContext, options: ProxyOptions): Promise<RunningProxy> {
  const child = await startChild<ProxyReady, ProxyCommands>(t, join(__dirname, '..', 'fixtures', 'proxy-server.ts'), { args: [JSON.stringify(options)] })
  const { port } = child.ready
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    setTarget: (target) => child.call('setTarget', target)
  }
}
