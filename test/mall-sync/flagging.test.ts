import { expect } from 'chai';
import { importJWK, type CryptoKey, type JWK } from 'jose';
import { ACK_TYP, STATEMENT_TYP, type AckPayload, type TokenType } from '../../core/index.ts';
import { verifyJson } from '../../mall-sync/jws.ts';
import type { StatementPayload } from '../../mall-sync/statements.ts';
import {
  P_BREAD,
  P_JUICE,
  P_PEN,
  newKey,
  opKey,
  pushAll,
  registerScenario,
  scenarioTokenTypes,
  seedVendorCatalog,
  sell,
  forEachStore,
  startMall,
  startVendor,
  type Json,
  type MallRig,
  type VendorRig,
  vendorAuth,
} from './helpers.ts';

const today = () => new Date().toISOString().slice(0, 10);

forEachStore('mall-sync: clearing and flagging what a real vendor ledger sends', function (store) {
  this.timeout(60_000);
  let mall: MallRig;
  let v: VendorRig;
  let mallKey: CryptoKey;
  let customerId: string;
  let card: string;
  const sales: Record<string, { seq: number; saleId: string }> = {};

  before(async () => {
    mall = await startMall({ store });
    v = await startVendor('acme');
    await registerScenario(mall, v, (await newKey()).publicJwk);
    mallKey = (await importJWK((await mall.admin.mallKey()).jwk as unknown as JWK, 'EdDSA')) as CryptoKey;
    await seedVendorCatalog(v);
    const c = await v.ledger.registerCustomer(v.op, { name: 'Anna Berger' });
    customerId = c.id;
    card = c.card;
  });

  after(async () => {
    await mall?.close();
    await v?.close();
  });

  it('clears a known example: allotments, redemptions of four issuers, a refund', async () => {
    const a1 = await mall.admin.allot({ vendor: 'acme', token: 'MALL', units: 1000, reference: 'November float' }, 'allot-test-0001');
    const a2 = await mall.admin.allot({ vendor: 'acme', token: 'BOB', units: 500, reference: 'Bob\'s campaign' }, 'allot-test-0002');
    const a3 = await mall.admin.allot({ vendor: 'acme', token: 'SUNNY', units: 200, reference: 'Sunny coupons' }, 'allot-test-0003');
    expect([a1.id, a1.purchaseMinor, a2.purchaseMinor, a3.purchaseMinor]).to.deep.equal(['alt-000001', 10_000, 0, 0]);
    // A retry with the same key returns the same allotment; another body is refused.
    expect((await mall.admin.allot({ vendor: 'acme', token: 'MALL', units: 1000, reference: 'November float' }, 'allot-test-0001')).id).to.equal('alt-000001');
    const conflict = await mall.admin.allot({ vendor: 'acme', token: 'MALL', units: 999, reference: 'November float' }, 'allot-test-0001').catch((e: Json) => e);
    expect(conflict.code).to.equal('MALL_ERR_EXISTS');

    // The vendor takes the allotments into its float by their ids, as its pusher does from the snapshot.
    const snap = await verifyJson<Json>((await mall.get('/v1/vendors/acme/snapshot', await vendorAuth(v.keys, 'acme'))).body.snapshot, mallKey, 'mallpos-snapshot+jws');
    expect(snap.allotments.map((a: Json) => [a.id, a.token, a.units])).to.deep.equal([['alt-000001', 'MALL', 1000], ['alt-000002', 'BOB', 500], ['alt-000003', 'SUNNY', 200]]);
    for (const a of snap.allotments) await v.ledger.recordAllotment(v.op, `mall:${a.id}`, { token: a.token, units: a.units, reference: a.id });
    await v.ledger.recordAllotment(v.op, opKey(), { token: 'ACME', units: 5000, reference: 'own loyalty tokens' });
    for (const [token, units] of [['MALL', 300], ['BOB', 100], ['SUNNY', 60], ['ACME', 1000]] as const) {
      await v.ledger.issueTokens(v.op, opKey(), { customerId, token, units, reason: 'reward' });
    }
    const s1 = await sell(v, card, [{ code: P_PEN, qty: 2 }], [{ token: 'MALL' }]);
    const s2 = await sell(v, card, [{ code: P_PEN, qty: 1 }], [{ token: 'BOB' }]);
    const s3 = await sell(v, card, [{ code: P_JUICE, qty: 1 }], [{ token: 'SUNNY' }]);
    const s4 = await sell(v, card, [{ code: P_PEN, qty: 1 }], [{ token: 'ACME' }]);
    const s5 = await sell(v, card, [{ code: P_PEN, qty: 1 }, { code: P_JUICE, qty: 1 }], [{ token: 'SUNNY' }, { token: 'MALL' }]);
    expect([s1.debits, s2.debits, s3.debits, s4.debits, s5.debits]).to.deep.equal([{ MALL: 90 }, { BOB: 23 }, { SUNNY: 25 }, { ACME: 90 }, { SUNNY: 25, MALL: 45 }]);
    await v.ledger.refundSale(v.op, { key: `t001:${opKey('refund')}`, saleId: s2.saleId, reason: 'changed mind', supervisorId: 'sam' });
    Object.assign(sales, { s1, s2, s3, s4, s5 });

    const { res } = await pushAll(mall, v);
    expect(res.status, res.text).to.equal(200);
    const ack = await verifyJson<AckPayload>(res.body.ack, mallKey, ACK_TYP);
    expect(ack.flagged).to.deep.equal([]);
    for (const a of await mall.admin.allotments('acme')) expect(a.used, a.id).to.not.equal(null);

    // By hand: allotment 1000 MALL x 10 = 10,000 owed. s1: 900 gross, royalty 2.5 % = 22.5 -> 23, the mall reimburses 900.
    // s2 (BOB 23 x 20 = 460, royalty 1 % = 4.6 -> 5, toll 7) is refunded. s3: SUNNY 250, royalty 6.25 -> 6, toll 7.
    // s4: own ACME 450, royalty 11.25 -> 11. s5: SUNNY 250 (royalty 6, toll 7) + MALL 450 (royalty 11.25 -> 11).
    const positions = await mall.admin.positions();
    expect(positions.sumMinor).to.equal(0);
    expect(positions.positions).to.deep.equal({
      'issuer:sunny-foods': -514,
      mall: 10_000 - 877 + 13 + 11 - 426,
      'vendor:acme': -10_000 + 877 + 244 - 11 + 683,
      'vendor:bobs': 0,
    });
    const st = (await mall.admin.statements(today(), today())).find((s) => s.vendor === 'acme')?.statement as StatementPayload;
    expect(st.totals).to.deep.include({
      transactions: 5, refunds: 1, grossMinor: 2760, refundedMinor: 460, royaltyMinor: 57, tollMinor: 0,
      reimbursementReceivableMinor: 1850, reimbursementPayableMinor: 0, allotmentPurchasesMinor: 10_000, netMinor: -8207, flaggedEvents: 0,
    });
    expect(st.totals.tokensRedeemed).to.deep.equal({ MALL: 135, BOB: 23, SUNNY: 50, ACME: 90 });
    expect(st.totals.tokensReturned).to.deep.equal({ BOB: 23 });
    const bobs = (await mall.admin.statements(today(), today())).find((s) => s.vendor === 'bobs')?.statement as StatementPayload;
    expect(bobs.totals).to.deep.include({ reimbursementPayableMinor: 0, tollMinor: 0, netMinor: 0 });
    const view = await mall.admin.vendor('acme');
    expect(view.tokens['MALL']).to.deep.equal({ allottedUnits: 1000, redeemedUnits: 135 });
    // Used allotments leave the snapshot: the vendor already holds them.
    const snap2 = await verifyJson<Json>((await mall.get('/v1/vendors/acme/snapshot', await vendorAuth(v.keys, 'acme'))).body.snapshot, mallKey, 'mallpos-snapshot+jws');
    expect(snap2.allotments).to.deep.equal([]);
  });

  it('flags events that break the registry, lists them in the ack with reasons, and clears none of them', async () => {
    const before = await mall.admin.positions();
    // The vendor's local copies of two token types drifted from the mall's registry.
    const types = Object.fromEntries(scenarioTokenTypes().map((t) => [t.code, t])) as Record<string, TokenType>;
    await v.ledger.upsertTokenType(v.op, { ...(types['SUNNY'] as TokenType), products: [P_JUICE, P_BREAD] });
    await v.ledger.upsertTokenType(v.op, { code: 'GHOST', name: 'Ghost', kind: 'vendor', issuer: 'acme', faceValueMinor: 1, currency: 'EUR', acceptedBy: '*' });
    await mall.admin.upsertTokenType({ code: 'ZED', name: 'Zed', kind: 'vendor', issuer: 'bobs', faceValueMinor: 3, currency: 'EUR', acceptedBy: ['bobs'] });
    await mall.admin.upsertTokenType({ code: 'OLD', name: 'Old', kind: 'mall', issuer: 'mall', faceValueMinor: 3, currency: 'EUR', acceptedBy: '*', expiresAt: '2020-01-01T00:00:00.000Z' });
    await v.ledger.upsertTokenType(v.op, { code: 'ZED', name: 'Zed', kind: 'vendor', issuer: 'bobs', faceValueMinor: 3, currency: 'EUR', acceptedBy: '*' });
    await v.ledger.upsertTokenType(v.op, { code: 'OLD', name: 'Old', kind: 'mall', issuer: 'mall', faceValueMinor: 3, currency: 'EUR', acceptedBy: '*' });
    await v.ledger.upsertProduct(v.op, { code: P_PEN, name: 'Pen', priceMinor: 450, tokenPrices: { ACME: 90, MALL: 45, BOB: 23, ZED: 150 } });

    const seqOf = async (p: Promise<{ seq: number }>) => (await p).seq;
    const flaggedSeqs: Record<string, number> = {};
    flaggedSeqs['never issued'] = await seqOf(v.ledger.recordAllotment(v.op, opKey(), { token: 'MALL', units: 700, reference: 'made-up-allotment' }));
    flaggedSeqs['used twice'] = await seqOf(v.ledger.recordAllotment(v.op, opKey(), { token: 'MALL', units: 1000, reference: 'alt-000001' }));
    flaggedSeqs['unknown token'] = await seqOf(v.ledger.recordAllotment(v.op, opKey(), { token: 'GHOST', units: 10, reference: 'own' }));
    flaggedSeqs['zed allotment'] = await seqOf(v.ledger.recordAllotment(v.op, opKey(), { token: 'ZED', units: 500, reference: 'from bob directly' }));
    flaggedSeqs['zed issuance'] = await seqOf(v.ledger.issueTokens(v.op, opKey(), { customerId, token: 'ZED', units: 300, reason: 'reward' }));
    flaggedSeqs['old allotment'] = await seqOf(v.ledger.recordAllotment(v.op, opKey(), { token: 'OLD', units: 10, reference: 'old stock' }));
    flaggedSeqs['old issuance'] = await seqOf(v.ledger.issueTokens(v.op, opKey(), { customerId, token: 'OLD', units: 10, reason: 'reward' }));
    const notAccepted = await sell(v, card, [{ code: P_PEN, qty: 1 }], [{ token: 'ZED' }]);
    flaggedSeqs['not accepted'] = notAccepted.seq;
    const unlisted = await sell(v, card, [{ code: P_BREAD, qty: 1 }], [{ token: 'SUNNY', units: 10 }]);
    flaggedSeqs['unlisted product'] = unlisted.seq;
    const refundOfFlagged = await v.ledger.refundSale(v.op, { key: `t001:${opKey('refund')}`, saleId: unlisted.saleId, reason: 'wrong coupon', supervisorId: 'sam' });
    flaggedSeqs['refund of a flagged sale'] = refundOfFlagged.seq;
    const again = await v.ledger.refundSale(v.op, { key: `t001:${opKey('refund')}`, saleId: sales['s1']?.saleId as string, reason: 'ok refund', supervisorId: 'sam' });

    const { res } = await pushAll(mall, v);
    expect(res.status, res.text).to.equal(200);
    const ack = await verifyJson<AckPayload>(res.body.ack, mallKey, ACK_TYP);
    const reasons = Object.fromEntries(ack.flagged.map((f) => [f.eventSeq, f.reason]));
    const expected: Record<string, RegExp> = {
      'never issued': /allotment made-up-allotment of 700 MALL was never issued by the mall to acme/,
      'used twice': /allotment alt-000001 was already taken into the float by event \d+/,
      'unknown token': /token type GHOST is not registered at the mall/,
      'zed allotment': /allotment from bob directly of 500 ZED was never issued/,
      'zed issuance': /ZED tokens are not accepted at acme/,
      'old allotment': /allotment old stock of 10 OLD was never issued/,
      'old issuance': /OLD tokens expired at 2020-01-01T00:00:00.000Z, before this event/,
      'not accepted': /ZED tokens are not accepted at acme/,
      'unlisted product': /SUNNY tokens paid for product 5901234123457, which is not on sunny-foods's product list/,
      'refund of a flagged sale': /names sale \d+, which was flagged and not cleared/,
    };
    for (const [name, seq] of Object.entries(flaggedSeqs)) expect(reasons[seq], name).to.match(expected[name] as RegExp);
    expect(ack.flagged).to.have.length(Object.keys(flaggedSeqs).length);
    expect(reasons[again.seq]).to.equal(undefined);

    // Nothing flagged was cleared: only the good refund of s1 moved money (900 reimbursed, 23 royalty back).
    const after = await mall.admin.positions();
    expect(after.positions['vendor:acme']).to.equal((before.positions['vendor:acme'] as number) - 900 + 23);
    expect(after.positions['mall']).to.equal((before.positions['mall'] as number) + 900 - 23);
    expect(after.positions['issuer:sunny-foods']).to.equal(before.positions['issuer:sunny-foods']);
    expect(after.sumMinor).to.equal(0);

    const flagged = await mall.admin.flagged('acme');
    expect(flagged.map((f) => f.eventSeq).sort((a, b) => a - b)).to.deep.equal(Object.values(flaggedSeqs).sort((a, b) => a - b));
    expect(flagged.find((f) => f.eventSeq === notAccepted.seq)).to.include({ vendor: 'acme', type: 'sale', batchSeq: 2 });
    // The statement reports them, signed.
    const signed = await mall.get(`/v1/vendors/acme/statements?from=${today()}&to=${today()}`, await vendorAuth(v.keys, 'acme'));
    expect(signed.status, signed.text).to.equal(200);
    const st = await verifyJson<StatementPayload>(signed.body.statement, mallKey, STATEMENT_TYP);
    expect(st.completeness.flaggedEvents).to.equal(Object.keys(flaggedSeqs).length);
    expect(st.completeness.flagged).to.have.length(Object.keys(flaggedSeqs).length);
    expect(st.totals.transactions).to.equal(5);
    expect(st.totals.refunds).to.equal(2);
    expect(st.completeness).to.include({ lastBatchSeq: 2, stale: false, gap: null });
  });

  it('flags signed events that no vendor rule writes: stray accounts, unknown types, bad times, overflowing amounts', async () => {
    // Written straight into the journal, past the ledger's rules (the vendor's ledger is not used after this).
    const journal = v.opened.journal;
    const base = (type: string) => ({ v: 1, vendor: 'acme', at: new Date().toISOString(), terminal: null, cashier: null, key: null, bodyHash: null, type });
    const custom = [
      { ...base('sale'), postings: [{ account: 'float', token: 'MALL', units: -5 }, { account: `customer:${customerId}`, token: 'MALL', units: 5 }], data: { lines: [], allocations: [], debits: {} } },
      { ...base('gift.minted'), postings: [], data: {} },
      { ...base('issuance'), at: 'yesterday-ish', postings: [], data: { token: 'MALL', units: 1 } },
      {
        ...base('sale'),
        postings: [{ account: `customer:${customerId}`, token: 'MALL', units: -(2 ** 52) }, { account: 'redeemed', token: 'MALL', units: 2 ** 52 }],
        data: { lines: [{ lineNo: 1, gtin: P_PEN }], allocations: [{ lineNo: 1, token: 'MALL', units: 2 ** 52 }], debits: { MALL: 2 ** 52 } },
      },
    ];
    const seqs: number[] = [];
    for (const fields of custom) seqs.push(journal.append({ seq: journal.nextSeq, ...fields }).seq);
    await journal.flushed();
    const before = await mall.admin.positions();
    const { res } = await pushAll(mall, v);
    expect(res.status, res.text).to.equal(200);
    const ack = await verifyJson<AckPayload>(res.body.ack, mallKey, ACK_TYP);
    expect(ack.flagged.map((f) => f.eventSeq)).to.deep.equal(seqs);
    const [stray, unknown, time, overflow] = ack.flagged.map((f) => f.reason);
    expect(stray).to.equal('a sale may not post to account float');
    expect(unknown).to.equal('unknown event type gift.minted');
    expect(time).to.equal('the event has no valid time');
    expect(overflow).to.match(/the sale does not add up/);
    expect((await mall.admin.positions()).positions).to.deep.equal(before.positions);
  });

  it('gives a statement only to a request signed by the vendor', async () => {
    const url = `/v1/vendors/acme/statements?from=${today()}&to=${today()}`;
    const none = await mall.get(url);
    expect([none.status, none.body.error.code]).to.deep.equal([401, 'MALL_ERR_UNAUTHENTICATED']);
    const stranger = await newKey();
    const forged = await mall.get(url, await vendorAuth(stranger, 'acme'));
    expect([forged.status, forged.body.error.code]).to.deep.equal([401, 'MALL_ERR_UNAUTHENTICATED']);
    const wrongAudience = await mall.get(url, await vendorAuth(v.keys, 'acme', 'someone-else'));
    expect(wrongAudience.status).to.equal(401);
    const ok = await mall.get(url, await vendorAuth(v.keys, 'acme'));
    expect(ok.status, ok.text).to.equal(200);
  });

  it('refuses a statement request with a bad range, and answers 404 for an unknown vendor', async () => {
    expect((await mall.get('/v1/vendors/acme/statements?from=2026-13-01&to=2026-12-01', await vendorAuth(v.keys, 'acme'))).body.error.code).to.equal('MALL_ERR_VALIDATION');
    expect((await mall.get('/v1/vendors/acme/statements?from=2026-12-02&to=2026-12-01', await vendorAuth(v.keys, 'acme'))).body.error.code).to.equal('MALL_ERR_VALIDATION');
    expect((await mall.get('/v1/vendors/acme/statements', await vendorAuth(v.keys, 'acme'))).body.error.code).to.equal('MALL_ERR_VALIDATION');
    const unknown = await mall.get('/v1/vendors/nobody/statements?from=2026-12-01&to=2026-12-01', await vendorAuth(v.keys, 'nobody'));
    expect([unknown.status, unknown.body.error.code]).to.deep.equal([404, 'MALL_ERR_VENDOR_UNKNOWN']);
  });
});
