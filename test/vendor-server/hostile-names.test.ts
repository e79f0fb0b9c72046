import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { ERRORS, isWellFormedText, type Ack, type SaleResult } from '../../core/index.ts';
import { call, expectOk, startDemoStore, type DemoStore, type TerminalClient } from '../helpers/vendor.ts';

const PEN = '4006381333931';

/** The names JavaScript objects answer to without holding them, and strings no encoder can carry. */
const BUILT_IN_NAMES = [
  '__proto__',
  'constructor',
  'toString',
  'hasOwnProperty',
  'valueOf',
  'prototype',
  'isPrototypeOf',
  'propertyIsEnumerable',
  'toLocaleString',
  '__defineGetter__',
  '__lookupSetter__',
  'call',
  'apply',
  'bind',
  'length',
  'name',
];
const LONE_SURROGATES = ['\ud800', 'a\udfffb', '\udc00', 'Anna \ud83d'];
const HOSTILE = [...BUILT_IN_NAMES, ...LONE_SURROGATES];

/** Everything a refused request could have changed: the journal, the state, the float and who may do what. */
function fingerprint(store: DemoStore): string {
  const { ledger, access } = store.server;
  const s = ledger.state;
  return JSON.stringify({
    seq: s.seq,
    hash: s.hash,
    journalBytes: ledger.journal.bytes,
    float: ledger.float(),
    balances: s.balances,
    customers: s.customers,
    cards: s.cards,
    products: s.products,
    tokenTypes: s.tokenTypes,
    refunds: s.refunds,
    days: s.days,
    customerSerial: s.customerSerial,
    keys: [...s.keys.entries()],
    terminals: access.data.terminals,
    staff: access.data.staff,
  });
}

/** A refusal with a stable code and a 4xx status: never an internal error. */
function expectTyped4xx(code: string | undefined, what: string): void {
  expect(code, what).to.be.a('string');
  expect(code, what).to.not.equal('VND_ERR_INTERNAL');
  const spec = (ERRORS as Record<string, { status: number }>)[code ?? ''];
  expect(spec, `${what}: ${String(code)} is in the catalogue`).to.not.equal(undefined);
  expect(spec?.status, `${what}: ${String(code)}`).to.be.within(400, 499);
}

/** A JSON object that holds `name` as its own key, as JSON.parse makes it from the wire. */
function withKey(base: Record<string, unknown>, name: string, value: unknown): unknown {
  const copy = JSON.parse(JSON.stringify(base)) as Record<string, unknown>;
  Object.defineProperty(copy, name, { value, enumerable: true, configurable: true, writable: true });
  return copy;
}

