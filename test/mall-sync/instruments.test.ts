import { expect } from 'chai';
import { calculateJwkThumbprint, type CryptoKey } from 'jose';
import { instrumentCode, type InstrumentKind, type InstrumentUse } from '../../core/index.ts';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { auditArchive } from '../../mall-sync/audit.ts';
import { reconcile } from '../../mall-sync/reconcile.ts';
import { migrateStore } from '../../mall-sync/migrate-store.ts';
import { startTestMall } from '../helpers/mall.ts';
import { freshDatabase } from '../helpers/postgres.ts';
import { signInstrument } from '../../platform/instruments.ts';
import {
  archiveOf,
  forEachStore,
  http,
  newKey,
  P_JUICE,
  P_PEN,
  registerEconomy,
  runMallCli,
  startMall,
  tempDir,
  initMallOn,
  storeFingerprint,
  verifyWithJwcrypto,
  vendorAuth,
  vendorPost,
  type MallRig,
  type RawVendor,
  type TestKey,
} from './helpers.ts';

const today = () => new Date().toISOString().slice(0, 10);
const inDays = (n: number) => new Date(Date.now() + n * 86_400_000).toISOString();
const RES = (v: string) => `/v1/vendors/${v}/instruments/reservations`;

/** The policy of these tests: 1,000 from one instrument, 5,000 a day, a snapshot of at most 24 hours. */
const POLICY = { offlineInstrumentMaxMinor: 1_000, offlineStoreDailyMaxMinor: 5_000, snapshotMaxAgeHours: 24 };

interface Issued {
  code: string;
  compact: string;
}

/** A sale of one line paid entirely by instruments (no customer), as core/events.ts defines it. */
function instrumentSale(v: RawVendor, uses: Omit<InstrumentUse, 'remainingAfter'>[], opts: { gtin?: string; at?: string } = {}): number {
  const token = uses[0]?.token as string;
  const units = uses.reduce((n, u) => n + u.units, 0);
  const total = 450;
  return v.add(
    'sale',
    [
      { account: 'instruments', token, units: -units },
      { account: 'redeemed', token, units },
    ],
    {
      saleId: `S${String(Math.floor(Math.random() * 1e10)).padStart(10, '0')}`,
      customer: null,
      currency: 'EUR',
      lines: [{ lineNo: 1, gtin: opts.gtin ?? P_PEN, name: 'Item', qty: 1, unitPriceMinor: total, totalMinor: total, unitTokenPrices: { [token]: units } }],
      allocations: [{ lineNo: 1, token, units, coversMinor: total }],
      debits: { [token]: units },
      totalMinor: total,
      cash: { dueMinor: 0, tenderedMinor: 0, changeMinor: 0 },
      balancesAfter: null,
      instruments: uses.map((u) => ({ ...u, remainingAfter: 0 })),
    },
    opts.at,
  );
}

function use(i: Issued, units: number, opts: { kind?: InstrumentKind; token?: string; reservation?: string | null; snapshotIssuedAt?: string } = {}): Omit<InstrumentUse, 'remainingAfter'> {
  return { instrument: i.compact, code: i.code, kind: opts.kind ?? 'gift', token: opts.token ?? 'MALL', units, reservation: opts.reservation ?? null, snapshotIssuedAt: opts.snapshotIssuedAt ?? new Date().toISOString() };
}

