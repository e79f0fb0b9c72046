import { appendFile, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import { initVendor } from '../../vendor-server/init.ts';
import { startVendorServer } from '../../vendor-server/server.ts';
import { verifyStore } from '../../vendor-server/backup.ts';
import { killHard, runCli, spawnVendorServer } from '../helpers/process.ts';
import { silentLogger, startTestVendor, tempDir } from '../helpers/vendor.ts';
import { http } from '../helpers/http.ts';
import { treeSnapshot } from './helpers-files.ts';
import { TEST_PIN_HASH_COST } from '../helpers/pin-cost.ts';

describe('vendor-server: one writer per data directory, and a read-only verify', function () {
  this.timeout(120_000);
  let dir: string;
  let cleanup: () => Promise<void>;

  beforeEach(async () => {
    ({ dir, cleanup } = await tempDir('mallpos-writer-'));
  });
  afterEach(async () => cleanup());

  it('refuses a second start on the same data directory with a clear message, and takes over a stale lock after a kill', async () => {
    const store = join(dir, 'store');
    await initVendor({ dataDir: store, demo: true, pinHashCost: TEST_PIN_HASH_COST });
    const first = await spawnVendorServer(store);
    try {
      const journalBefore = await treeSnapshot(join(store, 'ledger', 'journal'));
      const second = await runCli(['start', '--data-dir', store, '--port', '0']);
      expect(second.code).to.equal(1);
      expect(second.stderr).to.include('[VND_ERR_DATA_DIR_IN_USE]').and.include(`pid ${first.child.pid}`).and.include(first.url);
      // The refused process touched nothing: the first one still owns an unchanged journal and still serves.
      expect(await treeSnapshot(join(store, 'ledger', 'journal'))).to.deep.equal(journalBefore);
      expect((await http(`${first.url}/health`, 'GET')).status).to.equal(200);
      // In-process too: the same refusal, as a typed error.
      const err = await startVendorServer({ dataDir: store, port: 0, host: '127.0.0.1', logger: silentLogger(), defaultMetrics: false }).then(
        () => null,
        (e: unknown) => e as { code?: string },
      );
      expect(err?.code).to.equal('VND_ERR_DATA_DIR_IN_USE');
    } finally {
      await killHard(first.child);
    }
    // SIGKILL left the owner file behind: it is stale and taken over.
    const again = await spawnVendorServer(store);
    try {
      expect((await http(`${again.url}/health`, 'GET')).status).to.equal(200);
    } finally {
      await killHard(again.child);
    }
  });

  it('verify on a live store under writes changes no byte of it and never cuts a line being written', async () => {
    const store = join(dir, 'store');
    const init = await initVendor({ dataDir: store, demo: true, pinHashCost: TEST_PIN_HASH_COST });
    const server = await startTestVendor(store);
    // A second server in the same process is refused as well.
    const twin = await startVendorServer({ dataDir: store, port: 0, host: '127.0.0.1', logger: silentLogger(), defaultMetrics: false }).then(
      () => null,
      (e: unknown) => e as { code?: string },
    );
    expect(twin?.code).to.equal('VND_ERR_DATA_DIR_IN_USE');
    const acked: number[] = [];
    let writing = true;
    const writer = (async () => {
      for (let i = 0; writing; i++) {
        const res = await http(`${server.url}/api/issuances`, 'POST', { customerId: 'cust-000001', token: 'ACME', units: 1, reason: 'reward' }, {
          authorization: `Bearer ${init.operatorToken}`,
          'idempotency-key': `live-verify-${i}`,
        });
        if (res.status !== 200) throw new Error(`issuance failed: ${res.text}`);
        acked.push(res.body.seq as number);
      }
    })();
    try {
      for (let round = 0; round < 3; round++) {
        const v = await runCli(['verify', '--data-dir', store]);
        expect(v.code, v.stderr).to.equal(0);
        const report = JSON.parse(v.stdout) as { ok: boolean; lastSeq: number };
        expect(report.ok).to.equal(true);
      }
    } finally {
      writing = false;
      await writer;
    }
    const seq = server.ledger.state.seq;
    await server.close();
    expect(acked.length).to.be.greaterThan(0);
    // Every acknowledged event is there, the chain is whole, and no torn line was left behind.
    const after = await verifyStore(store);
    expect(after.lastSeq).to.equal(seq);
    expect(after.tornTail).to.equal(null);
    expect(Math.max(...acked)).to.be.at.most(seq);
  });

  it('verify on a stopped store with a torn tail reports it and changes nothing', async () => {
    const store = join(dir, 'store');
    await initVendor({ dataDir: store, demo: true, pinHashCost: TEST_PIN_HASH_COST });
    const journalDir = join(store, 'ledger', 'journal');
    const [segment] = (await readdir(journalDir)).sort().reverse();
    if (segment === undefined) throw new Error('a segment');
    const size = (await readFile(join(journalDir, segment))).length;
    await appendFile(join(journalDir, segment), '{"h":"0123');
    const before = await treeSnapshot(store);
    const v = await runCli(['verify', '--data-dir', store]);
    expect(v.code, v.stderr).to.equal(0);
    const report = JSON.parse(v.stdout) as { tornTail: { segment: string; offset: number; bytesDropped: number } };
    expect(report.tornTail).to.deep.equal({ segment, offset: size, bytesDropped: 10 });
    expect(v.stderr).to.include(segment).and.include('incomplete line of 10 bytes').and.include('left as it is');
    expect(await treeSnapshot(store)).to.deep.equal(before);
  });
});
