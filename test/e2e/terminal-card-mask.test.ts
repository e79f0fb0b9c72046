import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import type { Page } from 'playwright-core';
import type { Socket } from 'socket.io-client';
import { launchBrowser, openScreen, screenSocket, startTerminalRig, type TerminalRig, type TestBrowser } from '../helpers/browser.ts';

const PEN = { code: '4006381333931', name: 'Stabilo pen, 4 colours' };
const ANNA = { card: 'C0000000018', name: 'Anna Berger', masked: 'C•••••••018' };
// Anna's card with a wrong check digit: the refusal names the card it read.
const MISREAD = { card: 'C0000000019', masked: 'C•••••••019' };
const UI_WAIT_MS = 5_000;

/** Every file under `dir`, as text. */
async function filesUnder(dir: string): Promise<{ path: string; text: string }[]> {
  const out: { path: string; text: string }[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    out.push({ path, text: await readFile(path, 'utf8') });
  }
  return out;
}

/**
 * A customer card number is a bearer credential: the cashier screen, the printed receipt
 * (decoded from the ESC/POS bytes by the printer simulator) and what the terminal keeps
 * on disk show only its last digits, through a whole sale, a misread card and a refund.
 */
describe('e2e: card numbers are masked on the cashier screen, receipts and the terminal disk', function () {
  this.timeout(60_000);
  let rig: TerminalRig | null = null;
  let browser: TestBrowser | null = null;
  let page: Page;
  let watcher: Socket | null = null;
  const pushed: string[] = [];

  const the = (): TerminalRig => {
    if (rig === null) throw new Error('no rig');
    return rig;
  };
  const tid = (id: string) => page.locator(`[data-testid="${id}"]`);
  const expectText = async (id: string, text: string) => {
    await page.waitForFunction(([sel, want]) => (document.querySelector(sel)?.textContent ?? '').includes(want), [`[data-testid="${id}"]`, text] as const, { timeout: UI_WAIT_MS });
  };
  const pageHtml = () => page.evaluate(() => document.documentElement.outerHTML);

  before(async () => {
    rig = await startTerminalRig();
    // Money events need a signed-in cashier.
    await rig.terminal.app.command({ type: 'login', staffId: 'ana', pin: '1234' });
    watcher = await screenSocket(rig.terminal.screen.url);
    watcher.on('state', (s: unknown) => pushed.push(JSON.stringify(s)));
    browser = await launchBrowser();
    page = await openScreen(browser, rig.terminal.screen.url);
    // The store sells only with a cashier signed in on the till.
    await rig.terminal.app.command({ type: 'login', staffId: 'ana', pin: '1234' });
    expect(rig.terminal.app.state().cashier?.staffId).to.equal('ana');
  });
  after(async () => {
    watcher?.disconnect();
    await browser?.close();
    await rig?.close();
  });

  it('shows the customer with the card masked, and /state holds no whole card', async () => {
    const scanner = the().terminal.virtualScanner;
    if (scanner === null) throw new Error('no virtual scanner');
    await scanner.scan(PEN.code);
    await scanner.scan(ANNA.card);
    await expectText('customer-name', ANNA.name);
    expect(await tid('customer-card').textContent()).to.equal(`Card ${ANNA.masked}`);
    expect(await pageHtml()).to.not.include(ANNA.card);
    const state = await page.evaluate(() => fetch('/state').then((r) => r.text()));
    expect(state).to.include(ANNA.masked).and.not.include(ANNA.card);
  });

  it('prints the receipt with the card masked', async () => {
    await page.click('[data-testid="btn-tender"][data-token="ACME"]');
    await expectText('debits', '90 ACME');
    await page.click('[data-testid="btn-complete"]');
    await page.waitForSelector('[data-testid="message"][data-kind="success"]', { timeout: UI_WAIT_MS });
    const sim = the().terminal.printerSim;
    if (sim === null) throw new Error('no printer simulator');
    const [receipt] = await sim.waitForReceipts(1, UI_WAIT_MS);
    const printed = (receipt?.lines ?? []).map((l) => l.text).join('\n');
    // PC858 has no bullet: the printer's fallback prints it as "*".
    expect(printed).to.include(`Customer: ${ANNA.name}`).and.include('C*******018');
    expect(printed).to.not.include(ANNA.card);
    expect(await pageHtml()).to.not.include(ANNA.card);
  });

  it('masks the card a refusal names, and the refund panel of a scanned receipt', async () => {
    await page.focus('[data-testid="scan-input"]');
    await page.keyboard.type(MISREAD.card, { delay: 2 });
    await page.keyboard.press('Enter');
    await expectText('message', 'wrong check digit');
    expect(await tid('message-text').textContent()).to.include(MISREAD.masked);
    expect(await pageHtml()).to.not.include(MISREAD.card);

    const saleId = (await tid('last-sale-id').textContent()) ?? '';
    await the().terminal.virtualScanner?.scan(saleId);
    await page.locator('[data-testid="refund-panel"][open]').waitFor({ timeout: UI_WAIT_MS });
    await expectText('refund-sale', ANNA.name);
    expect(await pageHtml()).to.not.include(ANNA.card);
    await page.keyboard.press('Escape');
  });

  it('pushed no whole card to any screen, and keeps none on the terminal disk', async () => {
    expect(pushed.length).to.be.greaterThan(3);
    for (const s of pushed) expect(s).to.not.include(ANNA.card).and.not.include(MISREAD.card);
    expect(pushed.some((s) => s.includes(ANNA.masked))).to.equal(true);
    const files = await filesUnder(the().dataDir);
    expect(files.map((f) => f.path).some((p) => p.endsWith('print-queue.json'))).to.equal(true);
    for (const f of files) expect(f.text, f.path).to.not.include(ANNA.card).and.not.include(MISREAD.card);
  });
});
