import { fork, type ChildProcess } from 'node:child_process'

/** Request/response over Node's IPC channel between run.ts and its server and client processes. */

type Handlers = Record<string, (arg: never) => unknown>
type Reply = { id: number, value: unknown } | { id: number, error: string }

/** In a child: answer run.ts's calls, after saying it is ready. */
export function serve (handlers: Handlers, ready: unknown): void {
  const send = process.send?.bind(process)
  if (send === undefined) throw new Error('start this through bench/run.ts')
  process.on('message', ({ id, cmd, arg }: { id: number, cmd: string, arg: never }) => {
    Promise.resolve().then(() => (handlers[cmd] as Handlers[string])(arg)).then(
      (value) => send({ id, value: value ?? null }),
      (error: unknown) => send({ id, error: error instanceof Error ? error.stack ?? error.message : String(error) })
    )
  })
  process.on('disconnect', () => process.exit(0)) // run.ts went away: leave nothing behind
  send({ id: 0, value: ready })
}

/** In run.ts: a child process and a way to call it. */
export class Child<Info = unknown> {
  #next = 1
  readonly #pending = new Map<number, (reply: Reply) => void>()
  private constructor (readonly name: string, readonly info: Info, readonly proc: ChildProcess) {
    proc.on('message', (reply: Reply) => { this.#pending.get(reply.id)?.(reply) })
    proc.on('exit', (code) => { for (const done of this.#pending.values()) done({ id: 0, error: `${name} exited (${code})` }) })
  }

  static start<Info> (name: string, script: string, arg: unknown, execArgv: string[] = []): Promise<Child<Info>> {
    const proc = fork(script, [JSON.stringify(arg)], { execArgv: ['--expose-gc', ...execArgv], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    return new Promise((resolve, reject) => {
      proc.once('exit', (code) => reject(new Error(`${name} exited (${code}) before it was ready`)))
      proc.once('message', (reply: { value: Info }) => resolve(new Child(name, reply.value, proc)))
    })
  }

  call<T = unknown> (cmd: string, arg: unknown = null, timeoutMs = 300_000): Promise<T> {
    const id = this.#next++
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => this.#pending.get(id)?.({ id, error: `${this.name}: ${cmd} timed out` }), timeoutMs)
      this.#pending.set(id, (reply) => {
        this.#pending.delete(id)
        clearTimeout(timer)
        if ('error' in reply) reject(new Error(`${this.name}: ${reply.error}`))
        else resolve(reply.value as T)
      })
      this.proc.send({ id, cmd, arg })
    })
  }

  async stop (): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return
    const exited = new Promise((resolve) => this.proc.once('exit', resolve))
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 10_000)
    this.call('exit').catch(() => {})
    await exited
    clearTimeout(timer)
  }
}
