import { createHash, randomUUID } from 'node:crypto';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import fc from 'fast-check';
import { withGs1CheckDigit, type JournalEvent } from '../../core/index.ts';
import { GENESIS_HASH, JournalCorruptError } from '../../platform/storage/index.ts';
import { dataPaths } from '../../vendor-server/config.ts';
import { parseStateEvent } from '../../vendor-server/ledger/replay-parse.ts';
import type { Actor } from '../../vendor-server/ledger/service.ts';
import { applyEvent, emptyState, toSnapshot } from '../../vendor-server/ledger/state.ts';
import { ledgerPaths, openLedger, verifyLedger } from '../../vendor-server/ledger/store.ts';
import { openDemoLedger, tempDir } from '../helpers/vendor.ts';

const OPERATOR: Actor = { terminal: null, cashier: null };
const TILL: Actor = { terminal: 't001', cashier: null };

/** Product names that hold the cut's own markers, quotes, escapes and text beyond ASCII. */
const NASTY_NAMES = [
  'Box ],"allocations":[ of 3',
  'Tin ],"debits":{"ACME":1} lid',
  '"lines":[ "type":"sale","postings":[',
  'back\\slash \\"quoted\\" ]} {[',
  'Müsli ✓ 🍞 \u2028 tab\tnewline\n',
];

function parseBytes(text: string): unknown {
  const buf = Buffer.from(`xx${text}yy`, 'utf8');
  return parseStateEvent(buf, 2, buf.length - 2);
}

/** What a full parse gives, less a sale's lines and allocations. */
function stateView(text: string): unknown {
  const event = JSON.parse(text) as JournalEvent;
  if (event.type !== 'sale') return event;
  const { lines: _lines, allocations: _allocations, ...data } = event.data;
  return { ...event, data };
}

/** A demo store with sales of products named by `names` (and the demo catalog's), each sale's event text returned. */
async function storeWithSales(dir: string, names: string[], salesEach: number): Promise<{ texts: string[]; vendorId: string }> {
  const { config, opened, ledger } = await openDemoLedger(dir, { init: { host: '127.0.0.1' } });
  try {
    await ledger.recordAllotment(OPERATOR, `op:${randomUUID()}`, { token: 'ACME', units: 1_000_000, reference: 'test allotment' });
    const customer = await ledger.registerCustomer(OPERATOR, { name: 'Ana "],"debits":' });
    await ledger.issueTokens(OPERATOR, `op:${randomUUID()}`, { customerId: customer.id, token: 'ACME', units: 500_000, reason: 'reward' });
    const codes: string[] = [];
    for (const [i, name] of names.entries()) {
      const code = withGs1CheckDigit(`2000000000${String(i).padStart(2, '0')}`);
      await ledger.upsertProduct(OPERATOR, { code, name, priceMinor: 100 + i, tokenPrices: { ACME: 10 + i } });
      codes.push(code);
    }
    const texts: string[] = [];
    for (let k = 0; k < salesEach; k++) {
      for (const code of codes) {
        const sale = await ledger.commitSale(TILL, {
          key: `t001:${randomUUID()}`,
          lines: [{ code, qty: 1 + (k % 3) }, { code: '4006381333931', qty: 1 }],
          card: customer.card,
          tenders: [{ token: 'ACME' }],
          cashTenderedMinor: 0,
        });
        texts.push((await opened.journal.read(sale.seq)).text);
      }
    }
    return { texts, vendorId: config.vendorId };
  } finally {
    await opened.journal.close();
  }
}

