import { createHash, randomUUID } from 'node:crypto';
import { cp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import type { ZReport } from '../../core/index.ts';
import { sealCheckpoint, unsealCheckpoint } from '../../platform/storage/index.ts';
import { verifyStore } from '../../vendor-server/backup.ts';
import { initVendor } from '../../vendor-server/init.ts';
import { http } from '../helpers/http.ts';
import { killHard, runCli, spawnVendorServer, until, type ChildServer } from '../helpers/process.ts';
import { startDemoStore, tempDir, type DemoStore } from '../helpers/vendor.ts';
import { TEST_PIN_HASH_COST } from '../helpers/pin-cost.ts';

const PEN = '4006381333931';

/** The journal's lines, in seq order across segments. */
async function journalFiles(dataDir: string): Promise<string[]> {
  const dir = join(dataDir, 'ledger', 'journal');
  return (await readdir(dir)).filter((f) => f.endsWith('.jsonl')).sort().map((f) => join(dir, f));
}

/**
 * Rewrites one event of a copied journal and recomputes the hash chain from it on, as
 * someone with write access to the disk would: every line still verifies.
 */
async function rewriteEvent(dataDir: string, seq: number, edit: (event: Record<string, unknown>) => void): Promise<void> {
  let prev: string | null = null;
  for (const file of await journalFiles(dataDir)) {
    const lines = (await readFile(file, 'utf8')).split('\n').filter((l) => l !== '');
    const out: string[] = [];
    for (const line of lines) {
      const text = line.slice(76, -1);
      const event = JSON.parse(text) as Record<string, unknown> & { seq: number };
      let newText = text;
      if (event.seq === seq) {
        edit(event);
        newText = JSON.stringify(event);
      } else if (prev !== null) {
        event['prev'] = prev;
        newText = JSON.stringify(event);
      }
      if (event.seq >= seq) prev = createHash('sha256').update(newText).digest('hex');
      out.push(`{"h":"${createHash('sha256').update(newText).digest('hex')}","e":${newText}}`);
    }
    await writeFile(file, `${out.join('\n')}\n`);
  }
}

/** The numbers of the Z reports in a journal, in order (a torn last line is skipped). */
async function zNumbers(dataDir: string): Promise<number[]> {
  const numbers: number[] = [];
  for (const file of await journalFiles(dataDir)) {
    for (const line of (await readFile(file, 'utf8')).split('\n')) {
      if (!line.includes('"type":"period.closed"') || !line.endsWith('}}')) continue;
      const e = JSON.parse(line.slice(76, -1)) as { data: ZReport };
      if (e.data.kind === 'Z') numbers.push(e.data.zNumber);
    }
  }
  return numbers;
}

describe('vendor server: Z reports and verify', function () {
  this.timeout(120_000);
  let store: DemoStore;

  before(async () => {
    store = await startDemoStore();
  });
  after(async () => store.close());

  it('verify checks every closure against the journal and names the Z that was changed, even with a recomputed hash chain', async () => {
    const till = await store.openTill();
    const key = () => `${till.terminalId}:${randomUUID()}`;
    // Shifts are off in this store: sales need none.
    for (let i = 0; i < 3; i++) {
      const ack = await new Promise<{ ok: boolean }>((resolve) => {
        till.socket.emit('sale:commit', { key: key(), lines: [{ code: PEN, qty: 1 + i }], card: null, tenders: [], cashTenderedMinor: 5000 }, resolve);
      });
      expect(ack.ok).to.equal(true);
    }
    const z1 = (await store.operator('POST', '/api/closures/z', {}, { 'idempotency-key': randomUUID() })).body as ZReport;
    const sale = await new Promise<{ ok: boolean }>((resolve) => {
      till.socket.emit('sale:commit', { key: key(), lines: [{ code: PEN, qty: 1 }], card: null, tenders: [], cashTenderedMinor: 450 }, resolve);
    });
    expect(sale.ok).to.equal(true);
    const z2 = (await store.operator('POST', '/api/closures/z', {}, { 'idempotency-key': randomUUID() })).body as ZReport;
    expect([z1.zNumber, z2.zNumber]).to.deep.equal([1, 2]);
    expect(z1.totals.salesCount).to.equal(3);
    expect(z1.totals.grossMinor).to.equal(450 * 6);
    expect(z2.totals.salesCount).to.equal(1);

    // The live store verifies, closures included.
    const ok = await verifyStore(store.dir);
    expect(ok.closures.z).to.equal(2);
    expect(ok.closures.grandTotalMinor).to.equal(450 * 7);

    // A copy whose first Z claims 100 more sales revenue, with the chain recomputed.
    await store.server.close();
    const { dir: copy, cleanup } = await tempDir('mallpos-z-tamper-');
    try {
      await cp(store.dir, copy, { recursive: true });
      await rm(join(copy, 'run'), { recursive: true, force: true });
      await rm(join(copy, 'ledger', 'state'), { recursive: true, force: true });
      const zSeq = z1.toSeq + 1;
      await rewriteEvent(copy, zSeq, (e) => {
        const data = e['data'] as ZReport;
        data.totals.grossMinor += 100;
        data.totals.netMinor += 100;
      });
      const verify = await runCli(['verify', '--data-dir', copy]);
      expect(verify.code).to.equal(1);
      expect(verify.stderr).to.include('[VND_ERR_CLOSURE_MISMATCH]').and.include(`Z 1 of ${z1.day} (journal seq ${zSeq})`).and.include('grossMinor says 2800, the journal gives 2700');

      // The same change with a grand total to match is still caught: by its signature.
      await rm(copy, { recursive: true, force: true });
      await cp(store.dir, copy, { recursive: true });
      await rm(join(copy, 'run'), { recursive: true, force: true });
      await rm(join(copy, 'ledger', 'state'), { recursive: true, force: true });
      await rewriteEvent(copy, zSeq, (e) => {
        (e['data'] as ZReport).storeName = 'Someone else';
      });
      const verify2 = await runCli(['verify', '--data-dir', copy]);
      expect(verify2.code).to.equal(1);
      expect(verify2.stderr).to.include('[VND_ERR_CLOSURE_MISMATCH]').and.include(`Z 1 of ${z1.day}`).and.include('signature covers another body');

      // A checkpoint whose grand total was raised, resealed: verify compares it with a replay.
      await rm(copy, { recursive: true, force: true });
      await cp(store.dir, copy, { recursive: true });
      await rm(join(copy, 'run'), { recursive: true, force: true });
      const file = join(copy, 'ledger', 'state', 'checkpoint.json');
      const { header, stateText } = unsealCheckpoint(file, await readFile(file, 'utf8'));
      const grand = `"grandTotalMinor":${z2.grandTotalMinor}},"terminals"`;
      expect(stateText).to.include(grand);
      await writeFile(file, sealCheckpoint(header.seq, header.hash, stateText.replace(grand, `"grandTotalMinor":${z2.grandTotalMinor + 5000}},"terminals"`)));
      const verify3 = await runCli(['verify', '--data-dir', copy]);
      expect(verify3.code).to.equal(1);
      expect(verify3.stderr).to.include('[VND_ERR_STATE_CORRUPT]').and.include('cashier\'s day (store: grandTotalMinor)');
    } finally {
      await cleanup();
      await store.restart();
    }
  });
});

describe('vendor server: a SIGKILL during the Z', function () {
  this.timeout(300_000);
  let dir: string;
  let cleanup: () => Promise<void>;
  let token: string;
  let server: (ChildServer & { caPem: string }) | null = null;

  before(async () => {
    ({ dir, cleanup } = await tempDir('mallpos-z-kill-'));
    const init = await initVendor({ dataDir: dir, demo: true, mallFloat: false, pinHashCost: TEST_PIN_HASH_COST });
    token = init.operatorToken;
  });
  after(async () => {
    if (server !== null) await killHard(server.child);
    await cleanup();
  });

  const op = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    if (server === null) throw new Error('no server');
    return http(`${server.url}${path}`, method, body, { authorization: `Bearer ${token}`, ...headers });
  };

  it('leaves exactly one Z with each number, and the same key answers it after the restart', async () => {
    const ROUNDS = 4;
    for (let round = 0; round < ROUNDS; round++) {
      server = await spawnVendorServer(dir);
      // An event for the Z to cover: a reward (no cash, no sale) keeps the round cheap.
      const issued = await op('POST', '/api/issuances', { customerId: 'cust-000001', token: 'ACME', units: 1, reason: 'reward' }, { 'idempotency-key': randomUUID() });
      expect(issued.status, issued.text).to.equal(200);
      const zKey = randomUUID();
      // The Z is sent and the server killed without waiting for its answer: at once in
      // even rounds (before the append, most likely), and in odd rounds as soon as the Z's
      // line is in the journal file (written, its fsync and answer perhaps not yet).
      const sent = op('POST', '/api/closures/z', {}, { 'idempotency-key': zKey }).catch(() => null);
      if (round % 2 === 1) await until('the Z in the journal', async () => ((await zNumbers(dir)).length > round ? true : undefined), 30_000);
      await killHard(server.child);
      await sent;
      server = await spawnVendorServer(dir);
      const z = await op('POST', '/api/closures/z', {}, { 'idempotency-key': zKey });
      expect(z.status, z.text).to.equal(200);
      expect((z.body as ZReport).zNumber).to.equal(round + 1);
      // The same key again: the same Z.
      expect((await op('POST', '/api/closures/z', {}, { 'idempotency-key': zKey })).body).to.deep.equal(z.body);
      await killHard(server.child);
      server = null;
    }
    // The journal holds each Z number exactly once, and every closure verifies.
    expect(await zNumbers(dir)).to.deep.equal(Array.from({ length: ROUNDS }, (_, i) => i + 1));
    const verify = await runCli(['verify', '--data-dir', dir]);
    expect(verify.code, verify.stderr).to.equal(0);
    expect(JSON.parse(verify.stdout).closures.z).to.equal(ROUNDS);
  });
});
