import { expect } from 'chai';
import type { ShiftView } from '../../core/index.ts';
import type { PrinterSimulator } from '../../hardware/printer/index.ts';
import { startTerminalRig, waitFor, type TerminalRig } from '../helpers/browser.ts';
import { call, expectOk, startDemoStore, type DemoStore } from '../helpers/vendor.ts';

const PEN = '4006381333931';
const ANNA_CARD = 'C0000000018';
const WAIT_MS = 30_000;

/**
 * The cashier's day end to end against the real store server: a paired terminal with
 * the printer simulator, driven through the same commands the cashier screen sends.
 * A shift opens on a count, cash sales and a paid-in move cash, a no-sale needs a
 * supervisor, an X report prints, the shift closes on a blind count with the store's
 * expected amount, a Z report closes the day, and reprints are counted duplicates.
 */
describe('e2e: the cashier\'s day against the store server', function () {
  this.timeout(180_000);
  let rig: TerminalRig;
  let sim: PrinterSimulator;

  before(async () => {
    rig = await startTerminalRig({ terminal: { printerSimDrawerCloseAfterMs: 0, drawer: { pollOpenMs: 50, pollIdleMs: 100 } } });
    if (rig.terminal.printerSim === null) throw new Error('no printer simulator');
    sim = rig.terminal.printerSim;
    await app().command({ type: 'login', staffId: 'ana', pin: '1234' });
    await waitFor(() => app().state().cashier !== null && app().state().shift.known, WAIT_MS, 'the cashier signed in and the shift known');
  });
  after(async () => {
    await rig?.close();
  });

  const app = () => rig.terminal.app;
  const message = () => app().state().message;
  const lastPrinted = async (count: number) => {
    const all = await sim.waitForReceipts(count, WAIT_MS);
    return (all.at(-1)?.lines ?? []).map((l) => l.text).join('\n');
  };
  const sellPen = async (steps: () => Promise<void>): Promise<string> => {
    await app().command({ type: 'scan', code: PEN });
    await waitFor(() => app().state().priced !== null, WAIT_MS, 'the cart priced');
    await steps();
    await app().command({ type: 'complete' });
    const saleId = /sale (S\d{10}) complete/.exec(message()?.text ?? '')?.[1];
    if (saleId === undefined) throw new Error(`the sale did not complete: ${message()?.text ?? ''}`);
    return saleId;
  };

  it('opens a shift on a count; the float goes into the drawer', async () => {
    expect(app().state().shift.current).to.equal(null);
    const kicks = sim.drawerKicks().length;
    await app().command({ type: 'openShift', count: { denominations: [{ valueMinor: 5000, count: 2 }, { valueMinor: 1000, count: 5 }] } });
    expect(message()?.kind, message()?.text).to.equal('success');
    const shift = app().state().shift.current;
    expect(shift?.status).to.equal('open');
    expect(shift?.openingFloatMinor).to.equal(15000);
    expect(shift?.staffId).to.equal('ana');
    await sim.waitForDrawerKicks(kicks + 1, WAIT_MS);
    sim.closeDrawer();
  });

  it('opens the drawer at a cash sale and never at a token-only sale; the shift counts the cash', async () => {
    const kicks = sim.drawerKicks().length;
    await sellPen(async () => {
      await app().command({ type: 'setCash', cashTenderedMinor: 1000 });
    });
    await sim.waitForDrawerKicks(kicks + 1, WAIT_MS);
    sim.closeDrawer();

    await app().command({ type: 'scan', code: ANNA_CARD });
    await sellPen(async () => {
      await app().command({ type: 'setTenders', tenders: [{ token: 'ACME' }] });
      await waitFor(() => app().state().priced?.cashDueMinor === 0, WAIT_MS, 'the cart priced in tokens');
    });
    await sim.waitForReceipts(2, WAIT_MS);
    expect(sim.drawerKicks()).to.have.length(kicks + 1);

    await waitFor(() => {
      const s = app().state().shift.current;
      return s !== null && s.cashSalesMinor - s.changeGivenMinor === 450;
    }, WAIT_MS, 'the shift to count the cash sale, net of change');
  });

  it('records a paid-in, opening the drawer', async () => {
    const kicks = sim.drawerKicks().length;
    await app().command({ type: 'cashMove', kind: 'paid-in', amountMinor: 2000, reason: 'change from the bank' });
    expect(message()?.kind, message()?.text).to.equal('success');
    expect(app().state().shift.current?.paidInMinor).to.equal(2000);
    await sim.waitForDrawerKicks(kicks + 1, WAIT_MS);
    sim.closeDrawer();
  });

  it('refuses a no-sale without a supervisor and keeps the drawer shut; journals it with one', async () => {
    const kicks = sim.drawerKicks().length;
    await app().command({ type: 'noSale', staffId: 'ana', pin: '1234', reason: 'change for a customer' });
    expect(message()?.kind).to.equal('error');
    await app().command({ type: 'noSale', staffId: 'sam', pin: '0000', reason: 'change for a customer' });
    expect(message()?.kind).to.equal('error');
    expect(sim.drawerKicks()).to.have.length(kicks);

    await app().command({ type: 'noSale', staffId: 'sam', pin: '9999', reason: 'change for a customer' });
    expect(message()?.kind, message()?.text).to.equal('success');
    await sim.waitForDrawerKicks(kicks + 1, WAIT_MS);
    sim.closeDrawer();
    const exported = await rig.store.operator('GET', '/api/ledger/export?format=jsonl');
    expect(exported.status).to.equal(200);
    expect(exported.text).to.include('change for a customer');
    expect(exported.text).to.not.include('"9999"');
  });

  it('prints an X report on demand that closes nothing', async () => {
    const printed = sim.receipts().length;
    await app().command({ type: 'xReport', scope: 'shift' });
    expect(message()?.kind, message()?.text).to.equal('success');
    const text = await lastPrinted(printed + 1);
    expect(text).to.include('X REPORT, SHIFT').and.include('Paid in').and.include('€20.00');
    expect(app().state().shift.current?.status).to.equal('open');
  });

  it('reprints the last receipt as a counted duplicate', async () => {
    const printed = sim.receipts().length;
    await app().command({ type: 'reprint' });
    // PC858 has no em dash: the printer gets "-" in its place.
    expect(await lastPrinted(printed + 1)).to.include('DUPLICATE - reprint 1');
    await app().command({ type: 'reprint' });
    expect(await lastPrinted(printed + 2)).to.include('DUPLICATE - reprint 2');
  });

  it('closes the shift on a blind count and shows what the store expected', async () => {
    const open = app().state().shift.current as ShiftView;
    const expected = open.openingFloatMinor + open.cashSalesMinor - open.changeGivenMinor - open.cashRefundsMinor + open.paidInMinor - open.paidOutMinor;
    const printed = sim.receipts().length;
    const kicks = sim.drawerKicks().length;
    await app().command({ type: 'closeShift', count: { totalMinor: expected - 50 } });
    const closed = app().state().shift.closed;
    expect(closed?.status).to.equal('closed');
    expect(closed?.expectedMinor).to.equal(expected);
    expect(closed?.countedMinor).to.equal(expected - 50);
    expect(closed?.overShortMinor).to.equal(-50);
    expect(app().state().shift.current).to.equal(null);
    await sim.waitForDrawerKicks(kicks + 1, WAIT_MS);
    expect(await lastPrinted(printed + 1)).to.include('SHIFT CLOSED').and.include('-€0.50');
    await app().command({ type: 'closeShiftResult' });
    expect(app().state().shift.closed).to.equal(null);
  });

  it('closes the day with a Z report approved by a supervisor, once', async () => {
    await app().command({ type: 'zReport', staffId: 'ana', pin: '1234' });
    expect(message()?.kind).to.equal('error');
    const printed = sim.receipts().length;
    await app().command({ type: 'zReport', staffId: 'sam', pin: '9999' });
    expect(message()?.kind, message()?.text).to.equal('success');
    const text = await lastPrinted(printed + 1);
    expect(text).to.match(/Z REPORT \d+/).and.include('Grand total');
  });
});

