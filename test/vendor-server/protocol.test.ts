import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import type { CustomerView, KeyStatus, PricedCart, ProductView, ReceiptData, RefundResult, SaleAck, SaleResult } from '../../core/index.ts';
import { fetchTls } from '../helpers/http.ts';
import { call, expectOk, startDemoStore, terminalSocket, type DemoStore, type TerminalClient } from '../helpers/vendor.ts';

const PEN = '4006381333931';
const MUESLI = '9001001000014';

describe('vendor server: terminal protocol over socket.io', function () {
  this.timeout(30_000);
  let store: DemoStore;
  let terminalId: string;
  let credential: string;
  let socket: TerminalClient;
  let card: string;
  let customerId: string;

  before(async () => {
    store = await startDemoStore();
    ({ terminalId, credential } = await store.pairTerminal());
    socket = await store.connect(credential);
    expectOk(await call(socket, 'cashier:login', { staffId: 'ana', pin: '1234' }));
    const first = store.init.demo?.customers[0];
    if (first === undefined) throw new Error('demo customers');
    card = first.card;
    customerId = first.id;
  });
  after(async () => store.close());

  const key = () => `${terminalId}:${randomUUID()}`;
  const balance = (token: string) => store.server.ledger.state.balances[`customer:${customerId}`]?.[token] ?? 0;

  describe('pairing and authentication', () => {
    it('a pairing code works once only', async () => {
      const created = await store.operator('POST', '/api/terminals', { name: 'Till 9' });
      const pair = (code: string) =>
        fetchTls(`${store.server.url}/pair`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ code }) });
      const first = await pair(created.body.pairingCode);
      expect(first.status).to.equal(200);
      const second = await pair(created.body.pairingCode);
      expect(second.status).to.equal(403);
      expect(((await second.json()) as { error: { code: string } }).error.code).to.equal('VND_ERR_PAIRING_CODE');
    });

    it('an expired pairing code is refused', async () => {
      const { code } = await store.server.access.createTerminal('Till old', 60_000, new Date(Date.now() - 120_000));
      const res = await fetchTls(`${store.server.url}/pair`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ code }) });
      expect(res.status).to.equal(403);
    });

    it('refuses a handshake without or with a forged credential', async () => {
      for (const token of [undefined, 'not-a-jwt', `${credential.slice(0, -4)}AAAA`]) {
        const s = terminalSocket(store.server, token);
        const err = await new Promise<Error & { data?: { code: string } }>((resolve) => s.once('connect_error', resolve));
        s.disconnect();
        expect(err.data?.code).to.equal('VND_ERR_UNAUTHENTICATED');
      }
    });

    it('cuts off a revoked terminal at once and refuses it at the next connect', async () => {
      const other = await store.pairTerminal('Till 2');
      const s = await store.connect(other.credential);
      const revoked = new Promise<{ terminalId: string }>((resolve) => s.once('terminal:revoked', resolve));
      const disconnected = new Promise<void>((resolve) => s.once('disconnect', () => resolve()));
      const res = await store.operator('POST', `/api/terminals/${other.terminalId}/revoke`);
      expect(res.status).to.equal(200);
      expect((await revoked).terminalId).to.equal(other.terminalId);
      await disconnected;
      const again = terminalSocket(store.server, other.credential);
      const err = await new Promise<Error & { data?: { code: string } }>((resolve) => again.once('connect_error', resolve));
      again.disconnect();
      expect(err.data?.code).to.equal('VND_ERR_TERMINAL_REVOKED');
    });
  });

  describe('lookups', () => {
    it('finds a product by EAN-13 and by UPC-A', async () => {
      const pen = expectOk(await call<ProductView>(socket, 'product:lookup', { code: PEN }));
      expect(pen).to.include({ gtin: PEN, name: 'Stabilo pen, 4 colours', priceMinor: 450 });
      expect(pen.tokenPrices).to.deep.equal({ ACME: 90, MALL: 45 });
      const tissues = expectOk(await call<ProductView>(socket, 'product:lookup', { code: '036000291452' }));
      expect(tissues.gtin).to.equal('0036000291452');
    });

    it('types unknown codes and wrong check digits', async () => {
      const unknown = await call(socket, 'product:lookup', { code: '4006381333948' });
      expect(unknown.ok ? null : unknown.error.code).to.equal('VND_ERR_PRODUCT_UNKNOWN');
      const wrong = await call(socket, 'product:lookup', { code: '4006381333932' });
      expect(wrong.ok ? null : wrong.error.code).to.equal('CORE_ERR_CHECK_DIGIT');
    });

    it('shows a customer and balances by card', async () => {
      const c = expectOk(await call<CustomerView>(socket, 'customer:lookup', { card }));
      expect(c.id).to.equal(customerId);
      const acme = c.balances.find((b) => b.token === 'ACME');
      expect(acme?.units).to.equal(balance('ACME'));
      expect(acme?.spendable).to.equal(true);
    });
  });

  describe('sales', () => {
    it('prices a cart from the catalog', async () => {
      const priced = expectOk(await call<PricedCart>(socket, 'cart:price', { lines: [{ code: PEN, qty: 2 }, { code: MUESLI, qty: 1 }] }));
      expect(priced.totalMinor).to.equal(2 * 450 + 399);
      expect(priced.totalsByToken['ACME']).to.equal(2 * 90 + 80);
    });

    it('commits a sale paid with tokens once, whatever the retries', async () => {
      const before = balance('ACME');
      const floatBefore = store.server.ledger.float()['ACME'];
      const k = key();
      const body = { key: k, lines: [{ code: PEN, qty: 1 }], card, tenders: [{ token: 'ACME' }], cashTenderedMinor: 0 };
      const [a, b] = await Promise.all([call<SaleResult>(socket, 'sale:commit', body), call<SaleResult>(socket, 'sale:commit', body)]);
      const first = expectOk(a);
      expect(expectOk(b).saleId).to.equal(first.saleId);
      expect(first.debits).to.deep.equal({ ACME: 90 });
      expect(first.cash.dueMinor).to.equal(0);
      expect(balance('ACME')).to.equal(before - 90);
      expect(first.balancesAfter?.['ACME']).to.equal(before - 90);
      expect(store.server.ledger.float()['ACME']).to.equal(floatBefore);

      const retry = expectOk(await call<SaleResult>(socket, 'sale:commit', body));
      expect(retry.saleId).to.equal(first.saleId);
      expect(balance('ACME')).to.equal(before - 90);

      const conflict = await call(socket, 'sale:commit', { ...body, lines: [{ code: PEN, qty: 2 }] });
      expect(conflict.ok ? null : conflict.error.code).to.equal('VND_ERR_IDEMPOTENCY_CONFLICT');
      expect(balance('ACME')).to.equal(before - 90);

      const status = expectOk(await call<KeyStatus>(socket, 'sale:status', { key: k }));
      expect(status.state).to.equal('committed');
      const unknown = expectOk(await call<KeyStatus>(socket, 'sale:status', { key: key() }));
      expect(unknown.state).to.equal('unknown');
    });

    it('acknowledges a sale with what closes it, and gives the whole sale once by receipt:get', async () => {
      const k = key();
      // Paid in cash by a known customer, so that the tests after it still find their tokens.
      const body = { key: k, lines: [{ code: PEN, qty: 1 }, { code: MUESLI, qty: 1 }], card, tenders: [], cashTenderedMinor: 1000 };
      const ack = expectOk(await call<SaleAck>(socket, 'sale:commit', body));
      expect(Object.keys(ack)).to.deep.equal(['saleId', 'seq', 'at', 'cashier', 'currency', 'totalMinor', 'debits', 'cash', 'balancesAfter']);
      expect(ack.totalMinor).to.equal(450 + 399);
      expect(ack.debits).to.deep.equal({});
      expect(ack.cash).to.deep.equal({ dueMinor: 849, tenderedMinor: 1000, changeMinor: 151 });
      // A retry of the same key gets the same acknowledgement, read back from the journal.
      expect(expectOk(await call<SaleAck>(socket, 'sale:commit', body))).to.deep.equal(ack);
      const receipt = expectOk(await call<ReceiptData>(socket, 'receipt:get', { saleId: ack.saleId }));
      expect(receipt.sale.lines.map((l) => [l.gtin, l.qty])).to.deep.equal([[PEN, 1], [MUESLI, 1]]);
      expect(receipt.sale.customer?.id).to.equal(customerId);
      expect({ ...receipt.sale.cash, seq: receipt.sale.seq, at: receipt.sale.at }).to.deep.equal({ ...ack.cash, seq: ack.seq, at: ack.at });
      // The acknowledgement is built from the committed event, the receipt from the journal: each of its fields agrees.
      const { saleId, seq, at, cashier, currency, totalMinor, debits, cash, balancesAfter } = receipt.sale;
      expect(JSON.parse(JSON.stringify(ack))).to.deep.equal(JSON.parse(JSON.stringify({ saleId, seq, at, cashier, currency, totalMinor, debits, cash, balancesAfter })));
      expect(JSON.stringify(ack).length).to.be.below(JSON.stringify(receipt.sale).length / 2);
    });

    it('remembers keys across a restart', async () => {
      const before = balance('MALL');
      const k = key();
      const body = { key: k, lines: [{ code: MUESLI, qty: 1 }], card, tenders: [{ token: 'MALL', units: 20 }], cashTenderedMinor: 500 };
      const first = expectOk(await call<SaleResult>(socket, 'sale:commit', body));
      expect(first.cash.dueMinor).to.equal(399 - 200);
      expect(first.cash.changeMinor).to.equal(500 - 199);
      await store.restart();
      socket = await store.connect(credential);
      expectOk(await call(socket, 'cashier:login', { staffId: 'ana', pin: '1234' }));
      const retry = expectOk(await call<SaleResult>(socket, 'sale:commit', body));
      expect(retry.saleId).to.equal(first.saleId);
      expect(retry.seq).to.equal(first.seq);
      expect(balance('MALL')).to.equal(before - 20);
      const conflict = await call(socket, 'sale:commit', { ...body, cashTenderedMinor: 1000 });
      expect(conflict.ok ? null : conflict.error.code).to.equal('VND_ERR_IDEMPOTENCY_CONFLICT');
    });

    it('never lets two concurrent sales spend the same tokens', async () => {
      const units = balance('ACME');
      const big = Math.floor(units / 90) >= 1 ? Math.ceil((units / 90) * 0.6) : 1;
      const sale = () => call<SaleResult>(socket, 'sale:commit', { key: key(), lines: [{ code: PEN, qty: big }], card, tenders: [{ token: 'ACME', units: 90 * big }], cashTenderedMinor: 0 });
      const results = await Promise.all([sale(), sale()]);
      const oks = results.filter((r) => r.ok);
      expect(oks).to.have.length(1);
      const refused = results.find((r) => !r.ok);
      expect(refused?.ok === false ? refused.error.code : null).to.equal('CORE_ERR_INSUFFICIENT_TOKENS');
      expect(balance('ACME')).to.be.at.least(0);
      expect(balance('ACME')).to.equal(units - 90 * big);
    });

    it('refuses a key made for another terminal', async () => {
      const res = await call(socket, 'sale:commit', { key: `t999:${randomUUID()}`, lines: [{ code: PEN, qty: 1 }], card: null, tenders: [], cashTenderedMinor: 500 });
      expect(res.ok ? null : res.error.code).to.equal('VND_ERR_IDEMPOTENCY_KEY');
    });

    it('says how many tokens are missing', async () => {
      const res = await call(socket, 'sale:commit', { key: key(), lines: [{ code: PEN, qty: 1 }], card, tenders: [{ token: 'ACME', units: balance('ACME') + 120 }], cashTenderedMinor: 0 });
      expect(res.ok).to.equal(false);
      if (!res.ok) expect(res.error.code).to.be.oneOf(['CORE_ERR_INSUFFICIENT_TOKENS', 'CORE_ERR_TENDER_EXCESS']);
    });
  });

  describe('refunds and receipts', () => {
    it('refunds a sale once, with a supervisor, and shows it on the receipt', async () => {
      const other = store.init.demo?.customers[5];
      if (other === undefined) throw new Error('demo customer');
      const card = other.card;
      const balance = (token: string) => store.server.ledger.state.balances[`customer:${other.id}`]?.[token] ?? 0;
      const before = balance('ACME');
      const sale = expectOk(await call<SaleResult>(socket, 'sale:commit', { key: key(), lines: [{ code: MUESLI, qty: 1 }], card, tenders: [{ token: 'ACME' }], cashTenderedMinor: 0 }));
      expect(balance('ACME')).to.equal(before - 80);

      const byCashier = await call(socket, 'sale:refund', { key: key(), saleId: sale.saleId, reason: 'damaged', supervisor: { staffId: 'ana', pin: '1234' } });
      expect(byCashier.ok ? null : byCashier.error.code).to.equal('VND_ERR_SUPERVISOR_REQUIRED');
      const wrongPin = await call(socket, 'sale:refund', { key: key(), saleId: sale.saleId, reason: 'damaged', supervisor: { staffId: 'sam', pin: '0000' } });
      expect(wrongPin.ok ? null : wrongPin.error.code).to.equal('VND_ERR_PIN');
      expect(balance('ACME')).to.equal(before - 80);

      const k = key();
      const refundBody = { key: k, saleId: sale.saleId, reason: 'damaged', supervisor: { staffId: 'sam', pin: '9999' } };
      const refund = expectOk(await call<RefundResult>(socket, 'sale:refund', refundBody));
      expect(refund.credited).to.deep.equal({ ACME: 80 });
      expect(balance('ACME')).to.equal(before);
      const retry = expectOk(await call<RefundResult>(socket, 'sale:refund', refundBody));
      expect(retry.refundId).to.equal(refund.refundId);
      const twice = await call(socket, 'sale:refund', { ...refundBody, key: key() });
      expect(twice.ok ? null : twice.error.code).to.equal('VND_ERR_ALREADY_REFUNDED');
      expect(balance('ACME')).to.equal(before);

      const receipt = expectOk(await call<ReceiptData>(socket, 'receipt:get', { saleId: sale.saleId }));
      expect(receipt.sale.saleId).to.equal(sale.saleId);
      expect(receipt.sale.refunded).to.equal(true);
      expect(receipt.refund?.refundId).to.equal(refund.refundId);
      expect(receipt.store.name).to.equal('ACME Market');
    });
  });
});
