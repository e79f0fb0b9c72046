import { appendFile, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import { importJWK, type CryptoKey, type JWK } from 'jose';
import pg from 'pg';
import { SNAPSHOT_TYP, type SnapshotPayload } from '../../core/index.ts';
import { mallPaths } from '../../mall-sync/config.ts';
import { verifyJson } from '../../mall-sync/jws.ts';
import { startMallServer } from '../../mall-sync/server.ts';
import { storePaths } from '../../mall-sync/store/index.ts';
import { forEachStore, http, newKey, SCENARIO_FEES, scenarioTokenTypes, silentLogger, startMall, vendorAuth, type Json, type MallRig, type TestKey } from './helpers.ts';

forEachStore('mall-sync admin API', function (store) {
  this.timeout(30_000);
  let mall: MallRig;
  let acme: TestKey;
  const admin = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
    http(`${mall.mall.url}${path}`, method, body, { authorization: `Bearer ${mall.init.adminToken}`, ...headers });

  before(async () => {
    mall = await startMall({ store });
    acme = await newKey();
  });

  after(async () => {
    await mall?.close();
  });

  it('needs the admin credential', async () => {
    for (const headers of [{}, { authorization: 'Bearer mma_wrong' }, { authorization: mall.init.adminToken }] as Record<string, string>[]) {
      const res = await http(`${mall.mall.url}/admin/vendors`, 'GET', undefined, headers);
      expect([res.status, res.body.error.code]).to.deep.equal([401, 'MALL_ERR_UNAUTHENTICATED']);
    }
    expect((await admin('GET', '/admin/vendors')).body).to.deep.equal([]);
    // The public endpoints need none.
    const health = await http(`${mall.mall.url}/health`, 'GET');
    expect(health.body).to.include({ ok: true, kid: mall.init.kid, vendors: 0 });
    expect((await http(`${mall.mall.url}/v1/mall-key`, 'GET')).body).to.deep.equal({ kid: mall.init.kid, jwk: { kty: 'OKP', crv: 'Ed25519', x: mall.mall.keys.publicJwk.x, kid: mall.init.kid, alg: 'EdDSA', use: 'sig' } });
    expect((await http(`${mall.mall.url}/nowhere`, 'GET')).body.error.code).to.equal('MALL_ERR_NOT_FOUND');
  });

  it('registers vendors with a public Ed25519 JWK whose kid is its thumbprint, idempotently', async () => {
    const bad: [unknown, RegExp][] = [
      [{ kty: 'EC', crv: 'P-256', x: 'a', y: 'b' }, /jwk/],
      [{ ...acme.publicJwk, d: 'secret' }, /private key/],
      [{ ...acme.publicJwk, kid: 'not-the-thumbprint' }, /is not its JWK thumbprint/],
      [{ ...acme.publicJwk, x: 'short' }, /x is a 32-byte Ed25519 public key/],
    ];
    for (const [jwk, message] of bad) {
      const res = await admin('POST', '/admin/vendors', { id: 'acme', name: 'ACME Market', jwk });
      expect([res.status, res.body.error.code], res.text).to.deep.equal([400, 'MALL_ERR_VALIDATION']);
      expect(res.body.error.message).to.match(message);
    }
    for (const body of [{ id: 'mall', name: 'x', jwk: acme.publicJwk }, { id: 'ACME', name: 'x', jwk: acme.publicJwk }, { id: 'acme', name: 'x', jwk: acme.publicJwk, extra: 1 }]) {
      expect((await admin('POST', '/admin/vendors', body)).body.error.code).to.equal('MALL_ERR_VALIDATION');
    }
    const first = await admin('POST', '/admin/vendors', { id: 'acme', name: 'ACME Market', jwk: { kty: 'OKP', crv: 'Ed25519', x: acme.publicJwk['x'] } });
    expect(first.status, first.text).to.equal(200);
    expect(first.body.keys).to.have.length(1);
    expect(first.body.keys[0]).to.include({ kid: acme.kid, status: 'active' });
    const again = await admin('POST', '/admin/vendors', { id: 'acme', name: 'ACME Market', jwk: acme.publicJwk });
    expect(again.status).to.equal(200);
    expect((await admin('POST', '/admin/vendors', { id: 'acme', name: 'Other', jwk: acme.publicJwk })).body.error.code).to.equal('MALL_ERR_EXISTS');
    expect((await admin('POST', '/admin/vendors', { id: 'other', name: 'Other', jwk: acme.publicJwk })).body.error.code).to.equal('MALL_ERR_EXISTS');
    expect((await admin('POST', '/admin/vendors', '{"id":')).body.error.code).to.equal('MALL_ERR_VALIDATION');
    expect((await admin('POST', '/admin/vendors/nobody/keys', { jwk: (await newKey()).publicJwk })).body.error.code).to.equal('MALL_ERR_VENDOR_UNKNOWN');
    expect((await admin('POST', `/admin/vendors/acme/keys/${'x'.repeat(43)}/revoke`, {})).body.error.code).to.equal('MALL_ERR_NOT_FOUND');
  });

  it('checks token types, parties and fees against the registry', async () => {
    const [mallTT, acmeTT, , sunnyTT] = scenarioTokenTypes();
    const put = (tt: Json) => admin('PUT', `/admin/token-types/${tt.code}`, { ...tt, code: undefined });
    expect((await put({ ...sunnyTT })).body.error.message).to.match(/issuer sunny-foods is neither the mall, a vendor nor a registered party/);
    expect((await admin('POST', '/admin/parties', { id: 'sunny-foods', name: 'Sunny Foods', kind: 'manufacturer' })).status).to.equal(200);
    expect((await admin('POST', '/admin/parties', { id: 'acme', name: 'Clash', kind: 'issuer' })).body.error.code).to.equal('MALL_ERR_EXISTS');
    expect((await put({ ...sunnyTT, products: [] })).body.error.message).to.match(/need the list of products/);
    expect((await put({ ...mallTT, currency: 'USD' })).body.error.message).to.match(/token types here are in EUR/);
    expect((await put({ ...mallTT, issuer: 'acme' })).body.error.message).to.match(/mall tokens are issued by the mall/);
    expect((await put({ ...acmeTT, acceptedBy: ['acme', 'ghost'] })).body.error.message).to.match(/does not know: ghost/);
    expect((await put({ ...mallTT, faceValueMinor: -1 })).body.error.code).to.equal('CORE_ERR_AMOUNT');
    for (const tt of [mallTT, acmeTT, sunnyTT]) expect((await put(tt)).status).to.equal(200);
    expect((await admin('GET', '/admin/token-types')).body.map((t: Json) => t.code)).to.deep.equal(['MALL', 'ACME', 'SUNNY']);

    expect((await admin('PUT', '/admin/fees', { ...SCENARIO_FEES, royaltyBps: 10_001 })).body.error.code).to.equal('MALL_ERR_VALIDATION');
    expect((await admin('PUT', '/admin/fees', { ...SCENARIO_FEES, reimbursementTollMinor: 1.5 })).body.error.code).to.equal('CORE_ERR_AMOUNT');
    expect((await admin('PUT', '/admin/fees', { royaltyBps: 1 })).body.error.code).to.equal('MALL_ERR_VALIDATION');
    expect((await admin('PUT', '/admin/fees', SCENARIO_FEES)).body).to.deep.equal(SCENARIO_FEES);
    expect((await admin('GET', '/admin/fees')).body).to.deep.equal(SCENARIO_FEES);
  });

  it('issues allotments only with an Idempotency-Key, for registered, accepted tokens', async () => {
    const body = { vendor: 'acme', token: 'MALL', units: 250, reference: 'opening float' };
    expect((await admin('POST', '/admin/allotments', body)).body.error.message).to.match(/Idempotency-Key/);
    expect((await admin('POST', '/admin/allotments', body, { 'idempotency-key': 'bad key' })).body.error.code).to.equal('MALL_ERR_VALIDATION');
    expect((await admin('POST', '/admin/allotments', { ...body, units: 0 }, { 'idempotency-key': 'allot-admin-01' })).body.error.code).to.equal('MALL_ERR_VALIDATION');
    expect((await admin('POST', '/admin/allotments', { ...body, token: 'ACME' }, { 'idempotency-key': 'allot-admin-01' })).body.error.message).to.match(/issues ACME tokens itself/);
    expect((await admin('POST', '/admin/allotments', { ...body, vendor: 'nobody' }, { 'idempotency-key': 'allot-admin-01' })).body.error.code).to.equal('MALL_ERR_VENDOR_UNKNOWN');
    const ok = await admin('POST', '/admin/allotments', body, { 'idempotency-key': 'allot-admin-01' });
    expect(ok.status, ok.text).to.equal(200);
    expect(ok.body).to.include({ id: 'alt-000001', vendor: 'acme', token: 'MALL', units: 250, faceValueMinor: 10, purchaseMinor: 2500, used: null });
    const again = await admin('POST', '/admin/allotments', body, { 'idempotency-key': 'allot-admin-01' });
    expect(again.body).to.deep.equal(ok.body);
    expect((await admin('GET', '/admin/positions')).body).to.deep.equal({ currency: 'EUR', positions: { mall: 2500, 'vendor:acme': -2500 }, sumMinor: 0 });
  });

  it('serves a signed snapshot: token types, fees, the key directory, the mall key and open allotments', async () => {
    // Only the vendor gets its snapshot.
    expect((await http(`${mall.mall.url}/v1/vendors/acme/snapshot`, 'GET')).body.error.code).to.equal('MALL_ERR_UNAUTHENTICATED');
    const res = await http(`${mall.mall.url}/v1/vendors/acme/snapshot`, 'GET', undefined, await vendorAuth(acme, 'acme'));
    expect(res.status).to.equal(200);
    const header = JSON.parse(Buffer.from(res.body.snapshot.protected, 'base64url').toString());
    expect(header).to.deep.equal({ alg: 'EdDSA', kid: mall.init.kid, typ: SNAPSHOT_TYP });
    const key = (await importJWK(res.body.snapshot && ((await http(`${mall.mall.url}/v1/mall-key`, 'GET')).body.jwk as JWK), 'EdDSA')) as CryptoKey;
    const snap = await verifyJson<SnapshotPayload>(res.body.snapshot, key, SNAPSHOT_TYP);
    expect(snap).to.include({ v: 1, vendor: 'acme' });
    expect(snap.mall).to.deep.equal({ kid: mall.init.kid, jwk: mall.mall.keys.publicJwk });
    expect(snap.tokenTypes.map((t) => t.code)).to.deep.equal(['ACME', 'MALL', 'SUNNY']);
    expect(snap.fees).to.deep.equal(SCENARIO_FEES);
    expect(snap.vendors).to.deep.equal([{ id: 'acme', name: 'ACME Market', keys: [{ kid: acme.kid, jwk: { kty: 'OKP', crv: 'Ed25519', x: acme.publicJwk['x'], kid: acme.kid, alg: 'EdDSA', use: 'sig' }, status: 'active', revokedAt: null }] }]);
    expect(snap.allotments).to.deep.equal([{ id: 'alt-000001', vendor: 'acme', token: 'MALL', units: 250, issuedAt: snap.allotments[0]?.issuedAt, reference: 'opening float' }]);
    expect((await http(`${mall.mall.url}/v1/vendors/nobody/snapshot`, 'GET')).body.error.code).to.equal('MALL_ERR_VENDOR_UNKNOWN');
  });

  it('lists vendors with their completeness', async () => {
    const list = (await admin('GET', '/admin/vendors')).body;
    expect(list).to.have.length(1);
    expect(list[0]).to.deep.include({ id: 'acme', lastBatchSeq: 0, lastBatchAt: null, secondsSinceLastBatch: null, stale: true, gap: null, positionMinor: -2500 });
    expect(list[0].tokens).to.deep.equal({ MALL: { allottedUnits: 250, redeemedUnits: 0 } });
  });

  it('refuses to start on a damaged log, saying where', async () => {
    const dir = mall.dir;
    await mall.mall.close();
    if (store === 'postgres') {
      // An event changed in the database so that it no longer links to the one before: reported, never served.
      const config = JSON.parse(await readFile(mallPaths(dir).config, 'utf8')) as { store: { databaseUrl: string } };
      const db = new pg.Client({ connectionString: config.store.databaseUrl });
      await db.connect();
      try {
        await db.query('DELETE FROM mall_checkpoints');
        await db.query("UPDATE mall_events SET body = jsonb_set(body::jsonb, '{prev}', to_jsonb(repeat('0', 64)))::json WHERE seq = 2");
      } finally {
        await db.end();
      }
      const err = await startMallServer({ dataDir: dir, port: 0, host: '127.0.0.1', logger: silentLogger() }).catch((e: unknown) => e as { code: string; message: string });
      expect(err).to.include({ code: 'MALL_ERR_STORE' });
      expect((err as { message: string }).message).to.match(/mall event 2 does not link to event 1/);
      mall.mall = { close: async () => undefined } as never;
      return;
    }
    const journalDir = storePaths(mallPaths(dir).storeDir).journalDir;
    const [segment] = await readdir(journalDir);
    // A complete line that does not chain: never dropped, always reported.
    await appendFile(join(journalDir, segment as string), `{"h":"${'0'.repeat(64)}","e":{"seq":999,"prev":"${'0'.repeat(64)}"}}\n`);
    const err = await startMallServer({ dataDir: dir, port: 0, host: '127.0.0.1', logger: silentLogger() }).catch((e: unknown) => e as { code: string; message: string });
    expect(err).to.include({ code: 'MALL_ERR_STORE' });
    expect((err as { message: string }).message).to.match(/journal corrupt in journal-0000000000000001\.jsonl at byte \d+/);
    await writeFile(mallPaths(dir).config, '{"format":1}');
    const cfg = await startMallServer({ dataDir: dir, port: 0 }).catch((e: unknown) => e as { code: string; message: string });
    expect(cfg).to.include({ code: 'MALL_ERR_CONFIG' });
    // Reopen something closeable for the after hook.
    mall.mall = { close: async () => undefined } as never;
  });
});
