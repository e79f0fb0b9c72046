import { execFile } from 'node:child_process';
import { hash, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { cp, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { expect } from 'chai';
import fc from 'fast-check';
import { withGs1CheckDigit, type StateEvent } from '../../core/index.ts';
import { EVENT_AT, LineCheck, TEXT_NONE } from '../../platform/storage/journal-format.ts';
import { EventPacker, EventUnpacker, type Packed } from '../../platform/storage/replay-pack.ts';
import { replayThreadsHooks } from '../../platform/storage/replay-threads.ts';
import { dataPaths } from '../../vendor-server/config.ts';
import { stateEventCodec } from '../../vendor-server/ledger/replay-codec.ts';
import { parseStateEvent } from '../../vendor-server/ledger/replay-parse.ts';
import { packSaleText } from '../../vendor-server/ledger/replay-scan.ts';
import type { Actor } from '../../vendor-server/ledger/service.ts';
import { toSnapshot } from '../../vendor-server/ledger/state.ts';
import { checkpointText, ledgerPaths, openLedger } from '../../vendor-server/ledger/store.ts';
import { ROOT } from '../helpers/process.ts';
import { openDemoLedger, tempDir } from '../helpers/vendor.ts';

const execFileAsync = promisify(execFile);

const OPERATOR: Actor = { terminal: null, cashier: null };
const TILL: Actor = { terminal: 't001', cashier: null };
const SEGMENT_BYTES = 64 * 1024;

/** Packs one event as a replay thread does and unpacks it as the replaying thread does; null when the codec leaves it to JSON. */
function roundTrip(event: StateEvent): { packed: boolean; back: unknown } {
  const p = new EventPacker();
  if (!stateEventCodec.pack(event, p)) {
    // A codec that gives up writes nothing.
    expect(p.empty).to.equal(true);
    return { packed: false, back: null };
  }
  const u = new EventUnpacker();
  u.load(p.take());
  return { packed: true, back: stateEventCodec.unpack(u, event.seq, event.prev) };
}

function parsed(text: string): StateEvent {
  const buf = Buffer.from(text, 'utf8');
  return parseStateEvent(buf, 0, buf.length);
}

// Bytes around an event's text in the thread's buffer: the lines before and after it,
// with the markers a sale is cut at, which the scan must not reach.
const BEFORE = Buffer.from('{"h":"00","e":{"data":{"lines":[1],"allocations":[2],"debits":{}}}}\n', 'utf8');
const AFTER = Buffer.from('\n"lines":[3],"allocations":[4],"debits":{"ACME":1},"totalMinor":0}}', 'utf8');

/**
 * What a replay thread packs straight from the bytes of a journal line holding the text,
 * as it does once the line check passed the line as the one after `prev` (null: the
 * check refused the line, or the thread must parse the text). The line's hash is the
 * text's own, as a disk rewritten with care would have it.
 */
function packedFromText(text: string, seq: number, prev: string): Packed | null {
  const event = Buffer.from(text, 'utf8');
  const line = Buffer.concat([Buffer.from(`{"h":"${hash('sha256', event, 'hex')}","e":`, 'latin1'), event, Buffer.from('}', 'latin1')]);
  const buf = Buffer.concat([BEFORE, line, AFTER]);
  const end = BEFORE.length + line.length;
  const check = new LineCheck();
  try {
    check.check(buf, BEFORE.length, end, 'test.jsonl', 0, seq, prev, TEXT_NONE);
  } catch {
    return null;
  }
  const p = new EventPacker();
  const ok = packSaleText(buf, BEFORE.length + EVENT_AT, end - 1, check.seq, check.prev, p);
  return ok ? p.take() : null;
}

/** What a replay thread packs after parsing the text (null: it sends it as JSON); throws what the parse throws. */
function packedFromParse(text: string): Packed | null {
  const p = new EventPacker();
  return stateEventCodec.pack(parsed(text), p) ? p.take() : null;
}

/** The parts of a sale's text, each as its JSON text, so that a test can write what JSON.stringify never would. */
interface SaleText {
  v: string; vendor: string; at: string; terminal: string; cashier: string; key: string; bodyHash: string;
  postings: [string, string, string][]; saleId: string; customer: string; currency: string;
  debits: [string, string][]; total: string; due: string; tendered: string; change: string; after: [string, string][] | null;
}

const SEQ = 41;
const PREV = 'ab'.repeat(32);

function saleText(t: SaleText): string {
  const record = (entries: [string, string][]): string => `{${entries.map(([k, v]) => `${k}:${v}`).join(',')}}`;
  const postings = t.postings.map(([a, tok, u]) => `{"account":${a},"token":${tok},"units":${u}}`).join(',');
  return `{"seq":${SEQ},"prev":"${PREV}","v":${t.v},"vendor":${t.vendor},"at":${t.at},"terminal":${t.terminal},"cashier":${t.cashier},`
    + `"key":${t.key},"bodyHash":${t.bodyHash},"type":"sale","postings":[${postings}],"data":{"saleId":${t.saleId},"customer":${t.customer},`
    + `"currency":${t.currency},"lines":[{"lineNo":1,"name":"x"}],"allocations":[{"lineNo":1}],"debits":${record(t.debits)},"totalMinor":${t.total},`
    + `"cash":{"dueMinor":${t.due},"tenderedMinor":${t.tendered},"changeMinor":${t.change}},"balancesAfter":${t.after === null ? 'null' : record(t.after)}}}`;
}

/** Sales' texts from the given arbitraries of a string's and a number's JSON text. */
function saleTexts(str: fc.Arbitrary<string>, num: fc.Arbitrary<string>): fc.Arbitrary<SaleText> {
  const nullable = fc.oneof(str, fc.constant('null'));
  const record = fc.array(fc.tuple(str, num), { maxLength: 4 });
  return fc.record({
    v: num, vendor: str, at: str, terminal: nullable, cashier: nullable, key: nullable, bodyHash: nullable,
    postings: fc.array(fc.tuple(str, str, num), { maxLength: 4 }), saleId: str, customer: nullable, currency: str,
    debits: record, total: num, due: num, tendered: num, change: num, after: fc.option(record),
  });
}

describe('vendor-server: the replay threads pack the ledger\'s sales', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let vendorId: string;
  let texts: string[];

  before(async () => {
    ({ dir, cleanup } = await tempDir());
    const { config, opened, ledger } = await openDemoLedger(dir, { init: { host: '127.0.0.1' }, ledger: { segmentBytesMax: SEGMENT_BYTES } });
    vendorId = config.vendorId;
    texts = [];
    try {
      await ledger.recordAllotment(OPERATOR, `op:${randomUUID()}`, { token: 'ACME', units: 1_000_000, reference: 'test allotment' });
      const code = withGs1CheckDigit('200000000001');
      await ledger.upsertProduct(OPERATOR, { code, name: 'Müsli ✓ 🍞 "],"debits":', priceMinor: 250, tokenPrices: { ACME: 25 } });
      const cards: string[] = [];
      for (let c = 0; c < 40; c++) {
        const customer = await ledger.registerCustomer(OPERATOR, { name: `Ana ${c} "ü"` });
        await ledger.issueTokens(OPERATOR, `op:${randomUUID()}`, { customerId: customer.id, token: 'ACME', units: 10_000, reason: 'reward' });
        cards.push(customer.card);
      }
      for (let k = 0; k < 600; k++) {
        // Token sales to customers, and cash sales with no customer.
        const byCard = k % 3 !== 0;
        const sale = await ledger.commitSale(byCard ? TILL : OPERATOR, {
          key: `t001:${randomUUID()}`,
          lines: [{ code, qty: 1 + (k % 3) }, { code: '4006381333931', qty: 1 }],
          card: byCard ? (cards[k % cards.length] as string) : null,
          tenders: byCard ? [{ token: 'ACME' }] : [],
          cashTenderedMinor: byCard ? 0 : 5_000,
        });
        texts.push((await opened.journal.read(sale.seq)).text);
      }
    } finally {
      await opened.journal.close();
    }
  });
  after(() => cleanup());

  it('unpacks every sale the ledger wrote to the event its parse gives, keys in the same order', () => {
    let cash = 0;
    for (const text of texts) {
      const event = parsed(text);
      const { packed, back } = roundTrip(event);
      expect(packed).to.equal(true);
      expect(back).to.deep.equal(event);
      expect(JSON.stringify(back)).to.equal(JSON.stringify(event));
      if (event.type === 'sale' && event.data.customer === null) cash += 1;
    }
    expect(cash).to.equal(200);
  });

  it('unpacks any plain sale exactly, whatever its strings and numbers hold (property)', () => {
    const base = parsed(texts[1] as string) as Extract<StateEvent, { type: 'sale' }>;
    const name = fc.string({ unit: 'binary' }).filter((s) => s !== '__proto__');
    const record = fc.dictionary(name, fc.double(), { maxKeys: 4 });
    fc.assert(
      fc.property(
        fc.record({
          terminal: fc.option(fc.string({ unit: 'binary' })), cashier: fc.option(fc.string({ unit: 'binary' })),
          key: fc.option(fc.string({ unit: 'binary' })), at: fc.string({ unit: 'binary' }), v: fc.double(),
          account: fc.string({ unit: 'binary' }), units: fc.double(), customer: fc.option(fc.string({ unit: 'binary' })),
          debits: record, balancesAfter: fc.option(record), totalMinor: fc.integer(), due: fc.double(),
        }),
        (r) => {
          const event = {
            ...base, at: r.at, v: r.v, terminal: r.terminal, cashier: r.cashier, key: r.key,
            postings: [{ account: r.account, token: 'ACME', units: r.units }, ...base.postings],
            data: { ...base.data, customer: r.customer, debits: r.debits, totalMinor: r.totalMinor, cash: { ...base.data.cash, dueMinor: r.due }, balancesAfter: r.balancesAfter },
          } as StateEvent;
          const { packed, back } = roundTrip(event);
          expect(packed).to.equal(true);
          expect(back).to.deep.equal(event);
          expect(Object.is((back as typeof event & { v: number }).v, event.v)).to.equal(true);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('packs every sale the ledger wrote straight from its bytes, as it packs the sale parsed', () => {
    for (const text of texts) {
      const event = parsed(text);
      const fromText = packedFromText(text, event.seq, event.prev);
      expect(fromText, text).to.not.equal(null);
      expect(fromText).to.deep.equal(packedFromParse(text));
      // Not as another line's seq or prev.
      expect(packedFromText(text, event.seq + 1, event.prev)).to.equal(null);
      expect(packedFromText(text, event.seq, PREV)).to.equal(null);
      // The scan skips the prev the line check compared: the sale of another line's
      // prev is packed as that line's, with only its own fields.
      const otherPrev = text.replace(`"prev":"${event.prev}"`, `"prev":"${PREV}"`);
      expect(packedFromText(otherPrev, event.seq, PREV)).to.deep.equal(fromText);
    }
  });

  it('packs from the bytes any sale of plain strings and integers, as it packs it parsed (property)', () => {
    const str = fc.stringMatching(/^[ !#-[\]-~]{0,24}$/).filter((s) => s !== '__proto__' && !/^[0-9]/.test(s)).map((s) => JSON.stringify(s));
    const num = fc.oneof(fc.integer(), fc.integer({ min: -999_999_999_999_999, max: 999_999_999_999_999 }), fc.constant(-0)).map((n) => (Object.is(n, -0) ? '-0' : String(n)));
    fc.assert(
      fc.property(saleTexts(str, num), (t) => {
        // Keys once each in a record, as JSON.stringify writes them.
        const once = (entries: [string, string][]): [string, string][] => [...new Map(entries)];
        const text = saleText({ ...t, debits: once(t.debits), after: t.after === null ? null : once(t.after) });
        const fromText = packedFromText(text, SEQ, PREV);
        expect(fromText, text).to.not.equal(null);
        expect(fromText).to.deep.equal(packedFromParse(text));
      }),
      { numRuns: 300 },
    );
  });

  it('attack: packs from the bytes nothing that it would pack otherwise once parsed, whatever the text holds (property)', () => {
    // Strings with quotes, escapes, controls and non-ASCII, keys JSON.parse orders or drops,
    // numbers written every way JSON allows, and some it does not.
    // Mostly plain values, so that most sales hold one or two of the others.
    const str = fc.oneof(
      { arbitrary: fc.stringMatching(/^[a-z0-9:-]{0,12}$/), weight: 30 },
      { arbitrary: fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.constantFrom('__proto__', '0', '12', '1a', '', 'é', '\u0001', 'a\\b')), weight: 1 },
    ).map((s) => JSON.stringify(s));
    const num = fc.oneof(
      { arbitrary: fc.integer().map(String), weight: 30 },
      {
        arbitrary: fc.oneof(
          fc.double().map((n) => JSON.stringify(n)),
          fc.constantFrom('-0', '0', '1e2', '1E2', '1.5', '1.0', '007', '-', '--1', '123456789012345', '1234567890123456', '-9007199254740993', '"1"', 'true', 'null'),
        ),
        weight: 1,
      },
    );
    let fast = 0;
    fc.assert(
      fc.property(saleTexts(str, num), (t) => {
        const text = saleText(t);
        const fromText = packedFromText(text, SEQ, PREV);
        if (fromText === null) return;
        fast += 1;
        expect(fromText, text).to.deep.equal(packedFromParse(text));
      }),
      { numRuns: 1000 },
    );
    expect(fast).to.be.greaterThan(100);
  });

  it('attack: leaves to the parser a record of numbers with a __proto__ key, a key JSON.parse orders first, a key twice, or too many keys', () => {
    const plain: SaleText = {
      v: '1', vendor: '"acme"', at: '"2026-12-01T10:00:00.000Z"', terminal: '"t001"', cashier: 'null', key: '"t001:k"', bodyHash: 'null',
      postings: [['"customer:c1"', '"ACME"', '-5'], ['"redeemed"', '"ACME"', '5']], saleId: '"S1"', customer: '"c1"', currency: '"EUR"',
      debits: [['"ACME"', '5']], total: '50', due: '0', tendered: '0', change: '0', after: [['"ACME"', '95']],
    };
    expect(packedFromText(saleText(plain), SEQ, PREV)).to.deep.equal(packedFromParse(saleText(plain)));
    const hostile: [string, string][][] = [[['"__proto__"', '5']], [['"ACME"', '5'], ['"7"', '1']], [['"ACME"', '5'], ['"ACME"', '6']]];
    for (const record of hostile) {
      for (const text of [saleText({ ...plain, debits: record }), saleText({ ...plain, after: record })]) {
        expect(packedFromText(text, SEQ, PREV), text).to.equal(null);
      }
    }
    // A record of more keys than the scan keeps track of is left to the parser too, which
    // packs it whole: 64 keys are read from the bytes, 65 are not.
    for (const [keys, fast] of [[64, true], [65, false]] as const) {
      const many: [string, string][] = Array.from({ length: keys }, (_, k) => [`"T${k}"`, String(k)]);
      const text = saleText({ ...plain, after: many });
      expect(packedFromText(text, SEQ, PREV) !== null, `${keys} keys`).to.equal(fast);
      expect(packedFromParse(text), `${keys} keys`).to.not.equal(null);
      if (fast) expect(packedFromText(text, SEQ, PREV)).to.deep.equal(packedFromParse(text));
    }
  });

  it('attack: a sale\'s text edited anywhere is packed from its bytes only as it would be once parsed (property)', () => {
    let fast = 0;
    const edits = ['', ' ', '"', '\\', ',', ':', '{', '}', '[', ']', '0', '9', '-', '.', 'e', 'é', 'null', '"seq":1,', '"__proto__":1,'];
    fc.assert(
      fc.property(fc.nat(texts.length - 1), fc.nat(), fc.nat(3), fc.constantFrom(...edits), (which, where, cut, insert) => {
        const original = texts[which] as string;
        const at = where % original.length;
        const text = original.slice(0, at) + insert + original.slice(at + cut);
        const event = parsed(original);
        const fromText = packedFromText(text, event.seq, event.prev);
        if (fromText === null) return;
        fast += 1;
        // What the scan took must parse, to the same packing.
        expect(fromText, text).to.deep.equal(packedFromParse(text));
      }),
      { numRuns: 1500 },
    );
    // Many edits fall in the lines, which the scan skips, or change one value to another it reads.
    expect(fast).to.be.greaterThan(300);
  });

  it('leaves to JSON every event that is not a plain sale as the ledger writes it', () => {
    const sale = parsed(texts[1] as string) as Extract<StateEvent, { type: 'sale' }>;
    const { data, type, ...envelope } = sale;
    const protoDebits = JSON.parse(`{"__proto__":5,"ACME":1}`) as Record<string, number>;
    const others: unknown[] = [
      { ...sale, data: { ...data, offline: { offlineId: 't001-1', counter: 1 } } },
      { ...sale, data: { ...data, earned: { ACME: 1 } } },
      { ...sale, extra: true },
      // Keys in another order than the ledger writes them.
      { type, ...envelope, data },
      { ...sale, data: { ...data, debits: protoDebits } },
      { ...sale, data: { ...data, cash: { ...data.cash, dueMinor: '0' } } },
      { ...sale, postings: [{ ...sale.postings[0], memo: 'x' }] },
      { ...sale, type: 'reversal' },
      { ...sale, data: { ...data, lines: [] } },
    ];
    for (const e of others) expect(roundTrip(e as StateEvent).packed, JSON.stringify(e)).to.equal(false);
  });

  it('opens the store on parsing threads to the state a replay on one thread folds to', async () => {
    const ledgerDir = dataPaths(dir).ledgerDir;
    await rm(ledgerPaths(ledgerDir).checkpointFile, { force: true });
    let started = 0;
    replayThreadsHooks.onStart = () => {
      started += 1;
    };
    try {
      const single = await openLedger({ dataDir: ledgerDir, vendorId, readOnly: true, replayThreads: 0, replayThreadMin: 1 });
      await single.journal.close();
      expect(started).to.equal(0);
      const threaded = await openLedger({ dataDir: ledgerDir, vendorId, readOnly: true, replayThreads: 2, replayThreadMin: 1 });
      await threaded.journal.close();
      expect(started).to.equal(2);
      expect(single.replayThreads).to.deep.equal({ started: 0, fallback: null });
      expect(threaded.replayThreads).to.deep.equal({ started: 2, fallback: null });
      expect(threaded.replayed).to.equal(single.replayed);
      expect(threaded.state.seq).to.be.greaterThan(texts.length);
      expect(JSON.stringify(toSnapshot(threaded.state))).to.equal(JSON.stringify(toSnapshot(single.state)));
    } finally {
      replayThreadsHooks.onStart = null;
    }
  });

  it('stops the threads it started ahead of a long replay when the journal then fails to open', async () => {
    const ledgerDir = dataPaths(dir).ledgerDir;
    const copy = await tempDir();
    try {
      await cp(ledgerDir, copy.dir, { recursive: true });
      await rm(ledgerPaths(copy.dir).checkpointFile, { force: true });
      // Without its first segment the journal misses seq 1: opening it fails.
      const journalDir = join(copy.dir, 'journal');
      const first = (await readdir(journalDir)).filter((n) => n.endsWith('.jsonl')).sort()[0] as string;
      await rm(join(journalDir, first));
      const exited: Promise<unknown>[] = [];
      replayThreadsHooks.onStart = (w) => {
        exited.push(once(w, 'exit'));
      };
      const err = await openLedger({ dataDir: copy.dir, vendorId, readOnly: true, replayThreads: 2, replayThreadMin: 1 }).then(() => null, (e: unknown) => e as Error);
      expect(err?.message).to.match(/seq/);
      expect(exited).to.have.length(2);
      await Promise.all(exited);
    } finally {
      replayThreadsHooks.onStart = null;
      await copy.cleanup();
    }
  });

  it('opens the store on the threads of the compiled build, which run its bundled thread script', async () => {
    const ledgerDir = dataPaths(dir).ledgerDir;
    await rm(ledgerPaths(ledgerDir).checkpointFile, { force: true });
    const single = await openLedger({ dataDir: ledgerDir, vendorId, readOnly: true, replayThreads: 0 });
    await single.journal.close();
    // The server's own modules from dist/, as the executables load them.
    const store = pathToFileURL(join(ROOT, 'dist', 'vendor-server', 'ledger', 'store.js')).href;
    const script = `
      const { openLedger, checkpointText } = await import(${JSON.stringify(store)});
      const opened = await openLedger({ dataDir: ${JSON.stringify(ledgerDir)}, vendorId: ${JSON.stringify(vendorId)}, readOnly: true, replayThreads: 2, replayThreadMin: 1 });
      await opened.journal.close();
      console.log(JSON.stringify({ replayThreads: opened.replayThreads, state: checkpointText(opened.state) }));
    `;
    const { stdout } = await execFileAsync(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, maxBuffer: 64 * 1024 * 1024 });
    const out = JSON.parse(stdout) as { replayThreads: unknown; state: string };
    expect(out.replayThreads).to.deep.equal({ started: 2, fallback: null });
    expect(out.state).to.equal(checkpointText(single.state));
  });
});
