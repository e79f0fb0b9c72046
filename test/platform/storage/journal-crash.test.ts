import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { GENESIS_HASH, Journal } from '../../../platform/storage/index.ts';
import { bundledScript } from '../../helpers/bundled-script.ts';
import { segmentFiles, tempDir } from './helpers.ts';

const projectRoot = fileURLToPath(new URL('../../../', import.meta.url));
const SEGMENT_BYTES = 16 * 1024;
const ROUNDS = 10;

interface Round {
  opened: { lastSeq: number; dropped: number };
  acked: Map<number, string>;
}

/**
 * Runs the writer (its script bundled) until it has acknowledged a few events, then
 * SIGKILLs it at a random moment and returns what it acknowledged.
 */
function runAndKill(writer: string, dir: string): Promise<Round> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [writer, dir, String(SEGMENT_BYTES)], {
      cwd: projectRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    let armed = false;
    // A bound on a hang (a writer that never acknowledges), generous for a busy machine.
    const timeout = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      out += chunk;
      // Wait for the first acknowledgement so that every round writes something.
      if (!armed && /\n\d+ [0-9a-f]{64}\n/.test(out)) {
        armed = true;
        setTimeout(() => child.kill('SIGKILL'), Math.floor(Math.random() * 150));
      }
    });
    child.stderr.on('data', (chunk: string) => (err += chunk));
    child.on('error', reject);
    child.on('close', (_code, signal) => {
      clearTimeout(timeout);
      if (signal !== 'SIGKILL' || !armed) {
        reject(new Error(`writer ended with ${String(signal)} before it was killed on purpose: ${err}`));
        return;
      }
      const lines = out.split('\n');
      // The last line may be cut mid-write by the kill; a partial line was never printed in full.
      if (!out.endsWith('\n')) lines.pop();
      const head = /^open (\d+) (\d+)$/.exec(lines[0] ?? '');
      if (head === null) {
        reject(new Error(`writer did not report its open: ${out.slice(0, 200)} ${err}`));
        return;
      }
      const acked = new Map<number, string>();
      for (const line of lines.slice(1)) {
        if (line === '') continue;
        const [seq, hash] = line.split(' ');
        acked.set(Number(seq), hash as string);
      }
      resolve({ opened: { lastSeq: Number(head[1]), dropped: Number(head[2]) }, acked });
    });
  });
}

describe('platform/storage/journal crash safety', function () {
  this.timeout(120_000);

  it(`keeps every acknowledged event through ${ROUNDS} SIGKILLs of a writer with 20 concurrent loops`, async () => {
    const writer = fileURLToPath(await bundledScript(new URL('./fixtures/journal-writer.ts', import.meta.url)));
    const { dir, cleanup } = await tempDir();
    try {
      const everAcked = new Map<number, string>();
      let previousLast = 0;
      for (let round = 0; round < ROUNDS; round++) {
        const { opened, acked } = await runAndKill(writer, dir);
        // The writer continued from where the last round's journal ended.
        expect(opened.lastSeq, `round ${round} reopened at the tail`).to.equal(previousLast);
        for (const [seq, hash] of acked) everAcked.set(seq, hash);

        const { journal, report } = await Journal.open({ dir, segmentBytesMax: SEGMENT_BYTES });
        try {
          const verified = await journal.verifyAll();
          expect(verified.lastSeq).to.equal(report.lastSeq);
          const maxAcked = Math.max(...acked.keys());
          expect(report.lastSeq, `round ${round}: every acknowledged seq is in the journal`).to.be.at.least(maxAcked);
          // Every event acknowledged in any round is still there with the same hash.
          const hashes = new Map<number, string>();
          let prev = GENESIS_HASH;
          for await (const rec of journal.iterate(1)) {
            expect(rec.prev).to.equal(prev);
            prev = rec.hash;
            hashes.set(rec.seq, rec.hash);
          }
          for (const [seq, hash] of everAcked) expect(hashes.get(seq), `seq ${seq}`).to.equal(hash);
          previousLast = report.lastSeq;
        } finally {
          await journal.close();
        }
      }
      expect(everAcked.size).to.be.greaterThan(ROUNDS);
      expect((await segmentFiles(dir)).length).to.be.greaterThan(1);
    } finally {
      await cleanup();
    }
  });
});
