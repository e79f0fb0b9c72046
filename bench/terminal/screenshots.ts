/**
 * Screenshots of the cashier screen in its main states, at 1024×768 and on a small
 * screen, to look at after changing the page:
 *
 *   node --import tsx bench/terminal/screenshots.ts [outDir]
 *
 * It runs a demo store and a terminal with simulated devices, drives the page like a
 * cashier, and writes PNGs to outDir (default: $TMPDIR/mallpos-screens).
 */
import { mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closeSharedBrowser, launchBrowser, openScreen, startTerminalRig, VIEWPORT_SMALL } from '../../test/helpers/browser.ts';

const outDir = process.argv[2] ?? join(tmpdir(), 'mallpos-screens');
await mkdir(outDir, { recursive: true });
const rig = await startTerminalRig();
const browser = await launchBrowser();
const shots: string[] = [];
try {
  const t = rig.terminal;
  const scanner = t.virtualScanner;
  if (scanner === null) throw new Error('no virtual scanner');
  const page = await openScreen(browser, t.screen.url);
  page.on('pageerror', (e) => console.error(`page error: ${e.message}`));
  const shot = async (name: string, p = page, fullPage = false) => {
    const path = join(outDir, `${name}.png`);
    await p.screenshot({ path, fullPage });
    shots.push(path);
  };

  await shot('01-empty');
  for (const code of ['4006381333931', '9001001000014', '5901234123457', '4006381333931']) await scanner.scan(code);
  await scanner.scan('C0000000018');
  await page.waitForSelector('[data-testid="customer-name"]');
  await page.click('[data-testid="btn-tender"][data-token="ACME"]');
  await page.waitForSelector('[data-testid="pricing-error"]');
  await shot('02-not-enough-tokens');
  await page.click('[data-testid="btn-fix-tender"]');
  await page.waitForSelector('[data-testid="debit"]');
  await page.keyboard.press('F8');
  await page.keyboard.type('20');
  await page.keyboard.press('Enter');
  await page.waitForSelector('[data-testid="change"]');
  await shot('03-tokens-and-cash');
  await page.keyboard.press('F4');
  await page.waitForSelector('[data-testid="dlg-tokens"][open]');
  await shot('04-tokens-dialog');
  await page.keyboard.press('Escape');

  const small = await openScreen(browser, t.screen.url, VIEWPORT_SMALL);
  await shot('05-small', small);
  await shot('06-small-full', small, true);
  await small.close();

  await page.click('[data-testid="btn-complete"]');
  await page.waitForSelector('[data-testid="last-sale-id"]');
  await shot('07-sale-complete');
  const saleId = (await page.textContent('[data-testid="last-sale-id"]')) ?? '';
  await scanner.scan(saleId);
  await page.waitForSelector('[data-testid="refund-panel"][open]');
  await page.fill('[data-testid="refund-staff"]', 'sam');
  await page.fill('[data-testid="refund-reason"]', 'damaged item');
  await shot('08-refund');
  await page.keyboard.press('Escape');

  await rig.store.server.close();
  await page.waitForSelector('[data-testid="status-server"][data-state="bad"]');
  await scanner.scan('4006381333931');
  await page.waitForSelector('[data-testid="message"][data-kind="error"]');
  await shot('09-store-server-unreachable');
  console.log(shots.join('\n'));
} finally {
  await browser.close();
  await closeSharedBrowser();
  await rig.close();
}
