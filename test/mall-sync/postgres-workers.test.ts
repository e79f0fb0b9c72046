import { expect } from 'chai';
import pg from 'pg';
import { loadMallConfig } from '../../mall-sync/config.ts';
import { startMallServer, type RunningMall } from '../../mall-sync/server.ts';
import { BENCH_FEES, benchTokenTypes, makeVendors, MANUFACTURER, nextBatch, type SignedBatch } from '../../bench/mall/vendors.ts';
import { http, initMallOn, killHard, silentLogger, spawnMall, tempDir, type MallChild } from './helpers.ts';

/**
 * Several mall-sync processes on one PostgreSQL database, as an operator runs them behind
 * a load balancer: every batch is sent twice at once, to two different workers, and one
 * worker is killed with SIGKILL halfway and started again. Counted, not timed: 1,000
 * vendors, two batches each (the second often reaching a worker that did not ingest the
 * first); 24 vendors are in flight at the kill. Throughput at that scale is the
 * benchmark's (`npm run bench:mall -- --store postgres`).
 */
const WORKERS = 4;
const VENDORS = 1_000;
const BATCHES_PER_VENDOR = 2;
const EVENTS_PER_BATCH = 4;
const IN_FLIGHT = 24;
const ALLOTTED = 50;

type Answer = { status: number; ack: string | null; replayed: boolean | null; error: string | null };

