/** Test harness: headless Debian Chromium through playwright-core (never a downloaded browser). */
import { existsSync } from 'node:fs'
import { chromium, type Browser } from 'playwright-core'

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

/** CI installs Chromium, so there browser tests always run; elsewhere they need it installed. */
export const haveChromium = existsSync(CHROMIUM) || Boolean(process.env.CI)

export const launchChromium = (): Promise<Browser> =>
  chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  })
