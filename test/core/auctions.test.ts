import { expect } from 'chai';
import fc from 'fast-check';
import {
  bidPostings,
  checkBid,
  describedItemGtin,
  escrowAccount,
  lotDue,
  lotSale,
  lotView,
  makeLotId,
  minimumBid,
  releasePostings,
  type LotState,
} from '../../core/auctions.ts';
import { parseScan } from '../../core/codes.ts';
import { applyPostings, checkBalanced, customerAccount, RecordBook, REDEEMED_ACCOUNT } from '../../core/ledger.ts';
import { checkBuiltSale } from '../../core/sale-check.ts';
import { expectCode } from './helpers.ts';

const T0 = Date.parse('2026-12-01T10:00:00.000Z');

function lot(over: Partial<LotState['spec']> = {}, state: Partial<Omit<LotState, 'spec'>> = {}): LotState {
  const spec = {
    lotId: 'lot-000001',
    title: 'Lamp',
    gtin: describedItemGtin(1),
    product: false,
    token: 'ACME',
    reserveUnits: 0,
    incrementUnits: 10,
    opensAt: new Date(T0).toISOString(),
    closesAt: new Date(T0 + 3_600_000).toISOString(),
    buyNowUnits: null,
    snipeWindowSeconds: 30,
    extendSeconds: 60,
    ...over,
  };
  return { spec, status: 'open', closesAt: spec.closesAt, high: null, bids: 0, closedSeq: null, saleId: null, ...state };
}

describe('core: auction rules', () => {
  it('names lots and codes described items as valid restricted-circulation GTINs', () => {
    expect(makeLotId(1)).to.equal('lot-000001');
    expect(escrowAccount('lot-000001')).to.equal('escrow:lot-000001');
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 999_999_999 }), (serial) => {
        const scan = parseScan(describedItemGtin(serial));
        expect(scan.kind).to.equal('product');
        expect(describedItemGtin(serial).startsWith('29')).to.equal(true);
      }),
    );
  });

  it('takes the increment first, then the high bid plus the increment, never more than buy-now', () => {
    expect(minimumBid(lot())).to.equal(10);
    expect(minimumBid(lot({}, { high: { customer: 'c1', units: 95, seq: 5, terminal: null } }))).to.equal(105);
    expect(minimumBid(lot({ buyNowUnits: 100 }, { high: { customer: 'c1', units: 95, seq: 5, terminal: null } }))).to.equal(100);
  });

  it('refuses a bid below the least, on a closed, cancelled, due or unopened lot', () => {
    const l = lot({}, { high: { customer: 'c1', units: 50, seq: 5, terminal: null } });
    expectCode(() => checkBid(l, 59, T0 + 1000), 'VND_ERR_BID_TOO_LOW');
    expect(checkBid(l, 60, T0 + 1000).units).to.equal(60);
    expectCode(() => checkBid(undefined, 60, T0), 'VND_ERR_LOT_UNKNOWN');
    expectCode(() => checkBid({ ...l, status: 'closed' }, 60, T0), 'VND_ERR_LOT_CLOSED');
    expectCode(() => checkBid({ ...l, status: 'cancelled' }, 60, T0), 'VND_ERR_LOT_CLOSED');
    expectCode(() => checkBid(l, 60, T0 + 3_600_000), 'VND_ERR_LOT_CLOSED');
    expectCode(() => checkBid(lot({ opensAt: new Date(T0 + 60_000).toISOString() }), 60, T0), 'VND_ERR_LOT_CLOSED');
  });

  it('moves the close on for a bid in the snipe window only, and never earlier', () => {
    const l = lot();
    const close = Date.parse(l.closesAt);
    expect(checkBid(l, 10, close - 31_000).closesAt).to.equal(l.closesAt);
    expect(checkBid(l, 10, close - 10_000).closesAt).to.equal(new Date(close - 10_000 + 60_000).toISOString());
    // An extension shorter than the time left keeps the close.
    expect(checkBid(lot({ extendSeconds: 5 }), 10, close - 10_000).closesAt).to.equal(l.closesAt);
  });

  it('buys at the buy-now price whatever more is bid, and is then due', () => {
    const l = lot({ buyNowUnits: 200 });
    const r = checkBid(l, 5_000, T0 + 1);
    expect(r).to.deep.include({ units: 200, buyNow: true });
    expect(lotDue({ ...l, high: { customer: 'c1', units: 200, seq: 3, terminal: null } }, T0 + 1)).to.equal(true);
    expect(lotDue(l, T0 + 1)).to.equal(false);
  });

  it('a bid\'s postings balance, leave the escrow holding exactly the new high bid, and give the beaten bid back', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 1_000_000 }),
        fc.integer({ min: 1, max: 1_000_000 }),
        fc.boolean(),
        (prevUnits, raise, same) => {
          const book = new RecordBook();
          book.set(customerAccount('c1'), 'ACME', 10_000_000);
          book.set(customerAccount('c2'), 'ACME', 10_000_000);
          applyPostings(book, bidPostings('lot-000001', 'ACME', 'c1', prevUnits, null));
          const bidder = same ? 'c1' : 'c2';
          const postings = bidPostings('lot-000001', 'ACME', bidder, prevUnits + raise, { customer: 'c1', units: prevUnits });
          checkBalanced(postings);
          applyPostings(book, postings);
          expect(book.get('escrow:lot-000001', 'ACME')).to.equal(prevUnits + raise);
          const c1 = book.get(customerAccount('c1'), 'ACME');
          const c2 = book.get(customerAccount('c2'), 'ACME');
          expect(c1 + c2 + book.get('escrow:lot-000001', 'ACME')).to.equal(20_000_000);
          if (same) expect(c1).to.equal(10_000_000 - prevUnits - raise);
          else expect(c1).to.equal(10_000_000);
          applyPostings(book, releasePostings('lot-000001', 'ACME', { customer: bidder, units: prevUnits + raise }));
          expect(book.get('escrow:lot-000001', 'ACME')).to.equal(0);
        },
      ),
    );
  });

  it('a sold lot\'s sale adds up by the one sale validator, its escrow standing for the bidder', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 10_000_000 }), fc.integer({ min: 0, max: 1_000 }), (units, face) => {
        const l = lot({}, { high: { customer: 'c9', units, seq: 7, terminal: 't001' } });
        const { postings, data } = lotSale({ lot: l, saleId: 'S0000000008', currency: 'EUR', faceValueMinor: face, balancesAfter: {} });
        checkBalanced(postings);
        expect(postings).to.deep.equal([{ account: 'escrow:lot-000001', token: 'ACME', units: -units }, { account: REDEEMED_ACCOUNT, token: 'ACME', units }]);
        checkBuiltSale(postings.map((p) => (p.account === 'escrow:lot-000001' ? { ...p, account: customerAccount('c9') } : p)), data);
        expect(data.totalMinor).to.equal(units * face);
        expect(data.lot).to.deep.equal({ lotId: 'lot-000001', bidSeq: 7 });
      }),
    );
  });

  it('shows the high bidder by a masked card, and the reserve only as met or not', () => {
    const l = lot({ reserveUnits: 100 }, { high: { customer: 'c1', units: 50, seq: 2, terminal: null }, bids: 1 });
    const v = lotView(l, T0, () => 'C0000000018');
    expect(v.high?.card).to.not.equal('C0000000018');
    expect(v.reserveMet).to.equal(false);
    expect(JSON.stringify(v)).to.not.include('reserveUnits');
    expect(v.minBidUnits).to.equal(60);
  });
});
