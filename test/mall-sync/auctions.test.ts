import { expect } from 'chai';
import { bidPostings, escrowAccount, releasePostings } from '../../core/auctions.ts';
import { AuctionService } from '../../vendor-server/auctions/service.ts';
import {
  forEachStore,
  newKey,
  opKey,
  pushAll,
  registerEconomy,
  registerScenario,
  seedVendorCatalog,
  silentLogger,
  startMall,
  startVendor,
  storeFingerprint,
  type MallRig,
  type RawPosting,
  type RawVendor,
} from './helpers.ts';

const LOT = 'lot-000001';

/** A listing in ACME as the store writes it (the mall reads the lot id and the token). */
function openLot(v: RawVendor, lotId = LOT): number {
  const at = new Date().toISOString();
  return v.add('lot.opened', [], { lotId, title: 'Lamp', gtin: '2900000000015', product: false, token: 'ACME', reserveUnits: 0, incrementUnits: 10, opensAt: at, closesAt: new Date(Date.now() + 3_600_000).toISOString(), buyNowUnits: null, snipeWindowSeconds: 30, extendSeconds: 30 });
}

function bid(v: RawVendor, customer: string, units: number, previous: { customer: string; units: number } | null, postings: RawPosting[] = bidPostings(LOT, 'ACME', customer, units, previous), lotId = LOT): number {
  return v.add('lot.bid', postings, { lotId, customer, units, previous, closesAt: new Date(Date.now() + 3_600_000).toISOString(), buyNow: false, balancesAfter: {} });
}

/** The sale a sold lot becomes: the high bid from the escrow to `redeemed`. */
function lotSale(v: RawVendor, customer: string, units: number, bidSeq: number, postings: RawPosting[] = [{ account: escrowAccount(LOT), token: 'ACME', units: -units }, { account: 'redeemed', token: 'ACME', units }]): number {
  const total = units * 5;
  return v.add('sale', postings, {
    saleId: `S${String(bidSeq + 1).padStart(10, '0')}`,
    customer,
    currency: 'EUR',
    lines: [{ lineNo: 1, gtin: '2900000000015', name: 'Lamp', qty: 1, unitPriceMinor: total, totalMinor: total, unitTokenPrices: { ACME: units } }],
    allocations: [{ lineNo: 1, token: 'ACME', units, coversMinor: total }],
    debits: { ACME: units },
    totalMinor: total,
    cash: { dueMinor: 0, tenderedMinor: 0, changeMinor: 0 },
    balancesAfter: {},
    lot: { lotId: LOT, bidSeq },
  });
}

