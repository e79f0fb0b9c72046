import { expect } from 'chai';
import { importJWK, type CryptoKey, type JWK } from 'jose';
import { ACK_TYP, BATCH_TYP, ZERO_HASH, type AckPayload, type BatchPayload, type FlattenedJws } from '../../core/index.ts';
import { verifyJson } from '../../mall-sync/jws.ts';
import {
  Batcher,
  newKey,
  P_PEN,
  registerScenario,
  seedVendorCatalog,
  sell,
  signBatch,
  signText,
  forEachStore,
  startMall,
  startVendor,
  storeFingerprint,
  opKey,
  type BatchCut,
  type Json,
  type MallRig,
  type TestKey,
  type VendorRig,
  vendorAuth,
} from './helpers.ts';

function b64(obj: unknown): string {
  return Buffer.from(JSON.stringify(obj)).toString('base64url');
}

forEachStore('mall-sync: ingesting batches (the vendor <-> mall contract)', function (store) {
  this.timeout(60_000);
  let mall: MallRig;
  let v: VendorRig;
  let bobs: TestKey;
  let mallKey: CryptoKey;
  let card: string;

  /** Posts a body and checks that it is refused with `code` and that the store did not change. */
  async function refused(body: unknown, code: string, status?: number): Promise<Json> {
    const before = storeFingerprint(mall.mall);
    const res = await mall.postBatch(body);
    expect(res.body?.error?.code, `${res.status} ${res.text.slice(0, 300)}`).to.equal(code);
    if (status !== undefined) expect(res.status).to.equal(status);
    expect(storeFingerprint(mall.mall), 'the store is unchanged').to.equal(before);
    return res.body;
  }

  async function resign(cut: BatchCut, change: (p: BatchPayload) => void, keys = v.keys): Promise<FlattenedJws> {
    const p = structuredClone(cut.payload);
    change(p);
    return signBatch(p, keys);
  }

  before(async () => {
    mall = await startMall({ store });
    v = await startVendor('acme');
    bobs = await newKey();
    await registerScenario(mall, v, bobs.publicJwk);
    mallKey = (await importJWK((await mall.admin.mallKey()).jwk as unknown as JWK, 'EdDSA')) as CryptoKey;
    await seedVendorCatalog(v);
    const c = await v.ledger.registerCustomer(v.op, { name: 'Anna Berger' });
    card = c.card;
    await v.ledger.recordAllotment(v.op, opKey(), { token: 'ACME', units: 5000, reference: 'own tokens' });
    await v.ledger.issueTokens(v.op, opKey(), { customerId: c.id, token: 'ACME', units: 1000, reason: 'reward' });
    await sell(v, card, [{ code: P_PEN, qty: 1 }], [{ token: 'ACME' }]);
    await sell(v, card, [{ code: P_PEN, qty: 2 }], [{ token: 'ACME', units: 100 }]);
  });

  after(async () => {
    await mall?.close();
    await v?.close();
  });

  it('starts every vendor at a zero cursor, given only to the vendor', async () => {
    const res = await mall.get('/v1/vendors/acme/cursor', await vendorAuth(v.keys, 'acme'));
    expect(res.status).to.equal(200);
    expect(res.body).to.deep.equal({ lastSeq: 0, lastBatchHash: ZERO_HASH, lastEventSeq: 0, lastEventHash: ZERO_HASH, resendFromSeq: null });
    expect((await mall.get('/v1/vendors/nobody/cursor')).body.error.code).to.equal('MALL_ERR_VENDOR_UNKNOWN');
    // Not without a signed request, nor with another vendor's key.
    expect((await mall.get('/v1/vendors/acme/cursor')).body.error.code).to.equal('MALL_ERR_UNAUTHENTICATED');
    expect((await mall.get('/v1/vendors/acme/cursor', await vendorAuth(bobs, 'acme'))).body.error.code).to.equal('MALL_ERR_UNAUTHENTICATED');
    expect((await mall.get('/v1/vendors/acme/snapshot', await vendorAuth(bobs, 'bobs'))).body.error.code).to.equal('MALL_ERR_UNAUTHENTICATED');
  });

  it('ingests the first batch and answers a signed ack naming it', async () => {
    const cut = await v.batcher.cut(4);
    expect(cut).to.not.equal(null);
    if (cut === null) throw new Error('no events');
    const res = await mall.postBatch(cut.jws);
    expect(res.status, res.text).to.equal(200);
    v.batcher.accept(cut);
    expect(res.body.replayed).to.equal(false);
    const ack = await verifyJson<AckPayload>(res.body.ack, mallKey, ACK_TYP);
    expect(ack).to.include({ v: 1, vendor: 'acme', seq: 1, batchHash: cut.hash, lastEventSeq: 4, lastEventHash: cut.lastEventHash, events: 4 });
    expect(ack.flagged).to.deep.equal([]);
    const header = JSON.parse(Buffer.from(res.body.ack.protected, 'base64url').toString()) as Record<string, unknown>;
    expect(header).to.deep.equal({ alg: 'EdDSA', kid: mall.init.kid, typ: ACK_TYP });
    const cursor = await mall.get('/v1/vendors/acme/cursor', await vendorAuth(v.keys, 'acme'));
    expect(cursor.body).to.deep.equal({ lastSeq: 1, lastBatchHash: cut.hash, lastEventSeq: 4, lastEventHash: cut.lastEventHash, resendFromSeq: null });
  });

  it('answers a replay with the byte-identical ack and records nothing', async () => {
    const first = await v.batcher.cut(3);
    if (first === null) throw new Error('no events');
    const res1 = await mall.postBatch(first.jws);
    expect(res1.status, res1.text).to.equal(200);
    v.batcher.accept(first);
    const before = storeFingerprint(mall.mall);
    const res2 = await mall.postBatch(first.jws);
    expect(res2.status).to.equal(200);
    expect(res2.body.replayed).to.equal(true);
    expect(JSON.stringify(res2.body.ack)).to.equal(JSON.stringify(res1.body.ack));
    expect(res2.text).to.equal(res1.text.replace('"replayed":false', '"replayed":true'));
    expect(storeFingerprint(mall.mall)).to.equal(before);
  });

  it('refuses a payload field changed after signing: MALL_ERR_SIGNATURE, the vendor field too (the key names the vendor)', async () => {
    const cut = (await v.batcher.cut(3)) as BatchCut;
    const changes: [string, (p: Json) => void][] = [
      ['seq', (p) => (p.seq += 1)],
      ['prevBatchHash', (p) => (p.prevBatchHash = ZERO_HASH)],
      ['fromSeq', (p) => (p.fromSeq += 1)],
      ['toSeq', (p) => (p.toSeq -= 1)],
      ['createdAt', (p) => (p.createdAt = '2020-01-01T00:00:00.000Z')],
      ['totals', (p) => (p.totals = { ACME: { units: 1, events: 1 } })],
      ['an event\'s text', (p) => (p.events[0] = (p.events[0] as string).replace('"v":1', '"v":1 '))],
      ['an event removed', (p) => p.events.pop()],
      ['an event added', (p) => p.events.push(p.events[0])],
    ];
    for (const [name, change] of changes) {
      const p = structuredClone(cut.payload) as Json;
      change(p);
      const body = { ...cut.jws, payload: b64(p) };
      const err = await refused(body, 'MALL_ERR_SIGNATURE', 401);
      expect(err.error.message, name).to.match(/signature/);
    }
    const p = structuredClone(cut.payload) as Json;
    p.vendor = 'bobs';
    await refused({ ...cut.jws, payload: b64(p) }, 'MALL_ERR_SIGNATURE', 401);
  });

  it('refuses a re-signed batch that breaks a rule, each with its own code, recording nothing', async () => {
    const cut = (await v.batcher.cut(3)) as BatchCut;
    const cases: [string, (p: Json) => void, string][] = [
      ['prevBatchHash', (p) => (p.prevBatchHash = 'a'.repeat(64)), 'MALL_ERR_BATCH_CHAIN'],
      ['fromSeq', (p) => (p.fromSeq += 1), 'MALL_ERR_EVENT_CHAIN'],
      ['toSeq', (p) => (p.toSeq += 1), 'MALL_ERR_EVENT_CHAIN'],
      ['totals', (p) => (p.totals.ACME.units += 1), 'MALL_ERR_TOTALS'],
      ['totals: a token added', (p) => (p.totals.MALL = { units: 0, events: 0 }), 'MALL_ERR_TOTALS'],
      ['an event\'s text (first)', (p) => (p.events[0] = (p.events[0] as string).replace('"v":1', '"v":1 ')), 'MALL_ERR_EVENT_CHAIN'],
      ['an event\'s text (middle)', (p) => (p.events[1] = (p.events[1] as string).replace('"v":1', '"v":1 ')), 'MALL_ERR_EVENT_CHAIN'],
      ['an event removed', (p) => p.events.splice(1, 1), 'MALL_ERR_EVENT_CHAIN'],
      ['an event removed, toSeq fixed', (p) => { p.events.splice(1, 1); p.toSeq -= 1; }, 'MALL_ERR_EVENT_CHAIN'],
      ['an event added', (p) => { p.events.push(p.events[2]); p.toSeq += 1; }, 'MALL_ERR_EVENT_CHAIN'],
      ['an event that is not JSON', (p) => (p.events[2] = '{not json'), 'MALL_ERR_MALFORMED'],
      ['the version', (p) => (p.v = 2), 'MALL_ERR_MALFORMED'],
      ['an unknown field', (p) => (p.extra = true), 'MALL_ERR_MALFORMED'],
      ['no events', (p) => { p.events = []; }, 'MALL_ERR_MALFORMED'],
      ['the vendor', (p) => (p.vendor = 'bobs'), 'MALL_ERR_KEY_UNKNOWN'],
    ];
    for (const [name, change, code] of cases) {
      const body = await resign(cut, change);
      const res = await refused(body, code);
      expect(res.error.code, name).to.equal(code);
    }
    // The untouched batch still goes in afterwards: nothing above moved the cursor.
    const res = await mall.postBatch(cut.jws);
    expect(res.status, res.text).to.equal(200);
    v.batcher.accept(cut);
  });

  it('refuses tampered headers, foreign and wrong keys', async () => {
    const cut = (await v.batcher.cut(2)) as BatchCut;
    const header = JSON.parse(Buffer.from(cut.jws.protected, 'base64url').toString()) as Json;
    expect(header).to.deep.equal({ alg: 'EdDSA', kid: v.keys.kid, typ: BATCH_TYP });
    await refused({ ...cut.jws, protected: b64({ ...header, kid: 'x'.repeat(43) }) }, 'MALL_ERR_KEY_UNKNOWN', 401);
    await refused({ ...cut.jws, protected: b64({ ...header, kid: bobs.kid }) }, 'MALL_ERR_SIGNATURE', 401);
    await refused({ ...cut.jws, protected: b64({ ...header, alg: 'HS256' }) }, 'MALL_ERR_MALFORMED', 400);
    await refused({ ...cut.jws, protected: b64({ ...header, alg: 'none' }), signature: '' }, 'MALL_ERR_MALFORMED', 400);
    await refused({ ...cut.jws, protected: b64({ ...header, typ: 'JWT' }) }, 'MALL_ERR_MALFORMED', 400);
    await refused({ ...cut.jws, protected: b64({ alg: 'EdDSA', typ: BATCH_TYP }) }, 'MALL_ERR_MALFORMED', 400);
    // The header is protected: the same fields in another order are other bytes.
    await refused({ ...cut.jws, protected: b64({ typ: BATCH_TYP, kid: v.keys.kid, alg: 'EdDSA' }) }, 'MALL_ERR_SIGNATURE', 401);
    const sig = Buffer.from(cut.jws.signature, 'base64url');
    sig[0] = (sig[0] as number) ^ 1;
    await refused({ ...cut.jws, signature: sig.toString('base64url') }, 'MALL_ERR_SIGNATURE', 401);
    await refused({ ...cut.jws, signature: cut.jws.signature.slice(0, 20) }, 'MALL_ERR_SIGNATURE', 401);
    // Signed by another key under acme's kid; by bobs' registered key for acme's batch.
    const stranger = await newKey();
    await refused(await signText(cut.text, stranger.privateKey, { alg: 'EdDSA', kid: v.keys.kid, typ: BATCH_TYP }), 'MALL_ERR_SIGNATURE', 401);
    await refused(await signText(cut.text, bobs.privateKey, { alg: 'EdDSA', kid: bobs.kid, typ: BATCH_TYP }), 'MALL_ERR_KEY_UNKNOWN', 401);
    await refused(await signText(cut.text, stranger.privateKey, { alg: 'EdDSA', kid: stranger.kid, typ: BATCH_TYP }), 'MALL_ERR_KEY_UNKNOWN', 401);
    // An unprotected header is not part of the contract.
    await refused({ ...cut.jws, header: { kid: v.keys.kid } }, 'MALL_ERR_MALFORMED', 400);
  });

  it('refuses malformed bodies with MALL_ERR_MALFORMED and oversized ones with MALL_ERR_TOO_LARGE', async () => {
    await refused('{"protected":', 'MALL_ERR_MALFORMED', 400);
    await refused('not json at all', 'MALL_ERR_MALFORMED', 400);
    await refused('[]', 'MALL_ERR_MALFORMED', 400);
    await refused({}, 'MALL_ERR_MALFORMED', 400);
    await refused({ protected: 'e30', payload: 'e30', signature: 'AA' }, 'MALL_ERR_MALFORMED', 400);
    await refused({ protected: '!!!', payload: 'e30', signature: 'AA' }, 'MALL_ERR_MALFORMED', 400);
    const cut = (await v.batcher.cut(2)) as BatchCut;
    // A payload is parsed only once its signature verifies.
    await refused({ ...cut.jws, payload: Buffer.from('[1,2]').toString('base64url') }, 'MALL_ERR_SIGNATURE', 401);
    await refused(await signBatch('[1,2]', v.keys), 'MALL_ERR_MALFORMED', 400);
    await refused(await signBatch('not json', v.keys), 'MALL_ERR_MALFORMED', 400);
    const huge = JSON.stringify({ protected: cut.jws.protected, payload: 'A'.repeat(9 * 1024 * 1024), signature: cut.jws.signature });
    await refused(huge, 'MALL_ERR_TOO_LARGE', 413);
    // Within the body limit but a payload over the 4 MiB batch limit.
    await refused({ ...cut.jws, payload: 'A'.repeat(6 * 1024 * 1024) }, 'MALL_ERR_TOO_LARGE', 413);
  });

  it('refuses a gap with the expected seq, and reordered batches as a gap', async () => {
    const first = (await v.batcher.cut(1)) as BatchCut;
    const saved = { ...v.batcher };
    v.batcher.accept(first);
    const second = (await v.batcher.cut(1)) as BatchCut;
    Object.assign(v.batcher, saved);
    // The second arrives first: a gap.
    const body = await refused(second.jws, 'MALL_ERR_BATCH_GAP', 409);
    expect(body.error.details).to.deep.equal({ expectedSeq: first.payload.seq });
    // A batch far ahead says the same.
    const far = await resign(first, (p) => (p.seq += 5));
    expect((await refused(far, 'MALL_ERR_BATCH_GAP')).error.details).to.deep.equal({ expectedSeq: first.payload.seq });
    const vendorView = await mall.admin.vendor('acme');
    expect(vendorView.gap).to.include({ expectedSeq: first.payload.seq, seenSeq: first.payload.seq + 5 });
    // In order, both go in and the gap closes.
    expect((await mall.postBatch(first.jws)).status).to.equal(200);
    v.batcher.accept(first);
    expect((await mall.postBatch(second.jws)).status).to.equal(200);
    v.batcher.accept(second);
    const after = await mall.admin.vendor('acme');
    expect(after.lastBatchSeq).to.equal(second.payload.seq);
  });

  it('refuses a fork with MALL_ERR_BATCH_FORK and records a tamper alarm, once, and nothing else', async () => {
    const state = mall.mall.store.state;
    const seq1 = state.vendors['acme']?.batchHashes[0];
    // Batch 1 again, re-signed with another createdAt: same seq, other bytes.
    const replayCut = await new Batcher(v.opened.journal, 'acme', v.keys).cut(4, '2021-01-01T00:00:00.000Z');
    if (replayCut === null) throw new Error('no events');
    expect(replayCut.hash).to.not.equal(seq1);
    const before = JSON.parse(storeFingerprint(mall.mall)) as Json;
    const res = await mall.postBatch(replayCut.jws);
    expect(res.status).to.equal(409);
    expect(res.body.error.code).to.equal('MALL_ERR_BATCH_FORK');
    expect(res.body.error.details).to.deep.equal({ seq: 1, storedHash: seq1, receivedHash: replayCut.hash });
    const after = JSON.parse(storeFingerprint(mall.mall)) as Json;
    expect(after.state.alarms).to.have.length(before.state.alarms.length + 1);
    const alarm = after.state.alarms.at(-1);
    expect(alarm).to.include({ kind: 'fork', vendor: 'acme', batchSeq: 1, storedHash: seq1, receivedHash: replayCut.hash, kid: v.keys.kid });
    // Only the alarm changed.
    for (const s of [before.state, after.state]) {
      delete s.alarms;
      delete s.alarmSerial;
      delete s.seq;
      delete s.hash;
      delete s.totals.alarms;
    }
    expect(after.state).to.deep.equal(before.state);
    // The same forged batch again: refused, no second alarm.
    const again = await mall.postBatch(replayCut.jws);
    expect(again.body.error.code).to.equal('MALL_ERR_BATCH_FORK');
    expect(mall.mall.store.state.totals.alarms).to.equal(1);
    expect((await mall.admin.alarms()).map((a) => a.kind)).to.deep.equal(['fork']);
    // Forks are counted with the other refusals of the vendor's signed batches.
    expect((await mall.admin.vendor('acme')).rejections['MALL_ERR_BATCH_FORK']).to.equal(2);
  });

  it('keeps verifying the in-flight batch signed with a retired key, none after it, and none after revocation', async () => {
    await sell(v, card, [{ code: P_PEN, qty: 1 }], [{ token: 'ACME' }]);
    await sell(v, card, [{ code: P_PEN, qty: 1 }], [{ token: 'ACME' }]);
    const oldKeys = { privateKey: v.keys.privateKey, kid: v.keys.kid };
    // Signed with the old key before the rotation.
    const signedBefore = (await v.batcher.cut(1)) as BatchCut;
    const rotated = await newKey();
    const added = await mall.admin.addKey('acme', rotated.publicJwk);
    expect(added.status).to.equal('active');
    const keys = (await mall.admin.vendor('acme')).keys;
    expect(keys.find((k) => k.kid === oldKeys.kid)?.status).to.equal('retired');
    const res = await mall.postBatch(signedBefore.jws);
    expect(res.status, res.text).to.equal(200);
    v.batcher.accept(signedBefore);
    // The snapshot's key directory shows both.
    const snap = await mall.get('/v1/vendors/acme/snapshot', await vendorAuth(oldKeys, 'acme'));
    const payload = await verifyJson<Json>(snap.body.snapshot, mallKey, 'mallpos-snapshot+jws');
    const dir = payload.vendors.find((x: Json) => x.id === 'acme');
    expect(dir.keys.map((k: Json) => [k.kid, k.status])).to.deep.equal([[oldKeys.kid, 'retired'], [rotated.kid, 'active']]);

    // The retired key signed the batch in flight at the rotation, and signs nothing after it.
    const signedLater = (await v.batcher.cut(1)) as BatchCut;
    const retired = await refused(signedLater.jws, 'MALL_ERR_KEY_RETIRED', 401);
    expect(retired.error.details).to.deep.equal({ kid: oldKeys.kid, retiredAtSeq: signedBefore.payload.seq });
    // A replay of the batch it signed before is still answered.
    const replay = await mall.postBatch(signedBefore.jws);
    expect(replay.body.replayed, replay.text).to.equal(true);
    // Revoke the old key: neither a new batch nor a replay signed with it verifies.
    await mall.admin.revokeKey('acme', oldKeys.kid, 'laptop stolen');
    await refused(signedLater.jws, 'MALL_ERR_KEY_REVOKED', 401);
    await refused(signedBefore.jws, 'MALL_ERR_KEY_REVOKED', 401);
    // Signed with the new key it goes in.
    v.batcher.keys = { privateKey: rotated.privateKey, kid: rotated.kid };
    const fresh = (await v.batcher.cut(1)) as BatchCut;
    const ok = await mall.postBatch(fresh.jws);
    expect(ok.status, ok.text).to.equal(200);
    v.batcher.accept(fresh);
    const snap2 = await verifyJson<Json>((await mall.get('/v1/vendors/acme/snapshot', await vendorAuth(rotated, 'acme'))).body.snapshot, mallKey, 'mallpos-snapshot+jws');
    const old = snap2.vendors.find((x: Json) => x.id === 'acme').keys.find((k: Json) => k.kid === oldKeys.kid);
    expect(old.status).to.equal('revoked');
    expect(old.revokedAt).to.be.a('string');
  });

  it('counts ingested batches, events, rejections by code and latency in /metrics', async () => {
    const res = await mall.get('/metrics');
    expect(res.status).to.equal(200);
    expect(res.text).to.match(/mallpos_mall_batches_ingested_total\{vendor="acme"\} \d+/);
    expect(res.text).to.match(/mallpos_mall_events_ingested_total \d+/);
    expect(res.text).to.match(/mallpos_mall_batches_rejected_total\{code="MALL_ERR_SIGNATURE"\} \d+/);
    expect(res.text).to.match(/mallpos_mall_batches_rejected_total\{code="MALL_ERR_BATCH_FORK"\} 2/);
    expect(res.text).to.match(/mallpos_mall_ingest_latency_seconds_count \d+/);
    expect(res.text).to.match(/mallpos_mall_batches_replayed_total 2/);
  });
});
