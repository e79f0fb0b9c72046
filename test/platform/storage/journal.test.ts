import { expect } from 'chai';
import { constants } from 'node:fs';
import { mkdir, open, readdir, readFile, readlink, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { GENESIS_HASH, Journal, JournalBacklogError, segmentName } from '../../../platform/storage/index.ts';
import type { AppendResult, JournalRecord } from '../../../platform/storage/index.ts';
import { parseSegment, rejection, saleFields, segmentFiles, sha256, tempDir } from './helpers.ts';

describe('platform/storage/journal', () => {
  let dir: string;
  let cleanup: () => Promise<void>;

  beforeEach(async () => {
    ({ dir, cleanup } = await tempDir());
  });

  afterEach(async () => {
    await cleanup();
  });

  async function writeEvents(count: number, opts: { segmentBytesMax?: number } = {}): Promise<AppendResult[]> {
    const { journal } = await Journal.open({ dir, ...opts });
    const out: AppendResult[] = [];
    for (let i = 0; i < count; i++) out.push(journal.append(saleFields(journal.nextSeq)));
    await Promise.all(out.map((r) => r.durable));
    await journal.close();
    return out;
  }

  describe('append and reopen', () => {
    it('keeps every event, hash and link across a reopen, in the documented line format', async () => {
      const written = await writeEvents(300, { segmentBytesMax: 2048 });

      const names = await segmentFiles(dir);
      expect(names.length).to.be.greaterThan(10);
      let prev = GENESIS_HASH;
      let seq = 1;
      for (const name of names) {
        expect(name).to.equal(segmentName(seq));
        const content = await readFile(join(dir, name));
        expect(content.length).to.be.at.most(2048);
        for (const line of parseSegment(content)) {
          // The hash covers the exact event bytes, which begin with seq and prev.
          expect(line.h).to.equal(sha256(line.eventText));
          expect(line.eventText.startsWith(`{"seq":${seq},"prev":"${prev}","type":"sale"`)).to.equal(true);
          expect(line.h).to.equal(written[seq - 1]?.hash);
          expect(line.eventText).to.equal(written[seq - 1]?.text);
          prev = line.h;
          seq += 1;
        }
      }
      expect(seq - 1).to.equal(300);

      const { journal, report } = await Journal.open({ dir, segmentBytesMax: 2048 });
      expect(report).to.deep.equal({ segments: names.length, lastSeq: 300, lastHash: prev, truncated: null, torn: null });
      expect(journal.lastSeq).to.equal(300);
      expect(journal.nextSeq).to.equal(301);
      expect(journal.lastHash).to.equal(prev);
      const total = (await Promise.all(names.map((n) => stat(join(dir, n))))).reduce((sum, s) => sum + s.size, 0);
      expect(journal.bytes).to.equal(total);

      const seen: JournalRecord[] = [];
      const result = await journal.replay(1, GENESIS_HASH, (rec, event: { seq: number; prev: string; note: string }) => {
        expect(event.seq).to.equal(rec.seq);
        expect(event.prev).to.equal(rec.prev);
        expect(event.note).to.equal('café ☕');
        seen.push(rec);
      });
      expect(result).to.deep.equal({ count: 300, lastSeq: 300, lastHash: prev });
      expect(seen.map((r) => r.seq)).to.deep.equal(written.map((w) => w.seq));
      expect(seen.map((r) => r.hash)).to.deep.equal(written.map((w) => w.hash));
      expect(seen.map((r) => r.text)).to.deep.equal(written.map((w) => w.text));
      expect(await journal.verifyAll()).to.deep.equal({ count: 300, lastSeq: 300, lastHash: prev });

      // Appending continues the chain from where the last run stopped.
      const next = journal.append(saleFields(301));
      await next.durable;
      expect(JSON.parse(next.text)).to.include({ seq: 301, prev });
      await journal.close();
    });

    it('puts seq and prev first and keeps the caller field order', async () => {
      const { journal } = await Journal.open({ dir });
      const r = journal.append({ zeta: 1, seq: 1, alpha: { b: 2, a: 1 } });
      expect(r.text).to.equal(`{"seq":1,"prev":"${GENESIS_HASH}","zeta":1,"alpha":{"b":2,"a":1}}`);
      expect(r.hash).to.equal(sha256(r.text));
      // Fields that begin with seq (what the ledger appends), and seq alone, give the same layout.
      const r2 = journal.append({ seq: 2, zeta: 'z', alpha: [1] });
      expect(r2.text).to.equal(`{"seq":2,"prev":"${r.hash}","zeta":"z","alpha":[1]}`);
      const r3 = journal.append({ seq: 3 });
      expect(r3.text).to.equal(`{"seq":3,"prev":"${r2.hash}"}`);
      expect(r3.hash).to.equal(sha256(r3.text));
      await journal.close();
    });

    it('replays from the middle of a segment, and from lastSeq + 1 as a no-op that still checks the link', async () => {
      const written = await writeEvents(120, { segmentBytesMax: 4096 });
      const { journal } = await Journal.open({ dir, segmentBytesMax: 4096 });

      const from = 57;
      const seqs: number[] = [];
      const result = await journal.replay(from, written[from - 2]?.hash as string, (rec) => seqs.push(rec.seq));
      expect(seqs).to.deep.equal(Array.from({ length: 120 - from + 1 }, (_, i) => from + i));
      expect(result).to.deep.equal({ count: 64, lastSeq: 120, lastHash: written[119]?.hash });

      const none = await journal.replay(121, written[119]?.hash as string, () => expect.fail('nothing to replay'));
      expect(none).to.deep.equal({ count: 0, lastSeq: 120, lastHash: written[119]?.hash });
      await journal.close();
    });

    it('replays an empty journal from seq 1', async () => {
      const { journal } = await Journal.open({ dir });
      expect(await journal.replay(1, GENESIS_HASH, () => expect.fail('empty'))).to.deep.equal({ count: 0, lastSeq: 0, lastHash: GENESIS_HASH });
      expect(await journal.verifyAll()).to.deep.equal({ count: 0, lastSeq: 0, lastHash: GENESIS_HASH });
      await journal.close();
    });
  });

  describe('random access', () => {
    it('reads random seqs across many segments, before and after a reopen', async () => {
      const written = await writeEvents(400, { segmentBytesMax: 1500 });
      expect((await segmentFiles(dir)).length).to.be.greaterThan(40);

      // A small index cache forces evictions and lazy rebuilds.
      const { journal } = await Journal.open({ dir, segmentBytesMax: 1500, indexSegmentsMax: 3 });
      const picks = [1, 2, 400, 399, ...Array.from({ length: 150 }, () => 1 + Math.floor(Math.random() * 400))];
      for (const seq of picks) {
        const rec = await journal.read(seq);
        const w = written[seq - 1] as AppendResult;
        expect(rec).to.deep.equal({ seq, hash: w.hash, prev: seq === 1 ? GENESIS_HASH : written[seq - 2]?.hash, text: w.text });
      }
      // Concurrent reads of segments whose index is not loaded yet.
      const recs = await Promise.all([5, 6, 7, 205, 206, 333].map((s) => journal.read(s)));
      expect(recs.map((r) => r.hash)).to.deep.equal([5, 6, 7, 205, 206, 333].map((s) => written[s - 1]?.hash));

      await rejection(journal.read(0)).then((err) => expect(err).to.be.instanceOf(RangeError));
      await rejection(journal.read(401)).then((err) => expect(err).to.be.instanceOf(RangeError));
      await journal.close();
    });

    it('reads a seq that is still queued once it is durable', async () => {
      const { journal } = await Journal.open({ dir, segmentBytesMax: 512 });
      const results = Array.from({ length: 20 }, () => journal.append(saleFields(journal.nextSeq)));
      expect(journal.durableSeq).to.equal(0);
      const rec = await journal.read(17);
      expect(rec.hash).to.equal(results[16]?.hash);
      expect(journal.durableSeq).to.be.at.least(17);
      await journal.close();
    });

    it('iterates a range, verifies the chain, and can stop early', async () => {
      const written = await writeEvents(90, { segmentBytesMax: 1024 });
      const { journal } = await Journal.open({ dir, segmentBytesMax: 1024 });
      const got: JournalRecord[] = [];
      for await (const rec of journal.iterate(10, 75)) got.push(rec);
      expect(got.map((r) => r.seq)).to.deep.equal(Array.from({ length: 66 }, (_, i) => 10 + i));
      expect(got.map((r) => r.hash)).to.deep.equal(written.slice(9, 75).map((w) => w.hash));
      for (let i = 1; i < got.length; i++) expect(got[i]?.prev).to.equal(got[i - 1]?.hash);

      let n = 0;
      for await (const rec of journal.iterate(1)) {
        n += 1;
        if (rec.seq === 3) break;
      }
      expect(n).to.equal(3);

      const all: number[] = [];
      for await (const rec of journal.iterate(1)) all.push(rec.seq);
      expect(all.length).to.equal(90);
      const empty: number[] = [];
      for await (const rec of journal.iterate(91)) empty.push(rec.seq);
      expect(empty).to.deep.equal([]);
      await journal.close();
    });

    it('iterates and reads while appends keep rotating segments, yielding only durable events', async () => {
      const { journal } = await Journal.open({ dir, segmentBytesMax: 1024, indexSegmentsMax: 2 });
      const hashes = new Map<number, string>();
      let stop = false;
      const writers = Array.from({ length: 5 }, async () => {
        while (!stop) {
          const r = journal.append(saleFields(journal.nextSeq));
          hashes.set(r.seq, r.hash);
          await r.durable;
        }
      });
      let from = 1;
      // At least 20 rounds and until more than 20 events were read: a count, which a busy
      // machine reaches in more rounds, not a number of turns of the event loop.
      const deadline = Date.now() + 60_000;
      try {
        for (let round = 0; round < 20 || from <= 20; round++) {
          if (Date.now() > deadline) throw new Error(`only ${from - 1} events read in ${round} rounds`);
          await new Promise((r) => setImmediate(r));
          for await (const rec of journal.iterate(from)) {
            expect(rec.seq).to.equal(from);
            expect(rec.seq).to.be.at.most(journal.durableSeq);
            expect(rec.hash).to.equal(hashes.get(rec.seq));
            from += 1;
          }
          const seq = 1 + Math.floor(Math.random() * journal.lastSeq);
          expect((await journal.read(seq)).hash).to.equal(hashes.get(seq));
        }
      } finally {
        // Writers left running would append into a directory the next hook removes.
        stop = true;
        await Promise.all(writers);
      }
      expect(from).to.be.greaterThan(20);
      expect((await segmentFiles(dir)).length).to.be.greaterThan(3);
      await journal.close();
    });
  });

  describe('group commit', () => {
    it('shares fsyncs between 200 concurrent appends and resolves every durable', async () => {
      let fsyncs = 0;
      let lines = 0;
      const { journal } = await Journal.open({
        dir,
        onFsync: (ms, n) => {
          expect(ms).to.be.a('number');
          fsyncs += 1;
          lines += n;
        },
      });
      const acked: number[] = [];
      await Promise.all(
        Array.from({ length: 200 }, async (_, i) => {
          // Stagger the writers over a few turns so that they do not all arrive at once.
          for (let t = 0; t < i % 4; t++) await new Promise((r) => setImmediate(r));
          const r = journal.append(saleFields(journal.nextSeq));
          await r.durable;
          expect(journal.durableSeq).to.be.at.least(r.seq);
          acked.push(r.seq);
        }),
      );
      expect(acked.length).to.equal(200);
      expect(lines).to.equal(200);
      expect(fsyncs).to.be.at.most(10);
      await journal.close();
    });

    it('batches the appends of 20 writers that each wait for their own fsync', async () => {
      let fsyncs = 0;
      const { journal } = await Journal.open({ dir, onFsync: () => (fsyncs += 1) });
      await Promise.all(
        Array.from({ length: 20 }, async () => {
          for (let i = 0; i < 10; i++) await journal.append(saleFields(journal.nextSeq)).durable;
        }),
      );
      expect(journal.durableSeq).to.equal(200);
      // Each round of 20 appends should share one fsync; allow generous slack for timing.
      expect(fsyncs).to.be.at.most(40);
      expect((await journal.verifyAll()).count).to.equal(200);
      await journal.close();
    });

    it('issues the next batch\'s write before the callers of the batch just written run, and never two writes at once', async () => {
      const { journal } = await Journal.open({ dir });
      // Every write the journal's file handles make, from here on, and how many run at once.
      const probe = await open(join(dir, 'probe'), 'w');
      const proto = Object.getPrototypeOf(probe) as { write: (...args: unknown[]) => Promise<unknown> };
      await probe.close();
      const write = proto.write;
      const log: string[] = [];
      let writing = 0;
      let most = 0;
      proto.write = async function (this: unknown, ...args: unknown[]) {
        writing += 1;
        most = Math.max(most, writing);
        log.push('write');
        try {
          return await write.apply(this, args);
        } finally {
          writing -= 1;
        }
      };
      try {
        const first = journal.append(saleFields(1));
        const acked = [first.durable.then(() => log.push('acked 1'))];
        while (!log.includes('write')) await new Promise((r) => setImmediate(r));
        // Appended while the first line's write runs: it is the next batch.
        const second = journal.append(saleFields(2));
        acked.push(second.durable.then(() => log.push('acked 2')));
        await Promise.all(acked);
        expect(log).to.deep.equal(['write', 'write', 'acked 1', 'acked 2']);
        expect(most, 'writes at once').to.equal(1);
        await journal.close();
      } finally {
        proto.write = write;
      }
      const { journal: reopened } = await Journal.open({ dir, readOnly: true });
      expect(reopened.lastSeq).to.equal(2);
      await reopened.close();
    });

    it('writes segments through O_DSYNC descriptors, so a line is on the disk when its write returns, before durable resolves', async () => {
      // The open flags of this process's descriptors on the journal's segment files, from /proc.
      const segmentFlags = async (): Promise<number[]> => {
        const flags: number[] = [];
        for (const fd of await readdir('/proc/self/fd')) {
          const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
          if (!target.startsWith(dir) || !target.endsWith('.jsonl')) continue;
          const info = await readFile(`/proc/self/fdinfo/${fd}`, 'utf8').catch(() => '');
          const m = /^flags:\s+([0-7]+)$/m.exec(info);
          if (m?.[1] !== undefined) flags.push(parseInt(m[1], 8));
        }
        return flags;
      };
      // One segment per line: the first is created by the writer, and reopened segments are covered too.
      const { journal } = await Journal.open({ dir, segmentBytesMax: 1 });
      await journal.append(saleFields(1)).durable;
      const created = await segmentFlags();
      await journal.append(saleFields(2)).durable;
      const next = await segmentFlags();
      await journal.close();
      const { journal: reopened } = await Journal.open({ dir });
      await reopened.append(saleFields(3)).durable;
      const again = await segmentFlags();
      await reopened.close();
      for (const flags of [created, next, again]) {
        expect(flags).to.have.length(1);
        expect((flags[0] as number) & constants.O_DSYNC, 'the segment is open with O_DSYNC').to.equal(constants.O_DSYNC);
      }
      // The third line went to the second segment, reopened for writing.
      expect((await segmentFiles(dir)).length).to.equal(2);
    });

    it('starts a new segment when the next line would exceed segmentBytesMax', async () => {
      const { journal } = await Journal.open({ dir, segmentBytesMax: 1000 });
      const big = journal.append({ seq: 1, blob: 'x'.repeat(1500) });
      const small = journal.append({ seq: 2, blob: 'y' });
      await small.durable;
      await big.durable;
      await journal.close();
      // A line larger than the limit still gets a segment of its own.
      expect(await segmentFiles(dir)).to.deep.equal([segmentName(1), segmentName(2)]);
      expect((await stat(join(dir, segmentName(1)))).size).to.be.greaterThan(1500);
    });

    it('flushed() and close() wait for every queued line', async () => {
      const { journal } = await Journal.open({ dir });
      for (let i = 0; i < 50; i++) journal.append(saleFields(journal.nextSeq));
      await journal.flushed();
      expect(journal.durableSeq).to.equal(50);
      for (let i = 0; i < 50; i++) journal.append(saleFields(journal.nextSeq));
      await journal.close();
      const { journal: again, report } = await Journal.open({ dir });
      expect(report.lastSeq).to.equal(100);
      await again.close();
    });
  });

  describe('programmer errors', () => {
    it('refuses a seq that is not next, a caller prev, or an oversized event, and changes nothing', async () => {
      const { journal } = await Journal.open({ dir, eventBytesMax: 1000 });
      journal.append(saleFields(1));
      expect(() => journal.append(saleFields(3))).to.throw(/seq 3 is not the next seq 2/);
      expect(() => journal.append(saleFields(1))).to.throw(/not the next seq/);
      expect(() => journal.append({ seq: 2, prev: 'x' })).to.throw(/prev is set by the journal/);
      expect(() => journal.append({ seq: 2, blob: 'z'.repeat(2000) })).to.throw(RangeError);
      expect(() => journal.append({ seq: 2, blob: '☕'.repeat(400) })).to.throw(RangeError);
      expect(() => journal.append({ seq: 2, n: 10n })).to.throw(TypeError);
      expect(journal.nextSeq).to.equal(2);
      await journal.append(saleFields(2)).durable;
      await journal.close();
      expect(() => journal.append(saleFields(3))).to.throw(/closed/);
      expect((await segmentFiles(dir)).length).to.equal(1);
    });

    it('refuses appends with JournalBacklogError while too many bytes wait for the disk', async () => {
      const { journal } = await Journal.open({ dir, pendingBytesMax: 2000 });
      const queued = [];
      let refused: unknown = null;
      while (refused === null) {
        try {
          queued.push(journal.append(saleFields(journal.nextSeq)));
        } catch (err) {
          refused = err;
        }
      }
      expect(refused).to.be.instanceOf(JournalBacklogError);
      expect(refused).to.include({ code: 'VND_ERR_JOURNAL_BACKLOG' });
      expect(queued.length).to.be.within(3, 10);
      await Promise.all(queued.map((r) => r.durable));
      // Once the disk caught up the same append goes through.
      await journal.append(saleFields(journal.nextSeq)).durable;
      await journal.close();
    });

    it('rejects invalid limits', async () => {
      await rejection(Journal.open({ dir, segmentBytesMax: 0 })).then((err) => expect(err).to.be.instanceOf(RangeError));
      await rejection(Journal.open({ dir, eventBytesMax: 1.5 })).then((err) => expect(err).to.be.instanceOf(RangeError));
    });
  });

  describe('fatal write failure', () => {
    it('calls onFatal, rejects durable, and refuses further appends', async () => {
      const fatal: Error[] = [];
      const { journal } = await Journal.open({ dir, segmentBytesMax: 1, onFatal: (err) => fatal.push(err) });
      await journal.append(saleFields(1)).durable;
      // A directory squatting on the next segment's name makes creating that file fail.
      await mkdir(join(dir, segmentName(2)));
      const r = journal.append(saleFields(2));
      const err = await rejection(r.durable);
      expect((err as NodeJS.ErrnoException).code).to.equal('EEXIST');
      expect(fatal).to.deep.equal([err]);
      expect(() => journal.append(saleFields(3))).to.throw(err.message);
      await rejection(journal.read(1)).then((e) => expect(e).to.equal(err));
      await rejection(journal.close()).then((e) => expect(e).to.equal(err));
    });
  });
});
