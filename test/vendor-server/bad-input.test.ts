import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { call, startDemoStore, terminalSocket, type DemoStore, type TerminalClient } from '../helpers/vendor.ts';

const PEN = '4006381333931';

/** Everything a bad request could have changed. */
function fingerprint(store: DemoStore): string {
  const s = store.server.ledger.state;
  return JSON.stringify({ seq: s.seq, hash: s.hash, balances: s.balances, customers: s.customers, products: s.products, keys: [...s.keys.entries()] });
}

describe('vendor server: bad input gets a typed error and changes nothing', function () {
  this.timeout(30_000);
  let store: DemoStore;
  let socket: TerminalClient;
  let terminalId: string;
  let card: string;

  before(async () => {
    store = await startDemoStore();
    ({ terminalId, socket } = await store.openTill());
    card = store.init.demo?.customers[1]?.card ?? '';
  });
  after(async () => store.close());

  const key = () => `${terminalId}:${randomUUID()}`;
  const sale = (over: Record<string, unknown>) => ({ key: key(), lines: [{ code: PEN, qty: 1 }], card, tenders: [{ token: 'ACME' }], cashTenderedMinor: 0, ...over });

  const socketCases: [string, string, () => unknown, string][] = [
    ['not an object', 'sale:commit', () => 'hello', 'CORE_ERR_VALIDATION'],
    ['null payload', 'sale:commit', () => null, 'CORE_ERR_VALIDATION'],
    ['missing lines', 'sale:commit', () => ({ key: 'x', card: null, tenders: [], cashTenderedMinor: 0 }), 'CORE_ERR_VALIDATION'],
    ['a client total', 'sale:commit', () => sale({ totalMinor: 1 }), 'CORE_ERR_VALIDATION'],
    ['a client price on a line', 'sale:commit', () => sale({ lines: [{ code: PEN, qty: 1, priceMinor: 1 }] }), 'CORE_ERR_VALIDATION'],
    ['negative quantity', 'sale:commit', () => sale({ lines: [{ code: PEN, qty: -1 }] }), 'CORE_ERR_AMOUNT'],
    ['fractional quantity', 'sale:commit', () => sale({ lines: [{ code: PEN, qty: 1.5 }] }), 'CORE_ERR_AMOUNT'],
    ['string quantity', 'sale:commit', () => sale({ lines: [{ code: PEN, qty: '1' }] }), 'CORE_ERR_AMOUNT'],
    ['zero quantity', 'sale:commit', () => sale({ lines: [{ code: PEN, qty: 0 }] }), 'CORE_ERR_VALIDATION'],
    ['negative token units', 'sale:commit', () => sale({ tenders: [{ token: 'ACME', units: -90 }] }), 'CORE_ERR_AMOUNT'],
    ['fractional token units', 'sale:commit', () => sale({ tenders: [{ token: 'ACME', units: 89.5 }] }), 'CORE_ERR_AMOUNT'],
    ['huge token units', 'sale:commit', () => sale({ tenders: [{ token: 'ACME', units: 2 ** 60 }] }), 'CORE_ERR_OVERFLOW'],
    ['string token units', 'sale:commit', () => sale({ tenders: [{ token: 'ACME', units: '90' }] }), 'CORE_ERR_AMOUNT'],
    ['negative cash', 'sale:commit', () => sale({ tenders: [], cashTenderedMinor: -450 }), 'CORE_ERR_AMOUNT'],
    ['huge cash', 'sale:commit', () => sale({ tenders: [], cashTenderedMinor: 1e300 }), 'CORE_ERR_OVERFLOW'],
    ['cash short', 'sale:commit', () => sale({ tenders: [], cashTenderedMinor: 449 }), 'CORE_ERR_CASH_SHORT'],
    ['unknown product', 'sale:commit', () => sale({ lines: [{ code: '4006381333948', qty: 1 }] }), 'VND_ERR_PRODUCT_UNKNOWN'],
    ['wrong check digit', 'sale:commit', () => sale({ lines: [{ code: '4006381333932', qty: 1 }] }), 'CORE_ERR_CHECK_DIGIT'],
    ['malformed code', 'sale:commit', () => sale({ lines: [{ code: '12ab', qty: 1 }] }), 'CORE_ERR_CODE_MALFORMED'],
    ['unknown card', 'sale:commit', () => sale({ card: 'C0000099994' }), 'VND_ERR_CUSTOMER_UNKNOWN'],
    ['card with wrong check digit', 'sale:commit', () => sale({ card: 'C0000000011' }), 'CORE_ERR_CHECK_DIGIT'],
    ['unknown token type', 'sale:commit', () => sale({ tenders: [{ token: 'BOGUS' }] }), 'CORE_ERR_TOKEN_UNKNOWN'],
    ['manufacturer token on other products', 'sale:commit', () => sale({ tenders: [{ token: 'SUNNY' }] }), 'CORE_ERR_PRODUCT_NOT_ELIGIBLE'],
    ['tokens without a customer', 'sale:commit', () => sale({ card: null }), 'CORE_ERR_TENDER_WITHOUT_CUSTOMER'],
    ['malformed key', 'sale:commit', () => sale({ key: 'a b' }), 'CORE_ERR_VALIDATION'],
    ['empty cart', 'sale:commit', () => sale({ lines: [] }), 'CORE_ERR_VALIDATION'],
    ['too many lines', 'sale:commit', () => sale({ lines: Array.from({ length: 201 }, () => ({ code: PEN, qty: 1 })) }), 'CORE_ERR_VALIDATION'],
    ['a refund with a malformed key', 'sale:refund', () => ({ key: 'k', saleId: 'S9999999999', reason: 'x', supervisor: { staffId: 'sam', pin: '9999' } }), 'CORE_ERR_VALIDATION'],
    ['refund without supervisor', 'sale:refund', () => ({ key: `x:${randomUUID()}`, saleId: 'S0000000001', reason: 'x' }), 'CORE_ERR_VALIDATION'],
    ['product lookup of a number', 'product:lookup', () => ({ code: 4006381333931 }), 'CORE_ERR_VALIDATION'],
    ['receipt for a non-sale', 'receipt:get', () => ({ saleId: 'S0000000001' }), 'VND_ERR_SALE_UNKNOWN'],
  ];

  for (const [name, event, payload, code] of socketCases) {
    it(`${event}: ${name} -> ${code}`, async () => {
      const before = fingerprint(store);
      const res = await call(socket, event as 'sale:commit', payload());
      expect(res.ok, JSON.stringify(res)).to.equal(false);
      if (!res.ok) {
        expect(res.error.code).to.equal(code);
        expect(res.error.message).to.be.a('string').and.not.equal('');
      }
      expect(fingerprint(store)).to.equal(before);
    });
  }

  it('refuses a replayed key with a different body and changes nothing', async () => {
    const first = sale({ tenders: [], cashTenderedMinor: 500 });
    const ok = await call(socket, 'sale:commit', first);
    expect(ok.ok).to.equal(true);
    const before = fingerprint(store);
    const res = await call(socket, 'sale:commit', { ...first, cashTenderedMinor: 1000 });
    expect(res.ok ? null : res.error.code).to.equal('VND_ERR_IDEMPOTENCY_CONFLICT');
    expect(fingerprint(store)).to.equal(before);
  });

  it('drops an oversized socket payload without changing anything', async () => {
    const before = fingerprint(store);
    const s = await store.connect((await store.pairTerminal('Till big')).credential);
    const closed = new Promise<string>((resolve) => s.once('disconnect', (reason) => resolve(reason)));
    (s as unknown as { emit: (e: string, p: unknown, a: () => void) => void }).emit('sale:commit', { ...sale({}), padding: 'x'.repeat(200_000) }, () => undefined);
    expect(await closed).to.be.a('string');
    expect(fingerprint(store)).to.equal(before);
  });

  it('an unauthenticated socket cannot send anything', async () => {
    const before = fingerprint(store);
    const s = terminalSocket(store.server);
    const err = await new Promise<Error & { data?: { code: string } }>((resolve) => s.once('connect_error', resolve));
    s.disconnect();
    expect(err.data?.code).to.equal('VND_ERR_UNAUTHENTICATED');
    expect(fingerprint(store)).to.equal(before);
  });

  describe('operator HTTP API', () => {
    const httpCases: [string, string, string, unknown, Record<string, string>, number, string][] = [
      ['no credential', 'POST', '/api/customers', { name: 'X' }, { authorization: '' }, 401, 'VND_ERR_UNAUTHENTICATED'],
      ['a wrong credential', 'POST', '/api/customers', { name: 'X' }, { authorization: 'Bearer mpo_wrong' }, 401, 'VND_ERR_UNAUTHENTICATED'],
      ['malformed JSON', 'POST', '/api/customers', '{"name": ', {}, 400, 'CORE_ERR_VALIDATION'],
      ['an oversized body', 'POST', '/api/customers', { name: 'x'.repeat(100_000) }, {}, 413, 'VND_ERR_PAYLOAD_TOO_LARGE'],
      ['an unknown field', 'POST', '/api/customers', { name: 'X', vip: true }, {}, 400, 'CORE_ERR_VALIDATION'],
      ['a card in use', 'POST', '/api/customers', { name: 'X', card: 'C0000000018' }, {}, 409, 'VND_ERR_CARD_IN_USE'],
      ['an allotment without key', 'POST', '/api/allotments', { token: 'ACME', units: 5, reference: 'r' }, {}, 400, 'VND_ERR_IDEMPOTENCY_KEY'],
      ['negative allotment', 'POST', '/api/allotments', { token: 'ACME', units: -5, reference: 'r' }, { 'idempotency-key': randomUUID() }, 400, 'CORE_ERR_AMOUNT'],
      ['fractional issuance', 'POST', '/api/issuances', { customerId: 'cust-000001', token: 'ACME', units: 1.5, reason: 'reward' }, { 'idempotency-key': randomUUID() }, 400, 'CORE_ERR_AMOUNT'],
      ['string issuance', 'POST', '/api/issuances', { customerId: 'cust-000001', token: 'ACME', units: '10', reason: 'reward' }, { 'idempotency-key': randomUUID() }, 400, 'CORE_ERR_AMOUNT'],
      ['issuance beyond the float', 'POST', '/api/issuances', { customerId: 'cust-000001', token: 'SUNNY', units: 10_000_000, reason: 'reward' }, { 'idempotency-key': randomUUID() }, 409, 'CORE_ERR_INSUFFICIENT_TOKENS'],
      ['a product with a wrong check digit', 'PUT', '/api/products/4006381333932', { name: 'X', priceMinor: 1, tokenPrices: {} }, {}, 400, 'CORE_ERR_CHECK_DIGIT'],
      ['a product priced in an unknown token', 'PUT', '/api/products/4006381333931', { name: 'X', priceMinor: 1, tokenPrices: { NOPE: 1 } }, {}, 404, 'CORE_ERR_TOKEN_UNKNOWN'],
      ['a pairing code that does not exist', 'POST', '/pair', { code: 'ZZZZZZZZ' }, {}, 403, 'VND_ERR_PAIRING_CODE'],
      ['an unknown endpoint', 'GET', '/api/nope', undefined, {}, 404, 'VND_ERR_NOT_FOUND'],
    ];
    for (const [name, method, path, body, headers, status, code] of httpCases) {
      it(`${method} ${path}: ${name} -> ${status} ${code}`, async () => {
        const before = fingerprint(store);
        const res = await store.operator(method, path, body, headers);
        expect(res.status, res.text).to.equal(status);
        expect(res.body?.error?.code).to.equal(code);
        expect(fingerprint(store)).to.equal(before);
      });
    }
  });
});
