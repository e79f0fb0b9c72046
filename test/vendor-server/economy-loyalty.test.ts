import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { withGs1CheckDigit, type CustomerView, type JournalEvent, type OfflineSaleAck, type ReceiptData, type RefundResult, type SaleAck } from '../../core/index.ts';
import type { LoyaltyProgram } from '../../core/economy.ts';
import { writeFile } from 'node:fs/promises';
import { dataPaths, writeConfig } from '../../vendor-server/config.ts';
import { startVendorServer } from '../../vendor-server/server.ts';
import { call, expectOk, silentLogger, startDemoStore, type DemoStore, type TerminalClient } from '../helpers/vendor.ts';
import { code, exportJournal, journalBytes, ledgerPicture } from './economy-helpers.ts';

const PEN = '4006381333931'; // 450 minor, 90 ACME
const BREAD = '5901234123457'; // 289 minor, 58 ACME
const MILK = '9001001001295'; // 129 minor, 26 ACME (made 'dairy' below)
const GUM = withGs1CheckDigit('9001001'); // 99 minor, 20 ACME
const SAM = { staffId: 'sam', pin: '9999' };
const ACME_FACE = 5;

const PROGRAM: LoyaltyProgram = {
  token: 'ACME',
  rules: [
    { kind: 'per-amount', everyMinor: 100, units: 2 },
    { kind: 'per-product', gtins: [BREAD], units: 5 },
    { kind: 'per-category', category: 'dairy', units: 3 },
  ],
  capPerSale: 40,
};

type Till = { terminalId: string; credential: string; socket: TerminalClient };

