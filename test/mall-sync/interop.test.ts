import { expect } from 'chai';
import { ACK_TYP, BATCH_TYP, SNAPSHOT_TYP, STATEMENT_TYP, sha256Hex } from '../../core/index.ts';
import { forEachStore, opKey, P_PEN, pushAll, sell, startScenario, vendorAuth, verifyWithJwcrypto, type MallRig, type VendorRig } from './helpers.ts';

forEachStore('mall-sync: interoperability with another JOSE library (python jwcrypto)', function (store) {
  this.timeout(60_000);
  let mall: MallRig;
  let v: VendorRig;

  before(async () => {
    ({ mall, v } = await startScenario({ store }));
    const c = await v.ledger.registerCustomer(v.op, { name: 'Chloé Martin' });
    await v.ledger.recordAllotment(v.op, opKey(), { token: 'ACME', units: 500, reference: 'own' });
    await v.ledger.issueTokens(v.op, opKey(), { customerId: c.id, token: 'ACME', units: 200, reason: 'reward' });
    await sell(v, c.card, [{ code: P_PEN, qty: 1 }], [{ token: 'ACME' }]);
  });

  after(async () => {
    await mall?.close();
    await v?.close();
  });

  it('verifies a vendor batch, the mall\'s ack, snapshot and statement with jwcrypto', async () => {
    const { res, cut } = await pushAll(mall, v);
    expect(res.status, res.text).to.equal(200);
    const mallJwk = (await mall.get('/v1/mall-key')).body.jwk as Record<string, unknown>;
    const snapshot = (await mall.get('/v1/vendors/acme/snapshot', await vendorAuth(v.keys, 'acme'))).body.snapshot;
    const day = new Date().toISOString().slice(0, 10);
    const statement = (await mall.get(`/v1/vendors/acme/statements?from=${day}&to=${day}`, await vendorAuth(v.keys, 'acme'))).body.statement;
    const tamperedAck = { ...res.body.ack, payload: Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(res.body.ack.payload, 'base64url').toString()), seq: 99 })).toString('base64url') };
    const results = verifyWithJwcrypto([
      { jws: cut.jws, jwk: v.keys.publicJwk as Record<string, unknown> },
      { jws: res.body.ack, jwk: mallJwk },
      { jws: snapshot, jwk: mallJwk },
      { jws: statement, jwk: mallJwk },
      { jws: tamperedAck, jwk: mallJwk },
      { jws: res.body.ack, jwk: v.keys.publicJwk as Record<string, unknown> },
    ]);
    const [batch, ack, snap, stmt, tampered, wrongKey] = results;
    expect(batch?.ok).to.equal(true);
    expect(batch?.header).to.deep.equal({ alg: 'EdDSA', kid: v.keys.kid, typ: BATCH_TYP });
    // jwcrypto sees the very bytes the mall hashed.
    expect(sha256Hex(batch?.payload as string)).to.equal(cut.hash);
    expect(ack?.ok).to.equal(true);
    expect(ack?.header).to.deep.equal({ alg: 'EdDSA', kid: mall.init.kid, typ: ACK_TYP });
    expect(JSON.parse(ack?.payload as string)).to.include({ vendor: 'acme', seq: 1, batchHash: cut.hash });
    expect(snap?.ok).to.equal(true);
    expect(snap?.header?.['typ']).to.equal(SNAPSHOT_TYP);
    expect(stmt?.ok).to.equal(true);
    expect(stmt?.header?.['typ']).to.equal(STATEMENT_TYP);
    expect(JSON.parse(stmt?.payload as string)).to.include({ vendor: 'acme', from: day, to: day });
    expect(tampered?.ok).to.equal(false);
    expect(wrongKey?.ok).to.equal(false);
  });
});
