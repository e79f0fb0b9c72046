import { chromium, type Browser, type Page } from 'playwright-core';

/** Debian's chromium; playwright-core ships no browser of its own. */
export const CHROMIUM_PATH = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
  // A kiosk page in a background tab must still render at full speed.
  '--disable-background-timer-throttling',
  '--disable-renderer-backgrounding',
  '--disable-backgrounding-occluded-windows',
];

/** Launches headless Debian chromium; the caller closes it (an open browser keeps the bench from exiting). */
export function launchBrowser(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS, timeout: 30_000 });
}

/**
 * Opens the cashier screen as the store's kiosk does, by its own address, so that the
 * screen's Host, Origin and secret-cookie checks pass as they do for a real page, and
 * waits until it has drawn the terminal's first state.
 */
export async function openScreen(browser: Browser, url: string): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 1024, height: 768 } });
  await page.goto(url);
  await page.waitForSelector('body[data-state-version]', { timeout: 30_000 });
  return page;
}