forEachStore('mall-sync: auction escrow and closed lots', function (store) {
  this.timeout(120_000);
  let mall: MallRig;
  let acme: RawVendor;

  beforeEach(async () => {
    mall = await startMall({ store });
    ({ acme } = await registerEconomy(mall));
    acme.register('c1', 'C0000000018');
    acme.register('c2', 'C0000000026');
    acme.issue('c1', 'ACME', 500, 5);
    acme.issue('c2', 'ACME', 500, 5);
    expect((await acme.push(mall)).ack.flagged).to.deep.equal([]);
  });
  afterEach(async () => mall.close());

  const flaggedOf = (ack: { flagged: { eventSeq: number; reason: string }[] }) => new Map(ack.flagged.map((f) => [f.eventSeq, f.reason]));

  it('accepts a lot bid on, outbid and sold, and clears its sale like any sale', async () => {
    openLot(acme);
    bid(acme, 'c1', 100, null);
    const b2 = bid(acme, 'c2', 120, { customer: 'c1', units: 100 });
    const sale = lotSale(acme, 'c2', 120, b2);
    const res = await acme.push(mall);
    expect(res.ack.flagged).to.deep.equal([]);
    const lot = mall.mall.store.state.vendors['acme']?.lots?.[LOT];
    expect(lot).to.deep.include({ status: 'closed', closedBy: sale, saleSeq: sale });
    const tokens = mall.mall.store.state.vendors['acme']?.tokens['ACME'];
    expect(tokens?.redeemedUnits).to.equal(120);
    // The mall still knows the lot after a restart, and refuses a second sale of it.
    await mall.restart();
    lotSale(acme, 'c2', 120, b2);
    const again = await acme.push(mall);
    expect([...flaggedOf(again.ack).values()][0]).to.match(/lot lot-000001 was already closed by event \d+/);
    expect(mall.mall.store.state.vendors['acme']?.tokens['ACME']?.redeemedUnits).to.equal(120);
  });

  it('flags two sales of one lot in one batch: only the first is cleared', async () => {
    openLot(acme);
    const b1 = bid(acme, 'c1', 100, null);
    const first = lotSale(acme, 'c1', 100, b1);
    const second = lotSale(acme, 'c1', 100, b1);
    const res = await acme.push(mall);
    const flagged = flaggedOf(res.ack);
    expect(flagged.has(first)).to.equal(false);
    expect(flagged.get(second)).to.match(/already closed by event/);
    expect(mall.mall.store.state.vendors['acme']?.tokens['ACME']?.redeemedUnits).to.equal(100);
  });

  it('flags unbalanced escrow postings and a bid that keeps the bid it beat in escrow', async () => {
    openLot(acme);
    // 100 leave the customer, 90 reach the escrow.
    const unbalanced = bid(acme, 'c1', 100, null, [{ account: 'customer:c1', token: 'ACME', units: -100 }, { account: escrowAccount(LOT), token: 'ACME', units: 90 }, { account: 'redeemed', token: 'ACME', units: 10 }]);
    const ok = bid(acme, 'c1', 100, null);
    // Balanced, but c1's 100 stay in the escrow: it would hold 220 for a high bid of 120.
    const keeps = bid(acme, 'c2', 120, null);
    // Balanced, but it gives back less than the high bid.
    const short = bid(acme, 'c2', 130, { customer: 'c1', units: 100 }, [...bidPostings(LOT, 'ACME', 'c2', 130, null), { account: escrowAccount(LOT), token: 'ACME', units: -60 }, { account: 'customer:c1', token: 'ACME', units: 60 }]);
    // Another lot's escrow for this lot's bid.
    const elsewhere = bid(acme, 'c2', 140, { customer: 'c1', units: 100 }, bidPostings('lot-000002', 'ACME', 'c2', 140, { customer: 'c1', units: 100 }));
    const res = await acme.push(mall);
    const flagged = flaggedOf(res.ack);
    expect(flagged.get(unbalanced)).to.match(/may not post to account redeemed|not valid/);
    expect(flagged.has(ok)).to.equal(false);
    expect(flagged.get(keeps)).to.match(/gives back nothing, the escrow holds 100 ACME of customer c1/);
    expect(flagged.get(short)).to.match(/postings are not/);
    expect(flagged.get(elsewhere)).to.match(/postings are not/);
    expect(mall.mall.store.state.vendors['acme']?.lots?.[LOT]?.high).to.deep.equal({ customer: 'c1', units: 100 });
  });

  it('flags a lot sold for more than its high bid, to someone else, or never listed; and a close unsold that keeps the bid', async () => {
    openLot(acme);
    const b1 = bid(acme, 'c1', 100, null);
    const more = lotSale(acme, 'c1', 150, b1);
    const other = lotSale(acme, 'c2', 100, b1, [{ account: escrowAccount(LOT), token: 'ACME', units: -100 }, { account: 'redeemed', token: 'ACME', units: 100 }]);
    const keeps = acme.add('lot.closed', [], { lotId: LOT, outcome: 'unsold', released: null });
    const never = acme.add('lot.cancelled', [], { lotId: 'lot-000009' });
    const res = await acme.push(mall);
    const flagged = flaggedOf(res.ack);
    expect(flagged.get(more)).to.match(/does not move the high bid of 100 ACME/);
    expect(flagged.get(other)).to.match(/sold to customer c2, its high bid is customer c1's/);
    expect(flagged.get(keeps)).to.match(/closes giving back nothing, the escrow holds 100 ACME/);
    expect(flagged.get(never)).to.match(/was never listed/);
    // The unsold close that gives the bid back is accepted.
    const honest = acme.add('lot.closed', releasePostings(LOT, 'ACME', { customer: 'c1', units: 100 }), { lotId: LOT, outcome: 'unsold', released: { customer: 'c1', units: 100 } });
    const res2 = await acme.push(mall);
    expect(flaggedOf(res2.ack).has(honest)).to.equal(false);
    expect(mall.mall.store.state.vendors['acme']?.tokens['ACME']?.redeemedUnits ?? 0).to.equal(0);
  });

  it('takes a replayed batch of lot events once: the replay changes nothing', async () => {
    openLot(acme);
    bid(acme, 'c1', 100, null);
    const cut = await acme.cut();
    expect((await mall.postBatch(cut.jws)).status).to.equal(200);
    const before = storeFingerprint(mall.mall);
    expect((await mall.postBatch(cut.jws)).status).to.equal(200);
    expect(storeFingerprint(mall.mall)).to.equal(before);
  });
});

forEachStore('mall-sync: a store\'s real auction events are accepted as written', function (store) {
  this.timeout(120_000);
  it('lists, bids, outbids and closes at a real ledger; the mall flags nothing and clears the sale', async () => {
    const mall = await startMall({ store });
    const v = await startVendor('acme');
    try {
      await registerScenario(mall, v, (await newKey()).publicJwk);
      await seedVendorCatalog(v);
      await v.ledger.recordAllotment(v.op, opKey(), { token: 'ACME', units: 10_000, reference: 'own tokens' });
      const a = await v.ledger.registerCustomer(v.op, { name: 'Ann' });
      const b = await v.ledger.registerCustomer(v.op, { name: 'Bob' });
      await v.ledger.issueTokens(v.op, opKey(), { customerId: a.id, token: 'ACME', units: 500, reason: 'reward' });
      await v.ledger.issueTokens(v.op, opKey(), { customerId: b.id, token: 'ACME', units: 500, reason: 'reward' });
      let nowMs = Date.now();
      const auctions = new AuctionService(v.ledger, silentLogger(), () => new Date(nowMs));
      const sold = await auctions.create(v.op, opKey(), { title: 'Bike', token: 'ACME', reserveUnits: 50, incrementUnits: 10, closesAt: new Date(nowMs + 60_000).toISOString() });
      const unsold = await auctions.create(v.op, opKey(), { title: 'Kite', token: 'ACME', reserveUnits: 400, incrementUnits: 10, closesAt: new Date(nowMs + 60_000).toISOString() });
      const cancelled = await auctions.create(v.op, opKey(), { title: 'Hat', token: 'ACME', reserveUnits: 0, incrementUnits: 10, closesAt: new Date(nowMs + 60_000).toISOString() });
      await auctions.bid(v.op, { key: opKey('t001'), lotId: sold.lotId, card: a.card, units: 60 });
      await auctions.bid(v.op, { key: opKey('t001'), lotId: sold.lotId, card: b.card, units: 80 });
      await auctions.bid(v.op, { key: opKey('t001'), lotId: unsold.lotId, card: a.card, units: 30 });
      await auctions.cancel(v.op, opKey(), cancelled.lotId, 'withdrawn');
      // The auction's clock moves past the close; the ledger stamps the close now.
      nowMs += 120_000;
      await auctions.closeDue();
      auctions.stop();
      expect(auctions.view(sold.lotId).result?.sold).to.equal(true);
      expect(auctions.view(unsold.lotId).result?.sold).to.equal(false);
      const { res } = await pushAll(mall, v);
      expect(res.status, res.text).to.equal(200);
      const ack = JSON.parse(Buffer.from(res.body.ack.payload as string, 'base64url').toString('utf8')) as { flagged: unknown[] };
      expect(ack.flagged).to.deep.equal([]);
      const lots = mall.mall.store.state.vendors['acme']?.lots ?? {};
      expect(lots[sold.lotId]?.status).to.equal('closed');
      expect(lots[sold.lotId]?.saleSeq).to.be.a('number');
      expect(lots[unsold.lotId]).to.deep.include({ status: 'closed', saleSeq: null });
      expect(lots[cancelled.lotId]?.status).to.equal('cancelled');
      expect(mall.mall.store.state.vendors['acme']?.tokens['ACME']?.redeemedUnits).to.equal(80);
    } finally {
      await v.close();
      await mall.close();
    }
  });
});
