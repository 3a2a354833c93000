// The README's "Quick start", run as written, in a real Chromium, over 127.0.0.1 and ::1.
//
// The ```json package.json, ```ts server.ts and ```html index.html blocks are read out of README.md's
// "## Quick start" section (parsed, not copied here) into a fresh project under .tmp/quick-start-<random>.
// There `fastify-session-socket-auth` is this repository's build (lib/ compiled with the repo's
// TypeScript into a staged package, as in test/package.test.ts), and every other package is a symlink to
// this repository's node_modules (fastify, @fastify/cookie, @fastify/session, socket.io, tsx, ...).
//
// The one change to server.ts: the README listens on port 3000; the literal `port: 3000` is replaced by a
// free port (free on 127.0.0.1 and on ::1), so that the test does not collide with anything on 3000.
//
// The server runs the way the README's package.json says (`npm start` → scripts.start, `tsx server.ts`,
// through the repo's tsx), with SESSION_SECRET set and a preload (test/fixtures/localhost-dual-stack.mjs)
// that makes `localhost` resolve to 127.0.0.1 and ::1, as on a machine whose /etc/hosts maps both, so the
// default host of `app.listen({ port })` binds both loopbacks. The preload is plain JavaScript: NODE_OPTIONS
// reaches tsx's CLI process and the loader's own worker thread, where no TypeScript loader runs yet.
//
// Then, per address, two tabs of one browser profile (cookies are per host, so 127.0.0.1 and [::1] are
// two separate logins anyway) go through what the README says the page logs, read from `#log`.
// Without IPv6 on lo or without Chromium the test skips locally and fails under CI=true.
import { after, before, test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, execFile, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { isDeepStrictEqual } from 'node:util'
import type { BrowserContext, Page } from 'playwright-core'
import { closeChromium, needChromium } from '../support/browser'
import { watchChild, type Watched } from '../support/child-process'
import { LOOPBACKS, needIpv6Loopback } from '../support/dual-stack'

after(closeChromium)

const root = resolve(__dirname, '..', '..')
const PRELOAD = join(root, 'test', 'fixtures', 'localhost-dual-stack.mjs')
const WAIT = 10_000
const TIMEOUT = { timeout: 60_000 }

// --- The Quick start, read from README.md -------------------------------------------------------------

interface Block { lang: string, code: string }

function quickStartBlocks (): Block[] {
  const readme = readFileSync(join(root, 'README.md'), 'utf8')
  const lines = readme.split('\n')
  const start = lines.indexOf('## Quick start')
  assert.ok(start >= 0, 'README.md has a "## Quick start" section')
  let end = lines.findIndex((line, i) => i > start && line.startsWith('## '))
  if (end < 0) end = lines.length
  const blocks: Block[] = []
  for (let i = start + 1; i < end; i++) {
    const open = /^```(\w*)\s*$/.exec(lines[i] as string)
    if (open === null) continue
    const body: string[] = []
    for (i++; i < end && lines[i] !== '```'; i++) body.push(lines[i] as string)
    assert.ok(i < end, 'a code block of the Quick start is closed')
    blocks.push({ lang: open[1] as string, code: body.join('\n') + '\n' })
  }
  return blocks
}

function onlyBlock (blocks: Block[], lang: string): string {
  const found = blocks.filter((block) => block.lang === lang)
  assert.equal(found.length, 1, `the Quick start has exactly one \`\`\`${lang} block`)
  return (found[0] as Block).code
}

const blocks = quickStartBlocks()
const packageJson = onlyBlock(blocks, 'json')
const serverTs = onlyBlock(blocks, 'ts')
const indexHtml = onlyBlock(blocks, 'html')
/** The message server.ts throws without SESSION_SECRET ("the error above"), read from server.ts itself. */
const secretError = /throw new Error\('([^']+)'\)/.exec(serverTs)?.[1]

// --- The project -------------------------------------------------------------------------------------

const childEnv: NodeJS.ProcessEnv = { ...process.env }
delete childEnv.NODE_V8_COVERAGE // the child runs the build (dist/), not lib/
delete childEnv.NODE_OPTIONS
delete childEnv.SESSION_SECRET

