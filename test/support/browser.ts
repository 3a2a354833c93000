import { existsSync } from 'node:fs'
import type { TestContext } from 'node:test'
import { chromium, type Browser, type BrowserContext, type BrowserContextOptions, type Page } from 'playwright-core'

/** Debian's chromium package; playwright never downloads a browser here. */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run']

let launched: Promise<Browser> | undefined

/**
 * The shared headless Chromium for browser tests, launched on first use.
 * Without Chromium the test skips with a message saying how to install it;
 * under CI=true it fails instead, because CI must run every test.
 */
export async function needChromium (t: TestContext): Promise<Browser | undefined> {
  if (!existsSync(CHROMIUM_PATH)) {
    const message = `Chromium is not installed at ${CHROMIUM_PATH} (install it with: apt-get install -y chromium chromium-driver)`
    if (process.env.CI === 'true') throw new Error(`${message}; under CI=true this test must run`)
    t.skip(message)
    return undefined
  }
  launched ??= chromium.launch({ executablePath: CHROMIUM_PATH, args: ARGS })
  return launched
}

/** A fresh browser profile (its own cookie jar), closed when the test ends; undefined when the test was skipped. */
export async function newBrowserContext (t: TestContext, options: BrowserContextOptions = {}): Promise<BrowserContext | undefined> {
  const browser = await needChromium(t)
  if (browser === undefined) return undefined
  const context = await browser.newContext(options)
  t.after(() => context.close())
  return context
}

/** Closes the shared browser, if a test launched it. */
export async function closeChromium (): Promise<void> {
  const browser = launched
  launched = undefined
  if (browser !== undefined) await (await browser).close()
}

/** Logs in to the example app through its form, as a person would, and waits for the app to show. */
export async function logInToExample (page: Page, url: string, name: string, options: { admin?: boolean, timeout?: number } = {}): Promise<void> {
  await page.goto(url + '/')
  await page.fill('input[name=name]', name)
  await page.fill('input[name=password]', `password of ${name}`)
  if (options.admin === true) await page.check('input[name=admin]')
  await page.click('#login-button')
  await page.waitForSelector('#app:not([hidden])', { timeout: options.timeout ?? 10_000 })
}
