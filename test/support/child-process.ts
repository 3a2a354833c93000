// A TypeScript fixture in a child process, and the one way the tests talk to it.
//
// Parent (a test): `startChild(t, script)` forks the script through tsx and waits until
// the child announces itself with a value (its url, its port). `call(name, ...args)` then
// runs one of the fixture's commands and resolves with its answer. Every wait has a time
// limit, and whatever goes wrong (no announcement, no answer in time, an error thrown by
// the command, the child's exit) fails with the child's stderr; `exit()` tells at any time
// whether the child has exited (crashed), for a test that talks to it by other means. After
// the test the child is killed, if it is still running. Tests that share one child pass
// `{ after }` from node:test instead of `t`, calling `startChild` at the top level of the
// file (not in `before`, whose `after` would run at once): the child is killed after the file.
//
// Child (a fixture): `serve(start)` runs `start`, which brings the fixture up and returns
// what to announce and its commands; then it answers the parent's calls.
//
// Over IPC, parent to child: { id, command, args }; child to parent: { id, value } or
// { id, error }, and { id: 0, value } once when it is ready.
import { fork, type ChildProcess } from 'node:child_process'
import { basename, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

/** A fixture's commands: each takes JSON arguments and answers a JSON value (or a promise of one). */
export type Commands<C> = { [K in keyof C]: (...args: never[]) => unknown }
type ArgsOf<F> = F extends (...args: infer A) => unknown ? A : never
type AnswerOf<F> = F extends (...args: never[]) => infer R ? Awaited<R> : never

interface Call { id: number, command: string, args: unknown[] }
interface Reply { id: number, value?: unknown, error?: string }

// --- Parent side -------------------------------------------------------------------------------------

export interface Exit { code: number | null, signal: NodeJS.Signals | null }

/** Where the child is ended: a test's context `t`, or `{ after }` from node:test for a child that a file's tests share (see above). */
export interface Scope { after (fn: () => Promise<void>): void }

export interface Watched {
  /** Once the child has exited and its output is read to the end. */
  exited: Promise<Exit>
  /** How the child exited, as soon as it has (its output may still be coming); undefined while it runs. */
  exit (): Exit | undefined
  /** All the child has written so far (when its stdout / stderr is piped). */
  stdout (): string
  stderr (): string
}

/**
 * Collects a child's piped output and its exit. After the test, `kill` ends it (SIGKILL,
 * unless the caller says how) and the test waits up to 5 s for it to be gone.
 */
export function watchChild (t: Scope, child: ChildProcess, kill = (): void => {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
}): Watched {
  const output = { stdout: '', stderr: '' }
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => { output.stdout += chunk })
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => { output.stderr += chunk })
  const exited = new Promise<Exit>((resolve) => child.once('close', (code, signal) => resolve({ code, signal })))
  t.after(async () => {
    kill()
    await Promise.race([exited, sleep(5000)])
  })
  return {
    exited,
    exit: () => child.exitCode === null && child.signalCode === null ? undefined : { code: child.exitCode, signal: child.signalCode },
    stdout: () => output.stdout,
    stderr: () => output.stderr
  }
}

export interface ChildOptions {
  /** The script's arguments (process.argv[2], ...). */
  args?: string[]
  /** Node options after `--import tsx`: a preload, --expose-gc. */
  execArgv?: string[]
  /** How long the child may take to announce itself; 20 s unless said. */
  readyWithinMs?: number
  /** How long a command may take to answer; 10 s unless said. */
  answerWithinMs?: number
}

export interface Child<Ready, C extends Commands<C>> extends Watched {
  /** What the child announced once it was ready. */
  ready: Ready
  /** Runs the fixture's command `command` and resolves with its answer. */
  call<K extends keyof C & string> (command: K, ...args: ArgsOf<C[K]>): Promise<AnswerOf<C[K]>>
}

/** Forks `script` (a fixture that calls `serve`) through tsx and waits until it is ready; it is killed after the test. */
export async function startChild<Ready, C extends Commands<C>> (t: Scope, script: string, options: ChildOptions = {}): Promise<Child<Ready, C>> {
  const name = basename(script)
  const child = fork(script, options.args ?? [], {
    cwd: join(__dirname, '..', '..'),
    execArgv: ['--import', 'tsx', ...(options.execArgv ?? [])],
    stdio: ['ignore', 'ignore', 'pipe', 'ipc']
  })
  const watched = watchChild(t, child)
  const waiting = new Map<number, (reply: Reply) => void>()
  let gone: string | undefined
  child.on('message', (reply: Reply) => waiting.get(reply.id)?.(reply))
  watched.exited.then(({ code, signal }) => {
    gone = `it exited (${signal ?? code})`
    for (const settle of [...waiting.values()]) settle({ id: -1, error: gone })
  })

  /** The reply with this id, within `ms`. */
  const answer = (id: number, what: string, ms: number): Promise<unknown> => new Promise((resolve, reject) => {
    const settle = (reply: Reply): void => {
      clearTimeout(timer)
      waiting.delete(id)
      if (reply.error === undefined) resolve(reply.value)
      else reject(new Error(`${name}, ${what}: ${reply.error}${watched.stderr() === '' ? '' : `\n--- its stderr\n${watched.stderr()}`}`))
    }
    const timer = setTimeout(() => settle({ id, error: `no answer within ${ms} ms` }), ms)
    if (gone === undefined) waiting.set(id, settle)
    else settle({ id, error: gone })
  })

  const ready = await answer(0, 'starting', options.readyWithinMs ?? 20_000) as Ready
  let lastId = 0
  return {
    ...watched,
    ready,
    call (command, ...args) {
      const id = ++lastId
      const answered = answer(id, command, options.answerWithinMs ?? 10_000)
      if (gone === undefined) {
        child.send({ id, command, args } satisfies Call, (error) => {
          if (error !== null) waiting.get(id)?.({ id, error: error.message })
        })
      }
      return answered as Promise<AnswerOf<C[typeof command]>>
    }
  }
}

// --- Child side --------------------------------------------------------------------------------------

/**
 * In a fixture: runs `start`, announces its `ready` to the parent, then answers the parent's calls of
 * `commands`; an error a command throws is the parent's failure. A command named `close` is the last:
 * once it has answered, the child lets go of the IPC channel, so that the process exits by itself when
 * nothing else holds it. The child exits when the parent goes, and with code 1 when `start` fails.
 */
export function serve<Ready, C extends Commands<C>> (start: () => Promise<{ ready: Ready, commands: C }>): void {
  const send = process.send?.bind(process)
  if (send === undefined) fail(new Error('run me through startChild (test/support/child-process.ts): I need an IPC channel'))
  let lettingGo = false
  process.on('disconnect', () => { if (!lettingGo) process.exit(0) })
  start().then(({ ready, commands }) => {
    process.on('message', ({ id, command, args }: Call) => {
      Promise.resolve().then(() => {
        const handler: unknown = Object.hasOwn(commands, command) ? Reflect.get(commands, command) : undefined
        if (typeof handler !== 'function') throw new Error(`no command ${command}`)
        return Reflect.apply(handler, commands, args) as unknown
      }).then(
        (value): Reply => ({ id, value }),
        (error: unknown): Reply => ({ id, error: error instanceof Error ? (error.stack ?? error.message) : String(error) })
      ).then((reply) => send(reply, () => {
        if (command !== 'close' || !process.connected) return
        lettingGo = true
        process.disconnect()
      }))
    })
    send({ id: 0, value: ready } satisfies Reply)
  }).catch(fail)
}

function fail (error: unknown): never {
  console.error(error)
  process.exit(1)
}
