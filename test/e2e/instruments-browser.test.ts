import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import type { Page } from 'playwright-core';
import type { PrinterSimulator } from '../../hardware/printer/index.ts';
import { pairTerminal } from '../../terminal/credential.ts';
import type { RunningVendorServer } from '../../vendor-server/server.ts';
import { printedText, screenQueries, startStandInScreen, type StandInScreen } from '../helpers/browser.ts';
import { http } from '../helpers/http.ts';
import { startTestVendor, tempDir } from '../helpers/vendor.ts';
import { linkInstrumentStore, startInstrumentMall, type InstrumentMall } from '../vendor-server/instruments-rig.ts';

const UI_WAIT_MS = 30_000;
const PEN = '4006381333931'; // €4.50, or 45 MALL

/**
 * A gift certificate on the cashier screen in headless chromium: a real terminal (its
 * virtual serial scanner and printer simulator) and a real store server linked to a mall
 * that lists the certificate's key. The certificate's QR arrives from the serial scanner
 * in many chunks and is shown with what remains; it pays part of a sale; the receipt
 * prints what it paid and what remains; a typed short code then shows the new balance.
 */
describe('e2e: a gift certificate on the cashier screen', function () {
  this.timeout(180_000);
  let mall: InstrumentMall;
  let server: RunningVendorServer;
  let screen: StandInScreen;
  let page: Page;
  let sim: PrinterSimulator;
  let scanDir: string;
  let cleanup: () => Promise<void>;
  let certificate: { code: string; compact: string };
  const { tid, expectText } = screenQueries(() => page, UI_WAIT_MS);

  before(async () => {
    let root: string;
    ({ dir: root, cleanup } = await tempDir('mallpos-instruments-ui-'));
    scanDir = await mkdtemp(join(tmpdir(), 'mallpos-instruments-scan-'));
    mall = await startInstrumentMall(join(root, 'mall'));
    const vendorDir = join(root, 'vendor');
    const init = await linkInstrumentStore(vendorDir, mall);
    server = await startTestVendor(vendorDir);
    certificate = await mall.issue('gift', 500);
    screen = await startStandInScreen(
      {
        pair: async (dataDir) => {
          const created = await http(`${server.url}/api/terminals`, 'POST', { name: 'Till 1' }, { authorization: `Bearer ${init.operatorToken}` });
          await pairTerminal(dataDir, server.url, created.body.pairingCode as string);
        },
      },
      {
        dirPrefix: 'mallpos-instruments-till-',
        terminal: { scanner: 'sim', scannerSimDir: scanDir, printer: 'sim', printerSimPort: 0, port: 0, drawer: { pollIdleMs: 0 } },
        timeoutMs: UI_WAIT_MS,
        ready: { cond: (t) => t.app.state().status.server.state === 'connected' && t.app.state().status.scanner.state === 'connected', what: 'the terminal connected to the store and its scanner' },
      },
    );
    page = screen.page;
    if (screen.terminal.printerSim === null) throw new Error('no printer simulator');
    sim = screen.terminal.printerSim;
    await tid('btn-signin').click();
    await page.fill('[data-testid="signin-staff"]', 'ana');
    await page.fill('[data-testid="signin-pin"]', '1234');
    await page.keyboard.press('Enter');
    await expectText('cashier-name', 'Ana (cashier)');
  });
  after(async () => {
    await screen?.close();
    await server?.close();
    await mall?.close();
    await rm(scanDir, { recursive: true, force: true });
    await cleanup?.();
  });

  it('shows a certificate scanned by the serial scanner in many chunks, with what remains', async () => {
    expect(certificate.compact.length).to.be.greaterThan(128);
    const scanner = screen.terminal.virtualScanner;
    if (scanner === null) throw new Error('no virtual scanner');
    await scanner.scan(certificate.compact, { chunks: 16, chunkDelayMs: 5 });
    await expectText('instrument-code', certificate.code);
    await expectText('instrument-remaining', '500 MALL');
    await expectText('instrument-remaining', '€50.00');
    await expectText('instrument-source', 'as the mall has it now');
    // The signed form is the bearer's: never on the screen.
    expect(await page.locator('body').innerText()).to.not.include(certificate.compact.slice(-40));
  });

  it('pays part of a sale, and the receipt prints what it paid and what remains', async () => {
    const receipts = sim.receipts().length;
    await page.fill('[data-testid="scan-input"]', PEN);
    await page.keyboard.press('Enter');
    await expectText('cart-lines', 'Stabilo pen');
    await tid('btn-instrument-pay').click();
    await expectText('cart-instruments', certificate.code);
    await expectText('debits', '45 MALL');
    await expectText('cash-due', '€0.00');
    await page.keyboard.press('F9');
    await expectText('message', 'complete');
    await expectText('message', `455 MALL remain on ${certificate.code}`);
    const all = await sim.waitForReceipts(receipts + 1, UI_WAIT_MS);
    const text = printedText(all.at(-1));
    expect(text).to.include(`Gift certificate ${certificate.code}`);
    expect(text).to.match(/Remaining\s+455 MALL/);
    expect(text).to.match(/Paid\s+45 MALL/);
    expect(text).to.not.include(certificate.compact.slice(-40));
    expect(mall.instruments.get(certificate.code)?.remainingUnits).to.equal(455);
  });

  it('a balance inquiry by the typed short code shows the new remaining value', async () => {
    // The completed sale closed the certificate's panel.
    await page.locator('[data-testid="instruments"]').waitFor({ state: 'hidden', timeout: UI_WAIT_MS });
    await page.fill('[data-testid="scan-input"]', certificate.code.toLowerCase());
    await page.keyboard.press('Enter');
    await expectText('instrument-remaining', '455 MALL');
    await expectText('instrument-remaining', '€45.50');
    await expectText('message', '455 MALL');
    await tid('btn-instrument-close').click();
    await page.locator('[data-testid="instruments"]').waitFor({ state: 'hidden', timeout: UI_WAIT_MS });
  });

  it('attack: an altered certificate typed by a wedge scanner is refused with its reason, and the cart and store are unchanged', async () => {
    const [h, p, sig] = certificate.compact.split('.') as [string, string, string];
    const payload = JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as Record<string, unknown>;
    const altered = `${h}.${Buffer.from(JSON.stringify({ ...payload, u: 50_000 })).toString('base64url')}.${sig}`;
    const seq = server.ledger.state.seq;
    await tid('scan-input').focus();
    await page.keyboard.type(altered);
    await page.keyboard.press('Enter');
    await expectText('message', 'altered or forged');
    expect(server.ledger.state.seq).to.equal(seq);
    expect(await page.locator('[data-testid="instrument-view"]').count()).to.equal(0);
  });

  it('sells a gift certificate from its dialog, prints its QR code, then voids it with a supervisor', async () => {
    const receipts = sim.receipts().length;
    await tid('btn-sell-certificate').click();
    await page.selectOption('[data-testid="certificate-token"]', 'ACME');
    await page.fill('[data-testid="certificate-units"]', '400');
    await page.fill('[data-testid="certificate-tendered"]', '25');
    await tid('btn-certificate-sell-ok').click();
    await expectText('message', 'sold: 400 ACME for €20.00, change €5.00');
    const all = await sim.waitForReceipts(receipts + 1, UI_WAIT_MS);
    const slip = all.at(-1);
    const qr = slip?.qr[0] ?? '';
    expect(printedText(slip)).to.include('GIFT CERTIFICATE');
    const code = /Code (ACME-[0-9A-Z]+-\d{2})/.exec(printedText(slip))?.[1] ?? '';
    expect(code).to.match(/^ACME-/);
    // The printed QR code is the certificate: scanned back, the store checks it and shows it.
    await screen.terminal.virtualScanner?.scan(qr, { chunks: 9 });
    await expectText('instrument-code', code);
    await expectText('instrument-remaining', '400 ACME');
    await tid('btn-instrument-close').click();
    // Its batch has reached the mall (the mall double learns of it so).
    mall.learn('acme', code, qr, 'ACME', 400);
    await tid('btn-void-certificate').click();
    await page.fill('[data-testid="void-code"]', code);
    await page.fill('[data-testid="void-reason"]', 'sold by mistake');
    await page.fill('[data-testid="void-staff"]', 'sam');
    await page.fill('[data-testid="void-pin"]', '9999');
    await tid('btn-void-ok').click();
    await expectText('message', `${code} voided: hand back €20.00 in cash`);
    expect(server.ledger.state.instruments[code]?.voided).to.equal(true);
  });

  it('sells a mall certificate from stock: scanned, shown as unsold, sold from its panel', async () => {
    const stock = await mall.issue('gift', 300);
    (mall.instruments.get(stock.code) as { state: string }).state = 'unsold';
    const receipts = sim.receipts().length;
    await screen.terminal.virtualScanner?.scan(stock.compact, { chunks: 5 });
    await expectText('instrument-code', stock.code);
    await tid('btn-instrument-sell').click();
    await expectText('certificate-stock', `${stock.code}: 300 MALL`);
    await page.fill('[data-testid="certificate-tendered"]', '30');
    await tid('btn-certificate-sell-ok').click();
    await expectText('message', `${stock.code} sold: 300 MALL for €30.00`);
    const all = await sim.waitForReceipts(receipts + 1, UI_WAIT_MS);
    expect(all.at(-1)?.qr).to.deep.equal([stock.compact]);
    expect(server.ledger.state.instruments[stock.code]?.soldSeq).to.be.a('number');
  });
});