describe('vendor server: loyalty tokens earned inside the sale', function () {
  this.timeout(120_000);
  let store: DemoStore;
  let till: Till;
  const key = () => `${till.terminalId}:${randomUUID()}`;
  const newCustomer = async (name: string) => expectOk(await call<CustomerView>(till.socket, 'customer:register', { key: key(), name, card: null, consent: false }));
  const acmeOf = (customerId: string) => store.server.ledger.customerView(customerId).balances.find((b) => b.token === 'ACME')?.units ?? 0;
  const sale = (card: string | null, lines: { code: string; qty: number }[], cashTenderedMinor: number, tenders: { token: string; units?: number }[] = []) =>
    call<SaleAck>(till.socket, 'sale:commit', { key: key(), lines, card, tenders, cashTenderedMinor });

  before(async () => {
    store = await startDemoStore();
    await writeConfig(store.dir, { ...store.init.config, loyalty: PROGRAM });
    await store.restart();
    till = await store.openTill('Till 1');
    const put = await store.operator('PUT', `/api/products/${MILK}`, { name: 'Whole milk 1 l', priceMinor: 129, tokenPrices: { ACME: 26, MALL: 13 }, category: 'dairy' });
    expect(put.status, put.text).to.equal(200);
    expect(put.body.category).to.equal('dairy');
  });
  after(async () => store.close());

  it('earns by the cash paid, listed products and categories, posted float -> customer in the sale\'s own event', async () => {
    const c = await newCustomer('Loyal One');
    const floatBefore = store.server.ledger.float()['ACME'] as number;
    // 2 bread (578) + 1 milk (129) = 707 cash: 7 x 2 + 2 x 5 + 1 x 3 = 27.
    const ack = expectOk(await sale(c.card, [{ code: BREAD, qty: 2 }, { code: MILK, qty: 1 }], 1000));
    expect(ack.earned).to.deep.equal({ ACME: 27 });
    expect(ack.balancesAfter).to.deep.equal({ ACME: 27 });
    expect(acmeOf(c.id)).to.equal(27);
    expect(store.server.ledger.float()['ACME']).to.equal(floatBefore - 27);
    const e = (await exportJournal(store)).find((x) => x.seq === ack.seq) as Extract<JournalEvent, { type: 'sale' }>;
    expect(e.data.earned).to.deep.equal({ ACME: 27 });
    expect(e.postings).to.deep.equal([
      { account: 'float', token: 'ACME', units: -27 },
      { account: `customer:${c.id}`, token: 'ACME', units: 27 },
    ]);
    // The receipt carries it too.
    const receipt = expectOk(await call<ReceiptData>(till.socket, 'receipt:get', { saleId: ack.saleId }));
    expect(receipt.sale.earned).to.deep.equal({ ACME: 27 });
  });

  it('earns nothing without a customer card, and at most the cap per sale', async () => {
    const floatBefore = store.server.ledger.float()['ACME'] as number;
    const anon = expectOk(await sale(null, [{ code: BREAD, qty: 3 }], 1000));
    expect(anon.earned).to.equal(undefined);
    expect(store.server.ledger.float()['ACME']).to.equal(floatBefore);
    const c = await newCustomer('Big Basket');
    const big = expectOk(await sale(c.card, [{ code: BREAD, qty: 10 }], 5000));
    expect(big.earned).to.deep.equal({ ACME: 40 });
    expect(acmeOf(c.id)).to.equal(40);
  });

  it('counts only the part paid in cash: a sale paid in tokens earns by its listed products alone', async () => {
    const c = await newCustomer('Token Payer');
    expectOk(await sale(c.card, [{ code: BREAD, qty: 1 }], 300)); // 2 x 2 + 5 = 9
    expect(acmeOf(c.id)).to.equal(9);
    const paid = expectOk(await sale(c.card, [{ code: MILK, qty: 1 }], 1000, [{ token: 'ACME' }]));
    // 9 ACME cover 45 of 129: 84 cash -> 0 by amount, 3 by category.
    expect(paid.debits).to.deep.equal({ ACME: 9 });
    expect(paid.cash.dueMinor).to.equal(84);
    expect(paid.earned).to.deep.equal({ ACME: 3 });
    expect(paid.balancesAfter).to.deep.equal({ ACME: 3 });
    expect(acmeOf(c.id)).to.equal(3);
  });

  it('a refund reverses the earned tokens with the sale', async () => {
    const c = await newCustomer('Refunder');
    const floatBefore = store.server.ledger.float()['ACME'] as number;
    const ack = expectOk(await sale(c.card, [{ code: BREAD, qty: 1 }], 300));
    expect(ack.earned).to.deep.equal({ ACME: 9 });
    const refund = expectOk(await call<RefundResult>(till.socket, 'sale:refund', { key: key(), saleId: ack.saleId, reason: 'returned', supervisor: SAM }));
    expect(refund.cashRefundMinor).to.equal(289);
    expect(refund.loyaltyDeductedMinor).to.equal(undefined);
    expect(refund.credited).to.deep.equal({});
    expect(acmeOf(c.id)).to.equal(0);
    expect(store.server.ledger.float()['ACME']).to.equal(floatBefore);
  });

  it('refuses the refund of a sale whose earned tokens were spent, changing nothing, unless the supervisor keeps their face value back', async () => {
    const c = await newCustomer('Spender');
    const first = expectOk(await sale(c.card, [{ code: BREAD, qty: 2 }], 600)); // 5 x 2 + 2 x 5 = 20
    expect(first.earned).to.deep.equal({ ACME: 20 });
    // The customer spends all 20 on a pen paid in ACME (20 of its 90 ACME, the rest in cash, which earns again).
    const second = expectOk(await sale(c.card, [{ code: PEN, qty: 1 }], 500, [{ token: 'ACME' }]));
    expect(second.debits).to.deep.equal({ ACME: 20 });
    const held = acmeOf(c.id);
    expect(held).to.equal(second.earned?.['ACME'] ?? 0);
    const short = 20 - held;
    expect(short).to.be.greaterThan(0);

    const beforeBytes = await journalBytes(store.dir);
    const picture = await ledgerPicture(store);
    const refused = await call(till.socket, 'sale:refund', { key: key(), saleId: first.saleId, reason: 'returned', supervisor: SAM });
    expect(code(refused)).to.equal('VND_ERR_LOYALTY_SPENT');
    expect(!refused.ok && refused.error.details).to.deep.equal({ spent: [{ token: 'ACME', units: short }], valueMinor: short * ACME_FACE, cashRefundMinor: 578 });
    expect(await journalBytes(store.dir)).to.equal(beforeBytes);
    expect(await ledgerPicture(store)).to.deep.equal(picture);

    const floatBefore = store.server.ledger.float()['ACME'] as number;
    const refundKey = key();
    const refund = expectOk(await call<RefundResult>(till.socket, 'sale:refund', { key: refundKey, saleId: first.saleId, reason: 'returned', supervisor: SAM, deductSpentLoyalty: true }));
    expect(refund.loyaltyDeductedMinor).to.equal(short * ACME_FACE);
    expect(refund.cashRefundMinor).to.equal(578 - short * ACME_FACE);
    // The tokens still held went back to the float; the spent ones stay paid for.
    expect(acmeOf(c.id)).to.equal(0);
    expect(store.server.ledger.float()['ACME']).to.equal(floatBefore + held);
    const e = (await exportJournal(store)).find((x) => x.seq === refund.seq) as Extract<JournalEvent, { type: 'reversal' }>;
    expect(e.data.loyaltyDeductedMinor).to.equal(short * ACME_FACE);
    expect(e.data.cashRefundMinor).to.equal(578 - short * ACME_FACE);
    // The retry answers the same refund; the key with another body is a conflict.
    const again = expectOk(await call<RefundResult>(till.socket, 'sale:refund', { key: refundKey, saleId: first.saleId, reason: 'returned', supervisor: SAM, deductSpentLoyalty: true }));
    expect(again.seq).to.equal(refund.seq);
    expect(code(await call(till.socket, 'sale:refund', { key: refundKey, saleId: first.saleId, reason: 'returned', supervisor: SAM }))).to.equal('VND_ERR_IDEMPOTENCY_CONFLICT');
  });

  it('refuses a deduction larger than the cash refund, changing nothing', async () => {
    const c = await newCustomer('Paid In Mall Tokens');
    const grant = await store.operator('POST', '/api/issuances', { customerId: c.id, token: 'MALL', units: 29, reason: 'reward' }, { 'idempotency-key': randomUUID() });
    expect(grant.status, grant.text).to.equal(200);
    // Bread paid wholly in MALL tokens: no cash, 5 ACME for the listed product.
    const first = expectOk(await sale(c.card, [{ code: BREAD, qty: 1 }], 0, [{ token: 'MALL' }]));
    expect(first.cash.dueMinor).to.equal(0);
    expect(first.earned).to.deep.equal({ ACME: 5 });
    // The 5 ACME are spent on chewing gum (74 cash left to pay: less than 100 earns nothing).
    const gum = expectOk(await sale(c.card, [{ code: GUM, qty: 1 }], 100, [{ token: 'ACME' }]));
    expect(gum.debits).to.deep.equal({ ACME: 5 });
    expect(gum.earned).to.equal(undefined);
    const beforeBytes = await journalBytes(store.dir);
    const picture = await ledgerPicture(store);
    for (const deductSpentLoyalty of [false, true]) {
      const refused = await call(till.socket, 'sale:refund', { key: key(), saleId: first.saleId, reason: 'returned', supervisor: SAM, deductSpentLoyalty });
      expect(code(refused)).to.equal('VND_ERR_LOYALTY_SPENT');
      expect(!refused.ok && refused.error.details).to.deep.equal({ spent: [{ token: 'ACME', units: 5 }], valueMinor: 25, cashRefundMinor: 0 });
    }
    expect(await journalBytes(store.dir)).to.equal(beforeBytes);
    expect(await ledgerPicture(store)).to.deep.equal(picture);
  });

  it('an offline sale forwarded later earns nothing: it has no customer card', async () => {
    const floatBefore = store.server.ledger.float()['ACME'] as number;
    const counter = (store.server.ledger.state.offlineTills[till.terminalId]?.counter ?? 0) + 1;
    const ack = expectOk(await call<OfflineSaleAck>(till.socket, 'offline-sale:forward', {
      key: key(),
      offlineId: `${till.terminalId}-${counter}`,
      counter,
      at: new Date().toISOString(),
      catalogVersion: 1,
      cashier: 'ana',
      currency: 'EUR',
      lines: [{ code: BREAD, name: 'Bread', qty: 2, unitPriceMinor: 289, totalMinor: 578 }],
      totalMinor: 578,
      cashTenderedMinor: 600,
      changeMinor: 22,
    }));
    const e = (await exportJournal(store)).find((x) => x.seq === ack.seq) as Extract<JournalEvent, { type: 'sale' }>;
    expect(e.data.earned).to.equal(undefined);
    expect(e.postings).to.deep.equal([]);
    expect(store.server.ledger.float()['ACME']).to.equal(floatBefore);
  });

  it('keeps earned balances across a restart, and refunds after it', async () => {
    const c = await newCustomer('After Restart');
    const ack = expectOk(await sale(c.card, [{ code: BREAD, qty: 1 }], 300));
    const picture = await ledgerPicture(store);
    await store.restart();
    expect(await ledgerPicture(store)).to.deep.equal(picture);
    till = await store.openTill('Till 2');
    expectOk(await call(till.socket, 'sale:refund', { key: key(), saleId: ack.saleId, reason: 'returned', supervisor: SAM }));
    expect(acmeOf(c.id)).to.equal(0);
  });
});

