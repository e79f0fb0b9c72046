import { expect } from 'chai';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import { GENESIS_HASH, Journal, JournalCorruptError } from '../../../platform/storage/index.ts';
import type { JournalRecord } from '../../../platform/storage/index.ts';
import { replayThreadHooks, VERDICT_LINES } from '../../../platform/storage/replay-worker.ts';
import { editLine, expectSameError, lineFor, parseSegment, rejection, saleFields, segmentFiles, snapshot, tempDir } from './helpers.ts';

/**
 * A long replay checks the hashes on a second thread. Whatever goes wrong on that path, a
 * corrupt line or the thread dying, the consumer must see exactly the events, and the
 * caller exactly the error, of the sequential replay.
 */
describe('platform/storage/journal replay on two threads', () => {
  const EVENTS = 30_000;
  // About 330 bytes a line: several segments, each longer than one verdict's worth of lines,
  // so that a fallback may have to resume in the middle of a segment.
  const SEGMENT_BYTES = 2 * 1024 * 1024;
  let dir: string;
  let cleanup: () => Promise<void>;
  let threads: Worker[];

  before(async () => {
    ({ dir, cleanup } = await tempDir());
    const { journal } = await Journal.open({ dir, segmentBytesMax: SEGMENT_BYTES });
    for (let seq = 1; seq <= EVENTS; seq++) {
      const { durable } = journal.append(saleFields(seq));
      if (seq % 2000 === 0) await durable;
    }
    await journal.close();
    const names = await segmentFiles(dir);
    expect(names.length).to.be.greaterThan(3);
    expect(parseSegment(await readFile(join(dir, names[0] as string))).length).to.be.greaterThan(VERDICT_LINES);
  });

  after(async () => {
    replayThreadHooks.onStart = null;
    await cleanup();
  });

  beforeEach(() => {
    threads = [];
    replayThreadHooks.onStart = (w) => {
      threads.push(w);
    };
  });

  afterEach(() => {
    replayThreadHooks.onStart = null;
  });

  interface Outcome {
    recs: JournalRecord[];
    events: unknown[];
    result: { count: number; lastSeq: number; lastHash: string } | null;
    error: Error | null;
  }

  /** Opens the journal and replays it all, on two threads when replayThreadMin allows. */
  async function replay(replayThreadMin: number, fromSeq = 1, expectedPrev = GENESIS_HASH, toSeq?: number): Promise<Outcome> {
    const { journal } = await Journal.open({ dir, segmentBytesMax: SEGMENT_BYTES, replayThreadMin });
    const out: Outcome = { recs: [], events: [], result: null, error: null };
    try {
      out.result = await journal.replay(fromSeq, expectedPrev, (rec, event) => {
        out.recs.push(rec);
        out.events.push(event);
      }, toSeq);
    } catch (err) {
      out.error = err as Error;
    } finally {
      await journal.close();
    }
    return out;
  }



  it('hands on exactly the events of the sequential replay, from seq 1 and from the middle of a segment', async () => {
    const sequential = await replay(0);
    expect(threads).to.have.length(0);
    expect(sequential.result?.count).to.equal(EVENTS);

    const parallel = await replay(1);
    expect(threads).to.have.length(1);
    expect(parallel.error).to.equal(null);
    expect(parallel.result).to.deep.equal(sequential.result);
    expect(parallel.recs).to.deep.equal(sequential.recs);
    expect(parallel.events).to.deep.equal(sequential.events);

    const from = 13_333;
    const prev = (sequential.recs[from - 2] as JournalRecord).hash;
    const partial = await replay(1, from, prev);
    expect(threads).to.have.length(2);
    expect(partial.result).to.deep.equal({ count: EVENTS - from + 1, lastSeq: EVENTS, lastHash: sequential.result?.lastHash });
    expect(partial.recs).to.deep.equal(sequential.recs.slice(from - 1));
  });

  it('stops at toSeq, in the middle of a segment, on either path', async () => {
    const all = await replay(0);
    const to = 21_111;
    const sequential = await replay(0, 1, GENESIS_HASH, to);
    const parallel = await replay(1, 1, GENESIS_HASH, to);
    expect(threads).to.have.length(1);
    for (const out of [sequential, parallel]) {
      expect(out.error).to.equal(null);
      expect(out.result).to.deep.equal({ count: to, lastSeq: to, lastHash: (all.recs[to - 1] as JournalRecord).hash });
      expect(out.recs).to.deep.equal(all.recs.slice(0, to));
    }
    // Nothing to replay still checks the link: to seq 0 from seq 1, and past toSeq.
    expect((await replay(1, 1, GENESIS_HASH, 0)).result).to.deep.equal({ count: 0, lastSeq: 0, lastHash: GENESIS_HASH });
    expect((await replay(1, to + 1, (all.recs[to - 1] as JournalRecord).hash, to)).result?.count).to.equal(0);
    expect((await replay(1, to + 1, GENESIS_HASH, to)).error).to.be.instanceOf(JournalCorruptError);
    expect((await replay(1, 1, GENESIS_HASH, EVENTS + 1)).error).to.be.instanceOf(RangeError);
  });

  it('keeps the sequential path below replayThreadMin', async () => {
    const out = await replay(EVENTS + 1);
    expect(threads).to.have.length(0);
    expect(out.result?.count).to.equal(EVENTS);
  });

  it('detects a changed byte in the middle of the journal exactly as the sequential replay does', async () => {
    const before = await snapshot(dir);
    // The stored hash no longer matches: only the verifying thread can see it.
    const undo = await editLine(dir, 2, VERDICT_LINES + 700, (line) => line.replace('"qty":', '"qty":9'));
    try {
      const sequential = await replay(0);
      const parallel = await replay(1);
      expect(threads).to.have.length(1);
      expectSameError(parallel.error, sequential.error);
      expect((parallel.error as JournalCorruptError).reason).to.equal('hash-mismatch');
      // The consumer saw every event before the changed line, and none after it.
      expect(parallel.recs).to.deep.equal(sequential.recs);
      expect(parallel.recs.length).to.equal(((parallel.error as JournalCorruptError).seq as number) - 1);
    } finally {
      await undo();
    }
    expect(await snapshot(dir)).to.deep.equal(before);
  });

  it('detects a forged line with a recomputed hash exactly as the sequential replay does', async () => {
    // A forger who recomputes the line's hash breaks the link of the line after it.
    const undo = await editLine(dir, 3, 1_000, (line) => {
      const event = /"e":(.*)\}\n$/s.exec(line)?.[1] as string;
      return lineFor(event.replace('"total":', '"total":1'));
    });
    try {
      const sequential = await replay(0);
      const parallel = await replay(1);
      expectSameError(parallel.error, sequential.error);
      expect((parallel.error as JournalCorruptError).reason).to.equal('chain-break');
      expect(parallel.recs).to.deep.equal(sequential.recs);
    } finally {
      await undo();
    }
  });

  it('falls back and still replays everything when the verifying thread dies at its start', async () => {
    const sequential = await replay(0);
    replayThreadHooks.onStart = (w) => {
      threads.push(w);
      void w.terminate();
    };
    const parallel = await replay(1);
    expect(threads).to.have.length(1);
    expect(parallel.error).to.equal(null);
    expect(parallel.result).to.deep.equal(sequential.result);
    expect(parallel.recs).to.deep.equal(sequential.recs);
  });

  it('falls back and hands on each event once when the verifying thread dies after some verdicts', async () => {
    const sequential = await replay(0);
    replayThreadHooks.onStart = (w) => {
      threads.push(w);
      let verdicts = 0;
      w.on('message', () => {
        verdicts += 1;
        if (verdicts === 3) void w.terminate();
      });
    };
    const parallel = await replay(1);
    expect(threads).to.have.length(1);
    expect(parallel.error).to.equal(null);
    expect(parallel.result).to.deep.equal(sequential.result);
    expect(parallel.recs.map((r) => r.seq)).to.deep.equal(sequential.recs.map((r) => r.seq));
    expect(parallel.recs).to.deep.equal(sequential.recs);
  });

  it('passes a consumer error through without replaying again', async () => {
    const { journal } = await Journal.open({ dir, segmentBytesMax: SEGMENT_BYTES, replayThreadMin: 1 });
    const seen: number[] = [];
    const err = await rejection(journal.replay(1, GENESIS_HASH, (rec) => {
      seen.push(rec.seq);
      if (rec.seq === 5_000) throw new Error('consumer refused seq 5000');
    }));
    await journal.close();
    expect(err.message).to.equal('consumer refused seq 5000');
    expect(seen).to.deep.equal(Array.from({ length: 5_000 }, (_, i) => i + 1));
  });
});
