import { cp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import { importJWK, type CryptoKey, type JWK } from 'jose';
import { ACK_TYP, batchPayloadText, batchTotals, entityId, makeSaleId, mulDivRound, type AckPayload, type BatchPayload, type FlattenedJws, type JournalEvent } from '../../core/index.ts';
import { REGISTRY_TYP, type RegistryEntry } from '../../mall-sync/archive.ts';
import { auditArchive } from '../../mall-sync/audit.ts';
import { loadMallKeys } from '../../mall-sync/config.ts';
import { signJson, verifyJson } from '../../mall-sync/jws.ts';
import { reconcile } from '../../mall-sync/reconcile.ts';
import type { StatementPayload } from '../../mall-sync/statements.ts';
import { initVendor } from '../../vendor-server/init.ts';
import { openLedger } from '../../vendor-server/ledger/store.ts';
import { dataPaths } from '../../vendor-server/config.ts';
import {
  http,
  opKey,
  P_BREAD,
  P_JUICE,
  P_PEN,
  pushAll,
  registerScenario,
  runMallCli,
  seedVendorCatalog,
  sell,
  signBatch,
  forEachStore,
  startMall,
  startVendor,
  storeFingerprint,
  archiveOf,
  tempDir,
  vendorAuth,
  type BatchCut,
  type Json,
  type MallRig,
  type VendorRig,
} from './helpers.ts';
import { TEST_PIN_HASH_COST } from '../helpers/pin-cost.ts';

const HOUR = 3_600_000;
const today = () => new Date().toISOString().slice(0, 10);
const NAMES = ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', 'prototype', '__defineGetter__'];

interface LineSpec {
  gtin: string;
  priceMinor: number;
  tokenPrices: Record<string, number>;
  qty: number;
}

/** A sale as the vendor's rules write it: every field agrees (core/sale-check.ts). */
function saleEvent(seq: number, customer: string, lines: LineSpec[], pay: { lineNo: number; token: string; units: number }[]) {
  const priced = lines.map((l, i) => ({ lineNo: i + 1, gtin: l.gtin, name: `item ${i + 1}`, qty: l.qty, unitPriceMinor: l.priceMinor, totalMinor: l.priceMinor * l.qty, unitTokenPrices: l.tokenPrices }));
  const allocations = pay.map((p) => {
    const line = priced[p.lineNo - 1] as (typeof priced)[number];
    const lineUnits = (line.unitTokenPrices[p.token] as number) * line.qty;
    return { lineNo: p.lineNo, token: p.token, units: p.units, coversMinor: p.units === lineUnits ? line.totalMinor : mulDivRound(line.totalMinor, p.units, lineUnits) };
  });
  const debits: Record<string, number> = {};
  for (const a of allocations) debits[a.token] = (debits[a.token] ?? 0) + a.units;
  const totalMinor = priced.reduce((n, l) => n + l.totalMinor, 0);
  const due = totalMinor - allocations.reduce((n, a) => n + a.coversMinor, 0);
  return {
    type: 'sale',
    postings: Object.entries(debits).flatMap(([token, units]) => [{ account: `customer:${customer}`, token, units: -units }, { account: 'redeemed', token, units }]),
    data: { saleId: makeSaleId(Math.max(1, seq)), customer, currency: 'EUR', lines: priced, allocations, debits, totalMinor, cash: { dueMinor: due, tenderedMinor: due, changeMinor: 0 }, balancesAfter: null },
  };
}

const PEN: Omit<LineSpec, 'qty'> = { gtin: P_PEN, priceMinor: 450, tokenPrices: { ACME: 90, MALL: 45, BOB: 23 } };

forEachStore('mall-sync: a vendor holding its own valid key cannot make the mall pay for what does not exist', function (store) {
  this.timeout(120_000);
  let mall: MallRig;
  let acme: VendorRig;
  let bobs: VendorRig;
  let mallKey: CryptoKey;
  let customer: string;
  let card: string;
  let offsetMs = 0;

  /** Appends events to a vendor's journal past its ledger's rules, as a dishonest store could; returns their seqs. */
  async function journal(v: VendorRig, events: { type: string; postings: unknown[]; data: unknown; at?: string }[]): Promise<number[]> {
    const j = v.opened.journal;
    const seqs: number[] = [];
    for (const e of events) {
      const seq = j.nextSeq;
      const fields = { v: 1, vendor: v.vendorId, at: e.at ?? new Date().toISOString(), terminal: null, cashier: null, key: null, bodyHash: null, type: e.type, postings: e.postings, data: e.data };
      seqs.push(j.append({ seq, ...fields }).seq);
    }
    await j.flushed();
    return seqs;
  }

  async function push(v: VendorRig): Promise<AckPayload> {
    const { res } = await pushAll(mall, v);
    expect(res.status, res.text).to.equal(200);
    return verifyJson<AckPayload>(res.body.ack, mallKey, ACK_TYP);
  }

  /** Posts a body and checks it is refused with `code`/`status` and that the mall's store did not change. */
  async function refused(body: unknown, code: string | string[], status?: number): Promise<Json> {
    const before = storeFingerprint(mall.mall);
    const res = await mall.postBatch(body);
    expect([code].flat(), `${res.status} ${res.text.slice(0, 300)}`).to.include(res.body?.error?.code);
    if (status !== undefined) expect(res.status).to.equal(status);
    expect(storeFingerprint(mall.mall), 'the store is unchanged').to.equal(before);
    return res.body;
  }

  async function resign(cut: BatchCut, change: (p: Json) => void, text?: (t: string) => string): Promise<FlattenedJws> {
    const p = structuredClone(cut.payload) as Json;
    change(p);
    const canonical = batchPayloadText(p as BatchPayload);
    return signBatch(text === undefined ? canonical : text(canonical), acme.keys);
  }

  const positions = async () => (await mall.admin.positions()).positions;

  before(async () => {
    mall = await startMall({ clock: () => new Date(Date.now() + offsetMs), store });
    acme = await startVendor('acme');
    bobs = await startVendor('bobs');
    await registerScenario(mall, acme, bobs.keys.publicJwk as Record<string, unknown>);
    mallKey = (await importJWK((await mall.admin.mallKey()).jwk as unknown as JWK, 'EdDSA')) as CryptoKey;
    await seedVendorCatalog(acme);
    const c = await acme.ledger.registerCustomer(acme.op, { name: 'Anna Berger' });
    customer = c.id;
    card = c.card;
    await acme.ledger.recordAllotment(acme.op, opKey(), { token: 'ACME', units: 5000, reference: 'own loyalty tokens' });
    await acme.ledger.issueTokens(acme.op, opKey(), { customerId: customer, token: 'ACME', units: 1000, reason: 'reward' });
    expect((await push(acme)).flagged).to.deep.equal([]);
  });

  after(async () => {
    await mall?.close();
    await acme?.close();
    await bobs?.close();
  });

  it('pays for no token the mall did not allot: redemptions beyond the allotments are flagged; own tokens are the vendor\'s liability', async () => {
    // 5,000 MALL the mall never allotted: the store records them itself and spends 4,995.
    const before = await positions();
    const fake = await acme.ledger.recordAllotment(acme.op, opKey(), { token: 'MALL', units: 5000, reference: 'opening allotment from the mall' });
    await acme.ledger.issueTokens(acme.op, opKey(), { customerId: customer, token: 'MALL', units: 5000, reason: 'purchase' });
    const spent = await sell(acme, card, [{ code: P_PEN, qty: 111 }], [{ token: 'MALL' }]);
    expect(spent.debits).to.deep.equal({ MALL: 4995 });
    const ack = await push(acme);
    const reasons = new Map(ack.flagged.map((f) => [f.eventSeq, f.reason]));
    expect(reasons.get(fake.seq)).to.match(/was never issued by the mall to acme/);
    expect(reasons.get(spent.seq)).to.match(/redeems 4995 MALL, which would bring acme's redemptions to 4995, beyond the 0 the mall allotted to it/);
    expect(ack.cleared).to.deep.equal({});
    expect(await positions(), 'nothing paid').to.deep.equal(before);

    // The mall allots 1,000: 900 of them are paid for, the next 135 are not; the store's own ACME always are.
    const allotment = await mall.admin.allot({ vendor: 'acme', token: 'MALL', units: 1000, reference: 'November float' });
    await acme.ledger.recordAllotment(acme.op, `mall:${allotment.id}`, { token: 'MALL', units: 1000, reference: allotment.id });
    await acme.ledger.recordAllotment(acme.op, opKey(), { token: 'MALL', units: 2000, reference: 'more from nowhere' });
    await acme.ledger.issueTokens(acme.op, opKey(), { customerId: customer, token: 'MALL', units: 3000, reason: 'purchase' });
    const paid = await sell(acme, card, [{ code: P_PEN, qty: 20 }], [{ token: 'MALL' }]);
    const beyond = await sell(acme, card, [{ code: P_PEN, qty: 3 }], [{ token: 'MALL' }]);
    const own = await sell(acme, card, [{ code: P_PEN, qty: 1 }], [{ token: 'ACME' }]);
    const ack2 = await push(acme);
    const reasons2 = new Map(ack2.flagged.map((f) => [f.eventSeq, f.reason]));
    expect(reasons2.has(paid.seq)).to.equal(false);
    expect(reasons2.has(own.seq)).to.equal(false);
    expect(reasons2.get(beyond.seq)).to.match(/redeems 135 MALL, which would bring acme's redemptions to 1035, beyond the 1000 the mall allotted to it/);
    // 900 MALL x 10 = 9,000 reimbursed less 2.5 % royalty (225); 90 ACME x 5 = 450 at 2.5 % = 11 royalty.
    expect(ack2.cleared).to.deep.equal({ mall: -9000 + 225 + 11, 'vendor:acme': 9000 - 225 - 11 });
    expect((await mall.admin.vendor('acme')).tokens['MALL']).to.deep.equal({ allottedUnits: 1000, redeemedUnits: 900 });
  });

  it('refuses to clear a wash, an empty debit and a duplicated line: the sale\'s parts must agree exactly', async () => {
    const before = await positions();
    const cashOnly = saleEvent(0, customer, [{ ...PEN, qty: 1 }], []);
    const seqs = await journal(acme, [
      // +45 and -45 to redeemed, no customer debited.
      { ...cashOnly, postings: [{ account: 'redeemed', token: 'MALL', units: 45 }, { account: 'redeemed', token: 'MALL', units: -45 }] },
      // Debits {} while 45 MALL move from the customer to redeemed.
      { ...cashOnly, postings: [{ account: `customer:${customer}`, token: 'MALL', units: -45 }, { account: 'redeemed', token: 'MALL', units: 45 }] },
      // Two lines numbered 1: the coupon's allocation to "line 1" would pass for the listed juice while paying the bread.
      (() => {
        const e = saleEvent(0, customer, [{ gtin: P_BREAD, priceMinor: 289, tokenPrices: { SUNNY: 29 }, qty: 1 }, { gtin: P_JUICE, priceMinor: 249, tokenPrices: { SUNNY: 25 }, qty: 1 }], [{ lineNo: 1, token: 'SUNNY', units: 29 }]);
        (e.data.lines[1] as { lineNo: number }).lineNo = 1;
        return e;
      })(),
    ]);
    const ack = await push(acme);
    const reasons = new Map(ack.flagged.map((f) => [f.eventSeq, f.reason]));
    expect(reasons.get(seqs[0] as number)).to.match(/the sale does not add up: .*which the sale does not debit/);
    expect(reasons.get(seqs[1] as number)).to.match(/the sale does not add up: .*does not debit/);
    expect(reasons.get(seqs[2] as number)).to.match(/the sale does not add up: line 2 is numbered 1/);
    expect(ack.cleared).to.deep.equal({});
    expect(await positions()).to.deep.equal(before);
  });

  it('judges time by arrival: a backdated sale of expired tokens, a sale dated 2029, a step back in time; the statement day within arrival bounds', async () => {
    // Expiring a few minutes from now, so that the backdated sale below stays within the clock skew of later events.
    const expiresAt = new Date(Date.now() + 6 * 60_000).toISOString();
    await mall.admin.upsertTokenType({ code: 'EXP', name: 'Expiring', kind: 'mall', issuer: 'mall', faceValueMinor: 10, currency: 'EUR', acceptedBy: '*', expiresAt });
    const allotment = await mall.admin.allot({ vendor: 'acme', token: 'EXP', units: 1000, reference: 'short-lived' });
    const pen = { ...PEN, tokenPrices: { EXP: 45 } };
    const at = (ms: number) => new Date(ms).toISOString();
    const seqs = await journal(acme, [
      { type: 'allotment', postings: [{ account: 'issuer:mall', token: 'EXP', units: -1000 }, { account: 'float', token: 'EXP', units: 1000 }], data: { token: 'EXP', units: 1000, issuer: 'mall', reference: allotment.id } },
      // Written as if before the expiry; it reaches the mall 101 hours later.
      { ...saleEvent(acme.opened.journal.nextSeq + 1, customer, [{ ...pen, qty: 1 }], [{ lineNo: 1, token: 'EXP', units: 45 }]), at: at(Date.parse(expiresAt) - 60_000) },
      { ...saleEvent(acme.opened.journal.nextSeq + 2, customer, [{ ...pen, qty: 1 }], [{ lineNo: 1, token: 'MALL', units: 45 }].map((p) => ({ ...p, token: 'EXP' }))), at: '2029-06-01T10:00:00.000Z' },
      { ...saleEvent(acme.opened.journal.nextSeq + 3, customer, [{ ...pen, qty: 1 }], [{ lineNo: 1, token: 'EXP', units: 45 }]), at: at(Date.now() - 3 * HOUR) },
    ]);
    const before = await positions();
    offsetMs = 101 * HOUR;
    let ack: AckPayload;
    try {
      ack = await push(acme);
    } finally {
      offsetMs = 0;
    }
    const reasons = new Map(ack.flagged.map((f) => [f.eventSeq, f.reason]));
    expect(reasons.has(seqs[0] as number), 'the allotment is fine').to.equal(false);
    expect(reasons.get(seqs[1] as number)).to.match(/EXP tokens expired at .*judged at .*within the bounds of its arrival/);
    expect(reasons.get(seqs[2] as number)).to.match(/dated 2029-06-01T10:00:00.000Z, after it reached the mall/);
    expect(reasons.get(seqs[3] as number)).to.match(/before the vendor's previous event/);
    expect(ack.cleared).to.deep.equal({});
    expect(await positions()).to.deep.equal(before);

    // bobs' first event, dated five days before it arrives, is booked no earlier than arrival less 72 hours.
    const fiveDaysAgo = Date.now() - 5 * 24 * HOUR;
    await journal(bobs, [{ ...saleEvent(1, 'cust-000001', [{ ...PEN, qty: 1 }], [{ lineNo: 1, token: 'BOB', units: 23 }]), at: at(fiveDaysAgo) }]);
    const bobsAck = await push(bobs);
    expect(bobsAck.flagged).to.deep.equal([]);
    const flagged = await mall.admin.flagged('acme');
    expect(flagged.find((f) => f.eventSeq === seqs[2])?.at.slice(0, 4), 'the 2029 sale is not booked in 2029').to.not.equal('2029');
    const from = at(fiveDaysAgo).slice(0, 10);
    const [statement] = (await mall.admin.statements(from, today())).filter((s) => s.vendor === 'bobs');
    const days = (statement?.statement as StatementPayload).days.filter((d) => d.transactions > 0).map((d) => d.date);
    const booked = bobsAck.ingestedAt.slice(0, 10) === today() ? at(Date.parse(bobsAck.ingestedAt) - 72 * HOUR).slice(0, 10) : null;
    expect(days).to.deep.equal([booked]);
  });

  it('reports a far-ahead batch as a gap with its remedy, and records an admin\'s signed decision so reconcile can finish', async () => {
    await journal(acme, [saleEvent(1, customer, [{ ...PEN, qty: 1 }], [])]);
    const cut = (await acme.batcher.cut(1)) as BatchCut;
    const far = await resign(cut, (p) => (p.seq = 1_000_000_000_000));
    await refused(far, 'MALL_ERR_BATCH_GAP', 409);
    const r1 = await reconcile(mall.dir, today(), today());
    const gap = r1.problems.find((p) => p.startsWith('GAP acme'));
    expect(gap).to.match(/saw batch 1000000000000.*Remedy: .*mall-sync gap-decide --vendor acme/);
    const decision = await mall.admin.decideGap('acme', { decision: 'wait', note: 'not a batch of ours: the store was tested with a copy of its key' });
    expect(decision).to.include({ vendor: 'acme', decision: 'wait', seenSeq: 1_000_000_000_000, resendFromSeq: null });
    const r2 = await reconcile(mall.dir, today(), today());
    expect(r2.problems).to.deep.equal([]);
    expect(r2.decided).to.have.length(1);
    expect(r2.decided[0]).to.match(/GAP acme: .*decided at .*: wait for the missing batches/);
    // The decision is a signed entry of the registry history.
    const dir = join(await archiveOf(mall), 'registry');
    const last = (await readdir(dir)).sort().at(-1) as string;
    const entry = await verifyJson<RegistryEntry>(JSON.parse(await readFile(join(dir, last), 'utf8')) as FlattenedJws, mallKey, REGISTRY_TYP);
    expect(entry).to.include({ type: 'gap.decided' });
    // A batch further ahead is a new gap nobody decided on; a resend decision is shown in the vendor's cursor.
    await refused(await resign(cut, (p) => (p.seq = 1_000_000_000_005)), 'MALL_ERR_BATCH_GAP', 409);
    expect((await reconcile(mall.dir, today(), today())).problems.some((p) => p.startsWith('GAP acme'))).to.equal(true);
    await mall.admin.decideGap('acme', { decision: 'resend' });
    const cursor = await mall.get('/v1/vendors/acme/cursor', await vendorAuth(acme.keys, 'acme'));
    expect(cursor.body.resendFromSeq).to.equal(cut.payload.seq);
    expect((await reconcile(mall.dir, today(), today())).problems).to.deep.equal([]);
  });

  it('checks size and event count before the signature, and the signature before parsing: 2,001 events get 413', async () => {
    await journal(acme, [saleEvent(1, customer, [{ ...PEN, qty: 1 }], [])]);
    const cut = (await acme.batcher.cut(1)) as BatchCut;
    const many = (p: Json) => {
      p.events = Array.from({ length: 2001 }, () => p.events[0]);
      p.toSeq = p.fromSeq + 2000;
    };
    const signed = await resign(cut, many);
    expect((await refused(signed, 'MALL_ERR_TOO_LARGE', 413)).error.message).to.match(/at most 2000 events, this one says 2001/);
    // The same with a broken signature: the count is checked first.
    await refused({ ...signed, signature: `${signed.signature.slice(0, -4)}AAAA` }, 'MALL_ERR_TOO_LARGE', 413);
    // A payload that hides its count behind a one-event span is counted once verified.
    const hidden = await resign(cut, (p) => (p.events = Array.from({ length: 2001 }, () => p.events[0])));
    expect((await refused(hidden, 'MALL_ERR_TOO_LARGE', 413)).error.message).to.match(/this one has 2001/);
    await refused({ ...hidden, signature: `${hidden.signature.slice(0, -4)}AAAA` }, 'MALL_ERR_SIGNATURE', 401);
  });

  it('accepts only RFC 8785 canonical payloads: no byte order mark, duplicate keys, 1.0, 1e0, whitespace or other key order', async () => {
    const cut = (await acme.batcher.cut(1)) as BatchCut;
    const variants: [string, (t: string) => string][] = [
      ['a byte order mark', (t) => `\ufeff${t}`],
      ['a duplicate key', (t) => t.replace('{"createdAt":', '{"v":1,"createdAt":')],
      ['1.0', (t) => t.replace('"v":1,"vendor"', '"v":1.0,"vendor"')],
      ['1e0', (t) => t.replace('"v":1,"vendor"', '"v":1e0,"vendor"')],
      ['-1e0', (t) => t.replace('"v":1,"vendor"', '"v":-1e0,"vendor"')],
      ['whitespace', (t) => t.replace('{"createdAt":', '{ "createdAt":')],
      ['another key order', () => JSON.stringify(cut.payload)],
    ];
    for (const [name, change] of variants) {
      expect(change(cut.text), name).to.not.equal(cut.text);
      const body = await resign(cut, () => undefined, change);
      const res = await refused(body, 'MALL_ERR_MALFORMED', 400);
      expect(res.error.message, name).to.match(/byte order mark|canonical/);
    }
    const ok = await mall.postBatch(cut.jws);
    expect(ok.status, ok.text).to.equal(200);
    acme.batcher.accept(cut);
  });

  it('is not broken by prototype names in any identifier of any endpoint or batch field, and keeps serving other vendors', async () => {
    const prototypeNames = Object.getOwnPropertyNames(Object.prototype).sort();
    const before = await positions();
    const admin = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
      http(`${mall.mall.url}${path}`, method, body, { authorization: `Bearer ${mall.init.adminToken}`, ...headers });
    const auth = await vendorAuth(acme.keys, 'acme');
    // Built-in property names are reserved: none of them is an id, even one that matches the id pattern (`constructor`).
    expect(NAMES.filter((n) => entityId.safeParse(n).success)).to.deep.equal([]);
    for (const n of NAMES) {
      const e = encodeURIComponent(n);
      for (const path of [`/v1/vendors/${e}/cursor`, `/v1/vendors/${e}/snapshot`, `/v1/vendors/${e}/statements?from=${today()}&to=${today()}`]) {
        const res = await http(`${mall.mall.url}${path}`, 'GET', undefined, auth);
        expect([res.status, res.body?.error?.code], `${path}: ${res.text.slice(0, 200)}`).to.deep.equal([404, 'MALL_ERR_VENDOR_UNKNOWN']);
      }
      const calls: [string, string, unknown?, Record<string, string>?][] = [
        ['GET', `/admin/vendors/${e}`],
        ['GET', `/admin/vendors/${e}/cursor`],
        ['POST', `/admin/vendors/${e}/keys`, { jwk: acme.keys.publicJwk }],
        ['POST', `/admin/vendors/${e}/gap-decision`, { decision: 'wait' }],
        ['POST', `/admin/vendors/acme/keys/${e}/retire`],
        ['POST', `/admin/vendors/acme/keys/${e}/revoke`, {}],
        ['PUT', `/admin/token-types/${e}`, { name: 'x', kind: 'mall', issuer: 'mall', faceValueMinor: 1, currency: 'EUR', acceptedBy: '*' }],
        ['PUT', '/admin/token-types/PROTO', { name: 'x', kind: 'vendor', issuer: n, faceValueMinor: 1, currency: 'EUR', acceptedBy: [n] }],
        ['POST', '/admin/vendors', { id: n.toUpperCase(), name: 'x', jwk: acme.keys.publicJwk }],
        ['POST', '/admin/parties', { id: n.toUpperCase(), name: 'x', kind: 'manufacturer' }],
        ['PUT', '/admin/fees', JSON.parse(`{"royaltyBps":1,"royaltyBpsByVendor":{"${n}":5},"royaltyBpsByToken":{},"reimbursementTollMinor":0,"customerDataTollMinor":0,"exchangeServiceBps":0}`)],
        ['PUT', '/admin/fees', JSON.parse(`{"royaltyBps":1,"royaltyBpsByVendor":{},"royaltyBpsByToken":{"${n}":5},"reimbursementTollMinor":0,"customerDataTollMinor":0,"exchangeServiceBps":0}`)],
        ['POST', '/admin/allotments', { vendor: n, token: 'MALL', units: 1, reference: 'x' }, { 'idempotency-key': `proto-${NAMES.indexOf(n)}-vendor` }],
        ['POST', '/admin/allotments', { vendor: 'acme', token: n, units: 1, reference: 'x' }, { 'idempotency-key': `proto-${NAMES.indexOf(n)}-token` }],
        ['GET', `/admin/flagged?vendor=${e}`],
        ['GET', `/admin/allotments?vendor=${e}`],
      ];
      for (const [method, path, body, headers] of calls) {
        const res = await admin(method, path, body, headers);
        expect(res.status, `${method} ${path} ${JSON.stringify(body)}: ${res.text.slice(0, 200)}`).to.be.within(200, 499);
        // A reserved name is refused wherever an identifier goes.
        if (method !== 'GET') expect(res.status, `${method} ${path} ${JSON.stringify(body)} is refused`).to.be.within(400, 499);
      }
    }

    // Every identifier of a batch's events: flagged, one by one; nothing cleared.
    const events = NAMES.flatMap((n) => {
      const sale = saleEvent(0, customer, [{ ...PEN, qty: 1 }], [{ lineNo: 1, token: 'MALL', units: 45 }]);
      return [
        { ...sale, data: { ...sale.data, debits: JSON.parse(`{"${n}":45}`) as Record<string, number> } },
        { ...sale, data: { ...sale.data, allocations: [{ ...(sale.data.allocations[0] as Json), token: n }] } },
        { ...sale, data: { ...sale.data, customer: n } },
        { ...sale, data: { ...sale.data, lines: [{ ...(sale.data.lines[0] as Json), gtin: n }] } },
        { ...sale, data: { ...sale.data, lines: [{ ...(sale.data.lines[0] as Json), unitTokenPrices: JSON.parse(`{"MALL":45,"${n}":1}`) as Record<string, number> }] } },
        { ...sale, postings: [{ account: n, token: 'MALL', units: -45 }, { account: 'redeemed', token: 'MALL', units: 45 }] },
        { type: 'issuance', postings: [], data: { customer: n, token: 'MALL', units: 1 } },
        { type: 'issuance', postings: [], data: { customer, token: n, units: 1 } },
        { type: 'allotment', postings: [{ account: 'issuer:mall', token: 'MALL', units: -1 }, { account: 'float', token: 'MALL', units: 1 }], data: { token: 'MALL', units: 1, issuer: 'mall', reference: n } },
        { type: 'allotment', postings: [], data: { token: 'MALL', units: 1, issuer: n, reference: 'alt-000001' } },
        { type: 'reversal', postings: [], data: { saleSeq: n } },
        { type: n, postings: [], data: {} },
      ];
    });
    const seqs = await journal(acme, events);
    const ack = await push(acme);
    // Every event is flagged, an issuance to a customer `constructor` too: a reserved name is no customer id.
    expect(ack.flagged.map((f) => f.eventSeq)).to.deep.equal(seqs);
    for (const n of ['constructor', 'prototype']) {
      const issuance = seqs[NAMES.indexOf(n) * 12 + 6];
      expect(ack.flagged.find((f) => f.eventSeq === issuance)?.reason, n).to.equal('the issuance data is malformed at customer');
    }
    expect(ack.cleared).to.deep.equal({});

    // The batch itself: the kid, the vendor, a totals key and a posting's token.
    await journal(acme, [saleEvent(0, customer, [{ ...PEN, qty: 1 }], [{ lineNo: 1, token: 'MALL', units: 45 }])]);
    const cut = (await acme.batcher.cut(1)) as BatchCut;
    for (const n of NAMES) {
      const header = JSON.parse(Buffer.from(cut.jws.protected, 'base64url').toString()) as Json;
      await refused({ ...cut.jws, protected: Buffer.from(JSON.stringify({ ...header, kid: n })).toString('base64url') }, 'MALL_ERR_KEY_UNKNOWN', 401);
      await refused(await resign(cut, (p) => (p.vendor = n)), ['MALL_ERR_MALFORMED', 'MALL_ERR_KEY_UNKNOWN']);
      await refused(await resign(cut, (p) => (p.totals = JSON.parse(`{"${n}":{"units":1,"events":1}}`) as Json)), ['MALL_ERR_MALFORMED', 'MALL_ERR_TOTALS'], undefined);
      const tokenEvent = (t: string) => t.replace(/"token":"[A-Z]+"/, `"token":${JSON.stringify(n)}`);
      expect(tokenEvent(cut.payload.events[0] as string)).to.not.equal(cut.payload.events[0]);
      await refused(
        await resign(cut, (p) => {
          p.events = [tokenEvent(p.events[0] as string)];
          p.totals = batchTotals([JSON.parse(p.events[0] as string) as JournalEvent]);
        }),
        ['MALL_ERR_MALFORMED', 'MALL_ERR_TOTALS', 'MALL_ERR_EVENT_CHAIN'],
      );
    }

    // The mall is whole: the prototype untouched, positions unchanged, other vendors served, admin changes work.
    expect(Object.getOwnPropertyNames(Object.prototype).sort()).to.deep.equal(prototypeNames);
    expect(await positions()).to.deep.equal(before);
    expect((await http(`${mall.mall.url}/health`, 'GET')).body.ok).to.equal(true);
    expect((await http(`${mall.mall.url}/metrics`, 'GET')).status).to.equal(200);
    await journal(bobs, [saleEvent(2, 'cust-000001', [{ ...PEN, qty: 1 }], [])]);
    expect((await push(bobs)).flagged).to.deep.equal([]);
    expect((await admin('PUT', '/admin/fees', { royaltyBps: 250, royaltyBpsByVendor: {}, royaltyBpsByToken: { BOB: 100 }, reimbursementTollMinor: 7, customerDataTollMinor: 0, exchangeServiceBps: 0 })).status).to.equal(200);
    const ok = await mall.postBatch(cut.jws);
    expect(ok.status, ok.text).to.equal(200);
    acme.batcher.accept(cut);
  });

  describe('an audit anyone can run', () => {
    it('recomputes every position and statement from the archive alone after the attacks, and finds any difference to the minor unit', async () => {
      await mall.admin.statements(today(), today());
      const archive = await archiveOf(mall);
      const clean = await auditArchive(archive);
      expect(clean.differences).to.deep.equal([]);
      expect(clean.ok).to.equal(true);
      expect(clean.batches).to.equal(mall.mall.store.state.totals.batches);
      expect(clean.statements).to.be.greaterThan(0);
      expect(clean.positions).to.deep.equal(await positions());
      const cli = await runMallCli(['audit', '--archive', archive]);
      expect(cli.code, cli.stderr).to.equal(0);

      const keys = await loadMallKeys(mall.dir);
      const { dir: scratch, cleanup } = await tempDir('mallpos-audit-');
      try {
        const tampered = async (name: string, change: (copy: string) => Promise<void>, expected: RegExp) => {
          const copy = join(scratch, name);
          await cp(archive, copy, { recursive: true });
          await change(copy);
          const r = await auditArchive(copy);
          expect(r.ok, name).to.equal(false);
          expect(r.differences.join('\n'), name).to.match(expected);
          return copy;
        };
        const vendorDir = (copy: string) => join(copy, 'vendors', 'acme');
        const file = (seq: number, kind: 'batch' | 'ack') => `${kind}-${String(seq).padStart(10, '0')}.jws.json`;
        // A byte of an archived batch.
        const flipped = await tampered('batch-byte', async (copy) => {
          const f = join(vendorDir(copy), file(2, 'batch'));
          const jws = JSON.parse(await readFile(f, 'utf8')) as FlattenedJws;
          const bytes = Buffer.from(jws.payload, 'base64url');
          bytes[10] = (bytes[10] as number) ^ 1;
          await writeFile(f, JSON.stringify({ ...jws, payload: bytes.toString('base64url') }));
        }, /batch 2 of acme: the archived batch is not the one the mall acknowledged/);
        const cliTampered = await runMallCli(['audit', '--archive', flipped]);
        expect(cliTampered.code).to.equal(2);
        // The mall's own figure for a batch, off by one minor unit (signed with the mall's key).
        await tampered('ack-minor-unit', async (copy) => {
          const f = join(vendorDir(copy), file(3, 'ack'));
          const ack = JSON.parse(Buffer.from((JSON.parse(await readFile(f, 'utf8')) as FlattenedJws).payload, 'base64url').toString()) as AckPayload;
          ack.cleared = { ...ack.cleared, mall: (ack.cleared['mall'] ?? 0) - 1, 'vendor:acme': (ack.cleared['vendor:acme'] ?? 0) + 1 };
          await writeFile(f, JSON.stringify(await signJson(ack, keys.privateKey, keys.kid, ACK_TYP)));
        }, /batch 3 of acme: the mall cleared .*the rules clear/);
        // A statement whose net is one minor unit off.
        await tampered('statement-minor-unit', async (copy) => {
          const dir = join(copy, 'statements');
          const name = (await readdir(dir)).find((n) => n.startsWith('acme_')) as string;
          const s = JSON.parse(Buffer.from((JSON.parse(await readFile(join(dir, name), 'utf8')) as FlattenedJws).payload, 'base64url').toString()) as StatementPayload;
          s.totals.netMinor += 1;
          await writeFile(join(dir, name), JSON.stringify(await signJson(s, keys.privateKey, keys.kid, 'mallpos-statement+jws')));
        }, /statement acme_.*totals says/);
        // A registry entry removed (an allotment the vendor's redemptions rely on).
        await tampered('registry-gap', async (copy) => {
          const dir = join(copy, 'registry');
          const names = (await readdir(dir)).sort();
          await rm(join(dir, names[Math.floor(names.length / 2)] as string));
        }, /registry: .* expected entry/);
      } finally {
        await cleanup();
      }
    });

    it('documents every fee field in mall-sync fees --help', async () => {
      const help = await runMallCli(['fees', '--help']);
      expect(help.code).to.equal(0);
      for (const field of ['royaltyBps', 'royaltyBpsByVendor', 'royaltyBpsByToken', 'reimbursementTollMinor', 'customerDataTollMinor', 'exchangeServiceBps']) {
        expect(help.stdout).to.match(new RegExp(`\\n  ${field} +\\S`), field);
      }
    });

    it('the vendor server journals no sale whose parts disagree (the same validator as the mall\'s)', async () => {
      const v = await startVendor('acme');
      try {
        await seedVendorCatalog(v);
        const c = await v.ledger.registerCustomer(v.op, { name: 'Vera Vendor' });
        await v.ledger.recordAllotment(v.op, opKey(), { token: 'ACME', units: 1000, reference: 'own tokens' });
        await v.ledger.issueTokens(v.op, opKey(), { customerId: c.id, token: 'ACME', units: 500, reason: 'reward' });
        // A pricing fault that would debit one token more than the allocations take.
        const ledger = v.ledger as unknown as { priceFor: (...args: unknown[]) => { debits: Record<string, number> } };
        const honest = ledger.priceFor.bind(v.ledger);
        ledger.priceFor = (...args: unknown[]) => {
          const cart = honest(...args);
          for (const t of Object.keys(cart.debits)) cart.debits[t] = (cart.debits[t] as number) + 1;
          return cart;
        };
        const seq = v.opened.journal.lastSeq;
        const err = await sell(v, c.card, [{ code: P_PEN, qty: 1 }], [{ token: 'ACME' }]).then(() => null, (e: unknown) => e as { code?: string; message: string });
        expect(err?.code).to.equal('CORE_ERR_SALE_INCONSISTENT');
        expect(err?.message).to.match(/the sale does not add up: the debit of 91 ACME is not what the allocations take, 90/);
        expect(v.opened.journal.lastSeq, 'nothing journalled').to.equal(seq);
        ledger.priceFor = honest;
        expect((await sell(v, c.card, [{ code: P_PEN, qty: 1 }], [{ token: 'ACME' }])).debits).to.deep.equal({ ACME: 90 });
      } finally {
        await v.close();
      }
    });

    it('demo stores get their mall and manufacturer float from the mall only', async () => {
      const { dir, cleanup } = await tempDir('mallpos-demo-');
      try {
        await initVendor({ dataDir: dir, demo: true, pinHashCost: TEST_PIN_HASH_COST });
        const opened = await openLedger({ dataDir: dataPaths(dir).ledgerDir, vendorId: 'acme' });
        try {
          const allotments: string[] = [];
          for await (const rec of opened.journal.iterate(1, opened.journal.durableSeq)) {
            const e = JSON.parse(rec.text) as JournalEvent;
            if (e.type === 'allotment') allotments.push(e.data.token);
          }
          expect(allotments).to.deep.equal(['ACME']);
        } finally {
          await opened.journal.close();
        }
      } finally {
        await cleanup();
      }
    });
  });
});
