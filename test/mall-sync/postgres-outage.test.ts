import { expect } from 'chai';
import pg from 'pg';
import { initMall } from '../../mall-sync/init.ts';
import { startMallServer, type RunningMall } from '../../mall-sync/server.ts';
import { BENCH_FEES, benchTokenTypes, makeVendors, MANUFACTURER, nextBatch, type SignedBatch } from '../../bench/mall/vendors.ts';
import { trustAuthority } from '../helpers/http.ts';
import { until } from '../helpers/mall.ts';
import { startCluster, type PgCluster } from '../helpers/postgres.ts';
import { http, silentLogger, tempDir } from './helpers.ts';

/**
 * PostgreSQL itself stops (immediate shutdown, as in a crash) while vendors push batches:
 * no batch the mall acknowledged is lost, the mall says so on /health (503) while the
 * database is away, and it ingests again, without a restart, once the database is back.
 * Its own cluster with fsync on, so that durability is the server's, not the page cache's.
 */
const VENDORS = 20;
const BATCHES_PER_VENDOR = 6;

describe('mall-sync on PostgreSQL: the database killed during ingest', function () {
  this.timeout(180_000);
  let cluster: PgCluster;
  let mall: RunningMall | null = null;
  let cleanup: () => Promise<void>;

  after(async () => {
    await mall?.close().catch(() => undefined);
    cluster?.stop();
    await cleanup?.();
  });

  it('loses no acknowledged batch, reports the outage on /health and recovers when the database is back', async () => {
    cluster = await startCluster({ fsync: true });
    const setup = new pg.Client({ connectionString: cluster.url('postgres') });
    await setup.connect();
    await setup.query('CREATE DATABASE mall');
    await setup.end();
    const tmp = await tempDir();
    cleanup = tmp.cleanup;
    await initMall({ dataDir: tmp.dir, postgres: { databaseUrl: cluster.url('mall') } });
    mall = await startMallServer({ dataDir: tmp.dir, port: 0, host: '127.0.0.1', logger: silentLogger(), defaultMetrics: false });
    trustAuthority(mall.url, mall.caPem);
    const vendors = await makeVendors(VENDORS);
    for (const v of vendors) await mall.service.registerVendor({ id: v.id, name: v.name, jwk: v.publicJwk });
    await mall.service.addParty(MANUFACTURER);
    for (const tt of benchTokenTypes(vendors)) await mall.service.upsertTokenType(tt.code, tt);
    await mall.service.setFees(BENCH_FEES);
    const url = mall.url;

    const acked = new Map<string, string>();
    const refusedWith = new Set<string>();
    let killedAt = -1;
    let restarted = false;
    let sawOutage = false;
    const push = async (v: (typeof vendors)[number]) => {
      for (let b = 0; b < BATCHES_PER_VENDOR; b++) {
        const batch: SignedBatch = await nextBatch(v, 5);
        // The vendor's pusher: the same batch again until it is acknowledged.
        await until(`batch ${batch.seq} of ${batch.vendor} acknowledged`, async () => {
          const res = await http(`${url}/v1/batches`, 'POST', batch.body.toString('utf8')).catch(() => null);
          if (res?.status === 200) {
            acked.set(`${batch.vendor}/${batch.seq}`, JSON.stringify(res.body.ack));
            return true;
          }
          if (res !== null) refusedWith.add(`${res.status} ${String(res.body?.error?.code)}`);
          return undefined;
        }, 120_000);
        if (killedAt < 0 && acked.size >= (VENDORS * BATCHES_PER_VENDOR) / 3) {
          killedAt = acked.size;
          cluster.kill();
          // While the database is away the mall says so.
          const health = await http(`${url}/health`, 'GET');
          expect(health.status).to.equal(503);
          expect(health.body).to.include({ ok: false, store: 'postgres' });
          sawOutage = true;
          await cluster.start();
          restarted = true;
        }
      }
    };
    await Promise.all(vendors.map(push));
    expect(sawOutage && restarted).to.equal(true);
    expect([...refusedWith].some((r) => r.startsWith('503 MALL_ERR_UNAVAILABLE')), [...refusedWith].join(', ')).to.equal(true);
    expect((await http(`${url}/health`, 'GET')).body).to.include({ ok: true });

    const db = new pg.Client({ connectionString: cluster.url('mall') });
    await db.connect();
    try {
      const { rows } = await db.query<{ vendor: string; seq: string; ack: unknown }>('SELECT vendor, seq::text, ack FROM mall_batches');
      expect(rows.length).to.equal(VENDORS * BATCHES_PER_VENDOR);
      const stored = new Map(rows.map((r) => [`${r.vendor}/${r.seq}`, JSON.stringify(r.ack)]));
      for (const [key, ack] of acked) expect(stored.get(key), key).to.equal(ack);
      const sum = await db.query<{ sum: string }>('SELECT coalesce(sum(position_minor), 0)::text AS sum FROM mall_positions');
      expect(sum.rows[0]?.sum).to.equal('0');
    } finally {
      await db.end();
    }
    // The worker's own view caught up with the database.
    await mall.store.flushed();
    expect(mall.store.state.totals.batches).to.equal(VENDORS * BATCHES_PER_VENDOR);
  });
});
