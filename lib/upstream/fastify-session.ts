import type { FastifyInstance } from 'fastify'
import type { FastifySessionObject, SessionStore } from '@fastify/session'
import { UnsupportedSessionPluginError } from '../errors'

/**
 * The only place that touches @fastify/session's internals. Every assumption
 * is checked here, at registration: a changed shape fails `register` with
 * FST_SESSION_SOCKET_AUTH_UNSUPPORTED_SESSION naming what was not found.
 * docs/upstream.md lists the public API that would replace each.
 */
export interface FastifySessionParts {
  store: SessionStore
  signer: Signer
  /** The Session class and the arguments its constructor takes beside a request and a record. */
  Session: SessionClass
  idGenerator: unknown
  cookieOpts: unknown
  /** The private symbol of the hash of what was last read or written (Session[persistedHash]). */
  persistedHashKey: symbol
  cookieName: string
  cookiePrefix: string
  /** Session methods, to call through the class: a session may hold data under these names. */
  methods: {
    save: (this: FastifySessionObject, done: (err?: unknown) => void) => void
    isSaved: (this: FastifySessionObject) => unknown
  }
}

export function readFastifySession (fastify: FastifyInstance): FastifySessionParts {
  const probe: { session: unknown } = { session: null }
  // An empty cookie never verifies, so @fastify/session builds a fresh Session
  // synchronously without touching the store.
  fastify.decryptSession('', probe, () => {})
  const parts = probeParts(probe.session)
  const { cookieName, cookiePrefix } = probeCookie(fastify, (parts.cookieOpts as { path?: string }).path ?? '/')
  return {
    ...parts,
    cookieName,
    cookiePrefix,
    methods: {
      save: method(parts.Session, 'save') as FastifySessionParts['methods']['save'],
      isSaved: method(parts.Session, 'isSaved') as FastifySessionParts['methods']['isSaved']
    }
  }
}

export interface Signer { unsign (value: string): { valid: boolean, value: string | null } }
export type SessionClass = new (
  store: SessionStore, request: object, idGenerator: unknown, cookieOpts: unknown,
  signer: Signer, record: unknown, sessionId: string
) => FastifySessionObject

function method (Session: SessionClass, name: string): (...args: never[]) => unknown {
  const fn = (Session.prototype as Record<string, unknown>)[name]
  if (typeof fn !== 'function') throw new UnsupportedSessionPluginError(`Session#${name} not found`)
  return fn as (...args: never[]) => unknown
}

/**
 * @fastify/session's cookie name and prefix live only in its closure. Its
 * onRequest hook (function `handleSession`, in Fastify's private hook list of
 * this scope, symbol `fastify.hooks`) reads exactly `request.cookies[name]`,
 * and with a prefix calls `.startsWith(prefix)` on the value: run once on a
 * probe request whose cookies record what is read, it says both. With an
 * empty value it only builds a fresh Session (no store, no signer); the
 * prefix probe's value makes it call the signer only when there is no prefix,
 * and whatever the signer does with it is ignored. Public API that would
 * replace it: `fastify.sessionCookie` ({ name, prefix }) from @fastify/session.
 */
function probeCookie (fastify: FastifyInstance, path: string): { cookieName: string, cookiePrefix: string } {
  const hook = sessionHook(fastify)
  let cookieName: string | undefined
  let cookiePrefix = ''
  const probe = (value: unknown): void => {
    const cookies = new Proxy({}, {
      get (_target, key) {
        if (typeof key !== 'string') return undefined
        cookieName = key
        return value
      }
    })
    const request = { raw: { url: path, headers: {} }, headers: {}, cookies, session: null }
    try {
      hook(request, {}, () => {})
    } catch {
      // A signer handed the probe value may throw; the names are read by then.
    }
  }
  probe('')
  probe({ startsWith (prefix: unknown) { cookiePrefix = typeof prefix === 'string' ? prefix : ''; return false } })
  if (cookieName === undefined) throw new UnsupportedSessionPluginError('its onRequest hook read no cookie')
  return { cookieName, cookiePrefix }
}

type Hook = (request: object, reply: object, done: () => void) => void

function sessionHook (fastify: FastifyInstance): Hook {
  for (let object: object | null = fastify; object !== null; object = Object.getPrototypeOf(object)) {
    const symbol = Object.getOwnPropertySymbols(object).find((s) => s.description === 'fastify.hooks')
    if (symbol === undefined) continue
    const hooks = (object as Record<symbol, { onRequest?: unknown }>)[symbol]?.onRequest
    const hook = Array.isArray(hooks) ? hooks.find((fn: unknown) => typeof fn === 'function' && fn.name === 'handleSession') : undefined
    if (typeof hook === 'function') return hook as Hook
  }
  throw new UnsupportedSessionPluginError('its onRequest hook (handleSession) was not found')
}

type ProbeParts = Omit<FastifySessionParts, 'cookieName' | 'cookiePrefix' | 'methods'>

function probeParts (session: unknown): ProbeParts {
  if (session === null || typeof session !== 'object') {
    throw new UnsupportedSessionPluginError('decryptSession produced no session')
  }
  const symbols = Object.getOwnPropertySymbols(session)
  const field = (name: string): unknown => {
    const symbol = symbols.find((s) => s.description === name)
    return symbol === undefined ? undefined : (session as Record<symbol, unknown>)[symbol]
  }
  const store = field('sessionStore') as SessionStore | undefined
  const signer = field('cookieSignerKey') as Signer | undefined
  const idGenerator = field('generateId')
  const cookieOpts = field('cookieOpts')
  if (!store || typeof store.get !== 'function' || typeof store.set !== 'function' || typeof store.destroy !== 'function') {
    throw new UnsupportedSessionPluginError('store not found')
  }
  if (!signer || typeof signer.unsign !== 'function') throw new UnsupportedSessionPluginError('signer not found')
  if (typeof idGenerator !== 'function' || cookieOpts === null || typeof cookieOpts !== 'object') {
    throw new UnsupportedSessionPluginError('session options not found')
  }
  const persistedHashKey = symbols.find((s) => s.description === 'persistedHash')
  if (persistedHashKey === undefined || typeof field('persistedHash') !== 'string') {
    throw new UnsupportedSessionPluginError('persisted hash not found')
  }
  return { store, signer, Session: (session as { constructor: SessionClass }).constructor, idGenerator, cookieOpts, persistedHashKey }
}
