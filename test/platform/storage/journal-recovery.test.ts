import { expect } from 'chai';
import { appendFile, readFile, rename, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GENESIS_HASH, Journal, JournalCorruptError, segmentName } from '../../../platform/storage/index.ts';
import type { AppendResult } from '../../../platform/storage/index.ts';
import { lineFor, parseSegment, rejection, saleFields, segmentFiles, snapshot, tempDir } from './helpers.ts';

const SEGMENT_BYTES = 2048;

describe('platform/storage/journal recovery', () => {
  let dir: string;
  let cleanup: () => Promise<void>;

  beforeEach(async () => {
    ({ dir, cleanup } = await tempDir());
  });

  afterEach(async () => {
    await cleanup();
  });

  async function writeEvents(count: number): Promise<AppendResult[]> {
    const { journal } = await Journal.open({ dir, segmentBytesMax: SEGMENT_BYTES });
    const out: AppendResult[] = [];
    for (let i = 0; i < count; i++) out.push(journal.append(saleFields(journal.nextSeq)));
    await journal.close();
    return out;
  }

  async function openJournal() {
    return Journal.open({ dir, segmentBytesMax: SEGMENT_BYTES });
  }

  async function lastSegment(): Promise<string> {
    return join(dir, (await segmentFiles(dir)).at(-1) as string);
  }

  /** The segment and line holding seq, found with the test's own parser. */
  async function locate(seq: number) {
    const names = await segmentFiles(dir);
    for (const name of names) {
      const content = await readFile(join(dir, name));
      const lines = parseSegment(content);
      const i = lines.findIndex((l) => (JSON.parse(l.eventText) as { seq: number }).seq === seq);
      if (i !== -1) return { name, path: join(dir, name), content, lines, i, line: lines[i] as (typeof lines)[number], isLast: name === names.at(-1) };
    }
    throw new Error(`seq ${seq} not found`);
  }

  /** Seqs held by the k-th segment (negative k counts from the end), by the test's own parser. */
  async function seqsOf(k: number): Promise<number[]> {
    const name = (await segmentFiles(dir)).at(k) as string;
    return parseSegment(await readFile(join(dir, name))).map((l) => (JSON.parse(l.eventText) as { seq: number }).seq);
  }

  /** A seq strictly inside the k-th segment, so that only a full scan of it can notice a change. */
  async function innerSeq(k: number): Promise<number> {
    const seqs = await seqsOf(k);
    expect(seqs.length, 'segment has an inner line').to.be.at.least(3);
    return seqs[1] as number;
  }

  async function rewriteLine(seq: number, newLine: string): Promise<{ name: string; offset: number }> {
    const at = await locate(seq);
    const before = at.content.subarray(0, at.line.offset);
    const after = at.content.subarray(at.line.offset + Buffer.byteLength(at.line.line) + 1);
    await writeFile(at.path, Buffer.concat([before, Buffer.from(newLine), after]));
    return { name: at.name, offset: at.line.offset };
  }

  async function corruptError(promise: Promise<unknown>): Promise<JournalCorruptError> {
    const err = await rejection(promise);
    expect(err).to.be.instanceOf(JournalCorruptError);
    return err as JournalCorruptError;
  }

  describe('torn tail', () => {
    it('cuts off garbage without a newline, reports it, and keeps every acknowledged event', async () => {
      const written = await writeEvents(60);
      const path = await lastSegment();
      const size = (await stat(path)).size;
      const torn = '{"h":"3f2a9c","e":{"seq":61,"pre';
      await appendFile(path, torn);

      const { journal, report } = await openJournal();
      expect(report.truncated).to.deep.equal({ segment: path.split('/').at(-1), offset: size, bytesDropped: torn.length });
      expect(report.lastSeq).to.equal(60);
      expect(report.lastHash).to.equal(written[59]?.hash);
      expect((await stat(path)).size).to.equal(size);
      expect((await journal.verifyAll()).count).to.equal(60);

      // The journal carries on where the acknowledged history ends.
      await journal.append(saleFields(61)).durable;
      await journal.close();
      const again = await openJournal();
      expect(again.report.truncated).to.equal(null);
      expect(again.report.lastSeq).to.equal(61);
      await again.journal.close();
    });

    it('drops even a well-formed final line that lacks its newline, since it was never acknowledged', async () => {
      const written = await writeEvents(10);
      const path = await lastSegment();
      const content = await readFile(path);
      await truncate(path, content.length - 1);
      const lastLine = parseSegment(content).at(-1);

      const { journal, report } = await openJournal();
      expect(report.truncated?.offset).to.equal(lastLine?.offset);
      expect(report.truncated?.bytesDropped).to.equal(Buffer.byteLength(lastLine?.line ?? ''));
      expect(report.lastSeq).to.equal(9);
      expect(report.lastHash).to.equal(written[8]?.hash);
      await journal.close();
    });

    it('keeps a new segment that holds only a torn line, now empty, and appends into it', async () => {
      const written = await writeEvents(30);
      const next = segmentName(31);
      await writeFile(join(dir, next), '{"h":"00');

      const { journal, report } = await openJournal();
      expect(report.truncated).to.deep.equal({ segment: next, offset: 0, bytesDropped: 8 });
      expect(report.lastSeq).to.equal(30);
      expect(report.lastHash).to.equal(written[29]?.hash);
      const r = journal.append(saleFields(31));
      await r.durable;
      await journal.close();
      expect((await segmentFiles(dir)).at(-1)).to.equal(next);
      const again = await openJournal();
      expect(again.report.lastSeq).to.equal(31);
      expect((await again.journal.read(31)).hash).to.equal(r.hash);
      await again.journal.close();
    });
  });

  describe('corruption is reported precisely and never repaired', () => {
    it('a flipped byte in the last segment: open throws hash-mismatch at that line and leaves the files alone', async () => {
      await writeEvents(97);
      const seq = await innerSeq(-1);
      const at = await locate(seq);
      expect(at.isLast).to.equal(true);
      // Flip a letter inside the event's payload ("sale" -> "salf").
      const pos = at.line.offset + at.line.line.indexOf('"sale"') + 4;
      const bytes = Buffer.from(at.content);
      bytes[pos] = 'f'.charCodeAt(0);
      await writeFile(at.path, bytes);
      const before = await snapshot(dir);

      const err = await corruptError(openJournal());
      expect(err).to.include({ code: 'VND_ERR_JOURNAL_CORRUPT', segment: at.name, offset: at.line.offset, seq, reason: 'hash-mismatch' });
      expect(err.message).to.match(new RegExp(`^journal corrupt in ${at.name} at byte ${at.line.offset} \\(seq ${seq}\\): hash mismatch`));
      expect(await snapshot(dir)).to.deep.equal(before);
    });

    it('a flipped byte in an earlier segment: replay, verifyAll and read throw at that line', async () => {
      await writeEvents(97);
      const seq = await innerSeq(2);
      const at = await locate(seq);
      expect(at.isLast).to.equal(false);
      const bytes = Buffer.from(at.content);
      bytes[at.line.offset + at.line.line.indexOf('"sale"') + 2] = 'e'.charCodeAt(0);
      await writeFile(at.path, bytes);

      // Open checks only segment boundaries outside the last segment, so it succeeds.
      const { journal } = await openJournal();
      const expected = { segment: at.name, offset: at.line.offset, seq, reason: 'hash-mismatch' };
      const replayed: number[] = [];
      const err = await corruptError(journal.replay(1, GENESIS_HASH, (rec) => replayed.push(rec.seq)));
      expect(err).to.include(expected);
      // Everything before the bad line was delivered in order, nothing after it.
      expect(replayed).to.deep.equal(Array.from({ length: seq - 1 }, (_, i) => i + 1));
      expect(await corruptError(journal.verifyAll())).to.include(expected);
      expect(await corruptError(journal.read(seq))).to.include(expected);
      const iterated = (async () => {
        for await (const rec of journal.iterate(seq - 1)) expect(rec.seq).to.be.below(seq);
      })();
      expect(await corruptError(iterated)).to.include(expected);
      await journal.close();
    });

    it('a changed prev with a recomputed hash is a chain break', async () => {
      await writeEvents(97);
      const seq = await innerSeq(-1);
      const at = await locate(seq);
      const forged = at.line.eventText.replace(/"prev":"[0-9a-f]{64}"/, `"prev":"${'ab'.repeat(32)}"`);
      const { name, offset } = await rewriteLine(seq, lineFor(forged));
      const before = await snapshot(dir);

      const err = await corruptError(openJournal());
      expect(err).to.include({ segment: name, offset, seq, reason: 'chain-break' });
      expect(err.message).to.include('chain break');
      expect(await snapshot(dir)).to.deep.equal(before);
    });

    it('a forged first line of a closed segment breaks the chain at the segment boundary', async () => {
      await writeEvents(97);
      const seq = (await seqsOf(2))[0] as number;
      const at = await locate(seq);
      const forged = at.line.eventText.replace(/"prev":"[0-9a-f]{64}"/, `"prev":"${'cd'.repeat(32)}"`);
      const { name, offset } = await rewriteLine(seq, lineFor(forged));
      expect(offset).to.equal(0);
      expect(await corruptError(openJournal())).to.include({ segment: name, offset: 0, seq, reason: 'chain-break' });
    });

    it('a removed line in the last segment is a seq gap at open', async () => {
      await writeEvents(97);
      const seq = await innerSeq(-1);
      const last = await rewriteLine(seq, '');
      const err = await corruptError(openJournal());
      expect(err).to.include({ segment: last.name, offset: last.offset, seq, reason: 'seq-gap' });
      expect(err.detail).to.equal(`expected seq ${seq}, found seq ${seq + 1}`);
    });

    it('a removed line in an earlier segment is found by replay and by read', async () => {
      await writeEvents(97);
      const seq = await innerSeq(2);
      const gone = await rewriteLine(seq, '');
      const { journal } = await openJournal();
      expect(await corruptError(journal.replay(1, GENESIS_HASH, () => undefined))).to.include({
        segment: gone.name, offset: gone.offset, seq, reason: 'seq-gap',
      });
      // The segment is one line short of what its neighbours' names promise.
      expect(await corruptError(journal.read(seq - 1))).to.include({ segment: gone.name, reason: 'seq-gap' });
      await journal.close();
    });

    it('a duplicated line is out of order', async () => {
      await writeEvents(97);
      const seq = await innerSeq(-1);
      const at = await locate(seq);
      const { name } = await rewriteLine(seq, `${at.line.line}\n${at.line.line}\n`);
      const offset = at.line.offset + Buffer.byteLength(at.line.line) + 1;
      expect(await corruptError(openJournal())).to.include({ segment: name, offset, seq: seq + 1, reason: 'seq-disorder' });
    });

    it('a missing segment is a seq gap at open', async () => {
      await writeEvents(97);
      const names = await segmentFiles(dir);
      expect(names.length).to.be.greaterThan(4);
      const firstMissing = (await seqsOf(2))[0];
      await rm(join(dir, names[2] as string));
      const err = await corruptError(openJournal());
      expect(err).to.include({ segment: names[3], offset: 0, seq: firstMissing, reason: 'seq-gap' });
    });

    it('an earlier segment without its final newline is an incomplete line, not a torn tail', async () => {
      await writeEvents(97);
      const names = await segmentFiles(dir);
      const path = join(dir, names[1] as string);
      const size = (await stat(path)).size;
      await truncate(path, size - 1);
      const before = await snapshot(dir);
      expect(await corruptError(openJournal())).to.include({ segment: names[1], reason: 'incomplete-line' });
      expect(await snapshot(dir)).to.deep.equal(before);
    });

    it('a line that is not a journal line is malformed', async () => {
      await writeEvents(97);
      const seq = await innerSeq(-1);
      const { name, offset } = await rewriteLine(seq, '{"hello":"world"}\n');
      expect(await corruptError(openJournal())).to.include({ segment: name, offset, seq, reason: 'malformed' });
    });

    it('an event that is not valid JSON is malformed even with a matching hash', async () => {
      await writeEvents(20);
      const at = await locate(5);
      // Keep seq and prev intact so only the JSON check can catch it.
      const broken = at.line.eventText.replace('"type":"sale"', '"type":sale');
      const { name, offset } = await rewriteLine(5, lineFor(broken));
      const { journal } = await openJournal();
      const err = await corruptError(journal.replay(1, GENESIS_HASH, () => undefined));
      expect(err).to.include({ segment: name, offset, seq: 5, reason: 'malformed' });
      await journal.close();
    });

    it('attack: of problems in several segments, open reports the first in journal order, whichever is read first', async () => {
      await writeEvents(97);
      const names = await segmentFiles(dir);
      expect(names.length).to.be.greaterThan(5);
      // A damaged last line in segment 1, a missing segment 3, a damaged line in the last.
      const closedLast = (await seqsOf(1)).at(-1) as number;
      const segment1 = join(dir, names[1] as string);
      const intact = await readFile(segment1);
      const gapAt = (await seqsOf(3))[0] as number;
      await rewriteLine(await innerSeq(-1), '{"hello":"world"}\n');
      await rm(join(dir, names[3] as string));
      const closed = await rewriteLine(closedLast, '{"hello":"world"}\n');
      for (let round = 0; round < 3; round++) {
        expect(await corruptError(openJournal())).to.include({ segment: closed.name, offset: closed.offset, reason: 'malformed' });
      }
      // Segment 1 whole again: the gap comes next, before the last segment's damage.
      await writeFile(segment1, intact);
      expect(await corruptError(openJournal())).to.include({ segment: names[4], seq: gapAt, reason: 'seq-gap' });
    });

    it('a segment renamed out of place is a segment mismatch', async () => {
      await writeEvents(97);
      const names = await segmentFiles(dir);
      const first = (await seqsOf(3))[0] as number;
      const wrong = segmentName(first + 1);
      await rename(join(dir, names[3] as string), join(dir, wrong));
      const err = await corruptError(openJournal());
      expect(err).to.include({ segment: wrong, offset: 0, seq: first + 1, reason: 'segment-mismatch' });
      expect(err.detail).to.equal(`the file is named for seq ${first + 1} but its first event is seq ${first}`);
    });

    it('replay refuses a checkpoint that does not link to the journal', async () => {
      const written = await writeEvents(40);
      const { journal } = await openJournal();
      const wrong = await corruptError(journal.replay(21, written[5]?.hash as string, () => undefined));
      expect(wrong).to.include({ seq: 21, reason: 'chain-break' });
      const atEnd = await corruptError(journal.replay(41, GENESIS_HASH, () => undefined));
      expect(atEnd).to.include({ seq: 41, reason: 'chain-break' });
      const ahead = await corruptError(journal.replay(50, GENESIS_HASH, () => undefined));
      expect(ahead).to.include({ seq: 41, reason: 'seq-gap' });
      await journal.close();
    });
  });
});
