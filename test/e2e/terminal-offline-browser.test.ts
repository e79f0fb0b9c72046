import { expect } from 'chai';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { PrinterSimulator } from '../../hardware/printer/index.ts';
import type { RunningTerminal } from '../../terminal/run.ts';
import { screenQueries, startStandInScreen, waitFor, type StandInScreen } from '../helpers/browser.ts';
import { PEN, startOfflineStoreDouble, type OfflineStoreDouble } from '../helpers/offline-store-double.ts';

const UI_WAIT_MS = 30_000;

/**
 * The offline state on the cashier screen in headless chromium: a real terminal and the
 * printer simulator against a stand-in for the store server, which goes down and comes
 * back. The banner says the till sells cash only; the status bar counts the sales waiting.
 */
describe('e2e: selling offline on the cashier screen (against a stand-in store server)', function () {
  this.timeout(180_000);
  let store: OfflineStoreDouble;
  let printer: PrinterSimulator;
  let terminal: RunningTerminal;
  let screen: StandInScreen;
  let page: Page;
  let dataDir: string;

  const { tid, expectText } = screenQueries(() => page, UI_WAIT_MS);
  const scan = async (code: string) => {
    await page.fill('[data-testid="scan-input"]', code);
    await page.press('[data-testid="scan-input"]', 'Enter');
  };
  const payCash = async (amount: string, minor: number) => {
    await tid('btn-cash').click();
    await page.fill('[data-testid="cash-input"]', amount);
    await tid('btn-cash-ok').click();
    await waitFor(() => terminal.app.state().cart.cashTenderedMinor === minor, UI_WAIT_MS, 'the cash tendered set');
  };
  /** The receipts of the offline sales are in the print queue and noted so: the till takes the next sale. */
  const receiptsNoted = (n: number) =>
    waitFor(
      async () => {
        const saved = JSON.parse(await readFile(join(dataDir, 'offline-sales.json'), 'utf8')) as { sales: { printed: boolean }[] };
        return saved.sales.filter((e) => e.printed).length === n;
      },
      UI_WAIT_MS,
      `${n} offline receipts noted`,
    );

  before(async () => {
    store = await startOfflineStoreDouble({ maxSales: 2 });
    printer = new PrinterSimulator({ port: 0 });
    await printer.start();
    screen = await startStandInScreen(store, {
      dirPrefix: 'mallpos-offline-screen-',
      terminal: { scanner: 'none', printer: `tcp://127.0.0.1:${printer.port}`, port: 0, drawer: false, ackTimeoutMs: 1_000 },
      timeoutMs: UI_WAIT_MS,
      ready: { cond: (t) => t.app.state().status.server.state === 'connected' && t.app.state().offline.catalog !== null, what: 'connected with a catalog copy' },
    });
    ({ terminal, page, dataDir } = screen);
  });
  after(async () => {
    await screen?.close();
    await store?.close();
    await printer?.stop();
  });

  it('shows no offline state while the store server is reachable', async () => {
    await expectText('status-server', 'connected');
    expect(await tid('offline-banner').isHidden()).to.equal(true);
    expect(await tid('status-offline').isHidden()).to.equal(true);
  });

  it('shows the offline banner, sells for cash and counts the sales waiting in the status bar', async () => {
    await store.goDown();
    await expectText('offline-banner', /Selling offline: the store server is unreachable\. Cash sales only/);
    await expectText('status-offline', 'offline: 0 sales waiting');
    await scan(PEN);
    await expectText('total-money', '€4.50');
    await payCash('5', 500);
    await tid('btn-complete').click();
    await expectText('message-text', /recorded offline as t-offline-1/);
    await expectText('status-offline', 'offline: 1 sale waiting');
    const [receipt] = await printer.waitForReceipts(1, UI_WAIT_MS);
    expect(receipt!.lines.map((l) => l.text).join('\n')).to.include('RECORDED OFFLINE');
    await receiptsNoted(1);
  });

  it('says why a customer card is refused and when the till stops at its limit', async () => {
    await scan('C0000000018');
    await expectText('message-text', /customer cards cannot be used now, because balances are kept on the store server/);
    await scan(PEN);
    await expectText('total-money', '€4.50');
    await payCash('4.50', 450);
    await tid('btn-complete').click();
    await expectText('status-offline', 'offline: 2 sales waiting');
    await expectText('offline-banner', /Selling offline has stopped: 2 offline sales are waiting.*the till stops/);
    expect(await tid('offline-banner').getAttribute('data-stopped')).to.equal('true');
  });

  it('forwards the sales when the store server is back and clears the banner', async () => {
    await store.comeBack();
    await expectText('status-server', 'connected');
    await expectText('status-offline', 'offline: 0 sales waiting');
    await page.waitForSelector('[data-testid="offline-banner"]', { state: 'hidden', timeout: UI_WAIT_MS });
    expect(store.journal().map((r) => r.offlineId)).to.deep.equal(['t-offline-1', 't-offline-2']);
  });
});
