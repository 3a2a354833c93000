import { fork, type ChildProcess } from 'node:child_process'
import { resolve } from 'node:path'

/**
 * A tiny request/response protocol over Node's IPC channel between the bench
 * orchestrator and its child processes (servers and clients). Every child is
 * a separate process, so the CPU and memory a server reports are its own.
 */

interface Request { id: number, cmd: string, arg: unknown }
type Response = { id: number, ok: true, value: unknown } | { id: number, ok: false, error: string }
interface Ready { ready: unknown }

export type Handlers = Record<string, (arg: never) => unknown>

export const ROOT = resolve(__dirname, '..')

/** In a child: answer the orchestrator's commands, after saying it is ready. */
export function serve (handlers: Handlers, readyInfo: unknown): void {
  const send = process.send?.bind(process)
  if (send === undefined) throw new Error('bench child started without an IPC channel; run it through bench/run.ts')
  process.on('message', (message: Request) => {
    const handler = handlers[message.cmd]
    if (handler === undefined) {
      send({ id: message.id, ok: false, error: `unknown command ${message.cmd}` } satisfies Response)
      return
    }
    Promise.resolve()
      .then(() => handler(message.arg as never))
      .then(
        (value) => send({ id: message.id, ok: true, value: value ?? null } satisfies Response),
        (error: unknown) => send({ id: message.id, ok: false, error: error instanceof Error ? error.stack ?? error.message : String(error) } satisfies Response)
      )
  })
  // The orchestrator going away must not leave servers or clients behind.
  process.on('disconnect', () => process.exit(0))
  send({ ready: readyInfo } satisfies Ready)
}

/** In the orchestrator: a child process and a typed way to call it. */
export class Child<Info = unknown> {
  readonly name: string
  readonly info: Info
  readonly #proc: ChildProcess
  readonly #pending = new Map<number, { resolve: (value: unknown) => void, reject: (error: Error) => void, timer: NodeJS.Timeout }>()
  #nextId = 1
  #exited = false

  private constructor (name: string, proc: ChildProcess, info: Info) {
    this.name = name
    this.#proc = proc
    this.info = info
    proc.on('message', (message: Response) => {
      const pending = this.#pending.get(message.id)
      if (pending === undefined) return
      this.#pending.delete(message.id)
      clearTimeout(pending.timer)
      if (message.ok) pending.resolve(message.value)
      else pending.reject(new Error(`${this.name}: ${message.error}`))
    })
    proc.on('exit', (code, signal) => {
      this.#exited = true
      for (const pending of this.#pending.values()) {
        clearTimeout(pending.timer)
        pending.reject(new Error(`${this.name} exited (code ${code}, signal ${signal}) during a call`))
      }
      this.#pending.clear()
    })
  }

  /**
   * Forks a compiled bench script (plain JavaScript, see build.ts) with
   * --expose-gc, and waits for its ready message.
   */
  static start<Info> (name: string, script: string, arg: unknown, startTimeoutMs = 60_000): Promise<Child<Info>> {
    const proc = fork(script, [JSON.stringify(arg)], {
      cwd: ROOT,
      execArgv: ['--expose-gc'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc']
    })
    return new Promise((resolvePromise, reject) => {
      const timer = setTimeout(() => {
        proc.kill('SIGKILL')
        reject(new Error(`${name} did not start within ${startTimeoutMs} ms`))
      }, startTimeoutMs)
      const onExit = (code: number | null): void => {
        clearTimeout(timer)
        reject(new Error(`${name} exited (code ${code}) before it was ready`))
      }
      proc.once('exit', onExit)
      proc.once('message', (message: Ready) => {
        clearTimeout(timer)
        proc.off('exit', onExit)
        resolvePromise(new Child<Info>(name, proc, message.ready as Info))
      })
    })
  }

  call<T> (cmd: string, arg?: unknown, timeoutMs = 180_000): Promise<T> {
    if (this.#exited) return Promise.reject(new Error(`${this.name} has exited`))
    const id = this.#nextId++
    return new Promise<T>((resolvePromise, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id)
        reject(new Error(`${this.name}: "${cmd}" did not answer within ${timeoutMs} ms`))
      }, timeoutMs)
      this.#pending.set(id, { resolve: resolvePromise as (value: unknown) => void, reject, timer })
      this.#proc.send({ id, cmd, arg: arg ?? null } satisfies Request)
    })
  }

  /** Asks the child to exit; kills it if it has not within the timeout. */
  async stop (timeoutMs = 10_000): Promise<void> {
    if (this.#exited) return
    const exited = new Promise<void>((resolvePromise) => this.#proc.once('exit', () => resolvePromise()))
    this.call('exit', null, timeoutMs).catch(() => {})
    const timer = setTimeout(() => this.#proc.kill('SIGKILL'), timeoutMs)
    await exited
    clearTimeout(timer)
  }
}
