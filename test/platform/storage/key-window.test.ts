import { readFileSync } from 'node:fs';
import { expect } from 'chai';
import fc from 'fast-check';
import { KeyFilter, KeyWindow, keyPrint, keyPrintHex } from '../../../platform/storage/index.ts';
import { asciiKeyPrint, knownKeyPrint } from '../../../platform/storage/key-window.ts';
import { applyEvent, emptyState, fromSnapshot, toSnapshot, type StateSnapshot } from '../../../vendor-server/ledger/state.ts';
import { GENESIS_HASH } from '../../../platform/storage/index.ts';
import { EVENT_VERSION, type JournalEvent } from '../../../core/index.ts';

/** The window's contract, as a Map in insertion order would keep it. */
class Model {
  readonly map = new Map<string, number>();
  set(key: string, seq: number): void {
    this.map.set(key, seq);
  }
  evictOldest(): number | null {
    const first = this.map.entries().next();
    if (first.done === true) return null;
    this.map.delete(first.value[0]);
    return first.value[1];
  }
}

const op = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('add' as const), key: fc.string({ minLength: 1, maxLength: 12 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('evict' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('snapshot' as const) }) },
  // Keys added and evicted with the index deferred, until a lookup builds it.
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('defer' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('lookup' as const), key: fc.string({ minLength: 1, maxLength: 12 }) }) },
);