describe('e2e: the store server\'s cashier\'s day events, as a terminal sends them', function () {
  this.timeout(120_000);
  let store: DemoStore;

  before(async () => {
    store = await startDemoStore();
  });
  after(async () => {
    await store?.close();
  });

  it('answers a repeated shift:open key with the same shift and opens one shift per till', async () => {
    const { socket, terminalId } = await store.openTill();
    expect(expectOk(await call<ShiftView | null>(socket, 'shift:current', {}))).to.equal(null);
    const key = `${terminalId}:2f1e6c3a-8d4b-4c59-9a7e-0b6f2d1c3e4f`;
    const first = expectOk(await call<ShiftView>(socket, 'shift:open', { key, count: { totalMinor: 10000 } }));
    const again = expectOk(await call<ShiftView>(socket, 'shift:open', { key, count: { totalMinor: 10000 } }));
    expect(again.shiftId).to.equal(first.shiftId);
    const second = await call<ShiftView>(socket, 'shift:open', { key: `${terminalId}:5b0a1f2e-3c4d-4e5f-8a9b-1c2d3e4f5a6b`, count: { totalMinor: 10000 } });
    expect(second.ok).to.equal(false);
    expect(expectOk(await call<ShiftView | null>(socket, 'shift:current', {}))?.shiftId).to.equal(first.shiftId);
    // One open shift per cashier: Ana closes this one before the next test opens hers on another till.
    expectOk(await call<ShiftView>(socket, 'shift:close', { key: `${terminalId}:3d2c1b0a-9f8e-4d7c-8b6a-5f4e3d2c1b0a`, count: { totalMinor: 10000 } }));
  });

  it('keeps the closing result from the till until the count is in (blind count)', async () => {
    const { socket, terminalId } = await store.openTill('Till 2');
    const open = expectOk(await call<ShiftView>(socket, 'shift:open', { key: `${terminalId}:7c6d5e4f-3a2b-4c1d-9e8f-7a6b5c4d3e2f`, count: { totalMinor: 5000 } }));
    expect(open.expectedMinor).to.equal(null);
    expect(open.overShortMinor).to.equal(null);
    const current = expectOk(await call<ShiftView | null>(socket, 'shift:current', {}));
    expect(current?.expectedMinor ?? null).to.equal(null);
    const closed = expectOk(await call<ShiftView>(socket, 'shift:close', { key: `${terminalId}:1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d`, count: { totalMinor: 5000 } }));
    expect(closed.expectedMinor).to.equal(5000);
    expect(closed.overShortMinor).to.equal(0);
  });
});
