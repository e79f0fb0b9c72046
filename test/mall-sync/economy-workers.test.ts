import { expect } from 'chai';
import pg from 'pg';
import { loadMallConfig } from '../../mall-sync/config.ts';
import type { RunningMall } from '../../mall-sync/server.ts';
import { startTestMall } from '../helpers/mall.ts';
import { http, initMallOn, killHard, newKey, RawVendor, scenarioTokenTypes, SCENARIO_FEES, spawnMall, tempDir, vendorPost, type MallChild } from './helpers.ts';

/**
 * Two mall-sync processes on one PostgreSQL database, asked at the same moment to hold
 * the last units of one wallet: the mall's write lock and the state caught up under it
 * let exactly one of them win, every time. Wrong wallet PINs sent to both at once are
 * counted once each, per card, and the lock at the 10th holds at both.
 */
const CARDS = 12;

describe('mall-sync on PostgreSQL: two workers racing for the last units of a wallet, and counting wrong wallet PINs', function () {
  this.timeout(120_000);
  let dir: string;
  let cleanup: () => Promise<void>;
  let adminToken: string;
  let bobsKeys: RawVendor['keys'];
  let acmeKeys: RawVendor['keys'];
  const workers: MallChild[] = [];

  before(async () => {
    ({ dir, cleanup } = await tempDir());
    adminToken = (await initMallOn(dir, 'postgres')).adminToken;
  });
  after(async () => {
    for (const w of workers) await killHard(w.child);
    await cleanup?.();
  });

  it('gives the units to exactly one of them, for every card', async () => {
    const acme = new RawVendor('acme', await newKey());
    const bobs = new RawVendor('bobs', await newKey());
    acmeKeys = acme.keys;
    bobsKeys = bobs.keys;
    const registrar: RunningMall = await startTestMall(dir);
    try {
      await registrar.service.registerVendor({ id: 'acme', name: 'ACME Market', jwk: acme.keys.publicJwk });
      await registrar.service.registerVendor({ id: 'bobs', name: 'Bob\'s Books', jwk: bobs.keys.publicJwk });
      await registrar.service.addParty({ id: 'sunny-foods', name: 'Sunny Foods', kind: 'manufacturer' });
      for (const tt of scenarioTokenTypes()) await registrar.service.upsertTokenType(tt.code, tt);
      await registrar.service.setFees(SCENARIO_FEES);
      for (let i = 1; i <= CARDS; i++) {
        acme.register(`c${i}`, `C${i}`);
        acme.issue(`c${i}`, 'ACME', 100, 5);
        acme.move(`c${i}`, `C${i}`, 'to-wallet', 'ACME', 100);
      }
      const res = await acme.push(registrar.url);
      expect(res.status, res.text).to.equal(200);
      expect(res.ack.flagged).to.deep.equal([]);
      for (let i = 1; i <= CARDS; i++) {
        const pin = await vendorPost(registrar.url, acme.keys, 'acme', '/v1/vendors/acme/wallet/pin', { key: `acme:pin-${i}`, card: `C${i}`, pin: '2468' });
        expect(pin.status, pin.text).to.equal(200);
      }
    } finally {
      await registrar.close();
    }
    workers.push(await spawnMall(dir), await spawnMall(dir));
    const [w1, w2] = workers as [MallChild, MallChild];
    for (let i = 1; i <= CARDS; i++) {
      const body = (n: number) => ({ key: `bobs:race-${i}-${n}`, card: `C${i}`, token: 'ACME', units: 100, purpose: 'sale', pin: '2468' });
      const [a, b] = await Promise.all([vendorPost(w1.url, bobs.keys, 'bobs', '/v1/vendors/bobs/wallet/authorisations', body(1)), vendorPost(w2.url, bobs.keys, 'bobs', '/v1/vendors/bobs/wallet/authorisations', body(2))]);
      const statuses = [a.status, b.status].sort();
      expect(statuses, `card C${i}: ${a.text} / ${b.text}`).to.deep.equal([200, 409]);
      const loser = a.status === 409 ? a : b;
      expect(loser.body.error.code).to.equal('MALL_ERR_WALLET_INSUFFICIENT');
    }
    // The database agrees: one hold of 100 per card.
    const config = await loadMallConfig(dir);
    const url = config.store.kind === 'postgres' ? (config.store.databaseUrl ?? '') : '';
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      const { rows } = await client.query<{ card: string; n: string; units: string }>("SELECT card, count(*)::text AS n, sum(units)::text AS units FROM mall_wallet_authorisations WHERE status = 'open' GROUP BY card ORDER BY card");
      expect(rows).to.have.length(CARDS);
      for (const r of rows) expect([r.n, r.units]).to.deep.equal(['1', '100']);
    } finally {
      await client.end();
    }
  });

  it('counts wrong wallet PINs sent to both workers at once per card: the 10th locks the wallet, none past it counts, the right PIN is refused at both', async () => {
    const [w1, w2] = workers as [MallChild, MallChild];
    const guess = (w: MallChild, keys: RawVendor['keys'], vendor: string, n: number, pin: string) =>
      vendorPost(w.url, keys, vendor, `/v1/vendors/${vendor}/wallet/authorisations`, { key: `${vendor}:guess-${n}`, card: 'C1', token: 'ACME', units: 1, purpose: 'sale', pin });
    const answers = await Promise.all(Array.from({ length: 12 }, (_, n) => (n % 2 === 0 ? guess(w1, bobsKeys, 'bobs', n, String(1000 + n)) : guess(w2, acmeKeys, 'acme', n, String(1000 + n)))));
    const codes = answers.map((a) => a.body.error.code as string).sort();
    expect(codes.filter((c) => c === 'MALL_ERR_WALLET_PIN')).to.have.length(9);
    expect(codes.filter((c) => c === 'MALL_ERR_WALLET_LOCKED')).to.have.length(3);
    const admin = { authorization: `Bearer ${adminToken}` };
    for (const w of [w1, w2]) {
      const status = (await http(`${w.url}/admin/wallets/C1/pin`, 'GET', undefined, admin)).body as { failures: number; lockedAt: string | null; failedBy: Record<string, number> };
      expect(status.failures).to.equal(10);
      expect(status.lockedAt).to.be.a('string');
      expect((status.failedBy['acme'] ?? 0) + (status.failedBy['bobs'] ?? 0)).to.equal(10);
      expect((await guess(w, bobsKeys, 'bobs', 99, '2468')).body.error.code).to.equal('MALL_ERR_WALLET_LOCKED');
    }
  });
});