describe('platform/storage: the key window off the heap', () => {
  it('answers get, has and size like a Map in insertion order, through growth, eviction, snapshots and a deferred index', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 400 }), (ops) => {
        let w = new KeyWindow();
        const m = new Model();
        let seq = 0;
        for (const o of ops) {
          if (o.kind === 'add') {
            // A ledger stores a key once: a key seen before is answered, not stored again.
            if (m.map.has(o.key)) continue;
            seq += 1;
            w.set(o.key, seq);
            m.set(o.key, seq);
          } else if (o.kind === 'evict') {
            const a = w.evictOldest();
            const b = m.evictOldest();
            expect(a?.seq ?? null).to.equal(b);
          } else if (o.kind === 'snapshot') {
            w = KeyWindow.fromSnapshot(JSON.parse(JSON.stringify(w.toSnapshot())));
          } else if (o.kind === 'defer') {
            w.deferIndex();
          } else {
            expect(w.has(o.key)).to.equal(m.map.has(o.key));
            expect(w.get(o.key)).to.equal(m.map.get(o.key));
          }
          expect(w.size).to.equal(m.map.size);
        }
        for (const [key, s] of m.map) expect(w.get(key)).to.equal(s);
        expect([...w.entries()].map(([, s]) => s)).to.deep.equal([...m.map.values()]);
      }),
      { numRuns: 300 },
    );
  });

  it('keeps a large window exact while it slides: every key of the last N is found, every older one is gone', () => {
    const n = 5_000;
    const w = new KeyWindow();
    for (let seq = 1; seq <= 4 * n; seq++) {
      w.set(`t001:${seq}`, seq);
      if (w.size > n) w.evictOldest();
    }
    expect(w.size).to.equal(n);
    for (let seq = 1; seq <= 4 * n; seq++) expect(w.get(`t001:${seq}`)).to.equal(seq > 3 * n ? seq : undefined);
  });

  it('with its index deferred, slides and grows in the ring alone and then finds exactly the last N keys', () => {
    const n = 3_000;
    const w = new KeyWindow();
    for (let seq = 1; seq <= n; seq++) w.set(`t002:${seq}`, seq);
    w.deferIndex();
    // Through several doublings of the ring and a full turn of its oldest entry.
    for (let seq = n + 1; seq <= 10 * n; seq++) {
      w.set(`t002:${seq}`, seq);
      if (w.size > 4 * n) w.evictOldest();
    }
    w.ensureIndex();
    expect(w.size).to.equal(4 * n);
    for (let seq = 1; seq <= 10 * n; seq++) expect(w.get(`t002:${seq}`)).to.equal(seq > 6 * n ? seq : undefined);
  });

  it('prints a key from its ASCII bytes exactly as from the string (property)', () => {
    fc.assert(
      fc.property(fc.string({ unit: fc.integer({ min: 0, max: 0x7f }).map((c) => String.fromCharCode(c)), maxLength: 80 }), fc.nat(16), (key, pad) => {
        // Between bytes of other text, so a print that read past its key would differ.
        const buf = Buffer.from(`${'x'.repeat(pad)}${key}yz`, 'latin1');
        expect(asciiKeyPrint(buf, pad, pad + key.length)).to.deep.equal(keyPrint(key));
      }),
      { numRuns: 500 },
    );
    // The replay hands the print over with its key: the window then finds that key.
    const w = new KeyWindow();
    const key = 't003:0f4c6b3a-3b1e-4a55-9d3e-2c1b5a6f7e80';
    knownKeyPrint(key, asciiKeyPrint(Buffer.from(key, 'latin1'), 0, key.length));
    w.set(key, 1);
    expect(w.get(`${key} `.trim())).to.equal(1);
  });

  it('grows while its oldest entry is not at the start of the ring', () => {
    const w = new KeyWindow();
    let seq = 0;
    for (; seq < 800; ) w.set(`k${++seq}`, seq);
    for (let i = 0; i < 700; i++) w.evictOldest();
    for (; seq < 3_000; ) w.set(`k${++seq}`, seq);
    expect(w.size).to.equal(2_300);
    for (let s = 1; s <= 3_000; s++) expect(w.get(`k${s}`)).to.equal(s > 700 ? s : undefined);
    expect([...w.entries()].map(([, s]) => s)).to.deep.equal(Array.from({ length: 2_300 }, (_, i) => 701 + i));
  });

  it('refuses a snapshot that does not hold its entries, or whose seqs do not increase', () => {
    const w = new KeyWindow();
    w.set('a', 1);
    w.set('b', 2);
    const s = w.toSnapshot();
    expect(() => KeyWindow.fromSnapshot({ ...s, count: 3 })).to.throw(RangeError);
    const swapped = Buffer.from(s.seqs, 'base64');
    swapped.writeDoubleLE(5, 0);
    expect(() => KeyWindow.fromSnapshot({ ...s, seqs: swapped.toString('base64') })).to.throw(RangeError, /increasing/);
  });

  it('hands an evicted key to the filter by its fingerprint, which then knows the key itself', () => {
    const w = new KeyWindow();
    const f = new KeyFilter();
    w.set('t001:sale-1', 7);
    const out = w.evictOldest();
    expect(out?.seq).to.equal(7);
    f.addPrint(out!.print, out!.seq);
    expect(f.mayHave('t001:sale-1')).to.equal(true);
    expect(f.ranges('t001:sale-1')).to.deep.equal([{ fromSeq: 7, toSeq: 7 }]);
    expect(keyPrintHex(keyPrint('t001:sale-1'))).to.match(/^[0-9a-f]{16}$/);
  });

  it('loads a checkpoint that kept the keys themselves, and writes it back by fingerprint', () => {
    const state = emptyState('acme', GENESIS_HASH);
    const base = { prev: '', v: EVENT_VERSION, vendor: 'acme', at: '2026-11-28T10:00:00.000Z', terminal: null, cashier: null, type: 'product.upserted', postings: [] };
    for (let seq = 1; seq <= 20; seq++) {
      const event = { ...base, seq, key: `t001:k${seq}`, bodyHash: 'h', data: { gtin: '4006381333931', name: 'Pen', priceMinor: 450, tokenPrices: { ACME: 90 } } };
      applyEvent(state, event as unknown as JournalEvent, `h${seq}`, 10);
    }
    const written = JSON.parse(JSON.stringify(toSnapshot(state))) as StateSnapshot;
    expect(written.keys).to.equal(undefined);
    expect(written.window?.count).to.equal(10);
    // The older form: [key, seq] pairs, in any order.
    const { window: _window, ...older } = written;
    const legacy = { ...older, keys: Array.from({ length: 10 }, (_, i) => [`t001:k${20 - i}`, 20 - i] as [string, number]) };
    const loaded = fromSnapshot(legacy);
    expect(loaded.keys.get('t001:k11')).to.equal(11);
    expect(loaded.keys.has('t001:k10')).to.equal(false);
    expect([...loaded.keys.entries()].map(([, s]) => s)).to.deep.equal([11, 12, 13, 14, 15, 16, 17, 18, 19, 20]);
    expect(toSnapshot(loaded).window).to.deep.equal(written.window);
  });

  it('still finds the keys of a filter part written with sha256 probes, and puts new keys into a new part', () => {
    // Written by the filter before fingerprints: keys t001:legacy-0..99 at seqs 100..199.
    const legacy = JSON.parse(readFileSync(new URL('./fixtures/key-filter-sha256.json', import.meta.url), 'utf8')) as ConstructorParameters<typeof KeyFilter>[0];
    const f = new KeyFilter(legacy);
    for (let i = 0; i < 100; i++) expect(f.mayHave(`t001:legacy-${i}`), `legacy-${i}`).to.equal(true);
    let strangers = 0;
    for (let i = 0; i < 2_000; i++) if (f.mayHave(`t001:other-${i}`)) strangers += 1;
    expect(strangers).to.be.below(3);
    f.add('t001:new-1', 500);
    expect(f.mayHave('t001:new-1')).to.equal(true);
    expect(f.ranges('t001:new-1')).to.deep.equal([{ fromSeq: 500, toSeq: 500 }]);
    expect(f.ranges('t001:legacy-7')).to.deep.equal([{ fromSeq: 100, toSeq: 199 }]);
    const again = new KeyFilter(JSON.parse(JSON.stringify(f.toSnapshot())));
    expect(again.mayHave('t001:legacy-42') && again.mayHave('t001:new-1')).to.equal(true);
    expect(again.toSnapshot().parts.map((p) => p.probe ?? 'sha256')).to.deep.equal(['sha256', 'print']);
  });
});
