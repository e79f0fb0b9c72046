import { expect } from 'chai';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import type { PrinterSimulator } from '../../hardware/printer/index.ts';
import { startTerminal, type RunningTerminal } from '../../terminal/run.ts';
import { startCashierDayDouble, type CashierDayDouble } from '../helpers/cashier-day-double.ts';
import { printedText as printed, screenQueries, startStandInScreen, waitFor, type StandInScreen } from '../helpers/browser.ts';

const UI_WAIT_MS = 30_000;

/**
 * The cashier's day on the cashier screen in headless chromium: a real terminal with
 * the printer simulator (its drawer kept shut until the test closes it), against a
 * stand-in for the store server's shift, drawer and report events. Steps run in order,
 * as one shift would: sign in, open with a count, paid in, no sale, X report, close
 * with a blind count and see the result, Z report.
 */
describe('e2e: the cashier\'s day on the cashier screen (against a stand-in store server)', function () {
  this.timeout(180_000);
  let store: CashierDayDouble;
  let terminal: RunningTerminal;
  let sim: PrinterSimulator;
  let screen: StandInScreen;
  let page: Page;
  let dataDir: string;

  const { tid, expectText, dialogOpen, dialogClosed } = screenQueries(() => page, UI_WAIT_MS);
  /** The cashier shuts the drawer; the status bar follows the printer's answer. */
  const shutDrawer = async () => {
    sim.closeDrawer();
    await expectText('status-drawer', 'closed');
  };

  before(async () => {
    store = await startCashierDayDouble();
    screen = await startStandInScreen(store, {
      dirPrefix: 'mallpos-day-',
      terminal: {
        scanner: 'none',
        printer: 'sim',
        printerSimPort: 0,
        printerSimDrawerCloseAfterMs: 0,
        port: 0,
        drawer: { openWarnMs: 60_000, pollOpenMs: 50, pollIdleMs: 100 },
      },
      timeoutMs: UI_WAIT_MS,
    });
    ({ terminal, page, dataDir } = screen);
    if (terminal.printerSim === null) throw new Error('no printer simulator');
    sim = terminal.printerSim;
  });
  after(async () => {
    await screen?.close();
    await store?.close();
  });

  it('shows no shift and a closed drawer in the status bar, then opens a shift on a count by notes and coins (touch)', async () => {
    await expectText('status-shift', 'none open');
    await expectText('status-drawer', 'closed');
    await tid('btn-signin').click();
    await page.fill('[data-testid="signin-staff"]', 'ana');
    await page.fill('[data-testid="signin-pin"]', '1234');
    await page.keyboard.press('Enter');
    await expectText('cashier-name', 'Ana (cashier)');

    await tid('btn-shift-open').click();
    await dialogOpen('dlg-shift-open');
    await page.click('[data-testid="dlg-shift-open"] [data-testid="shift-open-pieces"] summary');
    await page.fill('[data-testid="dlg-shift-open"] [data-testid="count-piece"][data-value="5000"]', '2');
    await page.fill('[data-testid="dlg-shift-open"] [data-testid="count-piece"][data-value="1000"]', '5');
    await expectText('shift-open-sum', '€150.00');
    const kicks = sim.drawerKicks().length;
    await tid('btn-shift-open-ok').click();
    await dialogClosed('dlg-shift-open');

    await expectText('status-shift', 'open since');
    const opened = store.requests.filter((r) => r.event === 'shift:open');
    expect(opened).to.have.length(1);
    // The store sums the pieces itself: the page sends what was counted.
    expect(opened[0]?.payload['count']).to.deep.equal({ denominations: [{ valueMinor: 5000, count: 2 }, { valueMinor: 1000, count: 5 }] });
    expect(String(opened[0]?.payload['key'])).to.match(/^T-DOUBLE:[0-9a-f-]{36}$/);
    expect(store.shift()?.openingFloatMinor).to.equal(15000);
    // The float goes into the drawer: it opened, and the status bar shows it.
    await sim.waitForDrawerKicks(kicks + 1, UI_WAIT_MS);
    await expectText('status-drawer', 'open');
    await shutDrawer();
    expect(await tid('btn-shift-close').isVisible()).to.equal(true);
  });

  it('records a paid-in from the keyboard and opens the drawer', async () => {
    const kicks = sim.drawerKicks().length;
    await page.keyboard.press('F5');
    await dialogOpen('dlg-cash-move');
    await page.fill('[data-testid="cash-move-amount"]', '20');
    await page.fill('[data-testid="cash-move-reason"]', 'change from the bank');
    await page.keyboard.press('Enter');
    await dialogClosed('dlg-cash-move');
    await expectText('message', 'Paid in: €20.00');
    expect(store.shift()?.paidInMinor).to.equal(2000);
    await sim.waitForDrawerKicks(kicks + 1, UI_WAIT_MS);
    await shutDrawer();
  });

  it('refuses a no-sale without the supervisor\'s PIN, keeping the drawer shut, then opens it with it', async () => {
    const kicks = sim.drawerKicks().length;
    await page.keyboard.press('F6');
    await dialogOpen('dlg-no-sale');
    await page.fill('[data-testid="no-sale-staff"]', 'sam');
    await page.fill('[data-testid="no-sale-pin"]', '0000');
    await page.fill('[data-testid="no-sale-reason"]', 'change for a customer');
    await page.keyboard.press('Enter');
    // The refusal shows in the dialog, which stays open with the reason kept.
    await page.locator('[data-testid="dlg-no-sale"] [data-role="error"]:not([hidden])').waitFor({ timeout: UI_WAIT_MS });
    expect(await page.inputValue('[data-testid="no-sale-reason"]')).to.equal('change for a customer');
    expect(store.noSales()).to.deep.equal([]);
    expect(sim.drawerKicks()).to.have.length(kicks);
    expect(sim.drawerOpen()).to.equal(false);

    await page.fill('[data-testid="no-sale-pin"]', '9999');
    await page.keyboard.press('Enter');
    await dialogClosed('dlg-no-sale');
    await sim.waitForDrawerKicks(kicks + 1, UI_WAIT_MS);
    expect(store.noSales().map((n) => ({ reason: n.reason, supervisor: n.supervisor }))).to.deep.equal([{ reason: 'change for a customer', supervisor: 'sam' }]);
    await shutDrawer();
    // The supervisor's PIN is written nowhere on the terminal's disk.
    const onDisk = await Promise.all(['print-queue.json'].map((f) => readFile(join(dataDir, f), 'utf8').catch(() => '')));
    expect(onDisk.join('')).to.not.include('"9999"');
  });

  it('prints an X report on demand', async () => {
    const receipts = sim.receipts().length;
    await page.keyboard.press('F7');
    await dialogOpen('dlg-x-report');
    await page.keyboard.press('Enter');
    await dialogClosed('dlg-x-report');
    const all = await sim.waitForReceipts(receipts + 1, UI_WAIT_MS);
    const text = printed(all.at(-1));
    expect(text).to.include('X REPORT, SHIFT').and.include('Net').and.include('€37.50').and.include('Paid in').and.include('€20.00');
    expect(text).to.include('Nothing is closed by an X report');
  });

  it('closes the shift on a blind count, then shows the result and prints the slip', async () => {
    const kicks = sim.drawerKicks().length;
    const receipts = sim.receipts().length;
    await page.keyboard.press('F3');
    await dialogOpen('dlg-shift-close');
    // Blind: nothing on the page tells the cashier what the store expects.
    const expected = '€180.00';
    expect(await page.locator('body').innerText()).to.not.include(expected);
    await page.fill('[data-testid="shift-close-total"]', '179.50');
    await page.keyboard.press('Enter');

    await dialogOpen('dlg-shift-result');
    await expectText('shift-result-counted', '€179.50');
    await expectText('shift-result-expected', expected);
    await expectText('shift-result-over-short', 'short by €0.50');
    expect(store.requests.filter((r) => r.event === 'shift:close').map((r) => r.payload['count'])).to.deep.equal([{ totalMinor: 17950 }]);
    await sim.waitForDrawerKicks(kicks + 1, UI_WAIT_MS);
    const all = await sim.waitForReceipts(receipts + 1, UI_WAIT_MS);
    expect(printed(all.at(-1))).to.include('SHIFT CLOSED').and.include('Expected').and.include('€180.00').and.include('-€0.50');

    await page.keyboard.press('Escape');
    await dialogClosed('dlg-shift-result');
    await expectText('status-shift', 'none open');
    expect(await tid('btn-shift-open').isVisible()).to.equal(true);
    await shutDrawer();
  });

  it('closes the day with a Z report approved by a supervisor', async () => {
    const receipts = sim.receipts().length;
    await page.keyboard.press('Shift+F7');
    await dialogOpen('dlg-z-report');
    await page.fill('[data-testid="z-report-staff"]', 'sam');
    await page.fill('[data-testid="z-report-pin"]', '9999');
    await page.keyboard.press('Enter');
    await dialogClosed('dlg-z-report');
    const all = await sim.waitForReceipts(receipts + 1, UI_WAIT_MS);
    expect(printed(all.at(-1))).to.include('Z REPORT 1').and.include('Grand total');
    await expectText('message', 'Z report 1 printed');
  });
});

