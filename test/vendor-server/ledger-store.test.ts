import { readFile } from 'node:fs/promises';
import { expect } from 'chai';
import { EVENT_VERSION, type JournalEvent } from '../../core/index.ts';
import { applyEvent, CUSTOMER_RECENT_MAX, emptyState, fromSnapshot, toSnapshot } from '../../vendor-server/ledger/state.ts';
import { ledgerPaths, openLedger } from '../../vendor-server/ledger/store.ts';
import { GENESIS_HASH } from '../../platform/storage/index.ts';
import { tempDir } from '../helpers/vendor.ts';

function productEvent(seq: number, key: string | null): JournalEvent {
  return {
    seq,
    prev: '',
    v: EVENT_VERSION,
    vendor: 'acme',
    at: '2026-11-28T10:00:00.000Z',
    terminal: null,
    cashier: null,
    key,
    bodyHash: key === null ? null : 'h',
    type: 'product.upserted',
    postings: [],
    data: { gtin: '4006381333931', name: `Pen ${seq} Müsli`, priceMinor: 450, tokenPrices: { ACME: 90 } },
  };
}

describe('vendor-server: ledger state and checkpoints', () => {
  it('keeps the newest idempotency keys and drops the oldest first', () => {
    const state = emptyState('acme', GENESIS_HASH);
    for (let seq = 1; seq <= 3_000; seq++) applyEvent(state, productEvent(seq, `t001:k${seq}`), `h${seq}`, 1_000);
    expect(state.keys.size).to.equal(1_000);
    expect(state.keys.has('t001:k2000')).to.equal(false);
    expect(state.keys.has('t001:k2001')).to.equal(true);
    expect(state.keys.get('t001:k3000')).to.equal(3_000);
  });

  it("keeps a customer's last money events, at most CUSTOMER_RECENT_MAX, oldest dropped first", () => {
    const state = emptyState('acme', GENESIS_HASH);
    const base = { prev: '', v: EVENT_VERSION, vendor: 'acme', at: '2026-11-28T10:00:00.000Z', terminal: null, cashier: null, key: null, bodyHash: null, postings: [] };
    applyEvent(state, { ...base, seq: 1, type: 'customer.registered', data: { id: 'cust-1', card: 'C1', name: 'Ana' } } as unknown as JournalEvent, 'h1');
    const total = CUSTOMER_RECENT_MAX + 7;
    for (let seq = 2; seq <= total + 1; seq++) {
      applyEvent(state, { ...base, seq, type: 'issuance', data: { customer: 'cust-1', token: 'ACME', units: 0, reason: 'reward', cashMinor: 0 } } as unknown as JournalEvent, `h${seq}`);
      const recent = state.customers['cust-1']?.recent ?? [];
      expect(recent.length).to.equal(Math.min(seq - 1, CUSTOMER_RECENT_MAX));
      expect(recent[recent.length - 1]).to.equal(seq);
    }
    const expected = Array.from({ length: CUSTOMER_RECENT_MAX }, (_, i) => total + 2 - CUSTOMER_RECENT_MAX + i);
    expect(state.customers['cust-1']?.recent).to.deep.equal(expected);
  });

  it('cuts a longer list from a checkpoint to the newest CUSTOMER_RECENT_MAX at the next money event', () => {
    const state = emptyState('acme', GENESIS_HASH);
    const base = { prev: '', v: EVENT_VERSION, vendor: 'acme', at: '2026-11-28T10:00:00.000Z', terminal: null, cashier: null, key: null, bodyHash: null, postings: [] };
    applyEvent(state, { ...base, seq: 1, type: 'customer.registered', data: { id: 'cust-1', card: 'C1', name: 'Ana' } } as unknown as JournalEvent, 'h1');
    const longer = Array.from({ length: CUSTOMER_RECENT_MAX + 20 }, (_, i) => i + 2);
    (state.customers['cust-1'] as { recent: number[] }).recent = [...longer];
    state.seq = longer.length + 1;
    const seq = longer.length + 2;
    applyEvent(state, { ...base, seq, type: 'issuance', data: { customer: 'cust-1', token: 'ACME', units: 0, reason: 'reward', cashMinor: 0 } } as unknown as JournalEvent, `h${seq}`);
    expect(state.customers['cust-1']?.recent).to.deep.equal([...longer.slice(-(CUSTOMER_RECENT_MAX - 1)), seq]);
  });

  it('loads a checkpoint into null-prototype maps in place, a "__proto__" key included', () => {
    const state = emptyState('acme', GENESIS_HASH);
    state.balances['customer:a'] = Object.setPrototypeOf({ ACME: 5 }, null) as Record<string, number>;
    const text = JSON.stringify(toSnapshot(state)).replace('"customer:a":{"ACME":5}', '"customer:a":{"ACME":5,"__proto__":7},"__proto__":{"X":1}');
    const loaded = fromSnapshot(JSON.parse(text));
    for (const map of [loaded.balances, loaded.balances['customer:a'], loaded.customers, loaded.cards, loaded.products, loaded.tokenTypes, loaded.refunds, loaded.days]) {
      expect(Object.getPrototypeOf(map)).to.equal(null);
    }
    // The hostile keys are plain entries: nothing inherited, no prototype changed.
    expect(Object.hasOwn(loaded.balances, '__proto__')).to.equal(true);
    expect(loaded.balances['customer:a']?.['__proto__']).to.equal(7);
    expect(Object.keys(loaded.balances)).to.deep.equal(['customer:a', '__proto__']);
    expect(({} as Record<string, unknown>)['X']).to.equal(undefined);
  });

  it('serves many concurrent checkpoint requests with one write, counts from the checkpoint on disk, and writes ASCII', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      let opened = await openLedger({ dataDir: dir, vendorId: 'acme' });
      for (let seq = 1; seq <= 50; seq++) {
        const { prev: _prev, ...fields } = productEvent(seq, null);
        const rec = opened.journal.append(fields as Record<string, unknown> & { seq: number });
        applyEvent(opened.state, { ...productEvent(seq, null), prev: opened.state.hash }, rec.hash);
      }
      await opened.journal.flushed();
      await opened.journal.close();

      // Reopened: 50 events replayed, none in a checkpoint yet.
      opened = await openLedger({ dataDir: dir, vendorId: 'acme' });
      expect(opened.replayed).to.equal(50);
      expect(opened.checkpoints.seq).to.equal(0);
      const calls = Array.from({ length: 50 }, () => opened.checkpoints.now());
      expect(opened.checkpoints.writing).to.equal(true);
      await Promise.all(calls);
      expect(opened.checkpoints.seq).to.equal(50);
      const text = await readFile(ledgerPaths(dir).checkpointFile, 'utf8');
      expect([...text].every((c) => c.charCodeAt(0) < 128)).to.equal(true);
      expect(JSON.parse(text).state.products['4006381333931'].name).to.equal('Pen 50 Müsli');
      await opened.journal.close();

      opened = await openLedger({ dataDir: dir, vendorId: 'acme' });
      expect(opened.replayed).to.equal(0);
      expect(opened.state.seq).to.equal(50);
      await opened.journal.close();
    } finally {
      await cleanup();
    }
  });
});
