import { expect } from 'chai';
import fc from 'fast-check';
import { ZERO_HASH, type FeeSchedule, type TokenType } from '../../core/index.ts';
import { allotmentPurchase, redemptionClearing, reversalClearing, royaltyBpsFor } from '../../mall-sync/clearing.ts';
import type { ClearingRecord, MallEvent, NewMallEvent } from '../../mall-sync/events.ts';
import { buildStatement } from '../../mall-sync/statements.ts';
import { applyMallEvent, emptyMallState, positionsSum, type MallState } from '../../mall-sync/store/state.ts';

const AT = '2026-11-28T10:00:00.000Z';

function fees(partial: Partial<FeeSchedule> = {}): FeeSchedule {
  return { royaltyBps: 0, royaltyBpsByVendor: {}, royaltyBpsByToken: {}, reimbursementTollMinor: 0, customerDataTollMinor: 0, exchangeServiceBps: 0, ...partial };
}

const TYPES: Record<string, TokenType> = {
  MALL: { code: 'MALL', name: 'Mall', kind: 'mall', issuer: 'mall', faceValueMinor: 10, currency: 'EUR', acceptedBy: '*' },
  ACME: { code: 'ACME', name: 'ACME', kind: 'vendor', issuer: 'acme', faceValueMinor: 5, currency: 'EUR', acceptedBy: ['acme'] },
  BOB: { code: 'BOB', name: 'Bob', kind: 'vendor', issuer: 'bobs', faceValueMinor: 20, currency: 'EUR', acceptedBy: '*' },
  SUNNY: { code: 'SUNNY', name: 'Sunny', kind: 'manufacturer', issuer: 'sunny-foods', faceValueMinor: 10, currency: 'EUR', acceptedBy: '*', products: ['9001001000021'] },
};
const isVendor = (id: string) => id === 'acme' || id === 'bobs';

/** Builds a state by applying mall events the way the store does. */
class StateBuilder {
  readonly state: MallState = emptyMallState();
  private batchSeq: Record<string, number> = {};
  private eventSeq: Record<string, number> = {};

  apply(e: NewMallEvent): void {
    const seq = this.state.seq + 1;
    applyMallEvent(this.state, { ...e, seq, prev: this.state.hash, v: 1 } as MallEvent, `h${seq}`.padEnd(64, '0'));
  }

  vendor(id: string): void {
    this.apply({ type: 'vendor.registered', at: AT, data: { id, name: id } });
  }

  /** A batch holding `records`, which take event seqs in order. */
  batch(vendor: string, records: ClearingRecord[]): void {
    const from = (this.eventSeq[vendor] ?? 0) + 1;
    const to = from + Math.max(records.length, 1) - 1;
    const seq = (this.batchSeq[vendor] ?? 0) + 1;
    this.batchSeq[vendor] = seq;
    this.eventSeq[vendor] = to;
    this.apply({
      type: 'batch.ingested',
      at: AT,
      data: {
        vendor, seq, hash: `b${seq}`.padEnd(64, '0'), kid: 'k', fromSeq: from, toSeq: to, createdAt: AT, lastEventSeq: to, lastEventHash: ZERO_HASH,
        ack: { protected: 'x', payload: 'x', signature: 'x' }, clearing: records, flagged: [], allotmentsUsed: [],
      },
    });
  }

  nextEventSeq(vendor: string): number {
    return (this.eventSeq[vendor] ?? 0) + 1;
  }
}