describe('terminal: a cash operation whose answer is lost counts once', function () {
  this.timeout(120_000);
  let store: CashierDayDouble;
  let terminal: RunningTerminal;
  let dataDir: string;

  before(async () => {
    store = await startCashierDayDouble();
    dataDir = await mkdtemp(join(tmpdir(), 'mallpos-day-'));
    await store.pair(dataDir);
    terminal = await startTerminal({ dataDir, scanner: 'none', printer: 'sim', printerSimPort: 0, port: 0, ackTimeoutMs: 500, drawer: { pollIdleMs: 0 } });
    await waitFor(() => terminal.app.state().status.server.state === 'connected', UI_WAIT_MS, 'the terminal connected');
    await terminal.app.command({ type: 'login', staffId: 'ana', pin: '1234' });
    await terminal.app.command({ type: 'openShift', count: { totalMinor: 10000 } });
    expect(store.shift()?.openingFloatMinor).to.equal(10000);
  });
  after(async () => {
    await terminal?.close();
    await store?.close();
    if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true });
  });

  it('sends a paid-out again under the same key after a lost answer; the store applies it once', async () => {
    store.dropNextAnswer('shift:cash-move');
    await terminal.app.command({ type: 'cashMove', kind: 'paid-out', amountMinor: 700, reason: 'window cleaner' });
    const sent = store.requests.filter((r) => r.event === 'shift:cash-move');
    expect(sent).to.have.length(2);
    expect(sent[0]?.payload['key']).to.be.a('string').and.equal(sent[1]?.payload['key']);
    expect(store.shift()?.paidOutMinor).to.equal(700);
    expect(terminal.app.state().message?.text).to.equal('paid out: €7.00 (window cleaner)');
    // Answered: the key is forgotten, so the next paid-out is a new one.
    await terminal.app.command({ type: 'cashMove', kind: 'paid-out', amountMinor: 700, reason: 'window cleaner' });
    const keys = store.requests.filter((r) => r.event === 'shift:cash-move').map((r) => r.payload['key']);
    expect(new Set(keys).size).to.equal(2);
    expect(store.shift()?.paidOutMinor).to.equal(1400);
  });

  it('keeps a no-sale whose answers were all lost under its key on disk, without the PIN, and sends it again under that key', async () => {
    // Every attempt's answer is lost: the outcome is unknown, so the key stays on disk.
    store.dropNextAnswer('drawer:no-sale', 5);
    await terminal.app.command({ type: 'noSale', staffId: 'sam', pin: '9999', reason: 'count the drawer' });
    expect(terminal.app.state().message?.code).to.equal('POS_ERR_OFFLINE');
    const pending = await readFile(join(dataDir, 'pending-cash-op.json'), 'utf8');
    expect(pending).to.not.include('9999');
    const sent = store.requests.filter((r) => r.event === 'drawer:no-sale');
    expect(sent).to.have.length(5);
    const key = sent[0]?.payload['key'];
    expect(new Set(sent.map((r) => r.payload['key']))).to.deep.equal(new Set([key]));
    expect(pending).to.include(String(key));
    expect(store.noSales()).to.have.length(1);

    // The cashier tries the same no-sale again: the same key, so it is recorded once.
    await terminal.app.command({ type: 'noSale', staffId: 'sam', pin: '9999', reason: 'count the drawer' });
    expect(store.requests.filter((r) => r.event === 'drawer:no-sale').at(-1)?.payload['key']).to.equal(key);
    expect(store.noSales()).to.have.length(1);
    expect(terminal.app.state().message?.text).to.match(/no-sale recorded/);
    expect(await readFile(join(dataDir, 'pending-cash-op.json'), 'utf8').catch(() => null)).to.equal(null);
  });

  it('refuses a second shift on the till without asking the store', async () => {
    const before = store.requests.length;
    await terminal.app.command({ type: 'openShift', count: { totalMinor: 5000 } });
    expect(terminal.app.state().message?.text).to.match(/already open/);
    expect(store.requests.length).to.equal(before);
  });
});
