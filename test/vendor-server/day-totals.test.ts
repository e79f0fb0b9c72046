import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { startDemoStore, type DemoStore } from '../helpers/vendor.ts';

const PEN = '4006381333931'; // 450 minor, 90 ACME, 45 MALL
const BREAD = '5901234123457'; // 289 minor, 58 ACME

describe('vendor server: day totals count every cash movement of the drawer', function () {
  this.timeout(30_000);
  let store: DemoStore;
  before(async () => {
    store = await startDemoStore();
  });
  after(async () => store.close());

  it('sums a day of sales, a part-token sale, token purchases, a reward and refunds', async () => {
    const { ledger } = store.server;
    const date = new Date().toISOString().slice(0, 10);
    const totals = async () => (await store.operator('GET', `/api/totals?date=${date}`)).body;
    const before = await totals();
    const till = { terminal: 't001', cashier: 'ana' };
    const key = () => `t001:${randomUUID()}`;
    const anna = store.init.demo?.customers[0];
    if (anna === undefined) throw new Error('demo customers');

    // A cash sale: 900 due, 1000 tendered, 100 change: the drawer keeps 900.
    const cashSale = await ledger.commitSale(till, { key: key(), lines: [{ code: PEN, qty: 2 }], card: null, tenders: [], cashTenderedMinor: 1000 });
    // Part tokens: 50 ACME cover 250 of the pen; 200 in cash, plus bread 289 in cash.
    const mixed = await ledger.commitSale(till, { key: key(), lines: [{ code: PEN, qty: 1 }, { code: BREAD, qty: 1 }], card: anna.card, tenders: [{ token: 'ACME', units: 50 }], cashTenderedMinor: 500 });
    expect(mixed.cash.dueMinor).to.equal(200 + 289);
    // A customer buys 30 MALL tokens at face value 10: 300 into the drawer.
    await ledger.issueTokens({ terminal: null, cashier: null }, `op:${randomUUID()}`, { customerId: anna.id, token: 'MALL', units: 30, reason: 'purchase' });
    // A reward costs the drawer nothing.
    await ledger.issueTokens({ terminal: null, cashier: null }, `op:${randomUUID()}`, { customerId: anna.id, token: 'ACME', units: 10, reason: 'reward' });
    // Refunds: the cash sale hands 900 back, the mixed one 489 and returns 50 ACME.
    await ledger.refundSale(till, { key: key(), saleId: cashSale.saleId, reason: 'returned', supervisorId: 'sam' });
    await ledger.refundSale(till, { key: key(), saleId: mixed.saleId, reason: 'returned', supervisorId: 'sam' });

    const after = await totals();
    const delta = (field: string) => (after[field] as number) - ((before[field] as number | undefined) ?? 0);
    expect(delta('sales')).to.equal(2);
    expect(delta('refunds')).to.equal(2);
    expect(delta('tokenPurchases')).to.equal(1);
    expect(delta('grossMinor')).to.equal(900 + 450 + 289);
    expect(delta('cashSalesMinor')).to.equal(900 + 489);
    expect(delta('cashTokenPurchasesMinor')).to.equal(300);
    expect(delta('cashRefundedMinor')).to.equal(900 + 489);
    // What the drawer really gained: sales' cash, plus tokens sold, less cash refunded.
    expect(delta('cashMinor')).to.equal(900 + 489 + 300 - 900 - 489);
    expect(after.cashMinor).to.equal(after.cashSalesMinor + after.cashTokenPurchasesMinor - after.cashRefundedMinor);
    expect((after.tokens.ACME ?? 0) - (before.tokens?.ACME ?? 0)).to.equal(50);
    expect((after.tokensReturned.ACME ?? 0) - (before.tokensReturned?.ACME ?? 0)).to.equal(50);

    // The same totals come back from the journal alone after a restart.
    await store.restart();
    expect(await totals()).to.deep.equal(after);
  });
});
