import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import type { Page } from 'playwright-core';
import { makeCardNumber } from '../../core/index.ts';
import type { BidAck, LotView } from '../../core/auctions.ts';
import { launchBrowser, type TestBrowser } from '../helpers/browser.ts';
import { call, expectOk, startDemoStore, type DemoStore, type TerminalClient } from '../helpers/vendor.ts';

const ANNA = { id: 'cust-000001', card: makeCardNumber(1) };
const BULENT = { id: 'cust-000002', card: makeCardNumber(2) };
const DEADLINE_MS = 30_000;

/**
 * The bid board in headless Chromium, served by the vendor server: it shows the lots
 * without a card, a bid made at a till appears on it as it lands, and a customer bids
 * from it with card and PIN.
 */
describe('e2e: the bid board in a browser', function () {
  this.timeout(120_000);
  let store: DemoStore;
  let browser: TestBrowser;
  let page: Page;
  let till: { terminalId: string; socket: TerminalClient };
  let lot: LotView;

  before(async () => {
    store = await startDemoStore();
    till = await store.openTill('Till 1');
    const res = await store.operator('POST', '/api/lots', { title: 'Signed guitar', token: 'ACME', reserveUnits: 0, incrementUnits: 10, closesAt: new Date(Date.now() + 3_600_000).toISOString() }, { 'idempotency-key': randomUUID() });
    expect(res.status, res.text).to.equal(200);
    lot = res.body as LotView;
    expect((await store.operator('PUT', `/api/customers/${BULENT.id}/pin`, { pin: '1357' })).status).to.equal(200);
    browser = await launchBrowser();
    // The store's certificate is issued by its own authority, which this browser does not know.
    const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } });
    page = await context.newPage();
    await page.goto(`${store.server.url}/board`);
    await page.waitForSelector('body[data-ready="1"]', { timeout: DEADLINE_MS });
  });
  after(async () => {
    await browser?.close();
    await store?.close();
  });

  it('shows the open lot to anyone, without a card', async () => {
    const article = page.locator(`article[data-lot="${lot.lotId}"]`);
    await article.waitFor({ timeout: DEADLINE_MS });
    expect(await article.locator('.title').textContent()).to.equal('Signed guitar');
    expect(await article.locator('.high').textContent()).to.equal('no bids');
    expect(await article.locator('.left').textContent()).to.match(/closes in/);
  });

  it('shows a bid made at a till as it lands', async () => {
    const ack = expectOk(await call<BidAck>(till.socket, 'lot:bid', { key: `${till.terminalId}:${randomUUID()}`, lotId: lot.lotId, card: ANNA.card, units: 10 }));
    expect(ack.units).to.equal(10);
    const high = page.locator(`article[data-lot="${lot.lotId}"][data-bids="1"] .high`);
    await high.waitFor({ timeout: DEADLINE_MS });
    expect(await high.textContent()).to.equal('10 ACME');
    // The bidder is shown by a masked card only.
    const meta = (await page.locator(`article[data-lot="${lot.lotId}"] .meta`).first().textContent()) ?? '';
    expect(meta).to.not.include(ANNA.card);
  });

  it('takes a bid from the board with card and PIN, and refuses a wrong PIN', async () => {
    await page.selectOption('#bid-lot', lot.lotId);
    await page.fill('#bid-card', BULENT.card);
    await page.fill('#bid-pin', '0000');
    await page.fill('#bid-units', '20');
    await page.click('#bid-send');
    await page.locator('#message.bad').waitFor({ timeout: DEADLINE_MS });
    expect(await page.locator('#message').textContent()).to.match(/PIN/);
    expect(store.server.auctions.view(lot.lotId).high?.units).to.equal(10);
    await page.fill('#bid-pin', '1357');
    await page.click('#bid-send');
    await page.locator(`article[data-lot="${lot.lotId}"][data-bids="2"]`).waitFor({ timeout: DEADLINE_MS });
    expect(await page.locator('#message').textContent()).to.match(/your bid of 20 is the high bid/);
    expect(store.server.auctions.view(lot.lotId).high?.units).to.equal(20);
  });
});
