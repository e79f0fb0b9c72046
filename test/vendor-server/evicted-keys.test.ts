import { expect } from 'chai';
import { LedgerService, type Actor } from '../../vendor-server/ledger/service.ts';
import { openLedger, type OpenedLedger } from '../../vendor-server/ledger/store.ts';
import { KeyFilter } from '../../platform/storage/index.ts';
import { tempDir } from '../helpers/vendor.ts';

const KEYS_MAX = 3;
const op: Actor = { terminal: null, cashier: null };
const till: Actor = { terminal: 't001', cashier: 'ana' };
const STORE = { vendorId: 'acme', name: 'ACME', address: [], currency: 'EUR' };
const GTIN = '4006381333931';

async function open(dir: string): Promise<{ opened: OpenedLedger; ledger: LedgerService }> {
  const opened = await openLedger({ dataDir: dir, vendorId: 'acme', keysMax: KEYS_MAX });
  return { opened, ledger: new LedgerService(STORE, opened.state, opened.journal, {}, undefined, KEYS_MAX) };
}

async function rejection(p: Promise<unknown>): Promise<{ code?: string }> {
  return p.then(
    () => {
      throw new Error('expected a refusal');
    },
    (err: unknown) => err as { code?: string },
  );
}

describe('vendor-server: a retry whose key left the in-memory window is never charged again', function () {
  this.timeout(60_000);

  it('answers sales and issuances from the journal after their keys were evicted, before and after a restart', async () => {
    const { dir, cleanup } = await tempDir('mallpos-keys-');
    try {
      let { opened, ledger } = await open(dir);
      await ledger.upsertTokenType(op, { code: 'ACME', name: 'ACME token', kind: 'vendor', issuer: 'acme', faceValueMinor: 5, currency: 'EUR', acceptedBy: ['acme'] });
      await ledger.upsertProduct(op, { code: GTIN, name: 'Pen', priceMinor: 450, tokenPrices: { ACME: 90 } });
      const customer = await ledger.registerCustomer(op, { name: 'Ann' });
      await ledger.recordAllotment(op, 'op:allot', { token: 'ACME', units: 10_000, reference: 'own tokens' });
      const issued = await ledger.issueTokens(op, 'op:issue-1', { customerId: customer.id, token: 'ACME', units: 500, reason: 'reward' });
      const sale = { key: 't001:sale-1', lines: [{ code: GTIN, qty: 1 }], card: customer.card, tenders: [{ token: 'ACME' }], cashTenderedMinor: 0 };
      const sold = await ledger.commitSale(till, sale);
      expect(sold.balancesAfter).to.deep.equal({ ACME: 410 });

      // Enough newer keys to push both out of a window of three.
      for (let i = 0; i < 2 * KEYS_MAX; i++) await ledger.recordAllotment(op, `op:more-${i}`, { token: 'ACME', units: 1, reference: `more ${i}` });
      expect(ledger.state.keys.has('t001:sale-1')).to.equal(false);
      expect(ledger.state.keys.has('op:issue-1')).to.equal(false);

      const check = async (l: LedgerService, o: OpenedLedger) => {
        const seq = o.journal.lastSeq;
        const balances = JSON.stringify(l.state.balances);
        const again = await l.commitSale(till, sale);
        expect(again.seq).to.equal(sold.seq);
        expect(again.saleId).to.equal(sold.saleId);
        const reissued = await l.issueTokens(op, 'op:issue-1', { customerId: customer.id, token: 'ACME', units: 500, reason: 'reward' });
        expect(reissued.seq).to.equal(issued.seq);
        const status = await l.keyStatus('t001:sale-1');
        expect(status.state).to.equal('committed');
        // The same key with another body is a conflict, as inside the window.
        expect((await rejection(l.commitSale(till, { ...sale, lines: [{ code: GTIN, qty: 2 }] }))).code).to.equal('VND_ERR_IDEMPOTENCY_CONFLICT');
        // Nothing was journalled or charged by any of the retries.
        expect(o.journal.lastSeq).to.equal(seq);
        expect(JSON.stringify(l.state.balances)).to.equal(balances);
        expect(l.customerView(customer.id).balances[0]?.units).to.equal(410);
      };
      await check(ledger, opened);

      // A new key still sells at once.
      const fresh = await ledger.commitSale(till, { ...sale, key: 't001:sale-2' });
      expect(fresh.balancesAfter).to.deep.equal({ ACME: 320 });

      // After a checkpoint and a restart the evicted keys are still known (the filter is in the checkpoint).
      await opened.checkpoints.now();
      await opened.journal.close();
      ({ opened, ledger } = await open(dir));
      expect(opened.replayed).to.equal(0);
      expect(ledger.state.keys.has('t001:sale-1')).to.equal(false);
      const seq = opened.journal.lastSeq;
      const again = await ledger.commitSale(till, sale);
      expect(again.seq).to.equal(sold.seq);
      expect(opened.journal.lastSeq).to.equal(seq);
      expect(ledger.customerView(customer.id).balances[0]?.units).to.equal(320);
      await opened.journal.close();
    } finally {
      await cleanup();
    }
  });

  it('the key filter never forgets a key, rules out almost every other one, and names the seq range to search', () => {
    const filter = new KeyFilter();
    for (let i = 0; i < 20_000; i++) filter.add(`t001:${i}`, 100 + i);
    for (let i = 0; i < 20_000; i++) expect(filter.mayHave(`t001:${i}`)).to.equal(true);
    let falsePositives = 0;
    for (let i = 0; i < 20_000; i++) if (filter.mayHave(`t002:${i}`)) falsePositives += 1;
    expect(falsePositives).to.be.below(5);
    // Parts of 4096, 8192, then the rest: the first key lies in the oldest part's range only.
    const ranges = filter.ranges('t001:0');
    expect(ranges.at(-1)).to.deep.equal({ fromSeq: 100, toSeq: 100 + 4095 });
    for (const r of ranges) expect(r.toSeq - r.fromSeq).to.be.below(20_000);
    const copy = new KeyFilter(JSON.parse(JSON.stringify(filter.toSnapshot())));
    for (let i = 0; i < 20_000; i += 97) expect(copy.mayHave(`t001:${i}`)).to.equal(true);
    expect(copy.size).to.equal(20_000);
  });

  it('a key whose fingerprint names another key\'s event is refused, never answered with that event', async () => {
    const { dir, cleanup } = await tempDir('mallpos-keys-');
    try {
      const { opened, ledger } = await open(dir);
      await ledger.upsertTokenType(op, { code: 'ACME', name: 'ACME token', kind: 'vendor', issuer: 'acme', faceValueMinor: 5, currency: 'EUR', acceptedBy: ['acme'] });
      await ledger.upsertProduct(op, { code: GTIN, name: 'Pen', priceMinor: 450, tokenPrices: { ACME: 90 } });
      const customer = await ledger.registerCustomer(op, { name: 'Ann' });
      await ledger.recordAllotment(op, 'op:allot', { token: 'ACME', units: 10_000, reference: 'own tokens' });
      await ledger.issueTokens(op, 'op:issue-1', { customerId: customer.id, token: 'ACME', units: 500, reason: 'reward' });
      const sale = { key: 't001:sale-1', lines: [{ code: GTIN, qty: 1 }], card: customer.card, tenders: [{ token: 'ACME' }], cashTenderedMinor: 0 };
      const sold = await ledger.commitSale(till, sale);
      // As if 't001:sale-2' shared the 64-bit fingerprint of 't001:sale-1' (about once in
      // 2^64 pairs): the window maps it to the first sale's event.
      ledger.state.keys.set('t001:sale-2', sold.seq);
      const seq = opened.journal.lastSeq;
      const balances = JSON.stringify(ledger.state.balances);
      const err = await rejection(ledger.commitSale(till, { ...sale, key: 't001:sale-2' }));
      expect(err.code).to.equal('VND_ERR_IDEMPOTENCY_CONFLICT');
      expect((await ledger.keyStatus('t001:sale-2')).state).to.equal('unknown');
      expect(opened.journal.lastSeq).to.equal(seq);
      expect(JSON.stringify(ledger.state.balances)).to.equal(balances);
      await opened.journal.close();
    } finally {
      await cleanup();
    }
  });
});