function run (command: string, args: string[], cwd: string): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    execFile(command, args, { cwd, env: childEnv, timeout: 120_000 }, (error, stdout, stderr) => {
      if (error === null) resolvePromise()
      else reject(new Error(`${command} ${args.join(' ')} failed: ${error.message}\n${stdout}\n${stderr}`))
    })
  })
}

/** Binds host:port (0: any port) and closes again; the port it got, or undefined if it could not bind. */
function bindable (host: string, port: number): Promise<number | undefined> {
  return new Promise((resolvePromise) => {
    const server = createServer()
    server.once('error', () => resolvePromise(undefined))
    server.listen(port, host, () => {
      const address = server.address()
      server.close(() => resolvePromise(typeof address === 'object' && address !== null ? address.port : undefined))
    })
  })
}

/** A port that is free on ::1 and on 127.0.0.1 alike (the README's localhost binds both). */
async function freePort (): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await bindable('::1', 0)
    if (port !== undefined && await bindable('127.0.0.1', port) === port) return port
  }
  throw new Error('no port free on both 127.0.0.1 and ::1')
}

let project: string
let port: number
/** scripts.start of the README's package.json, split: the binary (from node_modules/.bin) and its arguments. */
let startBin: string
let startArgs: string[]

before(async () => {
  mkdirSync(join(root, '.tmp'), { recursive: true })
  project = mkdtempSync(join(root, '.tmp', 'quick-start-'))
  const pkg = join(project, 'pkg')
  mkdirSync(pkg)
  // The package as published: the build of lib/ and its package.json.
  await run(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.build.json'), '--outDir', join(pkg, 'dist')], root)
  writeFileSync(join(pkg, 'package.json'), readFileSync(join(root, 'package.json')))
  // What `npm install ...` of the README gives: this repository's packages, and the plugin itself.
  const modules = join(project, 'node_modules')
  mkdirSync(modules)
  for (const entry of readdirSync(join(root, 'node_modules'))) {
    symlinkSync(join(root, 'node_modules', entry), join(modules, entry))
  }
  symlinkSync(pkg, join(modules, 'fastify-session-socket-auth'), 'dir')

  port = await freePort()
  assert.equal(serverTs.split('port: 3000').length, 2, 'server.ts has the literal `port: 3000` once')
  writeFileSync(join(project, 'package.json'), packageJson)
  writeFileSync(join(project, 'server.ts'), serverTs.replace('port: 3000', `port: ${port}`))
  writeFileSync(join(project, 'index.html'), indexHtml)

  const scripts = (JSON.parse(packageJson) as { scripts?: { start?: string } }).scripts
  const start = (scripts?.start ?? '').split(' ')
  startBin = realpathSync(join(modules, '.bin', start[0] as string))
  startArgs = start.slice(1)
}, { timeout: 120_000 })

after(() => {
  if (project !== undefined && process.env.KEEP_QUICK_START !== '1') rmSync(project, { recursive: true, force: true })
})

// --- The server --------------------------------------------------------------------------------------

interface Server extends Watched {
  child: ChildProcess
  /** The server's JSON log lines (logger: true). */
  logs: () => Array<Record<string, unknown>>
}

/** `npm start` in the project, i.e. scripts.start with the repo's tsx; killed (with tsx's own child) after the test. */
function startServer (t: TestContext, env: NodeJS.ProcessEnv): Server {
  // A process group of its own: tsx runs the script in a child of its own, and both go at the end.
  const child = spawn(process.execPath, [startBin, ...startArgs], { cwd: project, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  const watched = watchChild(t, child, () => {
    try {
      process.kill(-(child.pid as number), 'SIGKILL')
    } catch {
      // the group is gone already
    }
  })
  return {
    ...watched,
    child,
    logs: () => watched.stdout().split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as Record<string, unknown>)
  }
}

async function waitFor (what: string, server: Server, done: () => boolean, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!done()) {
    if (server.child.exitCode !== null || server.child.signalCode !== null) {
      throw new Error(`the server exited before ${what}\n--- stdout\n${server.stdout()}\n--- stderr\n${server.stderr()}`)
    }
    if (Date.now() > deadline) throw new Error(`no ${what} within ${ms} ms\n--- stdout\n${server.stdout()}\n--- stderr\n${server.stderr()}`)
    await sleep(50)
  }
}

const withSecret = (secret: string | undefined): NodeJS.ProcessEnv => ({
  ...childEnv,
  ...(secret === undefined ? {} : { SESSION_SECRET: secret }),
  NODE_OPTIONS: `--import "${PRELOAD}"`
})

// --- The page ----------------------------------------------------------------------------------------

interface Tab { page: Page, label: string, expected: string[] }

const logOf = async (page: Page): Promise<string[]> => ((await page.textContent('#log')) ?? '').split('\n').filter((line) => line !== '')

/** Waits until the tab's #log is exactly tab.expected; fails at once if it went another way. */
async function expectLog (tab: Tab): Promise<void> {
  const deadline = Date.now() + WAIT
  let lines = await logOf(tab.page)
  while (!isDeepStrictEqual(lines, tab.expected)) {
    const onTheWay = lines.length < tab.expected.length && isDeepStrictEqual(lines, tab.expected.slice(0, lines.length))
    if (!onTheWay || Date.now() > deadline) break
    await sleep(50)
    lines = await logOf(tab.page)
  }
  assert.deepEqual(lines, tab.expected, `#log of ${tab.label}`)
}

const expectLogs = (tabs: Tab[]): Promise<unknown> => Promise.all(tabs.map(expectLog))

/**
 * Brings the tab to the front first, as a person switching tabs does: Playwright's click waits for the
 * element to be stable over animation frames, which a background tab gets only about once a second.
 */
async function inFront (tab: Tab): Promise<Page> {
  await tab.page.bringToFront()
  return tab.page
}

async function logIn (tab: Tab, name: string): Promise<void> {
  const page = await inFront(tab)
  await page.fill('#login input[name=name]', name)
  await page.click('#login button')
}

async function chat (tab: Tab, text: string): Promise<void> {
  const page = await inFront(tab)
  await page.fill('#chat input[name=text]', text)
  await page.click('#chat button')
}

async function logOut (tab: Tab): Promise<void> {
  await (await inFront(tab)).click('#logout')
}

// --- The tests ---------------------------------------------------------------------------------------

test('the Quick start has its package.json, server.ts and index.html, and `npm start` is `tsx server.ts`', () => {
  assert.equal(startBin, realpathSync(join(root, 'node_modules', 'tsx', 'dist', 'cli.mjs')), 'scripts.start runs tsx')
  assert.deepEqual(startArgs, ['server.ts'])
  assert.match(serverTs, /from 'fastify-session-socket-auth'/)
  assert.match(indexHtml, /<pre id="log">/)
  assert.ok(secretError !== undefined, 'server.ts throws an Error when SESSION_SECRET is missing')
})

test('without SESSION_SECRET (or with a short one) the server stops at once with its error', TIMEOUT, async (t) => {
  for (const secret of [undefined, 'x'.repeat(31)]) {
    const started = Date.now()
    const server = startServer(t, withSecret(secret))
    const exit = await Promise.race([server.exited, sleep(8000).then(() => undefined)])
    const took = Date.now() - started
    assert.ok(exit !== undefined, `the server stopped (SESSION_SECRET ${secret === undefined ? 'unset' : 'of 31 characters'}); stdout: ${server.stdout()}`)
    assert.notEqual(exit.code, 0, 'with a non-zero exit code')
    assert.ok(took < 8000, `within a few seconds (took ${took} ms)`)
    assert.ok(server.stderr().includes(`Error: ${secretError as string}`), `stderr shows the README's error: ${server.stderr()}`)
    assert.doesNotMatch(server.stdout(), /Server listening/)
  }
})

test('in Chromium over 127.0.0.1 and ::1: refused before login; connected, hello and chat after; logout ends both tabs', TIMEOUT, async (t) => {
  if (!await needIpv6Loopback(t)) return
  const browser = await needChromium(t)
  if (browser === undefined) return

  const server = startServer(t, withSecret(randomBytes(32).toString('hex')))
  const listening = (urlHost: string): boolean => server.logs().some((line) => line.msg === `Server listening at http://${urlHost}:${port}`)
  await waitFor('"Server listening" log lines for 127.0.0.1 and [::1]', server, () => LOOPBACKS.every((loopback) => listening(loopback.urlHost)))

  const errors: string[] = []
  const names: Record<string, string> = { '127.0.0.1': 'Ada', '::1': 'Grace' }
  const sites: Array<{ loopback: typeof LOOPBACKS[number], name: string, tabs: [Tab, Tab] }> = []
  for (const loopback of LOOPBACKS) {
    const context: BrowserContext = await browser.newContext()
    t.after(() => context.close())
    const tab = async (n: number): Promise<Tab> => {
      const page = await context.newPage()
      page.on('pageerror', (error) => errors.push(`${loopback.name} tab ${n}: ${error.message}`))
      await page.goto(`http://${loopback.urlHost}:${port}/`)
      return { page, label: `http://${loopback.urlHost}:${port}/ tab ${n}`, expected: [] }
    }
    sites.push({ loopback, name: names[loopback.name] as string, tabs: [await tab(1), await tab(2)] })
  }
  const all = sites.flatMap((site) => site.tabs)
  const push = (tabs: Tab[], ...lines: string[]): void => { for (const tab of tabs) tab.expected.push(...lines) }

  // Before login: the socket is refused (no session yet), and the server logs each refusal with a `fix`.
  push(all, 'refused: SESSION_REQUIRED')
  await expectLogs(all)
  await waitFor('four refusal log lines', server, () => server.logs().filter((line) => line.msg === 'refused').length >= 4)
  const refusals = server.logs().filter((line) => line.msg === 'refused')
  assert.equal(refusals.length, 4, 'one refusal per tab')
  for (const refusal of refusals) {
    assert.equal(refusal.code, 'SESSION_REQUIRED')
    assert.equal(typeof refusal.fix, 'string')
  }

  for (const { name, tabs: [first, second] } of sites) {
    // Log in in the first tab: it connects and is greeted by the name from the session.
    await logIn(first, name)
    push([first], 'connected', `hello, ${name}`)
    await expectLogs([first, second])
    // A refused socket does not retry by itself: the README says to reload the other tab, which then
    // connects with the same session cookie. Both tabs are on one session.
    await (await inFront(second)).reload()
    second.expected = ['connected', `hello, ${name}`]
    await expectLogs([first, second])
  }

  // Chat: a line from one tab reaches the other tab of the same address (and, app.io.emit being a
  // broadcast, every connected tab, over either address).
  const [v4, v6] = sites as [typeof sites[number], typeof sites[number]]
  await chat(v4.tabs[0], 'hi from 127.0.0.1')
  push(all, `${v4.name}: hi from 127.0.0.1`)
  await expectLogs(all)
  await chat(v6.tabs[1], 'hi from ::1')
  push(all, `${v6.name}: hi from ::1`)
  await expectLogs(all)

  // Log out in one tab: both tabs of that session are told and disconnected, and stay so; the other
  // address's session is untouched.
  await logOut(v4.tabs[1])
  push(v4.tabs, 'session ended: logout', 'disconnected: io server disconnect')
  await expectLogs(all)
  await chat(v6.tabs[0], 'still here')
  push(v6.tabs, `${v6.name}: still here`)
  await expectLogs(all)
  await logOut(v6.tabs[0])
  push(v6.tabs, 'session ended: logout', 'disconnected: io server disconnect')
  await expectLogs(all)
  await sleep(1500) // longer than Socket.IO's reconnection delay: nobody comes back
  await expectLogs(all)

  assert.deepEqual(errors, [], 'no script error on the page')
  assert.deepEqual(server.logs().filter((line) => Number(line.level) >= 50), [], 'no error in the server log')
})
