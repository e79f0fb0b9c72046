import { expect } from 'chai';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GENESIS_HASH, Journal, JournalCorruptError } from '../../../platform/storage/index.ts';
import { replayInParallel } from '../../../platform/storage/parallel-replay.ts';
import { lineFor, parseSegment, saleFields, segmentFiles, snapshot, tempDir } from './helpers.ts';

// Small segments, so that a few hundred events spread over many files and workers.
const SEGMENT_BYTES = 4096;
const EVENTS = 300;
// Workers even for a short journal, which would otherwise replay on the calling thread.
const PARALLEL = { workers: 2, eventsMin: 0 };

interface Seen {
  seq: number;
  hash: string;
  event: string;
}

describe('platform/storage/parallel-replay', function () {
  this.timeout(60_000);
  let dir: string;
  let cleanup: () => Promise<void>;

  beforeEach(async () => {
    ({ dir, cleanup } = await tempDir());
    const { journal } = await Journal.open({ dir, segmentBytesMax: SEGMENT_BYTES });
    for (let i = 0; i < EVENTS; i++) journal.append(saleFields(journal.nextSeq));
    await journal.close();
    expect((await segmentFiles(dir)).length).to.be.above(8);
  });

  afterEach(async () => {
    await cleanup();
  });

  async function replay(fromSeq: number, expectedPrev: string, parallel: boolean): Promise<{ seen: Seen[]; result?: { lastHash: string }; error?: Error }> {
    const { journal } = await Journal.open({ dir, segmentBytesMax: SEGMENT_BYTES });
    const seen: Seen[] = [];
    const onEvent = (line: { seq: number; hash: string }, event: unknown) => {
      seen.push({ seq: line.seq, hash: line.hash, event: JSON.stringify(event) });
    };
    try {
      const result = parallel ? await replayInParallel(journal, fromSeq, expectedPrev, onEvent, PARALLEL) : await journal.replay(fromSeq, expectedPrev, onEvent);
      return { seen, result };
    } catch (err) {
      return { seen, error: err as Error };
    } finally {
      await journal.close().catch(() => undefined);
    }
  }

  /** The segment file and parsed line holding seq. */
  async function locate(seq: number) {
    for (const name of await segmentFiles(dir)) {
      const path = join(dir, name);
      const lines = parseSegment(await readFile(path));
      const i = lines.findIndex((l) => (JSON.parse(l.eventText) as { seq: number }).seq === seq);
      if (i !== -1) return { name, path, lines, i };
    }
    throw new Error(`seq ${seq} not found`);
  }

  /** A seq in the middle of a middle segment: Journal.open checks only segment heads and ends. */
  async function middleSeq(): Promise<number> {
    const names = await segmentFiles(dir);
    const lines = parseSegment(await readFile(join(dir, names[3] as string)));
    return (JSON.parse((lines[Math.floor(lines.length / 2)] as { eventText: string }).eventText) as { seq: number }).seq;
  }

  it('gives exactly what Journal.replay gives, from the start and from the middle of a segment', async () => {
    const all = await replay(1, GENESIS_HASH, false);
    expect(all.seen).to.have.length(EVENTS);
    const parallel = await replay(1, GENESIS_HASH, true);
    expect(parallel.error).to.equal(undefined);
    expect(parallel.seen).to.deep.equal(all.seen);
    expect(parallel.result?.lastHash).to.equal(all.result?.lastHash);

    const from = (await middleSeq()) + 1;
    const prev = (all.seen[from - 2] as Seen).hash;
    const tail = await replay(from, prev, true);
    expect(tail.seen).to.deep.equal(all.seen.slice(from - 1));
    // The event before fromSeq must hash to expectedPrev.
    const wrong = await replay(from, GENESIS_HASH, true);
    expect(wrong.error).to.be.instanceOf(JournalCorruptError);
    expect((wrong.error as JournalCorruptError).reason).to.equal('chain-break');
    expect(wrong.seen).to.deep.equal([]);
  });

  it('stops at a changed byte with its segment and seq, having applied only the events before it', async () => {
    const bad = await middleSeq();
    const { name, path } = await locate(bad);
    const text = await readFile(path, 'utf8');
    const at = (await locate(bad)).lines[(await locate(bad)).i] as { line: string };
    await writeFile(path, text.replace(at.line, at.line.replace('"total":', '"total":9')));
    const before = await snapshot(dir);

    const r = await replay(1, GENESIS_HASH, true);
    expect(r.error).to.be.instanceOf(JournalCorruptError);
    const e = r.error as JournalCorruptError;
    expect([e.reason, e.segment, e.seq]).to.deep.equal(['hash-mismatch', name, bad]);
    expect(r.seen.map((s) => s.seq)).to.deep.equal(Array.from({ length: bad - 1 }, (_, i) => i + 1));
    expect(await snapshot(dir)).to.deep.equal(before);
  });

  it('finds a forged line whose hash was recomputed by its broken link, and a duplicated line by its seq', async () => {
    const bad = await middleSeq();
    const { name, path, lines, i } = await locate(bad);
    const original = lines[i] as { line: string; eventText: string };
    const forged = original.eventText.replace(/"prev":"[0-9a-f]{64}"/, `"prev":"${'1'.repeat(64)}"`);
    const text = await readFile(path, 'utf8');
    await writeFile(path, text.replace(`${original.line}\n`, lineFor(forged)));
    const chain = await replay(1, GENESIS_HASH, true);
    expect([(chain.error as JournalCorruptError).reason, (chain.error as JournalCorruptError).segment, (chain.error as JournalCorruptError).seq]).to.deep.equal(['chain-break', name, bad]);
    expect(chain.seen).to.have.length(bad - 1);

    // The same line twice: the segment still ends with the seq the next one follows.
    await writeFile(path, text.replace(`${original.line}\n`, `${original.line}\n${original.line}\n`));
    const dup = await replay(1, GENESIS_HASH, true);
    expect(dup.error).to.be.instanceOf(JournalCorruptError);
    expect([(dup.error as JournalCorruptError).reason, (dup.error as JournalCorruptError).seq]).to.deep.equal(['seq-disorder', bad + 1]);
    expect(dup.seen).to.have.length(bad);
  });
});
