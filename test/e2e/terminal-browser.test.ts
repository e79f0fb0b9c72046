import { expect } from 'chai';
import type { Page } from 'playwright-core';
import { launchBrowser, openScreen, startTerminalRig, tillSummary, waitDialogOpen, type TerminalRig, type TestBrowser } from '../helpers/browser.ts';

const PEN = { code: '4006381333931', name: 'Stabilo pen, 4 colours' };
const MUESLI = { code: '9001001000014', name: 'Müsli Classic 750 g' };
const BREAD = { code: '5901234123457', name: 'Baltic rye bread' };
const ANNA = { id: 'cust-000001', card: 'C0000000018', name: 'Anna Berger' };
const UI_WAIT_MS = 30_000;

/**
 * The cashier screen end to end, with the real parts: a demo vendor server, a paired
 * terminal reading the real serialport binding on a socat pty, the printer simulator
 * decoding ESC/POS over TCP, and the page in headless Debian chromium. The cases run in
 * order on one terminal, as one cashier's shift would.
 */
describe('e2e: cashier screen in headless chromium', function () {
  this.timeout(180_000);
  let rig: TerminalRig | null = null;
  let browser: TestBrowser | null = null;
  let page: Page;
  let firstSaleId = '';

  const tid = (id: string) => page.locator(`[data-testid="${id}"]`);
  const lines = () => page.locator('[data-testid="cart-line"]');
  const line = (name: string) => lines().filter({ has: page.locator('[data-testid="line-name"]', { hasText: name }) });
  const anna = async (): Promise<{ balances: { token: string; units: number }[] }> => {
    const res = await the().store.operator('GET', `/api/customers/${ANNA.id}`);
    expect(res.status, res.text).to.equal(200);
    return res.body;
  };
  const annaUnits = async (token: string) => (await anna()).balances.find((b) => b.token === token)?.units ?? 0;
  const the = (): TerminalRig => {
    if (rig === null) throw new Error('no rig');
    return rig;
  };
  const scanner = () => {
    const v = the().terminal.virtualScanner;
    if (v === null) throw new Error('no virtual scanner');
    return v;
  };
  const expectText = async (id: string, text: string | RegExp) => {
    await page.waitForFunction(
      ([sel, want, isRe]) => {
        const t = document.querySelector(sel)?.textContent ?? '';
        return isRe ? new RegExp(want).test(t) : t.includes(want);
      },
      [`[data-testid="${id}"]`, text instanceof RegExp ? text.source : text, text instanceof RegExp] as const,
      { timeout: UI_WAIT_MS },
    );
  };

  /** Waits for a dialog to open; when it does not, says what the till and the page were doing. */
  const dialogOpens = (testid: string) => waitDialogOpen(page, testid, UI_WAIT_MS, () => tillSummary(the().terminal));

  before(async () => {
    rig = await startTerminalRig();
    browser = await launchBrowser();
    page = await openScreen(browser, rig.terminal.screen.url);
  });
  after(async () => {
    await browser?.close();
    await rig?.close();
  });

  const signIn = async () => {
    await page.locator('[data-testid="dlg-signin"][open]').waitFor({ timeout: UI_WAIT_MS });
    await page.fill('[data-testid="signin-staff"]', 'ana');
    await page.fill('[data-testid="signin-pin"]', '1234');
    await page.keyboard.press('Enter');
    await expectText('cashier-name', 'Ana (cashier)');
  };
  const eventsWithKey = async (key: string): Promise<number> => {
    const exported = await the().store.operator('GET', '/api/ledger/export?format=jsonl');
    expect(exported.status).to.equal(200);
    return exported.text
      .trim()
      .split('\n')
      .filter((l) => (JSON.parse(l) as { event?: { key: string | null } }).event?.key === key).length;
  };
  const annaSales = async (): Promise<string[]> => {
    const history = await the().store.operator('GET', `/api/customers/${ANNA.id}/history`);
    expect(history.status, history.text).to.equal(200);
    return (history.body as { type: string; data: { saleId?: string } }[]).filter((e) => e.type === 'sale').map((e) => e.data.saleId ?? '');
  };

  it('shows scans from the serial scanner, pays with tokens by click, prints the receipt and debits once', async () => {
    expect(await annaUnits('ACME')).to.equal(200);
    await expectText('status-server', 'connected');
    await expectText('status-scanner', 'ready');
    await expectText('status-printer', 'ready');
    // The store sells only with a cashier signed in on the till.
    await expectText('cashier-name', 'Not signed in');
    await page.click('[data-testid="btn-signin"]');
    await signIn();

    await scanner().scan(PEN.code);
    await line(PEN.name).waitFor({ timeout: UI_WAIT_MS });
    const unit = await line(PEN.name).locator('[data-testid="line-unit"]').textContent();
    expect(unit).to.include('€4.50').and.include('90 ACME').and.include('45 MALL');
    expect(await line(PEN.name).locator('[data-testid="line-qty"]').textContent()).to.equal('1');

    await scanner().scan(ANNA.card);
    await expectText('customer-name', ANNA.name);
    expect(await page.locator('[data-testid="balance"][data-token="ACME"] [data-testid="balance-units"]').textContent()).to.match(/^200/);
    await expectText('total-money', '€4.50');
    expect(await page.locator('[data-testid="total-token"][data-token="ACME"]').textContent()).to.equal('90 ACME');

    await page.click('[data-testid="btn-tender"][data-token="ACME"]');
    await expectText('debits', '90 ACME');
    await expectText('cash-due', '€0.00');
    expect(await line(PEN.name).locator('[data-testid="line-paid"]').textContent()).to.equal('90 ACME');

    await page.click('[data-testid="btn-complete"]');
    await expectText('message', /Sale S\d{10} complete/);
    expect(await tid('message').getAttribute('data-kind')).to.equal('success');
    const saleId = (await tid('last-sale-id').textContent()) ?? '';
    expect(saleId).to.match(/^S\d{10}$/);
    firstSaleId = saleId;
    await expectText('last-sale-balances', '110 ACME');
    expect(await lines().count()).to.equal(0);

    const sim = the().terminal.printerSim;
    if (sim === null) throw new Error('no printer simulator');
    const [receipt] = await sim.waitForReceipts(1, UI_WAIT_MS);
    const text = (receipt?.lines ?? []).map((l) => l.text).join('\n');
    expect(text).to.include(PEN.name).and.include(saleId);

    // Exactly once: the balance went down by the price once, and there is one sale event.
    expect(await annaUnits('ACME')).to.equal(110);
    const history = await the().store.operator('GET', `/api/customers/${ANNA.id}/history`);
    const sales = (history.body as { type: string; data: { saleId?: string } }[]).filter((e) => e.type === 'sale');
    expect(sales.map((e) => e.data.saleId)).to.deep.equal([saleId]);
    await expectText('status-receipts', '0');
  });

  it('takes a keyboard-wedge scan typed anywhere on the page, and in the scan field', async () => {
    // Nothing focused: the burst goes to the page itself.
    await page.evaluate(() => (document.activeElement as HTMLElement | null)?.blur());
    await page.keyboard.type(MUESLI.code, { delay: 2 });
    await page.keyboard.press('Enter');
    await line(MUESLI.name).waitFor({ timeout: UI_WAIT_MS });

    // A focused button must not be pressed by the scanner's Enter.
    await page.focus('[data-testid="btn-cancel-sale"]');
    await page.keyboard.type(BREAD.code, { delay: 2 });
    await page.keyboard.press('Enter');
    await line(BREAD.name).waitFor({ timeout: UI_WAIT_MS });
    expect(await page.locator('dialog[open]').count()).to.equal(0);
    expect(await lines().count()).to.equal(2);
    // Space, which no code contains, still presses the focused button.
    await page.focus('[data-testid="btn-refund"]');
    await page.keyboard.press(' ');
    await page.locator('[data-testid="dlg-receipt"][open]').waitFor({ timeout: UI_WAIT_MS });
    await page.keyboard.press('Escape');
    await page.locator('dialog[open]').waitFor({ state: 'detached', timeout: UI_WAIT_MS });

    await page.focus('[data-testid="scan-input"]');
    await page.keyboard.type(BREAD.code, { delay: 2 });
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="cart-line"]')[1]?.querySelector('[data-testid="line-qty"]')?.textContent === '2', null, { timeout: UI_WAIT_MS });
  });

  it('changes a quantity and voids a line by keyboard only', async () => {
    await page.focus('[data-testid="scan-input"]');
    // The newest line (bread) is selected; F2 sets its quantity.
    await page.keyboard.press('F2');
    await page.keyboard.type('3');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => document.querySelector('tr.selected [data-testid="line-qty"]')?.textContent === '3', null, { timeout: UI_WAIT_MS });
    expect(await line(BREAD.name).locator('[data-testid="line-qty"]').textContent()).to.equal('3');

    await page.keyboard.press('ArrowUp');
    expect(await page.locator('tr.selected [data-testid="line-name"]').textContent()).to.equal(MUESLI.name);
    await page.keyboard.press('Delete');
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="cart-line"]').length === 1, null, { timeout: UI_WAIT_MS });
    expect(await lines().locator('[data-testid="line-name"]').allTextContents()).to.deep.equal([BREAD.name]);
    await expectText('message', 'Line voided');
  });

  it('says a refusal as a plain sentence and charges nothing', async () => {
    // Three breads cost 174 ACME; Anna holds 110.
    await scanner().scan(ANNA.card);
    await expectText('customer-name', ANNA.name);
    await page.keyboard.press('F4');
    await page.locator('[data-testid="dlg-tokens"][open]').waitFor({ timeout: UI_WAIT_MS });
    await page.check('[data-testid="token-use"][data-token="ACME"]');
    await page.fill('[data-testid="token-units"][data-token="ACME"]', '150');
    await page.keyboard.press('Enter');
    await expectText('pricing-error', 'Not enough ACME tokens: 40 short.');

    await page.click('[data-testid="btn-complete"]');
    await expectText('message', 'Not enough ACME tokens: 40 short.');
    expect(await tid('message').getAttribute('data-kind')).to.equal('error');
    const colour = await tid('message').evaluate((el) => getComputedStyle(el).color);
    const [r, g, b] = (colour.match(/\d+/g) ?? []).map(Number);
    expect(r ?? 0, `message colour ${colour}`).to.be.greaterThan((g ?? 0) + 60).and.greaterThan((b ?? 0) + 60);
    expect(await lines().count()).to.equal(1);
    expect(await annaUnits('ACME')).to.equal(110);

    // Cancel the sale by keyboard: Shift+Del asks, Enter confirms.
    await page.keyboard.press('Shift+Delete');
    await page.locator('[data-testid="dlg-cancel"][open]').waitFor({ timeout: UI_WAIT_MS });
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="cart-line"]').length === 0, null, { timeout: UI_WAIT_MS });
    await expectText('message', 'nothing was charged');
  });

  it('signs a cashier in, refunds a scanned receipt with a supervisor, signs out', async () => {
    await the().terminal.app.command({ type: 'logout' });
    await expectText('cashier-name', 'Not signed in');
    await page.click('[data-testid="btn-signin"]');
    await page.fill('[data-testid="signin-staff"]', 'ana');
    await page.fill('[data-testid="signin-pin"]', '1234');
    await page.keyboard.press('Enter');
    await expectText('cashier-name', 'Ana (cashier)');

    await scanner().scan(firstSaleId);
    await page.locator('[data-testid="refund-panel"][open]').waitFor({ timeout: UI_WAIT_MS });
    await expectText('refund-sale-id', firstSaleId);
    await page.fill('[data-testid="refund-staff"]', 'sam');
    await page.fill('[data-testid="refund-pin"]', '0000');
    await page.fill('[data-testid="refund-reason"]', 'damaged item');
    await page.keyboard.press('Enter');
    await page.locator('[data-testid="refund-form"] [data-role="error"]:not([hidden])').waitFor({ timeout: UI_WAIT_MS });
    expect(await annaUnits('ACME')).to.equal(110);

    await page.fill('[data-testid="refund-pin"]', '9999');
    await page.click('[data-testid="btn-refund-ok"]');
    await expectText('refund-result', 'Refunded as S');
    await expectText('refund-result', '90 ACME credited back');
    expect(await annaUnits('ACME')).to.equal(200);
    const [, refundReceipt] = (await the().terminal.printerSim?.waitForReceipts(2, UI_WAIT_MS)) ?? [];
    const refundId = /Refunded as (S\d{10})/.exec((await tid('refund-result').textContent()) ?? '')?.[1] ?? 'none';
    expect((refundReceipt?.lines ?? []).map((l) => l.text).join('\n')).to.include('REFUND').and.include(refundId);

    await page.keyboard.press('Escape');
    await page.locator('[data-testid="refund-panel"]:not([open])').waitFor({ state: 'attached', timeout: UI_WAIT_MS });

    // F10 reprints the last receipt (the refund's): the store counts it and the copy says it is a duplicate.
    await page.keyboard.press('F10');
    await expectText('message', 'Receipt reprinted (duplicate, reprint 1).');
    const all = (await the().terminal.printerSim?.waitForReceipts(3, UI_WAIT_MS)) ?? [];
    const reprint = (all[2]?.lines ?? []).map((l) => l.text).join('\n');
    expect(reprint).to.include(refundId).and.include('DUPLICATE');

    await page.click('[data-testid="btn-signout"]');
    await expectText('cashier-name', 'Not signed in');
  });

  it('asks for sign-in when no cashier is signed in, then completes the same sale once', async () => {
    await expectText('cashier-name', 'Not signed in');
    await scanner().scan(PEN.code);
    await line(PEN.name).waitFor({ timeout: UI_WAIT_MS });
    await expectText('total-money', '€4.50');
    await page.keyboard.press('F8');
    await page.locator('[data-testid="dlg-cash"][open]').waitFor({ timeout: UI_WAIT_MS });
    await page.click('[data-testid="cash-quick-btn"]:has-text("Exact")');
    await page.locator('[data-testid="dlg-cash"]:not([open])').waitFor({ state: 'attached', timeout: UI_WAIT_MS });
    // The till has the cash tendered before Complete is pressed (on a busy machine the
    // dialog can close before the terminal has applied it).
    const deadline = Date.now() + UI_WAIT_MS;
    while (the().terminal.app.state().cart.cashTenderedMinor !== 450) {
      if (Date.now() > deadline) throw new Error('timed out waiting for the cash tendered');
      await new Promise((r) => setTimeout(r, 20));
    }

    await page.keyboard.press('F9');
    // The sale waits for a cashier: the sign-in dialog opens by itself; nothing is charged.
    await dialogOpens('dlg-signin');
    const key = the().terminal.app.state().completing?.key ?? '';
    expect(the().terminal.app.state().completing?.waiting?.for).to.equal('cashier');
    await expectText('completing-text', 'A cashier must sign in');
    expect(await eventsWithKey(key)).to.equal(0);
    await signIn();
    await expectText('message', 'complete the sale again');
    expect(await tid('btn-complete').isEnabled()).to.equal(true);
    expect(await lines().count()).to.equal(1);

    await page.keyboard.press('F9');
    await expectText('message', /Sale S\d{10} complete/);
    expect(the().terminal.app.state().lastSale?.cash.dueMinor).to.equal(450);
    expect(key).to.match(/^t\d+:/);
    expect(await eventsWithKey(key)).to.equal(1);
  });

  it('asks for the customer PIN in a masked dialog, refuses a wrong one, charges once with the right one', async () => {
    const ledger = the().store.server.ledger;
    ledger.customerPinAboveMinor = 0;
    const set = await the().store.operator('PUT', `/api/customers/${ANNA.id}/pin`, { pin: '2580' });
    expect(set.status, set.text).to.equal(200);
    try {
      const before = await annaUnits('ACME');
      const salesBefore = await annaSales();
      await scanner().scan(PEN.code);
      await line(PEN.name).waitFor({ timeout: UI_WAIT_MS });
      await scanner().scan(ANNA.card);
      await expectText('customer-name', ANNA.name);
      await page.click('[data-testid="btn-tender"][data-token="ACME"]');
      await expectText('debits', '90 ACME');

      await page.click('[data-testid="btn-complete"]');
      const dialog = page.locator('[data-testid="dlg-customer-pin"][open]');
      await dialog.waitFor({ timeout: UI_WAIT_MS });
      expect(await tid('customer-pin-input').getAttribute('type')).to.equal('password');
      expect(await page.locator('[data-testid="dlg-customer-pin"] [data-role="error"]').isHidden()).to.equal(true);

      // A wrong PIN tapped on the keypad: refused in the dialog, nothing charged.
      for (const d of '1111') await page.click(`[data-testid="customer-pin-key"][data-key="${d}"]`);
      expect(await tid('customer-pin-input').inputValue()).to.equal('1111');
      await page.click('[data-testid="btn-customer-pin-ok"]');
      await page.locator('[data-testid="dlg-customer-pin"] [data-role="error"]:not([hidden])').waitFor({ timeout: UI_WAIT_MS });
      await expectText('dlg-customer-pin', 'The customer PIN is wrong');
      expect(await tid('customer-pin-input').inputValue()).to.equal('');
      expect(await annaUnits('ACME')).to.equal(before);

      // Esc gives up paying this way: the cart stays, nothing is charged.
      const firstKey = the().terminal.app.state().completing?.key ?? '';
      await page.keyboard.press('Escape');
      await expectText('message', 'nothing was charged');
      await page.locator('[data-testid="dlg-customer-pin"]:not([open])').waitFor({ state: 'attached', timeout: UI_WAIT_MS });
      expect(await lines().count()).to.equal(1);
      expect(the().terminal.app.state().completing).to.equal(null);
      expect(await eventsWithKey(firstKey)).to.equal(0);
      expect(await annaUnits('ACME')).to.equal(before);

      // Completed again, the right PIN typed on the keyboard completes the sale once.
      await page.keyboard.press('F9');
      await dialog.waitFor({ timeout: UI_WAIT_MS });
      const key = the().terminal.app.state().completing?.key ?? '';
      await tid('customer-pin-input').focus();
      await page.keyboard.type('2580');
      await page.keyboard.press('Enter');
      await expectText('message', /Sale S\d{10} complete/);
      await page.locator('[data-testid="dlg-customer-pin"]:not([open])').waitFor({ state: 'attached', timeout: UI_WAIT_MS });
      expect(await annaUnits('ACME')).to.equal(before - 90);
      expect((await annaSales()).slice(salesBefore.length)).to.deep.equal([the().terminal.app.state().lastSale?.saleId]);
      expect(await eventsWithKey(key)).to.equal(1);
    } finally {
      ledger.customerPinAboveMinor = null;
    }
  });

  it('keeps the cart when the store server stops, refuses Complete and charges nothing', async () => {
    const before = await annaUnits('ACME');
    const receipts = the().terminal.printerSim?.receipts().length;
    await scanner().scan(PEN.code);
    await scanner().scan(ANNA.card);
    await expectText('customer-name', ANNA.name);
    await page.click('[data-testid="btn-tender"][data-token="ACME"]');
    await expectText('debits', '90 ACME');

    await the().store.server.close();
    await page.waitForSelector('[data-testid="status-server"][data-state="bad"]', { timeout: UI_WAIT_MS });
    await expectText('status-server', 'unreachable');
    await expectText('status-detail', 'unreachable');
    expect(await lines().locator('[data-testid="line-name"]').allTextContents()).to.deep.equal([PEN.name]);

    await page.click('[data-testid="btn-complete"]');
    // Offline, a customer's tokens cannot be taken: the balances are on the store server.
    await expectText('message', /The store server is unreachable.*nothing was charged/);
    expect(await tid('message').getAttribute('data-kind')).to.equal('error');
    expect(await lines().count()).to.equal(1);
    expect(await tid('completing').isHidden()).to.equal(true);
    expect(the().terminal.printerSim?.receipts()).to.have.length(receipts ?? 0);

    // The journal on disk agrees: started again, the store has Anna's tokens untouched.
    await the().store.restart();
    expect(await annaUnits('ACME')).to.equal(before);
  });
});