describe('vendor server: loyalty when the float runs short, and a bad programme', function () {
  this.timeout(120_000);
  let store: DemoStore;

  before(async () => {
    store = await startDemoStore();
    const own = await store.operator('PUT', '/api/token-types/PTS', { name: 'ACME points', kind: 'vendor', issuer: 'acme', faceValueMinor: 1, currency: 'EUR', acceptedBy: ['acme'] });
    expect(own.status, own.text).to.equal(200);
    const allot = await store.operator('POST', '/api/allotments', { token: 'PTS', units: 12, reference: 'points for the test' }, { 'idempotency-key': randomUUID() });
    expect(allot.status, allot.text).to.equal(200);
    await writeConfig(store.dir, { ...store.init.config, loyalty: { token: 'PTS', rules: [{ kind: 'per-product', gtins: [BREAD], units: 5 }], capPerSale: 100 } });
    await store.restart();
  });
  after(async () => store.close());

  it('completes the sale and earns what the float holds, then nothing', async () => {
    const till = await store.openTill('Till 1');
    const card = store.init.demo?.customers[0]?.card as string;
    const sell = (qty: number) => call<SaleAck>(till.socket, 'sale:commit', { key: `${till.terminalId}:${randomUUID()}`, lines: [{ code: BREAD, qty }], card, tenders: [], cashTenderedMinor: 5000 });
    expect(expectOk(await sell(2)).earned).to.deep.equal({ PTS: 10 });
    expect(expectOk(await sell(1)).earned).to.deep.equal({ PTS: 2 });
    const third = expectOk(await sell(1));
    expect(third.earned).to.equal(undefined);
    expect(store.server.ledger.float()['PTS'] ?? 0).to.equal(0);
  });

  it('refuses to start with a malformed programme, saying so', async () => {
    await store.server.close();
    // A config edited by hand (writeConfig would refuse to write it) is refused at start.
    await writeFile(dataPaths(store.dir).config, JSON.stringify({ ...store.init.config, loyalty: { token: 'PTS', rules: [{ kind: 'per-amount', everyMinor: 0, units: 1 }], capPerSale: 5 } }));
    let err: unknown = null;
    try {
      const s = await startVendorServer({ dataDir: store.dir, port: 0, host: '127.0.0.1', logger: silentLogger(), defaultMetrics: false });
      await s.close();
    } catch (e) {
      err = e;
    }
    expect((err as { code?: string }).code).to.equal('VND_ERR_CONFIG');
    await writeConfig(store.dir, store.init.config);
    store.server = await startVendorServer({ dataDir: store.dir, port: 0, host: '127.0.0.1', logger: silentLogger(), defaultMetrics: false });
  });
});
