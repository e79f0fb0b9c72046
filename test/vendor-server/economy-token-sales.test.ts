import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import type { ShiftView, TokenSaleAck, XReport, ZReport, JournalEvent } from '../../core/index.ts';
import { runCli } from '../helpers/process.ts';
import { call, expectOk, startDemoStore, type DemoStore, type TerminalClient } from '../helpers/vendor.ts';
import { code, exportJournal, journalBytes, ledgerPicture, requireShifts } from './economy-helpers.ts';

const ACME_FACE = 5; // minor units per ACME token in the demo store
const MALL_FACE = 10;

describe('vendor server: tokens sold at the till (tokens:sell)', function () {
  this.timeout(120_000);
  let store: DemoStore;
  let till: { terminalId: string; credential: string; socket: TerminalClient };
  let card: string;
  let customerId: string;
  const key = () => `${till.terminalId}:${randomUUID()}`;
  const units = (view: TokenSaleAck, token: string) => view.customer.balances.find((b) => b.token === token)?.units ?? 0;

  before(async () => {
    store = await startDemoStore();
    await requireShifts(store);
    till = await store.openTill('Till 1');
    const demo = store.init.demo?.customers[1] as { id: string; card: string };
    card = demo.card;
    customerId = demo.id;
  });
  after(async () => store.close());

  it('refuses a sale outside the cashier\'s open shift, then sells for cash inside it with the right change', async () => {
    const before = await journalBytes(store.dir);
    expect(code(await call(till.socket, 'tokens:sell', { key: key(), card, token: 'ACME', units: 10, payment: { method: 'cash', tenderedMinor: 100 } }))).to.equal('VND_ERR_SHIFT_REQUIRED');
    expect(await journalBytes(store.dir)).to.equal(before);

    expectOk(await call<ShiftView>(till.socket, 'shift:open', { key: key(), count: { totalMinor: 10_000 } }));
    const floatBefore = store.server.ledger.float()['ACME'] as number;
    const k = key();
    const ack = expectOk(await call<TokenSaleAck>(till.socket, 'tokens:sell', { key: k, card, token: 'ACME', units: 37, payment: { method: 'cash', tenderedMinor: 500 } }));
    expect(ack.priceMinor).to.equal(37 * ACME_FACE);
    expect(ack.payment).to.deep.equal({ method: 'cash', tenderedMinor: 500, changeMinor: 500 - 37 * ACME_FACE });
    expect(ack.currency).to.equal('EUR');
    expect(store.server.ledger.float()['ACME']).to.equal(floatBefore - 37);
    const e = (await exportJournal(store)).find((x) => x.seq === ack.seq) as Extract<JournalEvent, { type: 'issuance' }>;
    expect(e.type).to.equal('issuance');
    expect(e.cashier).to.equal('ana');
    expect(e.data.reason).to.equal('purchase');
    expect(e.data.cashMinor).to.equal(185);
    expect(e.data.payment).to.deep.equal(ack.payment);
    expect(e.postings).to.deep.equal([
      { account: 'float', token: 'ACME', units: -37 },
      { account: `customer:${customerId}`, token: 'ACME', units: 37 },
    ]);

    // The retry of the key answers the same sale and changes nothing.
    const picture = await ledgerPicture(store);
    const again = expectOk(await call<TokenSaleAck>(till.socket, 'tokens:sell', { key: k, card, token: 'ACME', units: 37, payment: { method: 'cash', tenderedMinor: 500 } }));
    expect(again.seq).to.equal(ack.seq);
    expect(await ledgerPicture(store)).to.deep.equal(picture);
    expect(code(await call(till.socket, 'tokens:sell', { key: k, card, token: 'ACME', units: 38, payment: { method: 'cash', tenderedMinor: 500 } }))).to.equal('VND_ERR_IDEMPOTENCY_CONFLICT');
    expect(await ledgerPicture(store)).to.deep.equal(picture);
  });

  it('refuses short cash, a float shortfall, a token the float does not hold, unknown tokens and cards, and no cashier, changing nothing', async () => {
    // A token type of the store's own that its float never held.
    const put = await store.operator('PUT', '/api/token-types/ACMEGIFT', { name: 'ACME gift token', kind: 'gift', issuer: 'acme', faceValueMinor: 100, currency: 'EUR', acceptedBy: ['acme'] });
    expect(put.status, put.text).to.equal(200);
    const before = await journalBytes(store.dir);
    const picture = await ledgerPicture(store);
    const floatMall = store.server.ledger.float()['MALL'] as number;
    const refusals: [unknown, string][] = [
      [{ key: key(), card, token: 'ACME', units: 10, payment: { method: 'cash', tenderedMinor: 49 } }, 'CORE_ERR_CASH_SHORT'],
      [{ key: key(), card, token: 'MALL', units: floatMall + 1, payment: { method: 'card', approvalRef: 'APR-SHORT-1' } }, 'CORE_ERR_INSUFFICIENT_TOKENS'],
      [{ key: key(), card, token: 'ACMEGIFT', units: 1, payment: { method: 'cash', tenderedMinor: 100 } }, 'CORE_ERR_INSUFFICIENT_TOKENS'],
      [{ key: key(), card, token: 'NOPE', units: 1, payment: { method: 'cash', tenderedMinor: 100 } }, 'CORE_ERR_TOKEN_UNKNOWN'],
      [{ key: key(), card: 'C0000000001', token: 'ACME', units: 1, payment: { method: 'cash', tenderedMinor: 100 } }, 'CORE_ERR_CHECK_DIGIT'],
      [{ key: key(), card, token: 'ACME', units: 0, payment: { method: 'cash', tenderedMinor: 100 } }, 'CORE_ERR_VALIDATION'],
      [{ key: key(), card, token: 'ACME', units: 1.5, payment: { method: 'cash', tenderedMinor: 100 } }, 'CORE_ERR_AMOUNT'],
      [{ key: key(), card, token: 'ACME', units: 1, payment: { method: 'cash', tenderedMinor: -1 } }, 'CORE_ERR_AMOUNT'],
      [{ key: key(), card, token: 'ACME', units: 1, payment: { method: 'cheque' } }, 'CORE_ERR_VALIDATION'],
      [{ key: key(), card, token: 'ACME', units: 1, payment: { method: 'card' } }, 'CORE_ERR_VALIDATION'],
      [{ key: key(), card, token: 'ACME', units: 1, payment: { method: 'card', approvalRef: 'A' } }, 'CORE_ERR_VALIDATION'],
      [{ key: key(), card, token: 'ACME', units: Number.MAX_SAFE_INTEGER, payment: { method: 'card', approvalRef: 'APR-HUGE-1' } }, 'CORE_ERR_OVERFLOW'],
    ];
    for (const [payload, expected] of refusals) {
      const ack = await call(till.socket, 'tokens:sell', payload);
      expect(code(ack), JSON.stringify(payload)).to.equal(expected);
    }
    const short = await call(till.socket, 'tokens:sell', { key: key(), card, token: 'MALL', units: floatMall + 1, payment: { method: 'card', approvalRef: 'APR-SHORT-2' } });
    expect(!short.ok && short.error.message).to.match(/float has not enough MALL tokens: 1 short/);
    const none = await call(till.socket, 'tokens:sell', { key: key(), card, token: 'ACMEGIFT', units: 1, payment: { method: 'cash', tenderedMinor: 100 } });
    expect(!none.ok && none.error.message).to.match(/holds no ACMEGIFT tokens/);

    const paired = await store.pairTerminal('Till 2');
    const anon = await store.connect(paired.credential);
    try {
      expect(code(await call(anon, 'tokens:sell', { key: `${paired.terminalId}:${randomUUID()}`, card, token: 'ACME', units: 1, payment: { method: 'cash', tenderedMinor: 5 } }))).to.equal('VND_ERR_CASHIER_REQUIRED');
    } finally {
      anon.disconnect();
    }
    expect(await journalBytes(store.dir)).to.equal(before);
    expect(await ledgerPicture(store)).to.deep.equal(picture);
  });

  it('sells by card once per approval reference: the same reference for another purchase is refused', async () => {
    const ack = expectOk(await call<TokenSaleAck>(till.socket, 'tokens:sell', { key: key(), card, token: 'MALL', units: 20, payment: { method: 'card', approvalRef: 'APR-000123' } }));
    expect(ack.payment).to.deep.equal({ method: 'card', approvalRef: 'APR-000123' });
    expect(ack.priceMinor).to.equal(20 * MALL_FACE);
    const picture = await ledgerPicture(store);
    // A till that lost its key sends the same purchase again: the sale it paid for, nothing more.
    const same = expectOk(await call<TokenSaleAck>(till.socket, 'tokens:sell', { key: key(), card, token: 'MALL', units: 20, payment: { method: 'card', approvalRef: 'APR-000123' } }));
    expect(same.seq).to.equal(ack.seq);
    const other = store.init.demo?.customers[2]?.card as string;
    expect(code(await call(till.socket, 'tokens:sell', { key: key(), card, token: 'MALL', units: 21, payment: { method: 'card', approvalRef: 'APR-000123' } }))).to.equal('VND_ERR_PAYMENT_REUSED');
    expect(code(await call(till.socket, 'tokens:sell', { key: key(), card: other, token: 'MALL', units: 20, payment: { method: 'card', approvalRef: 'APR-000123' } }))).to.equal('VND_ERR_PAYMENT_REUSED');
    expect(code(await call(till.socket, 'tokens:sell', { key: key(), card, token: 'ACME', units: 20, payment: { method: 'card', approvalRef: 'APR-000123' } }))).to.equal('VND_ERR_PAYMENT_REUSED');
    expect(await ledgerPicture(store)).to.deep.equal(picture);
    expect(units(ack, 'MALL')).to.be.greaterThan(0);
  });

  it('credits once for ten sends of one key, and once for one approval reference sent under ten keys at once', async () => {
    const seq0 = store.server.ledger.state.seq;
    const k = key();
    const sameKey = await Promise.all(Array.from({ length: 10 }, () => call<TokenSaleAck>(till.socket, 'tokens:sell', { key: k, card, token: 'MALL', units: 3, payment: { method: 'card', approvalRef: 'APR-RACE-1' } })));
    expect(new Set(sameKey.map((r) => expectOk(r).seq)).size).to.equal(1);
    const sameRef = await Promise.all(Array.from({ length: 10 }, () => call<TokenSaleAck>(till.socket, 'tokens:sell', { key: key(), card, token: 'MALL', units: 4, payment: { method: 'card', approvalRef: 'APR-RACE-2' } })));
    // Each is either the one sale the approval paid for, or refused as reused while it was being journalled.
    const seqs = new Set(sameRef.filter((r) => r.ok).map((r) => expectOk(r).seq));
    expect(seqs.size).to.equal(1);
    for (const r of sameRef) if (!r.ok) expect(r.error.code).to.equal('VND_ERR_PAYMENT_REUSED');
    expect(store.server.ledger.state.seq).to.equal(seq0 + 2);
  });

  it('counts cash from token sales in the shift\'s expected cash and the X report by tender, not card sales, and the day totals by method', async () => {
    const shift0 = expectOk(await call<ShiftView>(till.socket, 'shift:current', {}));
    const x0 = expectOk(await call<XReport>(till.socket, 'report:x', { scope: 'shift' }));
    const day = new Date().toISOString().slice(0, 10);
    const totals0 = (await store.operator('GET', `/api/totals?date=${day}`)).body;
    expectOk(await call(till.socket, 'tokens:sell', { key: key(), card, token: 'ACME', units: 100, payment: { method: 'cash', tenderedMinor: 1000 } }));
    expectOk(await call(till.socket, 'tokens:sell', { key: key(), card, token: 'ACME', units: 40, payment: { method: 'card', approvalRef: 'APR-CARD-77' } }));
    const shift1 = expectOk(await call<ShiftView>(till.socket, 'shift:current', {}));
    expect(shift1.cashSalesMinor - shift0.cashSalesMinor).to.equal(1000);
    expect(shift1.changeGivenMinor - shift0.changeGivenMinor).to.equal(500);
    const x1 = expectOk(await call<XReport>(till.socket, 'report:x', { scope: 'shift' }));
    expect((x1.totals.byTender['cash'] ?? 0) - (x0.totals.byTender['cash'] ?? 0)).to.equal(500);
    expect(x1.totals.grossMinor).to.equal(x0.totals.grossMinor);
    const totals1 = (await store.operator('GET', `/api/totals?date=${day}`)).body;
    expect(totals1.cashTokenPurchasesMinor - totals0.cashTokenPurchasesMinor).to.equal(500);
    expect(totals1.cashMinor - totals0.cashMinor).to.equal(500);
    expect(totals1.cardTokenPurchasesMinor - totals0.cardTokenPurchasesMinor).to.equal(200);
    expect(totals1.tokenPurchases - totals0.tokenPurchases).to.equal(2);

    // The close: the counted drawer equals the float plus all the cash the token sales kept.
    const expected = shift1.openingFloatMinor + shift1.cashSalesMinor - shift1.changeGivenMinor - shift1.cashRefundsMinor + shift1.paidInMinor - shift1.paidOutMinor;
    expect(expected).to.equal(10_000 + 185 + 500);
    const closed = expectOk(await call<ShiftView>(till.socket, 'shift:close', { key: key(), count: { totalMinor: expected } }));
    expect(closed.expectedMinor).to.equal(10_685);
    expect(closed.overShortMinor).to.equal(0);

    // The day's Z counts the token sales' cash by tender, and verify agrees with the journal.
    const z = expectOk(await call<ZReport>(till.socket, 'report:z', { key: key(), supervisor: { staffId: 'sam', pin: '9999' } }));
    expect(z.totals.byTender['cash']).to.equal(185 + 500);
    expect(z.totals.grossMinor).to.equal(0);
    const verify = await runCli(['verify', '--data-dir', store.dir]);
    expect(verify.code, verify.stderr).to.equal(0);
  });

  it('keeps the sales, the balances, the card references and the closed shift across a restart', async () => {
    const picture = await ledgerPicture(store);
    const shifts = JSON.stringify(store.server.ledger.state.cashierDay.shifts);
    await store.restart();
    expect(await ledgerPicture(store)).to.deep.equal(picture);
    expect(JSON.stringify(store.server.ledger.state.cashierDay.shifts)).to.equal(shifts);
    const t = await store.openTill('Till 3');
    expectOk(await call(t.socket, 'shift:open', { key: `${t.terminalId}:${randomUUID()}`, count: { totalMinor: 0 } }));
    const opened = await ledgerPicture(store);
    expect(code(await call(t.socket, 'tokens:sell', { key: `${t.terminalId}:${randomUUID()}`, card, token: 'MALL', units: 1, payment: { method: 'card', approvalRef: 'APR-000123' } }))).to.equal('VND_ERR_PAYMENT_REUSED');
    expect(await ledgerPicture(store)).to.deep.equal(opened);
  });
});
