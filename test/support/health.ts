import { Writable } from 'node:stream'

/**
 * Records every unhandled rejection and uncaught exception while it watches,
 * so a test can assert there were none (a crash the test runner would only
 * report as a side effect becomes a failed assertion naming what happened).
 */
export function watchProcess (): { readonly problems: string[], stop: () => void } {
  const problems: string[] = []
  const onRejection = (reason: unknown): void => { problems.push(`unhandledRejection: ${describe(reason)}`) }
  const onException = (error: unknown): void => { problems.push(`uncaughtException: ${describe(error)}`) }
  process.on('unhandledRejection', onRejection)
  process.on('uncaughtException', onException)
  return {
    problems,
    stop () {
      process.off('unhandledRejection', onRejection)
      process.off('uncaughtException', onException)
    }
  }
}

function describe (value: unknown): string {
  return value instanceof Error ? (value.stack ?? value.message) : String(value)
}

export interface LogLine { level: number, msg?: string, [key: string]: unknown }

/**
 * A pino destination that keeps the parsed lines, for `Fastify({ logger: { stream } })`:
 * tests read what the plugin logged (an `error` line from the guard means
 * something threw inside the verification).
 */
export function logCapture (): { stream: Writable, lines: LogLine[], atLeast: (level: number) => LogLine[] } {
  const lines: LogLine[] = []
  const stream = new Writable({
    write (chunk: Buffer, _encoding, callback) {
      for (const text of chunk.toString('utf8').split('\n')) {
        if (text.length === 0) continue
        try {
          lines.push(JSON.parse(text) as LogLine)
        } catch {
          lines.push({ level: 60, msg: `unparsable log line: ${text}` })
        }
      }
      callback()
    }
  })
  return { stream, lines, atLeast: (level) => lines.filter((line) => line.level >= level) }
}

/** pino's numeric levels. */
export const LEVEL = { debug: 20, info: 30, warn: 40, error: 50, fatal: 60 } as const
