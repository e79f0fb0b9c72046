import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import type { JournalEvent } from '../../core/index.ts';
import { GENESIS_HASH } from '../../platform/storage/index.ts';
import { initVendor } from '../../vendor-server/init.ts';
import { applyEvent, emptyState } from '../../vendor-server/ledger/state.ts';
import { openLedger } from '../../vendor-server/ledger/store.ts';
import { http } from '../helpers/http.ts';
import { runCli, until } from '../helpers/process.ts';
import { startTestVendor, tempDir } from '../helpers/vendor.ts';
import { treeSnapshot } from './helpers-files.ts';
import { TEST_PIN_HASH_COST } from '../helpers/pin-cost.ts';

/** The state the journal in `ledgerDir` gives at `seq`, replayed from seq 1. */
async function stateAt(ledgerDir: string, seq: number) {
  const opened = await openLedger({ dataDir: ledgerDir, vendorId: 'acme', readOnly: true });
  try {
    const state = emptyState('acme', GENESIS_HASH);
    for await (const rec of opened.journal.iterate(1, seq)) applyEvent(state, JSON.parse(rec.text) as JournalEvent, rec.hash);
    return state;
  } finally {
    await opened.journal.close();
  }
}

describe('vendor-server: online backup and restore', function () {
  this.timeout(180_000);
  let dir: string;
  let cleanup: () => Promise<void>;

  beforeEach(async () => {
    ({ dir, cleanup } = await tempDir('mallpos-backup-'));
  });
  afterEach(async () => cleanup());

  it('backs up while sales go on, restores elsewhere, and the restored store equals the original at the backup seq', async () => {
    const store = join(dir, 'store');
    const init = await initVendor({ dataDir: store, demo: true, pinHashCost: TEST_PIN_HASH_COST });
    // Small segments, so that the backup spans closed segments and a growing last one.
    const configPath = join(store, 'config.json');
    await writeFile(configPath, JSON.stringify({ ...JSON.parse(await readFile(configPath, 'utf8')), segmentBytesMax: 8192, checkpointEveryEvents: 40 }));
    const server = await startTestVendor(store);
    let writing = true;
    let written = 0;
    const writers = [1, 2, 3].map(async (w) => {
      for (let i = 0; writing; i++) {
        const res = await http(`${server.url}/api/issuances`, 'POST', { customerId: `cust-00000${w}`, token: 'ACME', units: 1 + (i % 7), reason: 'reward' }, {
          authorization: `Bearer ${init.operatorToken}`,
          'idempotency-key': `load-${w}-${i}`,
        });
        if (res.status !== 200) throw new Error(res.text);
        written += 1;
      }
    });
    let backup;
    try {
      await until('60 writes', () => (written >= 60 ? true : undefined));
      backup = await runCli(['backup', '--data-dir', store, '--to', join(dir, 'backup')]);
      const after = written;
      await until('30 more writes', () => (written >= after + 30 ? true : undefined));
    } finally {
      writing = false;
      await Promise.all(writers);
    }
    const finalSeq = server.ledger.state.seq;
    await server.close();
    expect(backup.code, backup.stderr).to.equal(0);
    // Piped, so no progress line: only the result.
    expect(backup.stderr).to.equal('');
    const made = JSON.parse(backup.stdout) as { seq: number; lastHash: string; checkpointSeq: number; files: number };
    expect(made.seq).to.be.greaterThan(60).and.lessThan(finalSeq);
    expect(made.checkpointSeq).to.be.at.most(made.seq);

    const manifest = JSON.parse(await readFile(join(dir, 'backup', 'manifest.json'), 'utf8')) as { files: { path: string }[] };
    const paths = manifest.files.map((f) => f.path);
    expect(paths).to.include.members(['config.json', 'access.json', 'keys/vendor-key.jwk.json', 'keys/pin-pepper.key', 'ledger/state/checkpoint.json']);
    expect(paths.filter((p) => p.startsWith('ledger/journal/')).length).to.be.greaterThan(1);
    expect(paths.some((p) => p.startsWith('run/'))).to.equal(false);

    const verified = await runCli(['verify', '--backup', join(dir, 'backup')]);
    expect(verified.code, verified.stderr).to.equal(0);
    expect(JSON.parse(verified.stdout)).to.include({ ok: true, lastSeq: made.seq, lastHash: made.lastHash, backupSeq: made.seq });

    const restoredDir = join(dir, 'restored');
    const restored = await runCli(['restore', '--from', join(dir, 'backup'), '--data-dir', restoredDir]);
    expect(restored.code, restored.stderr).to.equal(0);

    // Balances, catalog, customers and the chain equal the original's at the backup's seq.
    const original = await stateAt(join(store, 'ledger'), made.seq);
    const copy = await openLedger({ dataDir: join(restoredDir, 'ledger'), vendorId: 'acme', readOnly: true });
    await copy.journal.close();
    expect(copy.state.seq).to.equal(made.seq);
    expect(copy.state.hash).to.equal(made.lastHash).and.equal(original.hash);
    expect(copy.state.balances).to.deep.equal(original.balances);
    expect(copy.state.customers).to.deep.equal(original.customers);
    expect(copy.state.products).to.deep.equal(original.products);

    // The restored store starts, serves its balances and keeps selling; the original is untouched by it.
    const again = await startTestVendor(restoredDir);
    try {
      const float = await http(`${again.url}/api/float`, 'GET', undefined, { authorization: `Bearer ${init.operatorToken}` });
      expect(float.body).to.deep.equal(Object.fromEntries(Object.entries(original.balances['float'] ?? {})));
      const more = await http(`${again.url}/api/issuances`, 'POST', { customerId: 'cust-000001', token: 'ACME', units: 1, reason: 'reward' }, {
        authorization: `Bearer ${init.operatorToken}`,
        'idempotency-key': 'after-restore',
      });
      expect(more.status, more.text).to.equal(200);
      expect(more.body.seq).to.equal(made.seq + 1);
    } finally {
      await again.close();
    }
  });

  it('refuses a tampered backup, an incomplete one, and a restore into a data directory in use', async () => {
    const store = join(dir, 'store');
    await initVendor({ dataDir: store, demo: true, pinHashCost: TEST_PIN_HASH_COST });
    const made = await runCli(['backup', '--data-dir', store, '--to', join(dir, 'backup')]);
    expect(made.code, made.stderr).to.equal(0);

    const into = await runCli(['restore', '--from', join(dir, 'backup'), '--data-dir', store]);
    expect(into.code).to.equal(1);
    expect(into.stderr).to.include('is not empty');

    const keyFile = join(dir, 'backup', 'keys', 'vendor-key.jwk.json');
    const before = await treeSnapshot(join(dir, 'backup'));
    const key = await readFile(keyFile, 'utf8');
    expect(key).to.match(/"d": ?"/);
    await writeFile(keyFile, key.replace(/"d": ?"/, '$&A'));
    const tampered = await runCli(['verify', '--backup', join(dir, 'backup')]);
    expect(tampered.code).to.equal(1);
    expect(tampered.stderr).to.include('keys/vendor-key.jwk.json in the backup changed');
    const refused = await runCli(['restore', '--from', join(dir, 'backup'), '--data-dir', join(dir, 'restored')]);
    expect(refused.code).to.equal(1);
    await writeFile(keyFile, key);
    expect((await runCli(['verify', '--backup', join(dir, 'backup')])).code).to.equal(0);
    expect([...(await treeSnapshot(join(dir, 'backup'))).keys()]).to.deep.equal([...before.keys()]);

    await writeFile(join(dir, 'backup', 'manifest.json'), '{}');
    const incomplete = await runCli(['verify', '--backup', join(dir, 'backup')]);
    expect(incomplete.code).to.equal(1);
    expect(incomplete.stderr).to.include('is not a backup manifest');
  });
});
