import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { compactVerify, importJWK, type JWK } from 'jose';
import type { PeriodTotals, ShiftView, XReport, ZReport } from '../../core/index.ts';
import { call, expectOk, startDemoStore, type DemoStore, type TerminalClient } from '../helpers/vendor.ts';
import { requireShifts } from './economy-helpers.ts';

const PEN = '4006381333931'; // 450 minor, 90 ACME
const BREAD = '5901234123457'; // 289 minor, 58 ACME
const SAM = { staffId: 'sam', pin: '9999' };

interface JournalLine {
  seq: number;
  type: string;
  terminal: string | null;
  cashier: string | null;
  postings: { account: string; token: string; units: number }[];
  data: Record<string, unknown> & { cash?: { dueMinor: number }; debits?: Record<string, number>; totalMinor?: number; saleSeq?: number; saleTotalMinor?: number; kind?: string; amountMinor?: number; overShortMinor?: number | null };
}

/** The journal as the operator exports it. */
async function journal(store: DemoStore): Promise<JournalLine[]> {
  const res = await store.operator('GET', '/api/ledger/export?format=jsonl');
  return res.text
    .trim()
    .split('\n')
    .map((l: string) => JSON.parse(l) as { event?: JournalLine })
    .filter((l: { event?: JournalLine }) => l.event !== undefined)
    .map((l: { event?: JournalLine }) => l.event as JournalLine);
}

/**
 * An independent sum over the journal's events in a seq range, written out here rather
 * than taken from the server's code: what a Z must hold.
 */
function sumJournal(events: JournalLine[], fromSeq: number, toSeq: number) {
  const t = { sales: 0, refunds: 0, voids: 0, noSales: 0, gross: 0, refunded: 0, cash: 0, tokens: new Map<string, number>(), tokensNet: new Map<string, number>(), paidIn: 0, paidOut: 0, overShort: 0, cashierNet: new Map<string, number>() };
  const plus = (m: Map<string, number>, k: string, n: number) => m.set(k, (m.get(k) ?? 0) + n);
  const totals = new Map<number, number>();
  for (const e of events) {
    if (e.seq < fromSeq || e.seq > toSeq) continue;
    if (e.type === 'sale') {
      t.sales += 1;
      t.gross += e.data.totalMinor ?? 0;
      t.cash += e.data.cash?.dueMinor ?? 0;
      for (const [k, n] of Object.entries(e.data.debits ?? {})) {
        plus(t.tokens, k, n);
        plus(t.tokensNet, k, n);
      }
      totals.set(e.seq, e.data.totalMinor ?? 0);
      if (e.cashier !== null) plus(t.cashierNet, e.cashier, e.data.totalMinor ?? 0);
    } else if (e.type === 'reversal') {
      t.refunds += 1;
      if ((e.data.saleSeq ?? 0) >= fromSeq) t.voids += 1;
      t.refunded += e.data.saleTotalMinor ?? 0;
      for (const p of e.postings) if (p.account.startsWith('customer:')) plus(t.tokensNet, p.token, -p.units);
      if (e.cashier !== null) plus(t.cashierNet, e.cashier, -(e.data.saleTotalMinor ?? 0));
    } else if (e.type === 'cash.moved') {
      if (e.data.kind === 'paid-in') t.paidIn += e.data.amountMinor ?? 0;
      else t.paidOut += e.data.amountMinor ?? 0;
    } else if (e.type === 'drawer.no-sale') t.noSales += 1;
    else if (e.type === 'shift.closed') t.overShort += e.data.overShortMinor ?? 0;
  }
  return t;
}

function expectTotalsMatch(z: PeriodTotals, t: ReturnType<typeof sumJournal>): void {
  expect(z.salesCount).to.equal(t.sales);
  expect(z.refundsCount).to.equal(t.refunds);
  expect(z.voidsCount).to.equal(t.voids);
  expect(z.noSalesCount).to.equal(t.noSales);
  expect(z.grossMinor).to.equal(t.gross);
  expect(z.refundsMinor).to.equal(t.refunded);
  expect(z.netMinor).to.equal(t.gross - t.refunded);
  expect(z.byTender['cash'] ?? 0).to.equal(t.cash);
  for (const [k, n] of t.tokens) expect(z.byTender[k]).to.equal(n);
  for (const [k, n] of t.tokensNet) expect(z.byTokenType[k] ?? 0).to.equal(n);
  expect(z.paidInMinor).to.equal(t.paidIn);
  expect(z.paidOutMinor).to.equal(t.paidOut);
  expect(z.overShortMinor).to.equal(t.overShort);
  for (const [k, n] of t.cashierNet) expect(z.byCashier[k]?.netMinor).to.equal(n);
}

