import { randomUUID } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { expect } from 'chai';
import { luhnCheckDigit, type Ack, type ReceiptData, type SaleResult } from '../../core/index.ts';
import { createLogger } from '../../platform/logger.ts';
import { fetchTls } from '../helpers/http.ts';
import { until } from '../helpers/process.ts';
import { call, expectOk, startDemoStore, startTestVendor, terminalSocket, type DemoStore, type TerminalClient } from '../helpers/vendor.ts';
import { PIN_HASH_COST_DEFAULT } from '../../platform/pin-hash.ts';

const PEN = '4006381333931';

function codeOf(ack: Ack<unknown>): string | null {
  return ack.ok ? null : ack.error.code;
}

/** The journal, balances, float and sign-in state: what a refused attack must leave as it was. */
function fingerprint(store: DemoStore): string {
  const { ledger } = store.server;
  return JSON.stringify({ seq: ledger.state.seq, hash: ledger.state.hash, balances: ledger.state.balances, float: ledger.float() });
}

describe('vendor server: people at the till', function () {
  this.timeout(60_000);
  let store: DemoStore;
  let logged = '';

  /** Restarts the server with a logger we can read, to check that lockouts reach the log. */
  async function restartLogged(): Promise<void> {
    const out = new PassThrough();
    out.on('data', (d: Buffer) => (logged += d.toString()));
    await store.server.close();
    store.server = await startTestVendor(store.dir, { logger: createLogger({ level: 'info', destination: out }) });
  }

  before(async () => {
    // PIN checking is what these tests are about: the store hashes at the default cost.
    store = await startDemoStore({ pinHashCost: PIN_HASH_COST_DEFAULT });
    await restartLogged();
  });
  after(async () => store.close());

  async function till(name: string): Promise<{ socket: TerminalClient; terminalId: string; credential: string }> {
    const paired = await store.pairTerminal(name);
    return { socket: await store.connect(paired.credential), terminalId: paired.terminalId, credential: paired.credential };
  }

  describe('PIN guessing', () => {
    beforeEach(() => {
      // Small numbers so the test reaches the lockout quickly; the rules are the same.
      store.server.access.pinPolicy = { freeFailures: 2, backoffBaseMs: 20, backoffMaxMs: 80, staffLockFailures: 5, terminalLockFailures: 8 };
    });

    it('200 wrong PINs at full speed: refused, slowed down, then the staff member is locked until the operator unlocks', async () => {
      const { socket } = await till('Till guess');
      const before = fingerprint(store);
      const answers = await Promise.all(Array.from({ length: 200 }, (_, i) => call(socket, 'cashier:login', { staffId: 'sam', pin: String(1000 + i) })));
      const codes = answers.map(codeOf);
      expect(codes).to.not.include(null);
      // Attempts run one at a time: most of a burst is turned away without checking the PIN.
      expect(codes.filter((c) => c === 'VND_ERR_PIN').length).to.be.at.most(2);
      expect(codes.filter((c) => c === 'VND_ERR_RATE_LIMITED').length).to.be.at.least(190);

      // Keep guessing, waiting out each backoff, until the lockout.
      let guesses = codes.filter((c) => c === 'VND_ERR_PIN').length;
      const locked = await until('the lockout', async () => {
        const res = await call(socket, 'cashier:login', { staffId: 'sam', pin: String(2000 + guesses) });
        if (codeOf(res) === 'VND_ERR_PIN') guesses += 1;
        return codeOf(res) === 'VND_ERR_STAFF_LOCKED' ? guesses : undefined;
      });
      expect(locked).to.equal(5);
      // The right PIN no longer helps, at this till or any other.
      expect(codeOf(await call(socket, 'cashier:login', { staffId: 'sam', pin: '9999' }))).to.equal('VND_ERR_STAFF_LOCKED');
      const other = await till('Till other');
      expect(codeOf(await call(other.socket, 'cashier:login', { staffId: 'sam', pin: '9999' }))).to.equal('VND_ERR_STAFF_LOCKED');
      // Nor does it approve a refund.
      expectOk(await call(other.socket, 'cashier:login', { staffId: 'ana', pin: '1234' }));
      const refund = await call(other.socket, 'sale:refund', { key: `${other.terminalId}:${randomUUID()}`, saleId: 'S0000000001', reason: 'x', supervisor: { staffId: 'sam', pin: '9999' } });
      expect(codeOf(refund)).to.equal('VND_ERR_STAFF_LOCKED');
      expect(fingerprint(store)).to.equal(before);

      const staff = await store.operator('GET', '/api/staff');
      expect(staff.body.find((s: { id: string }) => s.id === 'sam').lockedAt).to.be.a('string');
      await until('the lockout in the log', () => (logged.includes('"event":"staff.locked"') ? true : undefined));
      expect(logged).to.include('"staffId":"sam"');
      for (let i = 0; i < 200; i++) expect(logged).to.not.include(`"${1000 + i}"`);

      // A restart keeps the lockout: it is stored, not only held in memory.
      const policy = store.server.access.pinPolicy;
      await restartLogged();
      store.server.access.pinPolicy = policy;
      const again = await till('Till after restart');
      expect(codeOf(await call(again.socket, 'cashier:login', { staffId: 'sam', pin: '9999' }))).to.equal('VND_ERR_STAFF_LOCKED');

      const unlocked = await store.operator('POST', '/api/staff/sam/unlock');
      expect(unlocked.status, unlocked.text).to.equal(200);
      expect(unlocked.body.lockedAt).to.equal(null);
      expect(expectOk(await call<{ role: string }>(again.socket, 'cashier:login', { staffId: 'sam', pin: '9999' })).role).to.equal('supervisor');
    });

    it('a PIN remembered from a sign-in a moment ago does not get past a lockout', async () => {
      const { socket } = await till('Till remembered');
      // Signed in with the right PIN: the server now remembers it (platform/pin-hash.ts).
      expectOk(await call(socket, 'cashier:login', { staffId: 'ana', pin: '1234' }));
      const other = await till('Till guessing ana');
      const locked = await until('the lockout', async () => {
        const res = await call(other.socket, 'cashier:login', { staffId: 'ana', pin: '0000' });
        return codeOf(res) === 'VND_ERR_STAFF_LOCKED' ? true : undefined;
      });
      expect(locked).to.equal(true);
      // The remembered PIN is refused like any other while the lock holds, at either till.
      expect(codeOf(await call(socket, 'cashier:login', { staffId: 'ana', pin: '1234' }))).to.equal('VND_ERR_STAFF_LOCKED');
      expect(codeOf(await call(other.socket, 'cashier:login', { staffId: 'ana', pin: '1234' }))).to.equal('VND_ERR_STAFF_LOCKED');
      expect((await store.operator('POST', '/api/staff/ana/unlock')).status).to.equal(200);
      expectOk(await call(socket, 'cashier:login', { staffId: 'ana', pin: '1234' }));
    });

    it('the same staff member signing in at two tills at once is not taken for guessing', async () => {
      const [a, b] = [await till('Till twin 1'), await till('Till twin 2')];
      const [x, y] = await Promise.all([call(a.socket, 'cashier:login', { staffId: 'ana', pin: '1234' }), call(b.socket, 'cashier:login', { staffId: 'ana', pin: '1234' })]);
      expectOk(x);
      expectOk(y);
    });

    it('guessing across staff ids locks the till itself', async () => {
      const { socket, terminalId } = await till('Till spray');
      let wrong = 0;
      const ids = ['ana', 'sam', 'nobody-1', 'nobody-2', 'nobody-3', 'nobody-4', 'nobody-5', 'nobody-6', 'nobody-7', 'nobody-8'];
      const code = await until('the till lockout', async () => {
        const res = await call(socket, 'cashier:login', { staffId: ids[wrong % ids.length], pin: '0001' });
        if (codeOf(res) === 'VND_ERR_PIN') wrong += 1;
        return codeOf(res) === 'VND_ERR_TERMINAL_LOCKED' ? codeOf(res) : undefined;
      });
      expect(code).to.equal('VND_ERR_TERMINAL_LOCKED');
      expect(wrong).to.equal(8);
      // Even the right PIN of an unlocked staff member is refused at this till.
      expect(codeOf(await call(socket, 'cashier:login', { staffId: 'ana', pin: '1234' }))).to.equal('VND_ERR_TERMINAL_LOCKED');
      const terminals = await store.operator('GET', '/api/terminals');
      expect(terminals.body.find((t: { id: string }) => t.id === terminalId).pinLockedAt).to.be.a('string');
      expect((await store.operator('POST', `/api/terminals/${terminalId}/unlock`)).status).to.equal(200);
      await store.operator('POST', '/api/staff/ana/unlock');
      await store.operator('POST', '/api/staff/sam/unlock');
      expectOk(await call(socket, 'cashier:login', { staffId: 'ana', pin: '1234' }));
    });

    it('an unknown staff id costs the same PIN check as a known one', async () => {
      const access = store.server.access;
      access.pinPolicy = { freeFailures: 1000, backoffBaseMs: 1, backoffMaxMs: 1, staffLockFailures: 1000, terminalLockFailures: 1000 };
      const time = async (staffId: string) => {
        const t0 = performance.now();
        await access.authenticateStaff(staffId, '0000', { terminalId: null }).catch(() => undefined);
        return performance.now() - t0;
      };
      await time('ana');
      const known: number[] = [];
      const unknown: number[] = [];
      for (let i = 0; i < 5; i++) {
        known.push(await time('ana'));
        unknown.push(await time('nobody'));
      }
      const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[2] ?? 0;
      // Both run scrypt: an unknown id is not answered in a fraction of the time.
      expect(median(unknown)).to.be.greaterThan(median(known) / 4);
      await access.unlockStaff('ana');
    });
  });

  describe('money needs a signed-in cashier', () => {
    it('a sale and a refund without a cashier on the connection are refused and change nothing', async () => {
      const { socket, terminalId } = await till('Till no cashier');
      const before = fingerprint(store);
      const card = store.init.demo?.customers[3]?.card;
      const sale = { key: `${terminalId}:${randomUUID()}`, lines: [{ code: PEN, qty: 1 }], card, tenders: [{ token: 'ACME' }], cashTenderedMinor: 0 };
      expect(codeOf(await call(socket, 'sale:commit', sale))).to.equal('VND_ERR_CASHIER_REQUIRED');
      const refund = { key: `${terminalId}:${randomUUID()}`, saleId: 'S0000000001', reason: 'x', supervisor: { staffId: 'sam', pin: '9999' } };
      expect(codeOf(await call(socket, 'sale:refund', refund))).to.equal('VND_ERR_CASHIER_REQUIRED');
      expect(fingerprint(store)).to.equal(before);

      // After signing out, the same holds again.
      expectOk(await call(socket, 'cashier:login', { staffId: 'ana', pin: '1234' }));
      const done = expectOk(await call<SaleResult>(socket, 'sale:commit', sale));
      expect(done.cashier).to.equal('ana');
      expectOk(await call(socket, 'cashier:logout', {}));
      const before2 = fingerprint(store);
      expect(codeOf(await call(socket, 'sale:commit', { ...sale, key: `${terminalId}:${randomUUID()}` }))).to.equal('VND_ERR_CASHIER_REQUIRED');
      expect(fingerprint(store)).to.equal(before2);
      // A retry of the committed sale (a terminal restarted mid-sale) still learns its outcome.
      expect(expectOk(await call<SaleResult>(socket, 'sale:commit', sale)).saleId).to.equal(done.saleId);
      expect(codeOf(await call(socket, 'sale:commit', { ...sale, cashTenderedMinor: 5 }))).to.equal('VND_ERR_IDEMPOTENCY_CONFLICT');
      expect(fingerprint(store)).to.equal(before2);
    });

    it('a sale sent right behind a sign-in waits for it: taken after a right PIN, refused after a wrong one', async () => {
      const { socket, terminalId } = await till('Till quick sale');
      const sale = () => ({ key: `${terminalId}:${randomUUID()}`, lines: [{ code: PEN, qty: 1 }], card: null, tenders: [], cashTenderedMinor: 500 });
      // Both sent before either answer: the sign-in (a slow PIN hash) is still running when the sale arrives.
      const before = fingerprint(store);
      const [wrong, refused] = await Promise.all([call(socket, 'cashier:login', { staffId: 'ana', pin: '0000' }), call(socket, 'sale:commit', sale())]);
      expect(codeOf(wrong)).to.equal('VND_ERR_PIN');
      expect(codeOf(refused)).to.equal('VND_ERR_CASHIER_REQUIRED');
      expect(fingerprint(store)).to.equal(before);
      const [signedIn, sold] = await Promise.all([call(socket, 'cashier:login', { staffId: 'ana', pin: '1234' }), call<SaleResult>(socket, 'sale:commit', sale())]);
      expectOk(signedIn);
      expect(expectOk(sold).cashier).to.equal('ana');
      // Signed in and nothing in progress, a sale goes through at once.
      expect(expectOk(await call<SaleResult>(socket, 'sale:commit', sale())).cashier).to.equal('ana');
    });

    it('a sign-out sent right behind a sign-in wins: the till stays signed out and a sale is refused', async () => {
      const { socket, terminalId } = await till('Till quick sign-out');
      const sale = { key: `${terminalId}:${randomUUID()}`, lines: [{ code: PEN, qty: 1 }], card: null, tenders: [], cashTenderedMinor: 500 };
      // Staff whose PINs were never checked: a PIN that verified is remembered and confirmed
      // at once (platform/pin-hash.ts), and these sign-ins must still be in flight.
      for (const [id, role, pin] of [['quick-1', 'cashier', '1357'], ['quick-2', 'cashier', '2468'], ['quick-3', 'supervisor', '3579']] as const) {
        expect((await store.operator('PUT', `/api/staff/${id}`, { name: id, role, pin })).status).to.equal(200);
      }
      // As a till does after a reconnect: it signs its cashier in again, and the cashier signs
      // out while that PIN is still being checked. The sign-out arrived last, so it holds.
      const before = fingerprint(store);
      const [signIn, signOut] = await Promise.all([call(socket, 'cashier:login', { staffId: 'quick-1', pin: '1357' }), call(socket, 'cashier:logout', {})]);
      expect(codeOf(signIn)).to.equal('VND_ERR_CASHIER_REQUIRED');
      expectOk(signOut);
      expect(codeOf(await call(socket, 'sale:commit', sale))).to.equal('VND_ERR_CASHIER_REQUIRED');
      expect(fingerprint(store)).to.equal(before);
      // Of two sign-ins in flight, the later one is the cashier.
      const [first, second] = await Promise.all([call(socket, 'cashier:login', { staffId: 'quick-2', pin: '2468' }), call(socket, 'cashier:login', { staffId: 'quick-3', pin: '3579' })]);
      expect(codeOf(first)).to.equal('VND_ERR_CASHIER_REQUIRED');
      expectOk(second);
      expect(expectOk(await call<SaleResult>(socket, 'sale:commit', sale)).cashier).to.equal('quick-3');
    });

    it('a refund needs a supervisor\'s PIN besides the signed-in cashier', async () => {
      const { socket, terminalId } = await till('Till refund');
      expectOk(await call(socket, 'cashier:login', { staffId: 'ana', pin: '1234' }));
      const sale = expectOk(await call<SaleResult>(socket, 'sale:commit', { key: `${terminalId}:${randomUUID()}`, lines: [{ code: PEN, qty: 1 }], card: null, tenders: [], cashTenderedMinor: 500 }));
      const before = fingerprint(store);
      const byCashier = await call(socket, 'sale:refund', { key: `${terminalId}:${randomUUID()}`, saleId: sale.saleId, reason: 'x', supervisor: { staffId: 'ana', pin: '1234' } });
      expect(codeOf(byCashier)).to.equal('VND_ERR_SUPERVISOR_REQUIRED');
      expect(fingerprint(store)).to.equal(before);
      expectOk(await call(socket, 'sale:refund', { key: `${terminalId}:${randomUUID()}`, saleId: sale.saleId, reason: 'x', supervisor: { staffId: 'sam', pin: '9999' } }));
    });
  });

  describe('receipts and keys of other tills', () => {
    it('a till reads its own recent receipts; another till needs a supervisor signed in', async () => {
      const a = await till('Till A');
      const b = await till('Till B');
      expectOk(await call(a.socket, 'cashier:login', { staffId: 'ana', pin: '1234' }));
      const card = store.init.demo?.customers[4]?.card;
      const key = `${a.terminalId}:${randomUUID()}`;
      const sale = expectOk(await call<SaleResult>(a.socket, 'sale:commit', { key, lines: [{ code: PEN, qty: 1 }], card, tenders: [{ token: 'ACME' }], cashTenderedMinor: 0 }));
      expect(expectOk(await call<ReceiptData>(a.socket, 'receipt:get', { saleId: sale.saleId })).sale.saleId).to.equal(sale.saleId);

      expect(codeOf(await call(b.socket, 'receipt:get', { saleId: sale.saleId }))).to.equal('VND_ERR_RECEIPT_FORBIDDEN');
      expectOk(await call(b.socket, 'cashier:login', { staffId: 'ana', pin: '1234' }));
      expect(codeOf(await call(b.socket, 'receipt:get', { saleId: sale.saleId }))).to.equal('VND_ERR_RECEIPT_FORBIDDEN');
      // Nor can it learn the sale through its key.
      expect(codeOf(await call(b.socket, 'sale:status', { key }))).to.equal('VND_ERR_IDEMPOTENCY_KEY');
      expectOk(await call(b.socket, 'cashier:login', { staffId: 'sam', pin: '9999' }));
      expect(expectOk(await call<ReceiptData>(b.socket, 'receipt:get', { saleId: sale.saleId })).sale.saleId).to.equal(sale.saleId);
    });
  });

  describe('customer cards', () => {
    it('are random, carry a valid check digit, never repeat and are masked in messages', async () => {
      const cards: string[] = [];
      for (let i = 0; i < 20; i++) {
        const res = await store.operator('POST', '/api/customers', { name: `Customer ${i}` });
        expect(res.status, res.text).to.equal(200);
        cards.push(res.body.card as string);
      }
      for (const card of cards) {
        expect(card).to.match(/^C\d{10}$/);
        expect(luhnCheckDigit(card.slice(1, 10))).to.equal(Number(card[10]));
      }
      expect(new Set(cards).size).to.equal(cards.length);
      // Not a sequence: consecutive registrations are far apart.
      const serials = cards.map((c) => Number(c.slice(1, 10)));
      const steps = serials.slice(1).map((s, i) => Math.abs(s - (serials[i] ?? 0)));
      expect(steps.filter((d) => d <= 10).length).to.be.at.most(1);

      const inUse = await store.operator('POST', '/api/customers', { name: 'Copy', card: cards[0] });
      expect(inUse.body.error.code).to.equal('VND_ERR_CARD_IN_USE');
      expect(inUse.text).to.not.include(cards[0]);
    });

    it('a drawn card number that is taken is drawn again', async () => {
      const ledger = store.server.ledger;
      const taken = Number((store.init.demo?.customers[0]?.card ?? '').slice(1, 10));
      const draws = [taken, taken, 424242];
      const saved = ledger.cardSerial;
      ledger.cardSerial = () => draws.shift() ?? 1;
      try {
        const res = await store.operator('POST', '/api/customers', { name: 'Lucky' });
        expect(res.status, res.text).to.equal(200);
        expect(res.body.card).to.equal(`C000424242${luhnCheckDigit('000424242')}`);
      } finally {
        ledger.cardSerial = saved;
      }
    });
  });

  describe('a customer PIN above the store\'s limit', () => {
    it('token payments above the limit need the PIN of a customer who set one; wrong PINs lock the card', async () => {
      store.server.access.pinPolicy = { freeFailures: 1, backoffBaseMs: 10, backoffMaxMs: 20, staffLockFailures: 3, terminalLockFailures: 50 };
      store.server.ledger.customerPinAboveMinor = 400;
      try {
        const { socket, terminalId } = await till('Till customer PIN');
        expectOk(await call(socket, 'cashier:login', { staffId: 'ana', pin: '1234' }));
        const [withPin, withoutPin] = [store.init.demo?.customers[6], store.init.demo?.customers[7]];
        if (withPin === undefined || withoutPin === undefined) throw new Error('demo customers');
        expect((await store.operator('PUT', `/api/customers/${withPin.id}/pin`, { pin: '4711' })).status).to.equal(200);
        // A pen is 450 minor: 90 ACME at face value 5 is worth 450, above the limit of 400.
        const sale = (c: { card: string }, extra: Record<string, unknown> = {}) => ({ key: `${terminalId}:${randomUUID()}`, lines: [{ code: PEN, qty: 1 }], card: c.card, tenders: [{ token: 'ACME' }], cashTenderedMinor: 0, ...extra });

        const before = fingerprint(store);
        const missing = await call(socket, 'sale:commit', sale(withPin));
        expect(codeOf(missing)).to.equal('VND_ERR_CUSTOMER_PIN_REQUIRED');
        expect(codeOf(await call(socket, 'sale:commit', sale(withPin, { customerPin: '0000' })))).to.equal('VND_ERR_CUSTOMER_PIN');
        expect(fingerprint(store)).to.equal(before);
        // Below the limit no PIN is asked: 40 ACME are worth 200.
        expectOk(await call(socket, 'sale:commit', sale(withPin, { tenders: [{ token: 'ACME', units: 40 }], cashTenderedMinor: 250 })));
        // A customer who chose no PIN pays as before.
        expectOk(await call(socket, 'sale:commit', sale(withoutPin)));
        // The right PIN pays above the limit.
        await until('the backoff to pass', async () => {
          const res = await call(socket, 'sale:commit', sale(withPin, { customerPin: '4711' }));
          return res.ok ? true : codeOf(res) === 'VND_ERR_RATE_LIMITED' ? undefined : expect.fail(JSON.stringify(res));
        });

        // Guessing locks the card for token payments until the operator unlocks it.
        const locked = await until('the card lockout', async () => {
          const res = await call(socket, 'sale:commit', sale(withPin, { customerPin: '0001' }));
          return codeOf(res) === 'VND_ERR_CUSTOMER_LOCKED' ? true : undefined;
        });
        expect(locked).to.equal(true);
        const before2 = fingerprint(store);
        expect(codeOf(await call(socket, 'sale:commit', sale(withPin, { customerPin: '4711' })))).to.equal('VND_ERR_CUSTOMER_LOCKED');
        expect(fingerprint(store)).to.equal(before2);
        await until('the lockout in the log', () => (logged.includes('"event":"customer.locked"') ? true : undefined));
        expect(logged, 'no PIN as a logged value').to.not.include('"4711"');
        expect((await store.operator('POST', `/api/customers/${withPin.id}/unlock`)).status).to.equal(200);
        expectOk(await call(socket, 'sale:commit', sale(withPin, { customerPin: '4711' })));
        // The log names customers by id: a card number, a bearer credential at the till, never appears.
        for (const c of store.init.demo?.customers ?? []) expect(logged).to.not.include(c.card);
      } finally {
        store.server.ledger.customerPinAboveMinor = null;
      }
    });
  });

  describe('allotments', () => {
    it('the operator allots only the store\'s own tokens; mall and manufacturer tokens come from the mall', async () => {
      const before = fingerprint(store);
      for (const token of ['MALL', 'SUNNY']) {
        const res = await store.operator('POST', '/api/allotments', { token, units: 1_000_000, reference: 'alt-000001' }, { 'idempotency-key': randomUUID() });
        expect(res.status, res.text).to.equal(403);
        expect(res.body.error.code).to.equal('VND_ERR_NOT_OWN_TOKEN');
      }
      // Nor can the operator take over a token type to make it its own.
      const takeOver = await store.operator('PUT', '/api/token-types/MALL', { name: 'Mall token', kind: 'mall', issuer: 'acme', faceValueMinor: 10, currency: 'EUR', acceptedBy: '*' });
      expect(takeOver.body.error.code).to.equal('VND_ERR_NOT_OWN_TOKEN');
      const foreign = await store.operator('PUT', '/api/token-types/FAKE', { name: 'Fake', kind: 'mall', issuer: 'mall', faceValueMinor: 10, currency: 'EUR', acceptedBy: '*' });
      expect(foreign.body.error.code).to.equal('VND_ERR_NOT_OWN_TOKEN');
      expect(fingerprint(store)).to.equal(before);

      const own = await store.operator('POST', '/api/allotments', { token: 'ACME', units: 10, reference: 'loyalty' }, { 'idempotency-key': randomUUID() });
      expect(own.status, own.text).to.equal(200);
    });
  });

  describe('the protocol as documented', () => {
    it('answers unknown events and events without a payload with an error', async () => {
      const { socket } = await till('Till protocol');
      const raw = socket as unknown as { timeout(ms: number): { emitWithAck(...args: unknown[]): Promise<Ack<unknown>> } };
      expect(codeOf(await raw.timeout(30_000).emitWithAck('sale:explode', {}))).to.equal('VND_ERR_UNKNOWN_EVENT');
      expect(codeOf(await raw.timeout(30_000).emitWithAck('cashier:logout'))).to.equal('CORE_ERR_VALIDATION');
      expect(codeOf(await raw.timeout(30_000).emitWithAck('product:lookup'))).to.equal('CORE_ERR_VALIDATION');
      expect(codeOf(await call(socket, 'cashier:logout', { everyone: true }))).to.equal('CORE_ERR_VALIDATION');
      expect(codeOf(await call(socket, 'product:lookup', { code: 'ABC' }))).to.equal('CORE_ERR_CODE_UNKNOWN_KIND');
    });

    it('closes a connection whose credential a new pairing replaced, saying so', async () => {
      const { socket, terminalId, credential } = await till('Till repair');
      const told = new Promise<{ code: string }>((resolve) => socket.once('terminal:revoked', resolve));
      const closed = new Promise<void>((resolve) => socket.once('disconnect', () => resolve()));
      const fresh = await store.operator('POST', `/api/terminals/${terminalId}/pairing-code`);
      const paired = await fetchTls(`${store.server.url}/pair`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ code: fresh.body.pairingCode }) });
      expect(paired.status).to.equal(200);
      expect((await told).code).to.equal('VND_ERR_CREDENTIAL_REPLACED');
      await closed;
      const again = terminalSocket(store.server, credential);
      const err = await new Promise<Error & { data?: { code: string } }>((resolve) => again.once('connect_error', resolve));
      again.disconnect();
      expect(err.data?.code).to.equal('VND_ERR_CREDENTIAL_REPLACED');
    });

    it('refuses a day that does not exist', async () => {
      for (const date of ['2026-13-45', '2026-02-30', 'today']) {
        const res = await store.operator('GET', `/api/totals?date=${date}`);
        expect(res.status).to.equal(400);
        expect(res.body.error.code).to.equal('CORE_ERR_VALIDATION');
      }
      expect((await store.operator('GET', '/api/totals?date=2026-02-28')).status).to.equal(200);
    });
  });
});