describe('mall-sync clearing rules', () => {
  it('clears a mall-token redemption: royalty rounded half up, the mall reimburses, no toll to itself', () => {
    const c = redemptionClearing({ vendor: 'acme', eventSeq: 7, at: AT, debits: { MALL: 90 }, tokenTypes: TYPES, fees: fees({ royaltyBps: 250, reimbursementTollMinor: 7 }), isVendor });
    // 90 x 10 = 900; 2.5 % of 900 = 22.5 -> 23 (half up).
    expect(c).to.deep.equal({
      eventSeq: 7, at: AT, type: 'sale', saleSeq: null, tokens: { MALL: 90 }, grossMinor: 900,
      transfers: [
        { kind: 'royalty', from: 'vendor:acme', to: 'mall', amountMinor: 23, token: 'MALL', units: 90, bps: 250 },
        { kind: 'reimbursement', from: 'mall', to: 'vendor:acme', amountMinor: 900, token: 'MALL', units: 90 },
      ],
    });
  });

  it('charges another vendor\'s and a manufacturer\'s tokens to their issuer, with one toll per issuer and sale', () => {
    const c = redemptionClearing({
      vendor: 'acme', eventSeq: 8, at: AT, debits: { BOB: 23, SUNNY: 25, ACME: 10 }, tokenTypes: TYPES,
      fees: fees({ royaltyBps: 250, royaltyBpsByToken: { BOB: 100 }, reimbursementTollMinor: 7 }), isVendor,
    });
    expect(c.grossMinor).to.equal(460 + 250 + 50);
    expect(c.transfers).to.deep.equal([
      // 1 % of 460 = 4.6 -> 5
      { kind: 'royalty', from: 'vendor:acme', to: 'mall', amountMinor: 5, token: 'BOB', units: 23, bps: 100 },
      { kind: 'reimbursement', from: 'vendor:bobs', to: 'vendor:acme', amountMinor: 460, token: 'BOB', units: 23 },
      // 2.5 % of 250 = 6.25 -> 6
      { kind: 'royalty', from: 'vendor:acme', to: 'mall', amountMinor: 6, token: 'SUNNY', units: 25, bps: 250 },
      { kind: 'reimbursement', from: 'issuer:sunny-foods', to: 'vendor:acme', amountMinor: 250, token: 'SUNNY', units: 25 },
      // own tokens: 2.5 % of 50 = 1.25 -> 1, nothing to reimburse
      { kind: 'royalty', from: 'vendor:acme', to: 'mall', amountMinor: 1, token: 'ACME', units: 10, bps: 250 },
      { kind: 'toll', from: 'vendor:bobs', to: 'mall', amountMinor: 7, token: null, units: 0 },
      { kind: 'toll', from: 'issuer:sunny-foods', to: 'mall', amountMinor: 7, token: null, units: 0 },
    ]);
  });

  it('takes the royalty rate of the vendor, else of the token type, else the default', () => {
    const f = fees({ royaltyBps: 300, royaltyBpsByVendor: { acme: 50 }, royaltyBpsByToken: { BOB: 100, MALL: 0 } });
    expect(royaltyBpsFor(f, 'acme', 'BOB')).to.equal(50);
    expect(royaltyBpsFor(f, 'bobs', 'BOB')).to.equal(100);
    expect(royaltyBpsFor(f, 'bobs', 'MALL')).to.equal(0);
    expect(royaltyBpsFor(f, 'bobs', 'SUNNY')).to.equal(300);
  });

  it('reverses a sale by negating every figure of its clearing', () => {
    const sale = redemptionClearing({ vendor: 'acme', eventSeq: 8, at: AT, debits: { BOB: 3 }, tokenTypes: TYPES, fees: fees({ royaltyBps: 250, reimbursementTollMinor: 7 }), isVendor });
    const r = reversalClearing(sale, 12, '2026-11-29T08:00:00.000Z');
    expect(r).to.deep.equal({
      eventSeq: 12, at: '2026-11-29T08:00:00.000Z', type: 'reversal', saleSeq: 8, tokens: { BOB: -3 }, grossMinor: -60,
      transfers: [
        { kind: 'royalty', from: 'vendor:acme', to: 'mall', amountMinor: -2, token: 'BOB', units: -3, bps: 250 },
        { kind: 'reimbursement', from: 'vendor:bobs', to: 'vendor:acme', amountMinor: -60, token: 'BOB', units: -3 },
        { kind: 'toll', from: 'vendor:bobs', to: 'mall', amountMinor: -7, token: null, units: 0 },
      ],
    });
  });

  it('sells mall tokens to a vendor at face value on allotment; other issuers\' tokens cost nothing then', () => {
    expect(allotmentPurchase('acme', TYPES['MALL'] as TokenType, 1000)).to.deep.equal({
      purchaseMinor: 10_000,
      transfers: [{ kind: 'allotment', from: 'vendor:acme', to: 'mall', amountMinor: 10_000, token: 'MALL', units: 1000 }],
    });
    expect(allotmentPurchase('acme', TYPES['SUNNY'] as TokenType, 1000)).to.deep.equal({ purchaseMinor: 0, transfers: [] });
  });

  it('posts a known example to positions and a vendor statement that agree', () => {
    const b = new StateBuilder();
    b.vendor('acme');
    b.vendor('bobs');
    const f = fees({ royaltyBps: 250, royaltyBpsByToken: { BOB: 100 }, reimbursementTollMinor: 7 });
    b.apply({ type: 'fees.set', at: AT, data: f });
    const purchase = allotmentPurchase('acme', TYPES['MALL'] as TokenType, 1000);
    b.apply({
      type: 'allotment.issued', at: AT,
      data: { id: 'alt-000001', vendor: 'acme', token: 'MALL', units: 1000, reference: 'float', faceValueMinor: 10, ...purchase, key: 'k-0000001', bodyHash: 'x' },
    });
    const s1 = redemptionClearing({ vendor: 'acme', eventSeq: 1, at: AT, debits: { MALL: 90 }, tokenTypes: TYPES, fees: f, isVendor });
    const s2 = redemptionClearing({ vendor: 'acme', eventSeq: 2, at: AT, debits: { BOB: 23 }, tokenTypes: TYPES, fees: f, isVendor });
    const s3 = redemptionClearing({ vendor: 'acme', eventSeq: 3, at: AT, debits: { SUNNY: 25 }, tokenTypes: TYPES, fees: f, isVendor });
    b.batch('acme', [s1, s2, s3]);
    b.batch('acme', [reversalClearing(s2, 4, AT)]);
    expect(b.state.positions).to.deep.equal({
      'vendor:acme': -10_000 + (900 - 23) + (250 - 6),
      mall: 10_000 - 900 + 23 + 6 + 7,
      'vendor:bobs': 0,
      'issuer:sunny-foods': -257,
    });
    expect(positionsSum(b.state)).to.equal(0);
    const st = buildStatement({ state: b.state, observation: null, currency: 'EUR', staleAfterHours: 24, now: new Date(AT) }, 'acme', '2026-11-28', '2026-11-28');
    expect(st.totals).to.deep.include({
      transactions: 3, refunds: 1, grossMinor: 1610, refundedMinor: 460, royaltyMinor: 29, tollMinor: 0,
      reimbursementReceivableMinor: 1150, reimbursementPayableMinor: 0, allotmentPurchasesMinor: 10_000, netMinor: -8879,
    });
    expect(st.totals.tokensRedeemed).to.deep.equal({ MALL: 90, BOB: 23, SUNNY: 25 });
    expect(st.totals.tokensReturned).to.deep.equal({ BOB: 23 });
    expect(st.positionMinor).to.equal(-8879);
    expect(b.state.vendors['acme']?.tokens).to.deep.equal({
      MALL: { allottedUnits: 1000, redeemedUnits: 90 }, BOB: { allottedUnits: 0, redeemedUnits: 0 }, SUNNY: { allottedUnits: 0, redeemedUnits: 25 },
    });
  });

  it('keeps all positions summing to zero over random redemptions, reversals, allotments and fee schedules', () => {
    const tokenArb = fc.record({
      faceValueMinor: fc.integer({ min: 1, max: 1_000_000 }),
      issuer: fc.constantFrom('mall', 'acme', 'bobs', 'sunny-foods', 'zeta'),
    });
    const feeArb = fc.record({
      royaltyBps: fc.integer({ min: 0, max: 10_000 }),
      royaltyBpsByVendor: fc.dictionary(fc.constantFrom('acme', 'bobs'), fc.integer({ min: 0, max: 10_000 })),
      royaltyBpsByToken: fc.dictionary(fc.constantFrom('T0', 'T1', 'T2', 'T3'), fc.integer({ min: 0, max: 10_000 })),
      reimbursementTollMinor: fc.integer({ min: 0, max: 100_000 }),
      customerDataTollMinor: fc.constant(0),
      exchangeServiceBps: fc.constant(0),
    });
    const opArb = fc.oneof(
      fc.record({ kind: fc.constant('sale' as const), vendor: fc.constantFrom('acme', 'bobs'), debits: fc.dictionary(fc.constantFrom('T0', 'T1', 'T2', 'T3'), fc.integer({ min: 1, max: 1_000_000 }), { minKeys: 1 }) }),
      fc.record({ kind: fc.constant('reverse' as const), pick: fc.nat() }),
      fc.record({ kind: fc.constant('allot' as const), vendor: fc.constantFrom('acme', 'bobs'), token: fc.constantFrom('T0', 'T1', 'T2', 'T3'), units: fc.integer({ min: 1, max: 1_000_000 }) }),
      fc.record({ kind: fc.constant('fees' as const), fees: feeArb }),
    );
    fc.assert(
      fc.property(fc.array(tokenArb, { minLength: 4, maxLength: 4 }), feeArb, fc.array(opArb, { maxLength: 40 }), (tokens, initialFees, ops) => {
        const types: Record<string, TokenType> = {};
        tokens.forEach((t, i) => {
          types[`T${i}`] = { code: `T${i}`, name: `T${i}`, kind: 'gift', issuer: t.issuer, faceValueMinor: t.faceValueMinor, currency: 'EUR', acceptedBy: '*' };
        });
        const b = new StateBuilder();
        b.vendor('acme');
        b.vendor('bobs');
        let f: FeeSchedule = initialFees;
        const open: { vendor: string; record: ClearingRecord }[] = [];
        let purchases = 0;
        let n = 0;
        for (const op of ops) {
          if (op.kind === 'fees') {
            f = op.fees;
          } else if (op.kind === 'allot') {
            const p = allotmentPurchase(op.vendor, types[op.token] as TokenType, op.units);
            n += 1;
            b.apply({ type: 'allotment.issued', at: AT, data: { id: `alt-${n}`, vendor: op.vendor, token: op.token, units: op.units, reference: 'r', faceValueMinor: 1, ...p, key: `key-${n}-xxxxx`, bodyHash: 'x' } });
            purchases += p.purchaseMinor;
          } else if (op.kind === 'sale') {
            const record = redemptionClearing({ vendor: op.vendor, eventSeq: b.nextEventSeq(op.vendor), at: AT, debits: op.debits, tokenTypes: types, fees: f, isVendor });
            b.batch(op.vendor, [record]);
            open.push({ vendor: op.vendor, record });
          } else if (open.length > 0) {
            const [sale] = open.splice(op.pick % open.length, 1);
            if (sale === undefined) continue;
            b.batch(sale.vendor, [reversalClearing(sale.record, b.nextEventSeq(sale.vendor), AT)]);
          }
          expect(positionsSum(b.state)).to.equal(0);
        }
        // Reversing every open sale leaves only the allotment purchases.
        for (const sale of open) b.batch(sale.vendor, [reversalClearing(sale.record, b.nextEventSeq(sale.vendor), AT)]);
        expect(positionsSum(b.state)).to.equal(0);
        expect(b.state.positions['mall'] ?? 0).to.equal(purchases);
        for (const v of ['acme', 'bobs']) {
          const st = buildStatement({ state: b.state, observation: null, currency: 'EUR', staleAfterHours: 24, now: new Date(AT) }, v, '2026-11-28', '2026-11-28');
          expect(st.totals.netMinor).to.equal(b.state.positions[`vendor:${v}`] ?? 0);
          expect(st.totals.royaltyMinor).to.equal(0);
          expect(st.totals.reimbursementReceivableMinor).to.equal(0);
        }
      }),
      { numRuns: 200 },
    );
  });
});
