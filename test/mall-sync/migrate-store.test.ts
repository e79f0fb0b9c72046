import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import pg from 'pg';
import { auditArchive } from '../../mall-sync/audit.ts';
import { loadMallConfig } from '../../mall-sync/config.ts';
import { freshDatabase } from '../helpers/postgres.ts';
import { opKey, P_PEN, pushAll, runMallCli, sell, startScenario, tempDir, type MallRig, type VendorRig } from './helpers.ts';

const today = () => new Date().toISOString().slice(0, 10);

/** Writes the mall's archive out of its database and audits it; the audit's differences must be none. */
async function exportAndAudit(dataDir: string): Promise<Awaited<ReturnType<typeof auditArchive>>> {
  const { dir: out, cleanup } = await tempDir('mallpos-export-');
  try {
    const exported = await runMallCli(['export-archive', '--data-dir', dataDir, '--out', out]);
    expect(exported.code, exported.stderr).to.equal(0);
    const audit = await auditArchive(out);
    expect(audit.differences).to.deep.equal([]);
    return audit;
  } finally {
    await cleanup();
  }
}

interface Summary {
  vendors: { vendor: string; netMinor: number; transactions: number; lastBatchSeq: number }[];
  problems: string[];
}

describe('mall-sync migrate-store: an embedded mall moves to PostgreSQL with the same totals', function () {
  this.timeout(120_000);
  let mall: MallRig;
  let v: VendorRig;
  let url = '';

  before(async () => {
    ({ mall, v } = await startScenario());
    await mall.admin.allot({ vendor: 'acme', token: 'MALL', units: 500, reference: 'float' }, opKey('allot'));
    const c = await v.ledger.registerCustomer(v.op, { name: 'Eva Malá' });
    await v.ledger.recordAllotment(v.op, opKey(), { token: 'ACME', units: 5000, reference: 'own' });
    await v.ledger.issueTokens(v.op, opKey(), { customerId: c.id, token: 'ACME', units: 1000, reason: 'reward' });
    for (let i = 0; i < 3; i++) {
      await sell(v, c.card, [{ code: P_PEN, qty: 1 }], [{ token: 'ACME' }]);
      const { res } = await pushAll(mall, v);
      expect(res.status, res.text).to.equal(200);
    }
  });

  after(async () => {
    await mall?.close();
    await v?.close();
  });

  it('moves journal, registry, acks and archive; reconcile, positions and the audit agree afterwards, and the database sums to zero', async () => {
    const before = await runMallCli(['reconcile', '--data-dir', mall.dir, '--from', today(), '--to', today(), '--out', join(mall.dir, 'before')]).then(async (r) => {
      expect(r.code, r.stderr).to.equal(0);
      return JSON.parse(await readFile(join(mall.dir, 'before', 'reconcile.json'), 'utf8')) as Summary;
    });
    const positions = await mall.admin.positions();
    const acks = await Promise.all([1, 2, 3].map((seq) => readFile(join(mall.dir, 'archive', 'vendors', 'acme', `ack-${String(seq).padStart(10, '0')}.jws.json`), 'utf8')));
    await mall.mall.close();

    url = await freshDatabase();
    const moved = await runMallCli(['migrate-store', '--data-dir', mall.dir, '--from', 'embedded', '--to', 'postgres', '--database-url', url]);
    expect(moved.code, moved.stderr).to.equal(0);
    expect(moved.stdout).to.match(/"batches": 3/);
    expect((await loadMallConfig(mall.dir)).store).to.deep.include({ kind: 'postgres', databaseUrl: url });

    // The same statements and positions, now from PostgreSQL.
    const after = await runMallCli(['reconcile', '--data-dir', mall.dir, '--from', today(), '--to', today(), '--out', join(mall.dir, 'after')]);
    expect(after.code, after.stderr).to.equal(0);
    const summary = JSON.parse(await readFile(join(mall.dir, 'after', 'reconcile.json'), 'utf8')) as Summary;
    expect(summary.vendors).to.deep.equal(before.vendors);
    const pos = await runMallCli(['positions', '--data-dir', mall.dir]);
    expect(JSON.parse(pos.stdout)).to.deep.equal(positions);

    const db = new pg.Client({ connectionString: url });
    await db.connect();
    try {
      const sum = await db.query<{ sum: string }>('SELECT coalesce(sum(position_minor), 0)::text AS sum FROM mall_positions');
      expect(sum.rows[0]?.sum).to.equal('0');
      // The positions table is the clearing ledger added up.
      const ledger = await db.query<{ account: string; minor: string }>(
        `SELECT account, sum(minor)::text AS minor FROM (SELECT to_account AS account, amount_minor AS minor FROM mall_transfers
           UNION ALL SELECT from_account, -amount_minor FROM mall_transfers) t GROUP BY account HAVING sum(minor) <> 0 ORDER BY account`,
      );
      expect(Object.fromEntries(ledger.rows.map((r) => [r.account, Number(r.minor)]))).to.deep.equal(positions.positions);
      // The large values are compressed with lz4 (migration 6); the export below reads them back and audits them.
      const methods = await db.query<{ table: string; method: string }>(
        `SELECT c.relname AS table, a.attcompression AS method FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
          WHERE a.attname = 'body' AND c.relname IN ('mall_batch_bodies', 'mall_events') ORDER BY 1`,
      );
      expect(methods.rows).to.deep.equal([{ table: 'mall_batch_bodies', method: 'l' }, { table: 'mall_events', method: 'l' }]);
      // The stored acks are the very bytes the vendor received.
      const stored = await db.query<{ ack: unknown }>("SELECT ack FROM mall_batches WHERE vendor = 'acme' ORDER BY seq");
      expect(stored.rows.map((r) => JSON.stringify(r.ack))).to.deep.equal(acks.map((a) => JSON.stringify(JSON.parse(a))));
    } finally {
      await db.end();
    }

    // The archive written out of the database passes the audit.
    const audit = await exportAndAudit(mall.dir);
    expect(audit.batches).to.equal(3);
    expect(audit.positions).to.deep.equal(positions.positions);

    // A second run finds the mall already moved.
    const again = await runMallCli(['migrate-store', '--data-dir', mall.dir, '--from', 'embedded', '--to', 'postgres', '--database-url', url]);
    expect(again.code).to.equal(1);
    expect(again.stderr).to.include('already keeps its data in PostgreSQL');
    mall.mall = { close: async () => undefined } as never;
  });

  it('upgrades a database of schema version 6: each kept batch body takes its batch\'s hash, and the archive still passes the audit', async () => {
    expect(url).to.not.equal('');
    const db = new pg.Client({ connectionString: url });
    await db.connect();
    try {
      // The bodies table as versions 1 to 6 made it.
      await db.query(`ALTER TABLE mall_batch_bodies DROP CONSTRAINT mall_batch_bodies_pkey;
        ALTER TABLE mall_batch_bodies DROP COLUMN hash;
        ALTER TABLE mall_batch_bodies ADD PRIMARY KEY (vendor, seq);
        ALTER TABLE mall_batch_bodies ADD FOREIGN KEY (vendor, seq) REFERENCES mall_batches (vendor, seq) DEFERRABLE INITIALLY DEFERRED;
        DELETE FROM mall_schema_versions WHERE version >= 7`);
      expect((await exportAndAudit(mall.dir)).batches).to.equal(3);
      const versions = await db.query<{ v: number }>('SELECT max(version) AS v FROM mall_schema_versions');
      expect(versions.rows[0]?.v).to.equal(7);
      const joined = await db.query<{ n: string }>('SELECT count(*)::text AS n FROM mall_batch_bodies d JOIN mall_batches b USING (vendor, seq, hash)');
      expect(joined.rows[0]?.n).to.equal('3');
    } finally {
      await db.end();
    }
  });
});
