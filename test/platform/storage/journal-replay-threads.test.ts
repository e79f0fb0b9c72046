import { expect } from 'chai';
import { once } from 'node:events';
import type { Worker } from 'node:worker_threads';
import { GENESIS_HASH, Journal } from '../../../platform/storage/index.ts';
import type { JournalCorruptError, JournalRecord } from '../../../platform/storage/index.ts';
import { CHUNK_LINES, PAGE_BYTES, ReplayThreadStarts, replayThreadsHooks } from '../../../platform/storage/replay-threads.ts';
import { bundledScript } from '../../helpers/bundled-script.ts';
import { parsedOnlyCodec, testCodec } from './fixtures/replay-codec.ts';
import { editLine, expectSameError, lineFor, rejection, saleFields, segmentFiles, snapshot, tempDir } from './helpers.ts';

/**
 * A long replay read, checked and parsed on several threads, its events packed by a
 * codec. Whatever goes wrong on that path, the consumer must see exactly the events, and
 * the caller exactly the error, of the sequential replay with the codec's parser.
 */
describe('platform/storage/journal replay on parsing threads', () => {
  const EVENTS = 15_000;
  const SEGMENT_BYTES = 1024 * 1024;
  // Far smaller than a segment and no multiple of a line: most ranges begin inside a line.
  const RANGE_BYTES = 100_003;
  let threadScript: URL;
  let parsedThreadScript: URL;
  let dir: string;
  let cleanup: () => Promise<void>;
  let threads: Worker[];
  let fallbacks: string[];
  /** The sequential replay of the whole journal as written, which most tests compare with. */
  let sequential: Outcome;

  before(async () => {
    threadScript = await bundledScript(new URL('./fixtures/replay-thread.ts', import.meta.url));
    parsedThreadScript = await bundledScript(new URL('./fixtures/replay-thread-parsed.ts', import.meta.url));
    ({ dir, cleanup } = await tempDir());
    const { journal } = await Journal.open({ dir, segmentBytesMax: SEGMENT_BYTES });
    for (let seq = 1; seq <= EVENTS; seq++) {
      // Every seventh event is one the codec does not pack: it crosses as JSON.
      const { durable } = journal.append(saleFields(seq, seq % 7 === 0 ? { refund: { of: seq - 1 } } : {}));
      if (seq % 2000 === 0) await durable;
    }
    await journal.close();
    expect((await segmentFiles(dir)).length).to.be.greaterThan(3);
    let started = 0;
    replayThreadsHooks.onStart = () => {
      started += 1;
    };
    sequential = await replay(0);
    replayThreadsHooks.onStart = null;
    expect(started).to.equal(0);
    expect(sequential.error).to.equal(null);
    expect(sequential.result?.count).to.equal(EVENTS);
  });

  after(async () => {
    replayThreadsHooks.onStart = null;
    await cleanup();
  });

  beforeEach(() => {
    threads = [];
    fallbacks = [];
    replayThreadsHooks.onStart = (w) => {
      threads.push(w);
    };
  });

  afterEach(() => {
    replayThreadsHooks.onStart = null;
  });

  interface Outcome {
    recs: JournalRecord[];
    events: unknown[];
    result: { count: number; lastSeq: number; lastHash: string } | null;
    error: Error | null;
  }

  /**
   * Opens the journal and replays it with the test codec: on `count` threads, or
   * sequentially for 0; with threads started ahead, and a look at each record before it
   * is kept, when given.
   */
  async function replay(
    count: number, fromSeq = 1, expectedPrev = GENESIS_HASH, toSeq?: number, parsedOnly = false,
    more: { started?: ReplayThreadStarts; onRecord?: (rec: JournalRecord) => void } = {},
  ): Promise<Outcome> {
    const { journal } = await Journal.open({ dir, segmentBytesMax: SEGMENT_BYTES, replayThreadMin: 1 });
    const out: Outcome = { recs: [], events: [], result: null, error: null };
    const onDone = (_threads: number, why: Error | null): void => {
      if (why !== null) fallbacks.push(why.message);
    };
    const [script, codec] = parsedOnly ? [parsedThreadScript, parsedOnlyCodec] : [threadScript, testCodec];
    const started = more.started === undefined ? {} : { started: more.started };
    const parallel = count === 0 ? null : { script, codec, threads: count, rangeBytes: RANGE_BYTES, onDone, ...started };
    try {
      out.result = await journal.replay(fromSeq, expectedPrev, (rec, event) => {
        more.onRecord?.(rec);
        out.recs.push(rec);
        out.events.push(event);
      }, toSeq, testCodec.parse, parallel);
    } catch (err) {
      out.error = err as Error;
    } finally {
      await journal.close();
    }
    return out;
  }

  /** Keeps each thread that starts in `threads`, and a promise of its exit in the list returned. */
  function watchExits(): Promise<unknown>[] {
    const exited: Promise<unknown>[] = [];
    replayThreadsHooks.onStart = (w) => {
      threads.push(w);
      exited.push(once(w, 'exit'));
    };
    return exited;
  }

  it('hands on exactly the events of the sequential replay, packed or not, from seq 1 and from the middle of a segment', async () => {
    for (const count of [1, 2, 3]) {
      threads = [];
      const parallel = await replay(count);
      expect(threads).to.have.length(count);
      expect(parallel.error).to.equal(null);
      expect(parallel.result).to.deep.equal(sequential.result);
      expect(parallel.recs).to.deep.equal(sequential.recs);
      expect(parallel.events).to.deep.equal(sequential.events);
      expect(fallbacks).to.deep.equal([]);
    }
    // The codec packed most events and left the others to JSON.
    expect(sequential.events.filter((e) => Object.hasOwn(e as object, 'refund'))).to.have.length(Math.floor(EVENTS / 7));
    // A codec that packs only parsed events: its threads parse every line.
    const parsed = await replay(2, 1, GENESIS_HASH, undefined, true);
    expect(parsed.error).to.equal(null);
    expect(parsed.recs).to.deep.equal(sequential.recs);
    expect(parsed.events).to.deep.equal(sequential.events);
    expect(fallbacks).to.deep.equal([]);

    const from = 13_333;
    const partial = await replay(2, from, (sequential.recs[from - 2] as JournalRecord).hash);
    expect(partial.result).to.deep.equal({ count: EVENTS - from + 1, lastSeq: EVENTS, lastHash: sequential.result?.lastHash });
    expect(partial.recs).to.deep.equal(sequential.recs.slice(from - 1));
    expect(partial.events).to.deep.equal(sequential.events.slice(from - 1));
    expect(fallbacks).to.deep.equal([]);
  });

  it('stops at toSeq, in the middle of a segment', async () => {
    const all = sequential;
    const to = 11_111;
    const parallel = await replay(2, 1, GENESIS_HASH, to);
    expect(parallel.error).to.equal(null);
    expect(parallel.result).to.deep.equal({ count: to, lastSeq: to, lastHash: (all.recs[to - 1] as JournalRecord).hash });
    expect(parallel.recs).to.deep.equal(all.recs.slice(0, to));
    expect(parallel.events).to.deep.equal(all.events.slice(0, to));
    expect(fallbacks).to.deep.equal([]);
  });

  it('attack: a changed byte in the middle of the journal is reported exactly as the sequential replay reports it', async () => {
    const before = await snapshot(dir);
    const undo = await editLine(dir, 2, 3_000, (line) => line.replace('"qty":', '"qty":9'));
    try {
      const sequential = await replay(0);
      const parallel = await replay(2);
      expectSameError(parallel.error, sequential.error);
      expect((parallel.error as JournalCorruptError).reason).to.equal('hash-mismatch');
      expect(fallbacks).to.have.length(1);
      expect(parallel.recs).to.deep.equal(sequential.recs);
      expect(parallel.recs.length).to.equal(((parallel.error as JournalCorruptError).seq as number) - 1);
    } finally {
      await undo();
    }
    expect(await snapshot(dir)).to.deep.equal(before);
  });

  it('attack: a forged line with a recomputed hash is reported exactly as the sequential replay reports it', async () => {
    const undo = await editLine(dir, 3, 1_000, (line) => {
      const event = /"e":(.*)\}\n$/s.exec(line)?.[1] as string;
      return lineFor(event.replace('"total":', '"total":1'));
    });
    try {
      const sequential = await replay(0);
      const parallel = await replay(2);
      expectSameError(parallel.error, sequential.error);
      expect((parallel.error as JournalCorruptError).reason).to.equal('chain-break');
      expect(fallbacks).to.have.length(1);
      expect(parallel.recs).to.deep.equal(sequential.recs);
      expect(parallel.events).to.deep.equal(sequential.events);
    } finally {
      await undo();
    }
  });

  it('attack: a line whose event repeats its seq key, under a valid hash, is reported as the sequential replay reports it', async () => {
    // The event's bytes say seq 1 twice: a codec that packed the first key would pass it on.
    const undo = await editLine(dir, 1, 500, (line) => {
      const event = /"e":(.*)\}\n$/s.exec(line)?.[1] as string;
      return lineFor(event.replace('"note":', '"seq":1,"note":'));
    });
    try {
      const sequential = await replay(0);
      const parallel = await replay(2);
      expectSameError(parallel.error, sequential.error);
      expect(parallel.recs).to.deep.equal(sequential.recs);
    } finally {
      await undo();
    }
  });

  it('falls back and still replays everything when a thread dies at its start', async () => {
    replayThreadsHooks.onStart = (w) => {
      threads.push(w);
      if (threads.length === 2) void w.terminate();
    };
    const parallel = await replay(2);
    expect(threads).to.have.length(2);
    expect(fallbacks).to.have.length(1);
    expect(parallel.error).to.equal(null);
    expect(parallel.result).to.deep.equal(sequential.result);
    expect(parallel.recs).to.deep.equal(sequential.recs);
    expect(parallel.events).to.deep.equal(sequential.events);
  });

  it('falls back and hands on each event once when a thread dies after some chunks', async () => {
    replayThreadsHooks.onStart = (w) => {
      threads.push(w);
      let chunks = 0;
      w.on('message', () => {
        chunks += 1;
        if (chunks === 5) void w.terminate();
      });
    };
    const parallel = await replay(2);
    expect(threads).to.have.length(2);
    expect(fallbacks).to.have.length(1);
    expect(parallel.error).to.equal(null);
    expect(parallel.result).to.deep.equal(sequential.result);
    expect(parallel.recs.map((r) => r.seq)).to.deep.equal(sequential.recs.map((r) => r.seq));
    expect(parallel.events).to.deep.equal(sequential.events);
  });

  it('reads every chunk before its thread writes another into the same page, however far ahead the threads run', async () => {
    const stall = new Int32Array(new SharedArrayBuffer(4));
    const parallel = await replay(2, 1, GENESIS_HASH, undefined, false, {
      onRecord: (rec) => {
        // Mid-chunk, the replaying thread stops a while: the threads meanwhile fill every
        // page they may. One written too early would change the events still to be read.
        if (rec.seq % 4_000 === 3) Atomics.wait(stall, 0, 0, 150);
      },
    });
    expect(parallel.error).to.equal(null);
    expect(parallel.events).to.deep.equal(sequential.events);
  });

  it('takes threads started ahead, and stops them when the replay is too short for threads', async () => {
    const exited = watchExits();
    // A long replay takes the two threads started ahead and starts no other.
    expect(await Journal.replayLooksLong(dir, 1, 1)).to.equal(true);
    const long = await replay(2, 1, GENESIS_HASH, undefined, false, { started: new ReplayThreadStarts(threadScript, 2) });
    expect(long.error).to.equal(null);
    expect(threads).to.have.length(2);
    expect(long.events).to.deep.equal(sequential.events);
    await Promise.all(exited);
    // A replay of a few events within one segment takes none: they are stopped.
    const short = await replay(2, 1, GENESIS_HASH, 100, false, { started: new ReplayThreadStarts(threadScript, 2) });
    expect(short.error).to.equal(null);
    expect(short.events).to.deep.equal(sequential.events.slice(0, 100));
    expect(threads).to.have.length(4);
    await Promise.all(exited);
  });

  it('falls back and replays everything when a thread started ahead dies before its replay begins', async () => {
    const exited = watchExits();
    const started = new ReplayThreadStarts(threadScript, 2);
    await (threads[1] as Worker).terminate();
    await exited[1];
    const parallel = await replay(2, 1, GENESIS_HASH, undefined, false, { started });
    expect(parallel.error).to.equal(null);
    expect(fallbacks).to.have.length(1);
    expect(threads).to.have.length(2);
    expect(parallel.events).to.deep.equal(sequential.events);
  });

  it('passes a consumer error through without replaying again, and stops its threads', async () => {
    const { journal } = await Journal.open({ dir, segmentBytesMax: SEGMENT_BYTES, replayThreadMin: 1 });
    const seen: number[] = [];
    const exited: Promise<number>[] = [];
    replayThreadsHooks.onStart = (w) => {
      exited.push(new Promise((resolve) => w.once('exit', resolve)));
    };
    const err = await rejection(journal.replay(1, GENESIS_HASH, (rec) => {
      seen.push(rec.seq);
      if (rec.seq === 5_000) throw new Error('consumer refused seq 5000');
    }, undefined, testCodec.parse, { script: threadScript, codec: testCodec, threads: 2, rangeBytes: RANGE_BYTES }));
    await journal.close();
    expect(err.message).to.equal('consumer refused seq 5000');
    expect(seen).to.deep.equal(Array.from({ length: 5_000 }, (_, i) => i + 1));
    expect(exited).to.have.length(2);
    await Promise.all(exited);
  });
});