describe('vendor server: built-in property names and lone surrogates change nothing', function () {
  this.timeout(120_000);
  let store: DemoStore;
  let socket: TerminalClient;
  let terminalId: string;
  let card: string;
  let saleId: string;

  before(async () => {
    store = await startDemoStore();
    ({ terminalId, socket } = await store.openTill());
    card = store.init.demo?.customers[0]?.card ?? '';
    const sale = expectOk(await call<SaleResult>(socket, 'sale:commit', { key: `${terminalId}:${randomUUID()}`, lines: [{ code: PEN, qty: 1 }], card, tenders: [{ token: 'ACME' }], cashTenderedMinor: 0 }));
    saleId = sale.saleId;
  });
  after(async () => store.close());

  const key = () => `${terminalId}:${randomUUID()}`;
  const saleBody = () => ({ key: key(), lines: [{ code: PEN, qty: 1 }], card, tenders: [{ token: 'ACME' }], cashTenderedMinor: 0 });
  const refundBody = () => ({ key: key(), saleId, reason: 'damaged', supervisor: { staffId: 'sam', pin: '9999' } });

  /**
   * Each socket event with the hostile value in each of its identifiers and object keys,
   * and (`text`) in its free-text fields: a lone surrogate is refused everywhere, while a
   * built-in name is ordinary text in a reason or a name.
   */
  function socketCases(x: string, text: boolean): [string, string, unknown][] {
    const cases: [string, string, unknown][] = [
      ['product:lookup', 'code', { code: x }],
      ['customer:lookup', 'card', { card: x }],
      ['balance:inquiry', 'card', { card: x }],
      ['cart:price', 'line code', { lines: [{ code: x, qty: 1 }] }],
      ['cart:price', 'card', { lines: [{ code: PEN, qty: 1 }], card: x, tenders: [{ token: 'ACME' }] }],
      ['cart:price', 'token', { lines: [{ code: PEN, qty: 1 }], card, tenders: [{ token: x }] }],
      ['cart:price', 'a key of the payload', withKey({ lines: [{ code: PEN, qty: 1 }] }, x, 1)],
      ['sale:commit', 'key', { ...saleBody(), key: x }],
      ['sale:commit', 'line code', { ...saleBody(), lines: [{ code: x, qty: 1 }] }],
      ['sale:commit', 'card', { ...saleBody(), card: x }],
      ['sale:commit', 'token', { ...saleBody(), tenders: [{ token: x }] }],
      ['sale:commit', 'a key of the payload', withKey(saleBody(), x, { admin: true })],
      ['sale:commit', 'a key of a line', { ...saleBody(), lines: [withKey({ code: PEN, qty: 1 }, x, 1)] }],
      ['sale:refund', 'key', { ...refundBody(), key: x }],
      ['sale:refund', 'sale id', { ...refundBody(), saleId: x }],
      ['sale:refund', 'supervisor id', { ...refundBody(), supervisor: { staffId: x, pin: '9999' } }],
      ['sale:refund', 'supervisor PIN', { ...refundBody(), supervisor: { staffId: 'sam', pin: x } }],
      ['sale:refund', 'a key of the supervisor', { ...refundBody(), supervisor: withKey({ staffId: 'sam', pin: '9999' }, x, 1) }],
      ['sale:status', 'key', { key: x }],
      ['receipt:get', 'sale id', { saleId: x }],
      ['cashier:login', 'staff id', { staffId: x, pin: '1234' }],
      ['cashier:login', 'PIN', { staffId: 'ana', pin: x }],
      ['cashier:logout', 'a key of the payload', withKey({}, x, 1)],
      [x, 'the event name', {}],
    ];
    if (text) {
      cases.push(['sale:commit', 'key suffix', { ...saleBody(), key: `${terminalId}:${x}` }]);
      cases.push(['sale:refund', 'reason', { ...refundBody(), reason: x }]);
    }
    return cases;
  }

  it('every socket event refuses them with a typed 4xx error and changes nothing', async () => {
    const before = fingerprint(store);
    let sent = 0;
    for (const x of HOSTILE) {
      for (const [event, field, payload] of socketCases(x, !isWellFormedText(x))) {
        const res = (await call(socket, event as 'sale:commit', payload)) as Ack<unknown>;
        const what = `${event} with ${JSON.stringify(x)} as ${field}`;
        expect(res.ok, `${what}: ${JSON.stringify(res)}`).to.equal(false);
        expectTyped4xx(res.ok ? undefined : res.error.code, what);
        sent += 1;
      }
    }
    expect(sent).to.equal(BUILT_IN_NAMES.length * socketCases('x', false).length + LONE_SURROGATES.length * socketCases('x', true).length);
    expect(fingerprint(store)).to.equal(before);
    // The connection still works and the cashier is still signed in.
    expectOk(await call(socket, 'product:lookup', { code: PEN }));
  });

  /** Each operator endpoint with the hostile value in each identifier and key, and (`text`) in each free-text field. */
  function httpCases(x: string, inPath: string, text: boolean): [string, string, unknown][] {
    const q = encodeURIComponent(isWellFormedText(x) ? x : 'x');
    const cases: [string, string, unknown][] = [
      ['GET', `/api/products/${inPath}`, undefined],
      ['PUT', `/api/products/${inPath}`, { name: 'X', priceMinor: 1, tokenPrices: {} }],
      ['PUT', `/api/products/${PEN}`, { name: 'Pen', priceMinor: 1, tokenPrices: withKey({ ACME: 1 }, x, 1) }],
      ['PUT', `/api/products/${PEN}`, withKey({ name: 'Pen', priceMinor: 1, tokenPrices: {} }, x, 1)],
      ['PUT', `/api/token-types/${inPath}`, { name: 'T', kind: 'vendor', issuer: 'acme', faceValueMinor: 1, currency: 'EUR', acceptedBy: '*' }],
      ['PUT', '/api/token-types/ACMEX', { name: 'T', kind: 'vendor', issuer: x, faceValueMinor: 1, currency: 'EUR', acceptedBy: '*' }],
      ['PUT', '/api/token-types/ACMEX', { name: 'T', kind: 'vendor', issuer: 'acme', faceValueMinor: 1, currency: 'EUR', acceptedBy: [x] }],
      ['PUT', '/api/token-types/ACMEX', { name: 'T', kind: x, issuer: 'acme', faceValueMinor: 1, currency: 'EUR', acceptedBy: '*' }],
      ['GET', `/api/customers?card=${q}`, undefined],
      ['POST', '/api/customers', { name: 'Zoë', card: x }],
      ['POST', '/api/customers', withKey({ name: 'Zoë' }, x, 1)],
      ['GET', `/api/customers/${inPath}`, undefined],
      ['GET', `/api/customers/${inPath}/history`, undefined],
      ['POST', '/api/issuances', { customerId: x, token: 'MALL', units: 1, reason: 'reward' }],
      ['POST', '/api/issuances', { customerId: 'cust-000001', token: x, units: 1, reason: 'reward' }],
      ['POST', '/api/issuances', { customerId: 'cust-000001', token: 'MALL', units: 1, reason: x }],
      ['POST', '/api/issuances', withKey({ customerId: 'cust-000001', token: 'MALL', units: 1, reason: 'reward' }, x, 1)],
      ['POST', '/api/allotments', { token: x, units: 1, reference: 'r' }],
      ['GET', `/api/totals?date=${q}`, undefined],
      ['GET', `/api/sales/${inPath}`, undefined],
      ['POST', `/api/terminals/${inPath}/pairing-code`, undefined],
      ['POST', `/api/terminals/${inPath}/revoke`, undefined],
      ['POST', `/api/terminals/${inPath}/unlock`, undefined],
      ['PUT', `/api/staff/${inPath}`, { name: 'S', role: 'cashier', pin: '2468' }],
      ['PUT', '/api/staff/lee', { name: 'Lee', role: x, pin: '2468' }],
      ['PUT', '/api/staff/lee', { name: 'Lee', role: 'cashier', pin: x }],
      ['POST', `/api/staff/${inPath}/unlock`, undefined],
      ['GET', `/api/ledger/export?format=${q}`, undefined],
      ['GET', `/api/mall/statements?from=${q}&to=${q}`, undefined],
      ['POST', '/pair', { code: x }],
    ];
    if (text) {
      cases.push(
        ['PUT', `/api/products/${PEN}`, { name: x, priceMinor: 1, tokenPrices: {} }],
        ['PUT', '/api/token-types/ACMEX', { name: x, kind: 'vendor', issuer: 'acme', faceValueMinor: 1, currency: 'EUR', acceptedBy: '*' }],
        ['POST', '/api/customers', { name: x }],
        ['POST', '/api/allotments', { token: 'ACME', units: 1, reference: x }],
        ['POST', '/api/terminals', { name: x }],
        ['PUT', '/api/staff/lee', { name: x, role: 'cashier', pin: '2468' }],
      );
    }
    return cases;
  }

  /** A path segment for a value: percent-encoded, or for a lone surrogate the bytes a broken encoder would send. */
  const pathOf = (x: string) => (isWellFormedText(x) ? encodeURIComponent(x) : '%ED%A0%80');

  it('every operator endpoint refuses them with a typed 4xx error and changes nothing', async () => {
    const before = fingerprint(store);
    for (const x of HOSTILE) {
      for (const [method, path, body] of httpCases(x, pathOf(x), !isWellFormedText(x))) {
        const headers: Record<string, string> = method === 'POST' && (path === '/api/issuances' || path === '/api/allotments') ? { 'idempotency-key': randomUUID() } : {};
        const res = await store.operator(method, path, body === undefined ? undefined : JSON.stringify(body), headers);
        const what = `${method} ${path} ${JSON.stringify(body)}`;
        expect(res.status, `${what}: ${res.text}`).to.be.within(400, 499);
        expectTyped4xx(res.body?.error?.code, `${what}: ${res.text}`);
      }
      const idem = await store.operator('POST', '/api/allotments', { token: 'ACME', units: 1, reference: 'r' }, { 'idempotency-key': isWellFormedText(x) ? x : 'x' });
      expectTyped4xx(idem.body?.error?.code, `an Idempotency-Key of ${JSON.stringify(x)}`);
    }
    expect(fingerprint(store)).to.equal(before);
  });

  it('behind the schemas, the ledger and the access store find no built-in names either', async () => {
    const { ledger, access } = store.server;
    const before = fingerprint(store);
    const op = { terminal: null, cashier: null };
    for (const x of BUILT_IN_NAMES) {
      const refusals = [
        () => ledger.issueTokens(op, `op:${randomUUID()}`, { customerId: x, token: 'ACME', units: 1, reason: 'reward' }),
        () => ledger.customerHistory(x),
        async () => ledger.customerView(x),
        () => ledger.allotOwnTokens(op, `op:${randomUUID()}`, { token: x, units: 1, reference: 'r' }),
        () => access.authenticateStaff(x, '1234', { terminalId: x }),
        () => access.unlockStaff(x),
        () => access.revokeTerminal(x),
      ];
      for (const [i, refuse] of refusals.entries()) {
        const err = await refuse().then(() => null, (e: unknown) => e as { code?: string });
        expectTyped4xx(err?.code, `call ${i} with ${x}`);
      }
    }
    expect(fingerprint(store)).to.equal(before);
  });

  it('a built-in name is plain text in a name: stored verbatim under the customer\'s own id', async () => {
    for (const name of BUILT_IN_NAMES) {
      const created = await store.operator('POST', '/api/customers', { name });
      expect(created.status, created.text).to.equal(200);
      expect(created.body.name).to.equal(name);
      const got = await store.operator('GET', `/api/customers/${created.body.id as string}`);
      expect(got.body.name).to.equal(name);
    }
  });

  it('a restart replays the same journal to the same state, and the store still sells', async () => {
    const before = fingerprint(store);
    await store.restart();
    expect(fingerprint(store)).to.equal(before);
    const paired = await store.pairTerminal('Till 3');
    const s = await store.connect(paired.credential);
    expectOk(await call(s, 'cashier:login', { staffId: 'ana', pin: '1234' }));
    const sale = await call<SaleResult>(s, 'sale:commit', { key: `${paired.terminalId}:${randomUUID()}`, lines: [{ code: PEN, qty: 1 }], card: null, tenders: [], cashTenderedMinor: 450 });
    expect(expectOk(sale).totalMinor).to.equal(450);
  });
});
