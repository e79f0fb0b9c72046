import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import type { Page } from 'playwright-core';
import { makeCardNumber } from '../../core/index.ts';
import type { BidAck, LotView } from '../../core/auctions.ts';
import { launchBrowser, openScreen, screenQueries, startTerminalRig, type TerminalRig, type TestBrowser } from '../helpers/browser.ts';
import { call, expectOk } from '../helpers/vendor.ts';

const UI_WAIT_MS = 30_000;
const ANNA_CARD = makeCardNumber(1);
const BULENT_CARD = makeCardNumber(2);

/**
 * Auctions on the cashier screen in headless chromium: a real terminal paired with a
 * demo store. The till shows the open lot and its high bid, bids for the scanned
 * customer from the keyboard (F1, Enter) and by touch (the lot's Bid button), and a bid
 * made at another till appears as it lands.
 */
describe('e2e: auctions on the cashier screen', function () {
  this.timeout(180_000);
  // The auction service's clock: the test moves it past a lot's close instead of waiting for it.
  let aheadMs = 0;
  const auctionClock = () => new Date(Date.now() + aheadMs);
  let rig: TerminalRig;
  let browser: TestBrowser;
  let page: Page;
  let lot: LotView;
  const { tid, expectText, dialogOpen, dialogClosed } = screenQueries(() => page, UI_WAIT_MS);
  const high = () => page.locator(`[data-testid="lot-row"][data-lot="${lot.lotId}"] [data-testid="lot-high"]`);

  before(async () => {
    rig = await startTerminalRig({ auctionClock });
    const res = await rig.store.operator('POST', '/api/lots', { title: 'Espresso machine', token: 'ACME', reserveUnits: 0, incrementUnits: 10, closesAt: new Date(Date.now() + 3_600_000).toISOString() }, { 'idempotency-key': randomUUID() });
    expect(res.status, res.text).to.equal(200);
    lot = res.body as LotView;
    browser = await launchBrowser();
    page = await openScreen(browser, rig.terminal.screen.url);
    await tid('btn-signin').click();
    await page.fill('[data-testid="signin-staff"]', 'ana');
    await page.fill('[data-testid="signin-pin"]', '1234');
    await page.keyboard.press('Enter');
    await expectText('cashier-name', 'Ana (cashier)');
  });
  after(async () => {
    await browser?.close();
    await rig?.close();
  });

  it('shows the open lot beside the cart', async () => {
    await high().waitFor({ timeout: UI_WAIT_MS });
    expect(await high().textContent()).to.equal('no bids');
  });

  it('bids for the scanned customer from the keyboard: F1, the least bid filled in, Enter', async () => {
    await page.fill('[data-testid="scan-input"]', ANNA_CARD);
    await page.keyboard.press('Enter');
    await expectText('customer', 'Anna');
    await page.keyboard.press('F1');
    await dialogOpen('dlg-bid');
    expect(await tid('bid-units').inputValue()).to.equal('10');
    await page.keyboard.press('Enter');
    await dialogClosed('dlg-bid');
    await expectText('message-text', /high bidder on Espresso machine at 10 ACME/);
    await page.locator(`[data-testid="lot-row"][data-lot="${lot.lotId}"][data-bids="1"]`).waitFor({ timeout: UI_WAIT_MS });
    expect(await high().textContent()).to.equal('10 ACME');
    // The customer's balance shows the units held.
    expect(rig.store.server.ledger.customerView('cust-000001').balances.find((b) => b.token === 'ACME')?.units).to.equal(190);
  });

  it('shows a bid made at another till as it lands', async () => {
    const other = await rig.store.openTill('Till 2');
    expectOk(await call<BidAck>(other.socket, 'lot:bid', { key: `${other.terminalId}:${randomUUID()}`, lotId: lot.lotId, card: BULENT_CARD, units: 20 }));
    await page.locator(`[data-testid="lot-row"][data-lot="${lot.lotId}"][data-bids="2"]`).waitFor({ timeout: UI_WAIT_MS });
    expect(await high().textContent()).to.equal('20 ACME');
  });

  it('bids by touch with the lot\'s own button, and says why a low bid is refused', async () => {
    await page.locator(`[data-testid="btn-lot-bid"][data-lot="${lot.lotId}"]`).click();
    await dialogOpen('dlg-bid');
    expect(await tid('bid-units').inputValue()).to.equal('30');
    await tid('bid-units').fill('25');
    await tid('btn-bid-ok').click();
    await page.locator('[data-testid="dlg-bid"] [data-role="error"]:not([hidden])').waitFor({ timeout: UI_WAIT_MS });
    expect(await page.locator('[data-testid="dlg-bid"] [data-role="error"]').textContent()).to.match(/least bid/);
    await tid('bid-units').fill('30');
    await tid('btn-bid-ok').click();
    await dialogClosed('dlg-bid');
    await page.locator(`[data-testid="lot-row"][data-lot="${lot.lotId}"][data-bids="3"]`).waitFor({ timeout: UI_WAIT_MS });
    expect(await high().textContent()).to.equal('30 ACME');
  });

  it('prints the receipt at the till whose bid won, when the lot closes', async () => {
    const sim = rig.terminal.printerSim;
    if (sim === null) throw new Error('no printer simulator');
    const printedBefore = sim.receipts().length;
    const res = await rig.store.operator('POST', '/api/lots', { title: 'Signed ball', token: 'ACME', reserveUnits: 0, incrementUnits: 5, closesAt: new Date(auctionClock().getTime() + 60_000).toISOString(), snipeWindowSeconds: 0 }, { 'idempotency-key': randomUUID() });
    expect(res.status, res.text).to.equal(200);
    const ball = res.body as LotView;
    await page.locator(`[data-testid="btn-lot-bid"][data-lot="${ball.lotId}"]`).click();
    await dialogOpen('dlg-bid');
    await page.keyboard.press('Enter');
    await dialogClosed('dlg-bid');
    // The lot's close time comes: the auction clock is moved past it rather than waited for.
    aheadMs += 61_000;
    await rig.store.server.auctions.closeDue();
    await expectText('message-text', /Signed ball sold to card .* for 5 ACME: sale S\d+, receipt printed/);
    const deadline = Date.now() + UI_WAIT_MS;
    while (sim.receipts().length === printedBefore && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const text = (sim.receipts().at(-1)?.lines ?? []).map((l) => l.text).join('\n');
    expect(text).to.include('Signed ball');
  });
});