describe('mall-sync on PostgreSQL: four workers, 1,000 vendors, every batch twice, one worker killed', function () {
  this.timeout(480_000);
  let dir: string;
  let cleanup: () => Promise<void>;
  let url: string;
  const workers: (MallChild & { caPem: string })[] = [];

  before(async () => {
    ({ dir, cleanup } = await tempDir());
    await initMallOn(dir, 'postgres');
    const config = await loadMallConfig(dir);
    url = config.store.kind === 'postgres' ? (config.store.databaseUrl ?? '') : '';
  });

  after(async () => {
    for (const w of workers) await killHard(w.child);
    await cleanup?.();
  });

  it('ingests every batch exactly once, gives every duplicate the same signed ack, and the positions add up to the acks and to zero', async () => {
    const vendors = await makeVendors(VENDORS);
    // The registry, through one mall process in this one (what `mall-sync vendor add` etc. would do one by one).
    const registrar: RunningMall = await startMallServer({ dataDir: dir, port: 0, host: '127.0.0.1', logger: silentLogger(), defaultMetrics: false });
    try {
      for (const v of vendors) await registrar.service.registerVendor({ id: v.id, name: v.name, jwk: v.publicJwk });
      await registrar.service.addParty(MANUFACTURER);
      // Token types for the vendors whose sales are to clear (the others' sales are flagged, as unknown tokens: ingested all the same).
      const clearing = new Set(vendors.slice(0, ALLOTTED).flatMap((v) => [v.token, v.neighbourToken]));
      for (const tt of benchTokenTypes(vendors)) if (tt.kind !== 'vendor' || clearing.has(tt.code)) await registrar.service.upsertTokenType(tt.code, tt);
      await registrar.service.setFees(BENCH_FEES);
      // The first vendors get allotments, so their sales clear (the others' are flagged: ingested, not cleared).
      for (const v of vendors.slice(0, ALLOTTED)) {
        for (const token of ['MALL', 'SUNNY', v.neighbourToken]) await registrar.service.allot(`t-${v.id}-${token}`, { vendor: v.id, token, units: 1_000_000, reference: 'float' });
      }
    } finally {
      await registrar.close();
    }
    for (let i = 0; i < WORKERS; i++) workers.push(await spawnMall(dir));

    /** Sends a batch to worker `w`, and on to the next worker while one is down (as a vendor's retry would). */
    const send = async (batch: SignedBatch, w: number): Promise<Answer> => {
      for (let attempt = 0; attempt < 200; attempt++) {
        const worker = workers[(w + attempt) % WORKERS] as MallChild;
        try {
          const res = await http(`${worker.url}/v1/batches`, 'POST', batch.body.toString('utf8'));
          if (res.status === 200) return { status: 200, ack: JSON.stringify(res.body.ack), replayed: res.body.replayed as boolean, error: null };
          if (res.status < 500) return { status: res.status, ack: null, replayed: null, error: res.text.slice(0, 300) };
        } catch {
          // The worker is gone (killed): try the next one.
        }
      }
      return { status: 0, ack: null, replayed: null, error: 'no worker answered' };
    };

    const batches: SignedBatch[][] = [];
    for (const v of vendors) {
      const own: SignedBatch[] = [];
      for (let b = 0; b < BATCHES_PER_VENDOR; b++) own.push(await nextBatch(v, EVENTS_PER_BATCH));
      batches.push(own);
    }
    const answers = new Map<string, [Answer, Answer]>();
    let done = 0;
    let killed = false;
    const queue = vendors.map((_, i) => i);
    const sender = async () => {
      for (;;) {
        const i = queue.shift();
        if (i === undefined) return;
        for (const batch of batches[i] as SignedBatch[]) {
          // Twice at once, to two different workers.
          const a = i % WORKERS;
          const pair = await Promise.all([send(batch, a), send(batch, (a + 1 + (i % (WORKERS - 1))) % WORKERS)]);
          answers.set(`${batch.vendor}/${batch.seq}`, pair);
        }
        done += 1;
        if (!killed && done >= VENDORS / 2) {
          killed = true;
          const victim = workers[WORKERS - 1] as MallChild & { caPem: string };
          await killHard(victim.child);
          workers[WORKERS - 1] = await spawnMall(dir);
        }
      }
    };
    await Promise.all(Array.from({ length: IN_FLIGHT }, sender));
    expect(killed).to.equal(true);

    // Every copy was answered with 200 and both copies carry the very same signed ack; exactly one was not a replay.
    let fresh = 0;
    let replays = 0;
    for (const [key, [x, y]] of answers) {
      expect(x.status, `${key}: ${x.error ?? ''}`).to.equal(200);
      expect(y.status, `${key}: ${y.error ?? ''}`).to.equal(200);
      expect(y.ack, key).to.equal(x.ack);
      for (const a of [x, y]) {
        if (a.replayed === false) fresh += 1;
        else replays += 1;
      }
    }
    expect(answers.size).to.equal(VENDORS * BATCHES_PER_VENDOR);
    // At most one copy of a batch is ingested; the other gets the stored ack (a copy lost with the killed worker is retried and replayed too).
    expect(fresh).to.be.at.most(VENDORS * BATCHES_PER_VENDOR);
    expect(replays).to.be.at.least(VENDORS * BATCHES_PER_VENDOR);

    const db = new pg.Client({ connectionString: url });
    await db.connect();
    try {
      const counts = await db.query<{ batches: string; vendors: string; events: string }>('SELECT count(*)::text AS batches, count(DISTINCT vendor)::text AS vendors, sum(events)::text AS events FROM mall_batches');
      expect(counts.rows[0]).to.deep.equal({ batches: String(VENDORS * BATCHES_PER_VENDOR), vendors: String(VENDORS), events: String(VENDORS * BATCHES_PER_VENDOR * EVENTS_PER_BATCH) });
      const logged = await db.query<{ n: string }>("SELECT count(*)::text AS n FROM mall_events WHERE type = 'batch.ingested'");
      expect(logged.rows[0]?.n).to.equal(String(VENDORS * BATCHES_PER_VENDOR));
      // The stored ack is the one both copies got.
      const stored = await db.query<{ vendor: string; seq: string; ack: unknown }>('SELECT vendor, seq::text, ack FROM mall_batches');
      for (const r of stored.rows) expect(JSON.stringify(r.ack)).to.equal(answers.get(`${r.vendor}/${r.seq}`)?.[0].ack);
      // Zero-sum, and every account's position is what the vendors' acks say was cleared.
      const sum = await db.query<{ sum: string }>('SELECT coalesce(sum(position_minor), 0)::text AS sum FROM mall_positions');
      expect(sum.rows[0]?.sum).to.equal('0');
      const expected = new Map<string, number>();
      for (const [x] of answers.values()) {
        const payload = JSON.parse(Buffer.from((JSON.parse(x.ack as string) as { payload: string }).payload, 'base64url').toString('utf8')) as { cleared: Record<string, number> };
        for (const [account, minor] of Object.entries(payload.cleared)) expected.set(account, (expected.get(account) ?? 0) + minor);
      }
      // The allotments' purchases are positions too (the vendor owes the mall for its mall tokens).
      const purchases = await db.query<{ vendor: string; minor: string }>('SELECT vendor, sum(purchase_minor)::text AS minor FROM mall_allotments GROUP BY vendor');
      for (const r of purchases.rows) {
        expected.set(`vendor:${r.vendor}`, (expected.get(`vendor:${r.vendor}`) ?? 0) - Number(r.minor));
        expected.set('mall', (expected.get('mall') ?? 0) + Number(r.minor));
      }
      const positions = await db.query<{ account: string; minor: string }>('SELECT account, position_minor::text AS minor FROM mall_positions WHERE position_minor <> 0 ORDER BY account');
      const want = Object.fromEntries([...expected].filter(([, m]) => m !== 0).sort(([a], [b]) => a.localeCompare(b)));
      expect(Object.fromEntries(positions.rows.map((r) => [r.account, Number(r.minor)]))).to.deep.equal(want);
      expect(Object.keys(want).length).to.be.greaterThan(ALLOTTED);
    } finally {
      await db.end();
    }

    // Every worker, the restarted one too, is healthy on the same database.
    const views = await Promise.all(workers.map(async (w) => (await http(`${w.url}/health`, 'GET')).body as { ok: boolean; batches: number; store: string }));
    for (const h of views) expect(h).to.include({ ok: true, store: 'postgres' });

    // The workers that ran throughout show how they took turns at the write lock, and that they
    // applied each other's events: a copy of every batch went to two of them.
    const metric = (text: string, name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? Number.NaN);
    let caughtUp = 0;
    let groupedChanges = 0;
    for (const w of workers.slice(0, WORKERS - 1)) {
      const text = (await http(`${w.url}/metrics`, 'GET')).text;
      const held = metric(text, 'mallpos_mall_write_lock_held_seconds_count');
      expect(held, text).to.be.greaterThan(0);
      expect(metric(text, 'mallpos_mall_write_lock_wait_seconds_count')).to.equal(held);
      const heldS = metric(text, 'mallpos_mall_write_lock_held_seconds_sum');
      expect(heldS).to.be.greaterThan(0);
      // The phases add up to the time held.
      const phases = ['catch-up', 'changes', 'writes', 'commit'].map((p) => metric(text, `mallpos_mall_write_lock_phase_seconds_total\\{phase="${p}"\\}`));
      for (const p of phases) expect(p).to.be.at.least(0);
      expect(phases.reduce((a, b) => a + b, 0)).to.be.closeTo(heldS, 1e-3);
      expect(metric(text, 'mallpos_mall_group_changes_count')).to.equal(held);
      expect(metric(text, 'mallpos_mall_group_changes_sum')).to.be.at.least(held);
      groupedChanges += metric(text, 'mallpos_mall_group_changes_sum');
      caughtUp += metric(text, 'mallpos_mall_events_caught_up_total');
    }
    expect(caughtUp).to.be.greaterThan(0);
    expect(groupedChanges).to.be.greaterThan(0);
  });
});