describe('vendor server: the cashier\'s day (shifts, cash moves, X and Z reports)', function () {
  this.timeout(60_000);
  let store: DemoStore;
  let till1: { terminalId: string; socket: TerminalClient };
  let till2: { terminalId: string; socket: TerminalClient };
  const key = (t: { terminalId: string }) => `${t.terminalId}:${randomUUID()}`;

  before(async () => {
    store = await startDemoStore();
    await requireShifts(store);
    expect((await store.operator('PUT', '/api/staff/bob', { name: 'Bob (cashier)', role: 'cashier', pin: '4321' })).status).to.equal(200);
    till1 = await store.openTill('Till 1');
    const paired = await store.pairTerminal('Till 2');
    const socket = await store.connect(paired.credential);
    expectOk(await call(socket, 'cashier:login', { staffId: 'bob', pin: '4321' }));
    till2 = { terminalId: paired.terminalId, socket };
  });
  after(async () => store.close());

  it('runs a day with two shifts, cash and token sales, a refund, paid-in/out and a miscount: expected cash, over/short and the Z are exact', async () => {
    const anna = store.init.demo?.customers[0];
    if (anna === undefined) throw new Error('demo customers');
    const seqBefore = store.server.ledger.state.seq;

    // A sale outside a shift is refused with a clear code, and journals nothing.
    const refused = await call(till1.socket, 'sale:commit', { key: key(till1), lines: [{ code: PEN, qty: 1 }], card: null, tenders: [], cashTenderedMinor: 500 });
    expect(refused.ok).to.equal(false);
    if (!refused.ok) expect(refused.error.code).to.equal('VND_ERR_SHIFT_REQUIRED');
    expect(store.server.ledger.state.seq).to.equal(seqBefore);
    expect(expectOk(await call<ShiftView | null>(till1.socket, 'shift:current', {}))).to.equal(null);

    // Ana counts her opening float by denomination: 5 x 10.00 + 10 x 2.00 = 70.00.
    const openKey = key(till1);
    const opened = expectOk(await call<ShiftView>(till1.socket, 'shift:open', { key: openKey, count: { denominations: [{ valueMinor: 1000, count: 5 }, { valueMinor: 200, count: 10 }] } }));
    expect(opened.openingFloatMinor).to.equal(7000);
    expect(opened.status).to.equal('open');
    // The same key again is the same shift, not a second one.
    const again = expectOk(await call<ShiftView>(till1.socket, 'shift:open', { key: openKey, count: { denominations: [{ valueMinor: 1000, count: 5 }, { valueMinor: 200, count: 10 }] } }));
    expect(again.shiftId).to.equal(opened.shiftId);
    const conflict = await call(till1.socket, 'shift:open', { key: openKey, count: { totalMinor: 1 } });
    expect(conflict.ok === false && conflict.error.code).to.equal('VND_ERR_IDEMPOTENCY_CONFLICT');
    // Bob has no shift on till 2 yet: his sale is refused too.
    const bobRefused = await call(till2.socket, 'sale:commit', { key: key(till2), lines: [{ code: BREAD, qty: 1 }], card: null, tenders: [], cashTenderedMinor: 300 });
    expect(bobRefused.ok === false && bobRefused.error.code).to.equal('VND_ERR_SHIFT_REQUIRED');
    expectOk(await call<ShiftView>(till2.socket, 'shift:open', { key: key(till2), count: { totalMinor: 5000 } }));

    // Ana: a cash sale (900, 1000 tendered, 100 change), a token-only sale (90 ACME), a
    // part-token sale (50 ACME + 489 cash, 500 tendered, 11 change).
    const cashSale = expectOk(await call<{ saleId: string }>(till1.socket, 'sale:commit', { key: key(till1), lines: [{ code: PEN, qty: 2 }], card: null, tenders: [], cashTenderedMinor: 1000 }));
    expectOk(await call(till1.socket, 'sale:commit', { key: key(till1), lines: [{ code: PEN, qty: 1 }], card: anna.card, tenders: [{ token: 'ACME' }], cashTenderedMinor: 0 }));
    expectOk(await call(till1.socket, 'sale:commit', { key: key(till1), lines: [{ code: PEN, qty: 1 }, { code: BREAD, qty: 1 }], card: anna.card, tenders: [{ token: 'ACME', units: 50 }], cashTenderedMinor: 500 }));
    // Paid in 5.00 (change from the bank), paid out 3.00 (window cleaner); a retry is one move.
    const payIn = { key: key(till1), kind: 'paid-in', amountMinor: 500, reason: 'change from the bank' };
    expectOk(await call(till1.socket, 'shift:cash-move', payIn));
    const moved = expectOk(await call<ShiftView>(till1.socket, 'shift:cash-move', payIn));
    expect(moved.paidInMinor).to.equal(500);
    expectOk(await call(till1.socket, 'shift:cash-move', { key: key(till1), kind: 'paid-out', amountMinor: 300, reason: 'window cleaner' }));
    // The cash sale is refunded: 900 back out of the drawer.
    expectOk(await call(till1.socket, 'sale:refund', { key: key(till1), saleId: cashSale.saleId, reason: 'returned', supervisor: SAM }));
    // A no-sale needs a supervisor and is counted.
    const noSaleByCashier = await call(till1.socket, 'drawer:no-sale', { key: key(till1), reason: 'change for a customer', supervisor: { staffId: 'ana', pin: '1234' } });
    expect(noSaleByCashier.ok === false && noSaleByCashier.error.code).to.equal('VND_ERR_SUPERVISOR_REQUIRED');
    expectOk(await call(till1.socket, 'drawer:no-sale', { key: key(till1), reason: 'change for a customer', supervisor: SAM }));

    // Bob: bread for cash, 300 tendered, 11 change.
    expectOk(await call(till2.socket, 'sale:commit', { key: key(till2), lines: [{ code: BREAD, qty: 1 }], card: null, tenders: [], cashTenderedMinor: 300 }));

    // The shift's X report changes nothing.
    const seqAtX = store.server.ledger.state.seq;
    const x = expectOk(await call<XReport>(till1.socket, 'report:x', { scope: 'shift' }));
    expect(x.kind).to.equal('X');
    expect(x.shiftId).to.equal(opened.shiftId);
    expect(x.totals.salesCount).to.equal(3);
    expect(x.totals.refundsCount).to.equal(1);
    expect(x.totals.voidsCount).to.equal(1);
    expect(x.totals.noSalesCount).to.equal(1);
    expect(x.totals.paidInMinor).to.equal(500);
    expect(x.totals.paidOutMinor).to.equal(300);
    expect(store.server.ledger.state.seq).to.equal(seqAtX);

    // The Z waits for every shift to be closed.
    const early = await call(till1.socket, 'report:z', { key: key(till1), supervisor: SAM });
    expect(early.ok === false && early.error.code).to.equal('VND_ERR_SHIFTS_STILL_OPEN');

    // Ana counts exactly: 7000 + (1000 + 0 + 500) - (100 + 0 + 11) - 900 + 500 - 300 = 7689.
    const anaClosed = expectOk(await call<ShiftView>(till1.socket, 'shift:close', { key: key(till1), count: { totalMinor: 7689 } }));
    expect(anaClosed.cashSalesMinor).to.equal(1500);
    expect(anaClosed.changeGivenMinor).to.equal(111);
    expect(anaClosed.cashRefundsMinor).to.equal(900);
    expect(anaClosed.expectedMinor).to.equal(7689);
    expect(anaClosed.overShortMinor).to.equal(0);
    // Bob miscounts: expected 5000 + 300 - 11 = 5289, counted 52.00: 89 short.
    const bobClosed = expectOk(await call<ShiftView>(till2.socket, 'shift:close', { key: key(till2), count: { denominations: [{ valueMinor: 2000, count: 2 }, { valueMinor: 500, count: 2 }, { valueMinor: 100, count: 2 }] } }));
    expect(bobClosed.expectedMinor).to.equal(5289);
    expect(bobClosed.countedMinor).to.equal(5200);
    expect(bobClosed.overShortMinor).to.equal(-89);

    // The operator lists the shifts with their counts.
    const listed = (await store.operator('GET', '/api/shifts')).body as (ShiftView & { openingCount: unknown })[];
    expect(listed.map((s) => [s.staffId, s.status, s.overShortMinor])).to.deep.equal([['ana', 'closed', 0], ['bob', 'closed', -89]]);
    expect(listed[0]?.openingCount).to.deep.equal({ denominations: [{ valueMinor: 1000, count: 5 }, { valueMinor: 200, count: 10 }] });

    // The Z: numbered, covering everything since the start, equal to an independent sum.
    const zKey = key(till1);
    const z = expectOk(await call<ZReport>(till1.socket, 'report:z', { key: zKey, supervisor: SAM }));
    expect(z.kind).to.equal('Z');
    expect(z.zNumber).to.equal(1);
    expect(z.fromSeq).to.equal(1);
    expect(z.prevHash).to.equal('0'.repeat(64));
    const events = await journal(store);
    const zEvent = events.find((e) => e.type === 'period.closed');
    expect(zEvent?.seq).to.equal(z.toSeq + 1);
    const sum = sumJournal(events, z.fromSeq, z.toSeq);
    expectTotalsMatch(z.totals, sum);
    expect(z.totals.salesCount).to.equal(4);
    expect(z.totals.overShortMinor).to.equal(-89);
    expect(z.totals.byCashier['bob']).to.deep.equal({ salesCount: 1, netMinor: 289 });
    expect(z.grandTotalMinor).to.equal(z.totals.netMinor);
    // Signed with the store's key over its body.
    const { payload, protectedHeader } = await compactVerify(z.signature, await importJWK(store.server.keys.publicJwk as unknown as JWK, 'EdDSA'));
    expect(protectedHeader.kid).to.equal(store.server.keys.kid);
    const { signature: _s, ...body } = z;
    expect(JSON.parse(Buffer.from(payload).toString('utf8'))).to.deep.equal(JSON.parse(JSON.stringify(body)));

    // The same key answers the same Z; a new Z starts after it with nothing in it.
    expect(expectOk(await call<ZReport>(till1.socket, 'report:z', { key: zKey, supervisor: SAM }))).to.deep.equal(z);
    // The next sale belongs to the next business day.
    expectOk(await call<ShiftView>(till1.socket, 'shift:open', { key: key(till1), count: { totalMinor: 1000 } }));
    expectOk(await call(till1.socket, 'sale:commit', { key: key(till1), lines: [{ code: BREAD, qty: 1 }], card: null, tenders: [], cashTenderedMinor: 289 }));
    const dayX = expectOk(await call<XReport>(till1.socket, 'report:x', { scope: 'day' }));
    expect(dayX.day > z.day).to.equal(true);
    expect(dayX.totals.salesCount).to.equal(1);
    expectOk(await call(till1.socket, 'shift:close', { key: key(till1), count: { totalMinor: 1289 } }));
    const z2 = (await store.operator('POST', '/api/closures/z', {}, { 'idempotency-key': randomUUID() })).body as ZReport;
    expect(z2.zNumber).to.equal(2);
    expect(z2.fromSeq).to.equal(z.toSeq + 2);
    expect(z2.day > z.day).to.equal(true);
    expect(z2.grandTotalMinor).to.equal(z.grandTotalMinor + 289);
    expectTotalsMatch(z2.totals, sumJournal(await journal(store), z2.fromSeq, z2.toSeq));

    // Everything comes back from the journal alone after a restart.
    const closures = (await store.operator('GET', '/api/closures?kind=Z')).body as ZReport[];
    expect(closures.map((c) => c.zNumber)).to.deep.equal([1, 2]);
    const shifts = (await store.operator('GET', '/api/shifts')).body as unknown;
    await store.restart();
    expect((await store.operator('GET', '/api/closures?kind=Z')).body).to.deep.equal(closures);
    expect((await store.operator('GET', '/api/shifts')).body).to.deep.equal(shifts);
    expect(store.server.cashierDay.cd.store.grandTotalMinor).to.equal(z2.grandTotalMinor);
  });
});