describe('vendor-server: the replay reads sales without their lines', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let texts: string[];
  let vendorId: string;

  before(async () => {
    ({ dir, cleanup } = await tempDir());
    ({ texts, vendorId } = await storeWithSales(dir, NASTY_NAMES, 3));
  });
  after(() => cleanup());

  it('gives every sale the ledger wrote as a full parse does, without lines and allocations', () => {
    expect(texts).to.have.length(NASTY_NAMES.length * 3);
    for (const text of texts) {
      const event = parseBytes(text) as { type: string; data: Record<string, unknown> };
      expect(event.type).to.equal('sale');
      expect(Object.hasOwn(event.data, 'lines')).to.equal(false);
      expect(Object.hasOwn(event.data, 'allocations')).to.equal(false);
      expect(event).to.deep.equal(stateView(text));
    }
  });

  it('parses whole what is not a sale, and a sale whose text is not laid out as the ledger writes it', () => {
    const product = JSON.stringify({ seq: 9, prev: GENESIS_HASH, type: 'product.upserted', postings: [], data: { name: '"lines":[ ],"allocations":[ ],"debits":' } });
    expect(parseBytes(product)).to.deep.equal(JSON.parse(product));
    // Keys in another order: the markers are not there in order, so nothing is cut.
    const sale = JSON.parse(texts[0] as string) as { data: Record<string, unknown> };
    const { lines, allocations, debits, ...rest } = sale.data;
    const reordered = JSON.stringify({ ...sale, data: { debits, ...rest, allocations, lines } });
    expect(parseBytes(reordered)).to.deep.equal(JSON.parse(reordered));
    // A cut that would not read as a sale is not taken either.
    const notSale = (texts[0] as string).replace('"type":"sale","postings":[', '"type":"sale","postings":[],"type":"reversal","x":[');
    expect(parseBytes(notSale)).to.deep.equal(JSON.parse(notSale));
  });

  it('refuses text that is not JSON with a SyntaxError, whether or not it would be cut', () => {
    const text = texts[0] as string;
    expect(() => parseBytes(text.slice(0, -1))).to.throw(SyntaxError);
    expect(() => parseBytes(text.replace('"balancesAfter":', '"balancesAfter":,'))).to.throw(SyntaxError);
    expect(() => parseBytes(text.replace('"saleId":', '"saleId":]'))).to.throw(SyntaxError);
    // Inside the lines, nothing is read at start: the integrity audit's full parse of every
    // line is what reports such a line (journal.verifyAll).
    const brokenLines = text.replace('"unitPriceMinor":', '"unitPriceMinor":,');
    expect(() => JSON.parse(brokenLines)).to.throw(SyntaxError);
    expect(() => parseBytes(brokenLines)).to.not.throw();
  });

  it('gives any sale text as a full parse does, whatever its names and its strings hold (property)', () => {
    const base = JSON.parse(texts[0] as string) as { data: { lines: { name: string }[]; customer: string | null } };
    fc.assert(
      fc.property(fc.array(fc.string({ unit: 'binary' }), { minLength: 1, maxLength: 4 }), fc.string({ unit: 'binary' }), (names, customer) => {
        const lines = names.map((name, i) => ({ ...base.data.lines[0], lineNo: i + 1, name }));
        const text = JSON.stringify({ ...base, data: { ...base.data, customer, lines } });
        const event = parseBytes(text) as { data: Record<string, unknown> };
        expect(event).to.deep.equal(stateView(text));
        expect(Object.hasOwn(event.data, 'lines')).to.equal(false);
      }),
      { numRuns: 300 },
    );
  });

  it('opens the store to the state a full parse of every event folds to', async () => {
    const paths = ledgerPaths(dataPaths(dir).ledgerDir);
    await rm(paths.checkpointFile, { force: true });
    const opened = await openLedger({ dataDir: dataPaths(dir).ledgerDir, vendorId });
    try {
      expect(opened.checkpointSeq).to.equal(0);
      expect(opened.replayed).to.equal(opened.state.seq);
      const full = emptyState(vendorId, GENESIS_HASH);
      await opened.journal.replay(1, GENESIS_HASH, (rec, event: JournalEvent) => applyEvent(full, event, rec.hash));
      expect(full.seq).to.equal(opened.state.seq);
      expect(JSON.stringify(toSnapshot(opened.state))).to.equal(JSON.stringify(toSnapshot(full)));
    } finally {
      await opened.journal.close();
    }
  });

  it('attack: lines that are not JSON under a rewritten hash do not stop a start, and the audit reports them', async () => {
    // The last sale's lines broken, its hash made again to match: only a full parse tells.
    const paths = ledgerPaths(dataPaths(dir).ledgerDir);
    const segment = join(paths.journalDir, (await readdir(paths.journalDir)).sort().at(-1) as string);
    const lines = (await readFile(segment, 'utf8')).split('\n');
    const last = lines.length - 2;
    const event = (lines[last] as string).slice('{"h":"'.length + 64 + '","e":'.length, -1);
    const broken = event.replace('"unitPriceMinor":', '"unitPriceMinor":,');
    expect(broken).to.not.equal(event);
    lines[last] = `{"h":"${createHash('sha256').update(broken).digest('hex')}","e":${broken}}`;
    await writeFile(segment, lines.join('\n'));
    const opened = await openLedger({ dataDir: dataPaths(dir).ledgerDir, vendorId, readOnly: true });
    const seq = opened.state.seq;
    await opened.journal.close();
    const err = await verifyLedger({ dataDir: dataPaths(dir).ledgerDir, vendorId }).then(() => null, (e: unknown) => e);
    expect(err).to.be.instanceOf(JournalCorruptError);
    expect(err).to.deep.include({ seq, reason: 'malformed' });
  });

  it('reports a line the parser cannot read as a malformed line, at its seq', async () => {
    const opened = await openLedger({ dataDir: dataPaths(dir).ledgerDir, vendorId, readOnly: true });
    try {
      const seq = opened.state.seq - 2;
      const err = await opened.journal
        .replay(1, GENESIS_HASH, () => undefined, undefined, (buf, start, end) => {
          const event = JSON.parse(buf.toString('utf8', start, end)) as { seq: number };
          if (event.seq === seq) throw new SyntaxError('unreadable');
          return event;
        })
        .then(() => null, (e: unknown) => e);
      expect(err).to.be.instanceOf(JournalCorruptError);
      expect(err).to.deep.include({ seq, reason: 'malformed' });
    } finally {
      await opened.journal.close();
    }
  });
});
