import { expect } from 'chai';
import pg from 'pg';
import { loadMallConfig } from '../../mall-sync/config.ts';
import type { RunningMall } from '../../mall-sync/server.ts';
import { startTestMall } from '../helpers/mall.ts';
import { initMallOn, killHard, newKey, RawVendor, scenarioTokenTypes, SCENARIO_FEES, spawnMall, tempDir, vendorPost, type MallChild } from './helpers.ts';

/**
 * Two mall-sync processes on one PostgreSQL database, asked at the same moment to reserve
 * the whole value of one gift certificate for two stores: the mall's write lock and the
 * state caught up under it let exactly one of them win, every time; one store's request
 * sent to both workers at once (a retry racing its original) makes one reservation.
 */
const CERTS = 8;

describe('mall-sync on PostgreSQL: two workers racing to reserve one gift certificate', function () {
  this.timeout(120_000);
  let dir: string;
  let cleanup: () => Promise<void>;
  const workers: MallChild[] = [];

  before(async () => {
    ({ dir, cleanup } = await tempDir());
    await initMallOn(dir, 'postgres');
  });
  after(async () => {
    for (const w of workers) await killHard(w.child);
    await cleanup?.();
  });

  it('reserves each certificate for exactly one store, and a key sent to both workers once', async () => {
    const acme = new RawVendor('acme', await newKey());
    const bobs = new RawVendor('bobs', await newKey());
    let certs: { code: string; compact: string }[];
    const registrar: RunningMall = await startTestMall(dir);
    try {
      await registrar.service.registerVendor({ id: 'acme', name: 'ACME Market', jwk: acme.keys.publicJwk });
      await registrar.service.registerVendor({ id: 'bobs', name: 'Bob\'s Books', jwk: bobs.keys.publicJwk });
      await registrar.service.addParty({ id: 'sunny-foods', name: 'Sunny Foods', kind: 'manufacturer' });
      for (const tt of scenarioTokenTypes()) await registrar.service.upsertTokenType(tt.code, tt);
      await registrar.service.setFees(SCENARIO_FEES);
      ({ instruments: certs } = await registrar.instruments.issue({ key: 'issue:race-000001', kind: 'gift', token: 'MALL', units: 100, expiresAt: new Date(Date.now() + 30 * 86_400_000).toISOString(), count: CERTS + 1 }));
    } finally {
      await registrar.close();
    }
    workers.push(await spawnMall(dir), await spawnMall(dir));
    const [w1, w2] = workers as [MallChild, MallChild];
    const path = (v: string) => `/v1/vendors/${v}/instruments/reservations`;
    for (const [i, cert] of certs.slice(0, CERTS).entries()) {
      const [a, b] = await Promise.all([
        vendorPost(w1.url, acme.keys, 'acme', path('acme'), { key: `acme:race-${i}`, instrument: cert.compact, units: 100 }),
        vendorPost(w2.url, bobs.keys, 'bobs', path('bobs'), { key: `bobs:race-${i}`, instrument: cert.compact, units: 100 }),
      ]);
      expect([a.status, b.status].sort(), `${cert.code}: ${a.text} / ${b.text}`).to.deep.equal([200, 409]);
      expect((a.status === 409 ? a : b).body.error.code).to.equal('MALL_ERR_INSTRUMENT_SPENT');
    }
    // One store's request racing its own retry at the other worker: one reservation, the same answer twice.
    const body = { key: 'acme:twice-000001', instrument: certs[CERTS]?.compact, units: 100 };
    const [x, y] = await Promise.all([vendorPost(w1.url, acme.keys, 'acme', path('acme'), body), vendorPost(w2.url, acme.keys, 'acme', path('acme'), body)]);
    expect([x.status, y.status], `${x.text} / ${y.text}`).to.deep.equal([200, 200]);
    expect(x.text).to.equal(y.text);
    // The database agrees: one held reservation of 100 per certificate, and at most one row per store key.
    const config = await loadMallConfig(dir);
    const url = config.store.kind === 'postgres' ? (config.store.databaseUrl ?? '') : '';
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      const { rows } = await client.query<{ code: string; n: string; units: string }>("SELECT code, count(*)::text AS n, sum(hold_units)::text AS units FROM mall_instrument_reservations WHERE status = 'held' GROUP BY code ORDER BY code");
      expect(rows).to.have.length(CERTS + 1);
      for (const r of rows) expect([r.n, r.units]).to.deep.equal(['1', '100']);
      const twice = await client.query("SELECT id FROM mall_instrument_reservations WHERE vendor = 'acme' AND idempotency_key = 'acme:twice-000001'");
      expect(twice.rowCount).to.equal(1);
    } finally {
      await client.end();
    }
  });
});