describe('platform/storage/journal replay on parsing threads: chunks larger than a page', () => {
  const SEGMENT_BYTES = 1024 * 1024;
  let threadScript: URL;
  let dir: string;
  let cleanup: () => Promise<void>;

  before(async () => {
    threadScript = await bundledScript(new URL('./fixtures/replay-thread.ts', import.meta.url));
    ({ dir, cleanup } = await tempDir());
    const { journal } = await Journal.open({ dir, segmentBytesMax: SEGMENT_BYTES });
    for (let seq = 1; seq <= 4_000; seq++) {
      // Runs of events with notes long enough that 256 of them hold more bytes than a page.
      const long = Math.floor(seq / 700) % 2 === 1;
      journal.append({ ...saleFields(seq), note: long ? `${seq} ${'é☕'.repeat(200)}` : `${seq}` });
    }
    await journal.close();
    expect(CHUNK_LINES * 200 * 5).to.be.greaterThan(PAGE_BYTES);
    expect((await segmentFiles(dir)).length).to.be.greaterThan(1);
  });

  after(async () => {
    await cleanup();
  });

  async function replayAll(parallel: boolean): Promise<{ events: unknown[]; fallback: Error | null; threads: number }> {
    const { journal } = await Journal.open({ dir, segmentBytesMax: SEGMENT_BYTES, replayThreadMin: 1 });
    const events: unknown[] = [];
    let fallback: Error | null = null;
    let threads = 0;
    replayThreadsHooks.onStart = () => {
      threads += 1;
    };
    const onDone = (_threads: number, why: Error | null): void => {
      fallback = why;
    };
    try {
      await journal.replay(1, GENESIS_HASH, (_rec, event) => {
        events.push(event);
      }, undefined, testCodec.parse, parallel ? { script: threadScript, codec: testCodec, threads: 2, onDone } : null);
    } finally {
      replayThreadsHooks.onStart = null;
      await journal.close();
    }
    return { events, fallback, threads };
  }

  it('hands on the events of a chunk too large for its page, which crosses in buffers of its own', async () => {
    const sequential = await replayAll(false);
    const parallel = await replayAll(true);
    expect(parallel.threads).to.equal(2);
    expect(parallel.fallback).to.equal(null);
    expect(parallel.events).to.have.length(4_000);
    expect(parallel.events).to.deep.equal(sequential.events);
  });
});