forEachStore('mall-sync: bearer instruments', (store) => {
  let mall: MallRig;
  let acme: RawVendor;
  let bobs: RawVendor;
  let offsetMs = 0;
  let expiresAt = inDays(30);

  beforeEach(async () => {
    offsetMs = 0;
    expiresAt = inDays(30);
    mall = await startMall({ store, clock: () => new Date(Date.now() + offsetMs) });
    ({ acme, bobs } = await registerEconomy(mall, { reimbursementTollMinor: 0, royaltyBps: 0, royaltyBpsByToken: {} }));
    await mall.admin.setInstrumentPolicy(POLICY);
  });
  afterEach(async () => {
    await mall?.close();
  });

  const issue = async (units: number, count = 1, key = `issue:${Math.random()}`): Promise<Issued[]> =>
    (await mall.admin.issueInstruments({ key, token: 'MALL', units, expiresAt, count })).instruments;
  const status = async (code: string, v: RawVendor = bobs) => mall.get(`/v1/vendors/${v.vendorId}/instruments/${code}`, await vendorAuth(v.keys, v.vendorId));
  const reserve = (v: RawVendor, i: Issued, units: number, key: string) => vendorPost(mall, v.keys, v.vendorId, RES(v.vendorId), { key, instrument: i.compact, units });
  const adminGet = (path: string) => mall.get(path, { authorization: `Bearer ${mall.init.adminToken}` });
  const alarms = async () => ((await adminGet('/admin/alarms')).body as { kind: string; instrument?: string; stores?: string[]; message: string; vendor: string }[]).filter((a) => a.kind === 'double-spend');

  it('issues mall certificates idempotently, publishes the key directory and policy in the snapshot, answers status, and voids unsold stock', async () => {
    const key = 'issue:first-batch-0001';
    const issued = await issue(250, 2, key);
    expect(issued).to.have.length(2);
    expect(issued[0]?.code).to.match(/^MALL-[0-9A-Z]{12}-[0-9]{2}$/);
    // The same key answers the same certificates; another body under it is refused.
    expect(await issue(250, 2, key)).to.deep.equal(issued);
    const conflict = await http(`${mall.mall.url}/admin/instruments`, 'POST', { key, kind: 'gift', token: 'MALL', units: 251, expiresAt: inDays(30), count: 2 }, { authorization: `Bearer ${mall.init.adminToken}` });
    expect([conflict.status, conflict.body.error.code]).to.deep.equal([400, 'MALL_ERR_VALIDATION']);
    // Only the mall's own tokens.
    const foreign = await http(`${mall.mall.url}/admin/instruments`, 'POST', { key: 'issue:acme-tokens', kind: 'gift', token: 'ACME', units: 5, expiresAt: inDays(30) }, { authorization: `Bearer ${mall.init.adminToken}` });
    expect(foreign.body.error.code).to.equal('MALL_ERR_VALIDATION');

    const snap = await mall.get('/v1/vendors/acme/snapshot', await vendorAuth(acme.keys, 'acme'));
    const payload = JSON.parse(Buffer.from(snap.body.snapshot.payload as string, 'base64url').toString('utf8'));
    expect(payload.instruments.policy).to.deep.equal(POLICY);
    const mallKey = (payload.instruments.keys as { issuer: string; kinds: string[]; kid: string; jwk: { x: string } }[]).find((k) => k.issuer === 'mall');
    expect(mallKey?.kinds).to.deep.equal(['gift']);
    expect(payload.instruments.keys.map((k: { issuer: string }) => k.issuer).sort()).to.deep.equal(['acme', 'bobs', 'mall']);
    // Any JOSE library verifies a certificate with the published key.
    const [h, p, sig] = (issued[0] as Issued).compact.split('.');
    const [checked] = verifyWithJwcrypto([{ jws: { protected: h as string, payload: p as string, signature: sig as string }, jwk: { kty: 'OKP', crv: 'Ed25519', x: mallKey?.jwk.x } }]);
    expect(checked?.ok).to.equal(true);
    expect(checked?.header).to.deep.include({ alg: 'EdDSA', kid: mallKey?.kid, typ: 'mpgc' });
    expect(JSON.parse(checked?.payload as string)).to.deep.include({ i: 'mall', t: 'MALL', u: 250 });

    const s = await status((issued[0] as Issued).code.toLowerCase());
    expect(s.status, s.text).to.equal(200);
    expect(s.body).to.deep.include({ code: issued[0]?.code, state: 'unsold', faceUnits: 250, remainingUnits: 250, heldUnits: 0, soldBy: null, doubleSpent: false, compact: issued[0]?.compact });
    expect((await status('MALL-000000000000-00')).body.error.code).to.equal('MALL_ERR_INSTRUMENT_UNKNOWN');

    const voided = await mall.admin.voidInstrument((issued[1] as Issued).code, 'lost from stock');
    expect(voided.state).to.equal('voided');
    const refused = await reserve(acme, issued[1] as Issued, 10, 'acme:res-000001');
    expect([refused.status, refused.body.error.code]).to.deep.equal([409, 'MALL_ERR_INSTRUMENT_VOIDED']);
    await mall.restart();
    expect((await mall.admin.instrument((issued[1] as Issued).code)).state).to.equal('voided');
    expect((await mall.admin.instrument((issued[0] as Issued).code)).remainingUnits).to.equal(250);
  });

  it('refuses forged, altered, expired and unknown-key instruments, at reservation and in a batch, and changes nothing', async () => {
    const [good] = await issue(100);
    const mallKid = (await mall.admin.instrumentKeys())[0]?.kid as string;
    const forger = await newKey();
    const claims = { i: 'mall', s: 'FORGED000001', t: 'MALL', u: 100_000, a: Math.floor(Date.now() / 1000) - 60, x: Math.floor(Date.now() / 1000) + 86_400 };
    const forged = { code: instrumentCode('mall', 'FORGED000001'), compact: await signInstrument('gift', claims, { kid: mallKid, privateKey: forger.privateKey }) };
    const [hh, , ss] = (good as Issued).compact.split('.');
    const altered = { code: (good as Issued).code, compact: `${hh}.${Buffer.from(JSON.stringify({ ...claims, s: (good as Issued).code.split('-')[1] })).toString('base64url')}.${ss}` };
    const unknown = { code: forged.code, compact: await signInstrument('gift', claims, { kid: forger.kid, privateKey: forger.privateKey }) };
    const before = storeFingerprint(mall.mall);
    const cases: [Issued, string][] = [
      [forged, 'CORE_ERR_INSTRUMENT_SIGNATURE'],
      [altered, 'CORE_ERR_INSTRUMENT_SIGNATURE'],
      [unknown, 'CORE_ERR_INSTRUMENT_KEY_UNKNOWN'],
      [{ code: 'x', compact: 'not.an.instrument' }, 'CORE_ERR_INSTRUMENT_MALFORMED'],
    ];
    for (const [i, code] of cases) {
      const r = await reserve(acme, i, 10, `acme:res-${code.slice(-10)}`);
      expect([r.status, r.body.error.code], code).to.deep.equal([409 + (code === 'CORE_ERR_INSTRUMENT_MALFORMED' ? -9 : 0), code]);
    }
    expect(storeFingerprint(mall.mall)).to.equal(before);
    // Sales offline with them: each is flagged, nothing is cleared or recorded of the instruments.
    const seqs = [instrumentSale(acme, [use(forged, 10)]), instrumentSale(acme, [use(altered, 10)]), instrumentSale(acme, [use(unknown, 10)])];
    const res = await acme.push(mall);
    expect(res.status).to.equal(200);
    expect((res.ack.flagged as { eventSeq: number; reason: string }[]).map((f) => f.eventSeq)).to.deep.equal(seqs);
    expect(res.ack.cleared).to.deep.equal({});
    expect((await mall.admin.instrument((good as Issued).code)).remainingUnits).to.equal(100);
    expect(Object.keys(mall.mall.store.state.instruments.records)).to.deep.equal([(good as Issued).code]);
    // Expired: the clock moves past the expiry.
    offsetMs = 31 * 86_400_000;
    const late = await reserve(acme, good as Issued, 10, 'acme:res-late-0001');
    expect([late.status, late.body.error.code]).to.deep.equal([409, 'CORE_ERR_INSTRUMENT_EXPIRED']);
    // The mall starts again on what it holds, and the certificate is as it was.
    const held = storeFingerprint(mall.mall);
    await mall.restart();
    expect(storeFingerprint(mall.mall)).to.equal(held);
    expect((await mall.admin.instrument((good as Issued).code)).remainingUnits).to.equal(100);
  });

  it('reserves exactly once: a retried key gets the same answer, concurrent reservations never exceed the value, a release frees it', async () => {
    const [cert] = (await issue(100)) as [Issued];
    const first = await reserve(acme, cert, 30, 'acme:res-000001');
    expect(first.status, first.text).to.equal(200);
    expect(first.body.reservation).to.deep.include({ code: cert.code, units: 30, state: 'held' });
    expect(first.body.instrument).to.deep.include({ remainingUnits: 70, heldUnits: 30 });
    const again = await reserve(acme, cert, 30, 'acme:res-000001');
    expect(again.text).to.equal(first.text);
    const other = await reserve(acme, cert, 31, 'acme:res-000001');
    expect([other.status, other.body.error.code]).to.deep.equal([400, 'MALL_ERR_VALIDATION']);
    // Ten stores' requests at once for 30 each: 70 remain, so exactly two more succeed.
    const all = await Promise.all(Array.from({ length: 10 }, (_, n) => reserve(n % 2 === 0 ? acme : bobs, cert, 30, `${n % 2 === 0 ? 'acme' : 'bobs'}:res-par-${n}`)));
    expect(all.filter((r) => r.status === 200)).to.have.length(2);
    for (const r of all.filter((x) => x.status !== 200)) expect(r.body.error.code).to.equal('MALL_ERR_INSTRUMENT_INSUFFICIENT');
    expect((await mall.admin.instrument(cert.code)).heldUnits).to.equal(90);
    // Releasing frees the units; a second release is refused.
    const id = first.body.reservation.id as string;
    const rel = await vendorPost(mall, acme.keys, 'acme', `${RES('acme')}/${id}/release`, { key: 'acme:rel-000001' });
    expect(rel.status, rel.text).to.equal(200);
    expect(rel.body.reservation.state).to.equal('released');
    expect((await mall.admin.instrument(cert.code)).remainingUnits).to.equal(40);
    const twice = await vendorPost(mall, acme.keys, 'acme', `${RES('acme')}/${id}/release`, { key: 'acme:rel-000002' });
    expect(twice.body.error.code).to.equal('MALL_ERR_RESERVATION_SPENT');
    const notMine = await vendorPost(mall, bobs.keys, 'bobs', `${RES('bobs')}/${id}/release`, { key: 'bobs:rel-000003' });
    expect(notMine.body.error.code).to.equal('MALL_ERR_RESERVATION_UNKNOWN');
    await mall.restart();
    expect((await mall.admin.instrument(cert.code)).remainingUnits).to.equal(40);
  });

  it('a sale under a reservation captures it; a coupon pays once, for listed products only; a reversal gives the value back', async () => {
    const [cert] = (await issue(100)) as [Issued];
    const r = await reserve(bobs, cert, 60, 'bobs:res-000001');
    const id = r.body.reservation.id as string;
    const seq = instrumentSale(bobs, [use(cert, 60, { reservation: id })]);
    const res = await bobs.push(mall);
    expect(res.ack.flagged).to.deep.equal([]);
    // The mall's certificate: the mall reimburses bobs 60 x 10.
    expect(res.ack.cleared).to.deep.equal({ mall: -600, 'vendor:bobs': 600 });
    expect(await mall.admin.instrument(cert.code)).to.deep.include({ remainingUnits: 40, heldUnits: 0, state: 'live' });
    expect(mall.mall.store.state.instruments.reservations[id]?.state).to.equal('captured');
    // The same reservation again: flagged.
    instrumentSale(bobs, [use(cert, 60, { reservation: id })]);
    expect(((await bobs.push(mall)).ack.flagged as { reason: string }[])[0]?.reason).to.match(/already used/);
    // The refund gives the 60 back to the certificate.
    bobs.add('reversal', [{ account: 'redeemed', token: 'MALL', units: -60 }, { account: 'instruments', token: 'MALL', units: 60 }], { refundId: 'R1', saleId: 'S0000000001', saleSeq: seq, customer: null, reason: 'test', supervisor: 'sup', cashRefundMinor: 0, saleTotalMinor: 450, balancesAfter: null });
    const back = await bobs.push(mall);
    expect(back.ack.flagged).to.deep.equal([]);
    expect((await mall.admin.instrument(cert.code)).remainingUnits).to.equal(100);
    // The store's tallies are back where they were: what instruments paid never counted as its own circulation.
    expect(mall.mall.store.state.vendors['bobs']?.tokens['MALL']).to.deep.include({ redeemedUnits: 0, instrumentRedeemedUnits: 0 });

    // A manufacturer's coupon: its key registered at the mall, the coupon signed outside it.
    const sunny = await newKey();
    await mall.admin.addInstrumentKey('sunny-foods', sunny.publicJwk);
    const coupon = await sunnyCoupon(sunny, 'CPN000000001', 25);
    const wrongProduct = instrumentSale(acme, [use(coupon, 25, { kind: 'coupon', token: 'SUNNY' })], { gtin: P_PEN });
    instrumentSale(acme, [use(coupon, 20, { kind: 'coupon', token: 'SUNNY' })], { gtin: P_JUICE });
    const c1 = await acme.push(mall);
    expect((c1.ack.flagged as { eventSeq: number; reason: string }[]).map((f) => f.eventSeq)).to.deep.equal([wrongProduct]);
    expect((c1.ack.flagged as { reason: string }[])[0]?.reason).to.match(/not on sunny-foods's product list/);
    expect(await mall.admin.instrument(coupon.code)).to.deep.include({ kind: 'coupon', state: 'spent', remainingUnits: 0 });
    const used = await reserve(bobs, coupon, 5, 'bobs:res-coupon-01');
    expect(used.body.error.code).to.equal('MALL_ERR_INSTRUMENT_SPENT');
    const audit = await auditArchive(await archiveOf(mall));
    expect(audit.ok, audit.differences.join('\n')).to.equal(true);
  });

  async function sunnyCoupon(key: TestKey, serial: string, units: number): Promise<Issued> {
    const now = Math.floor(Date.now() / 1000);
    const kid = await calculateJwkThumbprint({ kty: 'OKP', crv: 'Ed25519', x: key.publicJwk['x'] as string });
    const compact = await signInstrument('coupon', { i: 'sunny-foods', s: serial, t: 'SUNNY', u: units, a: now - 60, x: now + 86_400 }, { kid, privateKey: key.privateKey as CryptoKey });
    return { code: instrumentCode('sunny-foods', serial), compact };
  }

  it('catches a double spend by two offline stores: the first to arrive is honoured, the later one flagged by an alarm, the loss assigned by the policy, and statements show it', async () => {
    const [within, beyond] = (await issue(100, 2)) as [Issued, Issued];
    // acme takes 80 of each offline and its batch arrives first.
    instrumentSale(acme, [use(within, 80)]);
    instrumentSale(acme, [use(beyond, 80)]);
    expect((await acme.push(mall)).ack.flagged).to.deep.equal([]);
    // bobs, offline too, took 50 of the first within the policy (500 <= 1,000) ...
    const s1 = instrumentSale(bobs, [use(within, 50)]);
    // ... and 60 of the second with a snapshot two days old: beyond the policy.
    const s2 = instrumentSale(bobs, [use(beyond, 60, { snapshotIssuedAt: inDays(-2) })]);
    const before = await mall.admin.positions();
    const res = await bobs.push(mall);
    expect(res.ack.flagged).to.deep.equal([]);
    // bobs is reimbursed 500 + 600 by the mall, and pays back the 40 units beyond what remained on the second: 400.
    expect(res.ack.cleared).to.deep.equal({ mall: -700, 'vendor:bobs': 700 });
    const after = await mall.admin.positions();
    expect((after.positions['vendor:bobs'] ?? 0) - (before.positions['vendor:bobs'] ?? 0)).to.equal(700);
    expect(await mall.admin.instrument(within.code)).to.deep.include({ remainingUnits: 0, doubleSpent: true, state: 'spent' });
    const found = await alarms();
    expect(found).to.have.length(2);
    expect(found[0]).to.deep.include({ vendor: 'bobs', instrument: within.code, stores: ['acme', 'bobs'], eventSeq: s1 });
    expect(found[0]?.message).to.match(/the issuer mall bears the loss of 300/);
    expect(found[1]).to.deep.include({ instrument: beyond.code, stores: ['acme', 'bobs'], eventSeq: s2 });
    expect(found[1]?.message).to.match(/bobs bears the loss of 400 \(beyond the offline policy: the store's mall snapshot was older than 24 hours\)/);
    expect((await mall.admin.doubleSpentInstruments()).map((s) => s.code).sort()).to.deep.equal([within.code, beyond.code].sort());
    // The statement of bobs shows the two double spends and the charge back.
    const [statement] = (await mall.admin.statements(today(), today())).filter((s) => s.vendor === 'bobs');
    expect(statement?.statement.totals).to.deep.include({ instrumentsDoubleSpent: 2, doubleSpendChargedMinor: 400, reimbursementReceivableMinor: 1_100 });
    // A restart rebuilds the same state from what is durable.
    const fingerprint = storeFingerprint(mall.mall);
    await mall.restart();
    expect(storeFingerprint(mall.mall)).to.equal(fingerprint);
    // Reconcile reports each double spend with its remedy, and the CSV carries the figures.
    const rec = await reconcile(mall.dir, today(), today(), join(mall.dir, 'rec'));
    expect(rec.problems.filter((p) => p.startsWith('DOUBLE SPEND bobs'))).to.have.length(2);
    const csv = await readFile(join(mall.dir, 'rec', `bobs_${today()}_${today()}.csv`), 'utf8');
    expect(csv.split('\n')[0]).to.match(/,instruments_double_spent,double_spend_charged_minor,double_spend_recovered_minor,double_spend_issuer_loss_minor$/);
    expect(csv.trim().split('\n').at(-1)).to.match(/,2,400,0,0$/);
    // Anyone with the archive recomputes the same figures, double spends included.
    const audit = await auditArchive(await archiveOf(mall));
    expect(audit.ok, audit.differences.join('\n')).to.equal(true);
  });

  it('flags a sale that names another store\'s reservation, pays more than an instrument is worth, posts other units than its instruments, or takes an expired one; nothing of the instrument changes', async () => {
    const [cert] = (await issue(100)) as [Issued];
    const mine = await reserve(acme, cert, 10, 'acme:res-000001');
    const id = mine.body.reservation.id as string;
    const before = structuredClone(mall.mall.store.state.instruments);
    const theirs = instrumentSale(bobs, [use(cert, 10, { reservation: id })]);
    const tooMuch = instrumentSale(bobs, [use(cert, 101)]);
    const wrongPostings = bobs.add('sale', [{ account: 'instruments', token: 'MALL', units: -5 }, { account: 'redeemed', token: 'MALL', units: 5 }], {
      saleId: 'S0000000099',
      customer: null,
      currency: 'EUR',
      lines: [{ lineNo: 1, gtin: P_PEN, name: 'Item', qty: 1, unitPriceMinor: 450, totalMinor: 450, unitTokenPrices: { MALL: 10 } }],
      allocations: [{ lineNo: 1, token: 'MALL', units: 10, coversMinor: 450 }],
      debits: { MALL: 10 },
      totalMinor: 450,
      cash: { dueMinor: 0, tenderedMinor: 0, changeMinor: 0 },
      balancesAfter: null,
      instruments: [{ ...use(cert, 10), remainingAfter: 90 }],
    });
    // Dated after the certificate expired (within the bounds of arrival: the mall's clock moves on too).
    offsetMs = 31 * 86_400_000;
    const expired = instrumentSale(bobs, [use(cert, 10)], { at: new Date(Date.now() + offsetMs).toISOString() });
    const res = await bobs.push(mall);
    expect(res.status, res.text).to.equal(200);
    const flagged = res.ack.flagged as { eventSeq: number; reason: string }[];
    expect(flagged.map((f) => f.eventSeq)).to.deep.equal([theirs, tooMuch, wrongPostings, expired]);
    expect(flagged[0]?.reason).to.match(/is not one bobs made/);
    expect(flagged[1]?.reason).to.match(/which is worth 100/);
    expect(flagged[2]?.reason).to.match(/instruments postings in MALL are not the 10/);
    expect(flagged[3]?.reason).to.match(/expired.*CORE_ERR_INSTRUMENT_EXPIRED/);
    expect(res.ack.cleared).to.deep.equal({});
    expect(mall.mall.store.state.instruments).to.deep.equal(before);
    // A certificate sale of a forged certificate is flagged too.
    const forger = await newKey();
    const now = Math.floor(Date.now() / 1000) + Math.floor(offsetMs / 1000);
    const fake = await signInstrument('gift', { i: 'mall', s: 'FAKE00000001', t: 'MALL', u: 40, a: now - 60, x: now + 86_400 }, { kid: (await mall.admin.instrumentKeys())[0]?.kid as string, privateKey: forger.privateKey });
    const sold = bobs.add('instrument.sold', [{ account: 'float', token: 'MALL', units: -40 }, { account: 'instruments', token: 'MALL', units: 40 }], { instrument: fake, code: instrumentCode('mall', 'FAKE00000001'), token: 'MALL', units: 40, priceMinor: 400, currency: 'EUR', payment: { method: 'card', approvalRef: 'APPROVAL-1' } }, new Date(Date.now() + offsetMs).toISOString());
    const res2 = await bobs.push(mall);
    expect((res2.ack.flagged as { eventSeq: number; reason: string }[]).map((f) => [f.eventSeq, /CORE_ERR_INSTRUMENT_SIGNATURE/.test(f.reason)])).to.deep.equal([[sold, true]]);
    expect(mall.mall.store.state.instruments).to.deep.equal(before);
  });

  it('sells a certificate at a till from the float and lets only the seller void it before any use', async () => {
    const [cert] = (await issue(40)) as [Issued];
    const allot = await mall.admin.allot({ vendor: 'acme', token: 'MALL', units: 100, reference: 'float' });
    acme.add('allotment', [{ account: 'issuer:mall', token: 'MALL', units: -100 }, { account: 'float', token: 'MALL', units: 100 }], { token: 'MALL', units: 100, issuer: 'mall', reference: allot.id });
    const sold = acme.add('instrument.sold', [{ account: 'float', token: 'MALL', units: -40 }, { account: 'instruments', token: 'MALL', units: 40 }], {
      instrument: cert.compact,
      code: cert.code,
      token: 'MALL',
      units: 40,
      priceMinor: 400,
      currency: 'EUR',
      payment: { method: 'cash', tenderedMinor: 500, changeMinor: 100 },
    });
    const res = await acme.push(mall);
    expect(res.ack.flagged).to.deep.equal([]);
    expect(await mall.admin.instrument(cert.code)).to.deep.include({ state: 'live', soldBy: 'acme' });
    // Sold twice (by another store): flagged.
    bobs.add('instrument.sold', [{ account: 'float', token: 'MALL', units: -40 }, { account: 'instruments', token: 'MALL', units: 40 }], { instrument: cert.compact, code: cert.code, token: 'MALL', units: 40, priceMinor: 400, currency: 'EUR', payment: { method: 'card', approvalRef: 'APPROVAL-1' } });
    expect(((await bobs.push(mall)).ack.flagged as { reason: string }[])[0]?.reason).to.match(/already sold by acme/);
    // Only the seller voids it.
    const notSeller = await vendorPost(mall, bobs.keys, 'bobs', `/v1/vendors/bobs/instruments/${cert.code}/void`, { key: 'bobs:void-000001', reason: 'mistake' });
    expect(notSeller.body.error.code).to.equal('MALL_ERR_INSTRUMENT_NOT_VOIDABLE');
    const v = await vendorPost(mall, acme.keys, 'acme', `/v1/vendors/acme/instruments/${cert.code}/void`, { key: 'acme:void-000001', reason: 'mistake' });
    expect(v.status, v.text).to.equal(200);
    expect(v.body.state).to.equal('voided');
    acme.add('instrument.voided', [{ account: 'instruments', token: 'MALL', units: -40 }, { account: 'float', token: 'MALL', units: 40 }], { code: cert.code, token: 'MALL', units: 40, soldSeq: sold, reason: 'mistake', supervisor: 'sup', cashRefundMinor: 400 });
    expect((await acme.push(mall)).ack.flagged).to.deep.equal([]);
    expect(mall.mall.store.state.instruments.records[cert.code]?.voidSeq).to.be.a('number');
    const audit = await auditArchive(await archiveOf(mall));
    expect(audit.ok, audit.differences.join('\n')).to.equal(true);
  });
});

describe('mall-sync: the instruments CLI', function () {
  this.timeout(120_000);
  it('sets the policy, issues certificates, shows and voids one, and registers a manufacturer\'s key', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      await initMallOn(dir);
      const run = async (args: string[]) => {
        const r = await runMallCli([...args, '--data-dir', dir]);
        expect(r.code, r.stderr).to.equal(0);
        return JSON.parse(r.stdout);
      };
      const wrong = await runMallCli(['instruments', 'policy', '--offline-instrument-max-minor', '100', '--data-dir', dir]);
      expect(wrong.code).to.not.equal(0);
      expect(await run(['instruments', 'policy', '--offline-instrument-max-minor', '2000', '--offline-store-daily-max-minor', '9000', '--snapshot-max-age-hours', '12'])).to.deep.equal({ offlineInstrumentMaxMinor: 2000, offlineStoreDailyMaxMinor: 9000, snapshotMaxAgeHours: 12 });
      await run(['token-type', '--file', JSON.stringify({ code: 'MALL', name: 'Mall token', kind: 'mall', issuer: 'mall', faceValueMinor: 10, currency: 'EUR', acceptedBy: '*' })]);
      const issued = await run(['instruments', 'issue', '--token', 'MALL', '--units', '50', '--expires', inDays(40).slice(0, 10), '--count', '3', '--key', 'issue:cli-000001']);
      expect(issued.instruments).to.have.length(3);
      expect(await run(['instruments', 'issue', '--token', 'MALL', '--units', '50', '--expires', inDays(40).slice(0, 10), '--count', '3', '--key', 'issue:cli-000001'])).to.deep.equal(issued);
      const code = issued.instruments[0].code as string;
      expect(await run(['instruments', 'status', '--code', code])).to.deep.include({ code, state: 'unsold', remainingUnits: 50 });
      expect(await run(['instruments', 'void', '--code', code, '--reason', 'damaged'])).to.deep.include({ code, state: 'voided' });
      await run(['party', '--id', 'sunny-foods', '--name', 'Sunny Foods', '--kind', 'manufacturer']);
      const key = await newKey();
      const added = await run(['manufacturer', 'add-key', '--id', 'sunny-foods', '--jwk', JSON.stringify(key.publicJwk)]);
      expect(added).to.deep.include({ kid: key.kid, issuer: 'sunny-foods', kinds: ['coupon'] });
      expect((await run(['instruments', 'keys'])).map((k: { issuer: string }) => k.issuer).sort()).to.deep.equal(['mall', 'sunny-foods']);
    } finally {
      await cleanup();
    }
  });
});

describe('mall-sync: instruments move with an embedded mall to PostgreSQL', function () {
  this.timeout(120_000);
  it('keeps every instrument, reservation, double spend and figure', async () => {
    const mall = await startMall();
    let closed = false;
    try {
      const { acme, bobs } = await registerEconomy(mall, { reimbursementTollMinor: 0, royaltyBps: 0, royaltyBpsByToken: {} });
      await mall.admin.setInstrumentPolicy(POLICY);
      const [a, b] = (await mall.admin.issueInstruments({ key: 'issue:move-000001', token: 'MALL', units: 100, expiresAt: inDays(30), count: 2 })).instruments as [Issued, Issued];
      const held = await vendorPost(mall, acme.keys, 'acme', RES('acme'), { key: 'acme:res-move-01', instrument: a.compact, units: 30 });
      instrumentSale(acme, [use(a, 30, { reservation: held.body.reservation.id as string })]);
      instrumentSale(acme, [use(b, 80)]);
      expect((await acme.push(mall)).ack.flagged).to.deep.equal([]);
      instrumentSale(bobs, [use(b, 50, { snapshotIssuedAt: inDays(-3) })]);
      expect((await bobs.push(mall)).ack.flagged).to.deep.equal([]);
      await vendorPost(mall, bobs.keys, 'bobs', RES('bobs'), { key: 'bobs:res-move-02', instrument: a.compact, units: 20 });
      const instruments = structuredClone(mall.mall.store.state.instruments);
      const positions = await mall.admin.positions();
      await mall.mall.close();
      closed = true;
      await migrateStore(mall.dir, { databaseUrl: await freshDatabase() });
      const moved = await startTestMall(mall.dir, 0);
      try {
        expect(moved.store.kind).to.equal('postgres');
        expect(moved.store.state.instruments).to.deep.equal(instruments);
        expect(moved.service.positions()).to.deep.equal(positions);
        expect(moved.instruments.status(a.code)).to.deep.include({ remainingUnits: 50, heldUnits: 20 });
        expect(moved.instruments.status(b.code)).to.deep.include({ doubleSpent: true, remainingUnits: 0 });
      } finally {
        await moved.close();
      }
    } finally {
      if (!closed) await mall.mall.close();
      await rm(mall.dir, { recursive: true, force: true });
    }
  });
});
