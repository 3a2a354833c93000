/**
 * `npm start`: runs the example app. Configuration comes from the environment:
 *
 *   PORT            default 3000
 *   HOST            default 'localhost' (this machine only); '0.0.0.0' to serve other machines or a container's port
 *   REDIS_URL       e.g. redis://127.0.0.1:6379: sessions in Redis and the Socket.IO Redis adapter,
 *                   so several processes (one per PORT) behave as one app. Unset: MemoryStore, one process.
 *   REDIS_PREFIX    prefix of the Redis keys and channels it uses, default 'example:'
 *   SESSION_SECRET  32+ characters; required when NODE_ENV=production. Unset: a development secret.
 */
import { buildExampleApp, DEV_SESSION_SECRET } from './app'

async function start (): Promise<void> {
  const port = Number(process.env.PORT ?? 3000)
  const host = process.env.HOST ?? 'localhost'
  const redisUrl = process.env.REDIS_URL || undefined
  const secret = process.env.SESSION_SECRET
  if (secret === undefined && process.env.NODE_ENV === 'production') {
    throw new Error('SESSION_SECRET is required when NODE_ENV=production')
  }

  const app = await buildExampleApp({
    sessionSecret: secret ?? DEV_SESSION_SECRET,
    redisUrl,
    redisPrefix: process.env.REDIS_PREFIX || undefined,
    logger: { level: process.env.LOG_LEVEL ?? 'info' }
  })
  if (secret === undefined) app.log.warn('SESSION_SECRET is not set: using the built-in DEVELOPMENT secret. Never use it in production.')

  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      app.log.info(`${signal}: closing`)
      app.close().then(() => process.exit(0), (error: unknown) => {
        app.log.error({ err: error }, 'close failed')
        process.exit(1)
      })
    })
  }

  await app.listen({ port, host })
  const shown = host === '0.0.0.0' || host === '::' ? 'localhost' : host
  app.log.info(`example ready: open http://${shown}:${port}/ (${redisUrl === undefined ? 'MemoryStore, one process' : 'Redis sessions + Redis adapter'})`)
}

start().catch((error: unknown) => {
  console.error(error)
  process.exit(1)
})
