import { expect } from 'chai';
import fc from 'fast-check';
import { quoteExchange, type TokenType } from '../../core/index.ts';
import { auditArchive } from '../../mall-sync/audit.ts';
import { exchangeClearing } from '../../mall-sync/clearing.ts';
import type { StatementPayload } from '../../mall-sync/statements.ts';
import { archiveOf, forEachStore, registerEconomy, scenarioTokenTypes, startMall, vendorAuth, vendorPost, type MallRig, type RawVendor } from './helpers.ts';

const tt = (code: string): TokenType => scenarioTokenTypes().find((t) => t.code === code) as TokenType;
const today = () => new Date().toISOString().slice(0, 10);

/** acme registers card C1 (customer c1), sells it `units` ACME and moves `toWallet` of them into the mall wallet. */
async function customerWithWallet(mall: MallRig, acme: RawVendor, units = 200, toWallet = 100): Promise<void> {
  acme.register('c1', 'C1', { consent: true, name: 'Ann', contact: { email: 'ann@example.org' } });
  acme.issue('c1', 'ACME', units, 5);
  acme.move('c1', 'C1', 'to-wallet', 'ACME', toWallet);
  const res = await acme.push(mall);
  expect(res.status, res.text).to.equal(200);
  expect(res.ack.flagged).to.deep.equal([]);
  const pin = await vendorPost(mall, acme.keys, 'acme', '/v1/vendors/acme/wallet/pin', { key: 'acme:pin-0001', card: 'C1', pin: '2468' });
  expect(pin.status, pin.text).to.equal(200);
}

async function statementOf(mall: MallRig, vendor: string): Promise<StatementPayload> {
  const all = await mall.admin.statements(today(), today());
  return all.find((s) => s.vendor === vendor)?.statement as StatementPayload;
}

describe('mall-sync exchange clearing rule', () => {
  it('keeps every position summing to zero over random exchanges, fee schedules and issuers', () => {
    const issuers = ['mall', 'acme', 'bobs', 'sunny-foods'];
    const isVendor = (id: string) => id === 'acme' || id === 'bobs';
    fc.assert(
      fc.property(
        fc.constantFrom(...issuers),
        fc.constantFrom(...issuers),
        fc.integer({ min: 1, max: 5_000 }),
        fc.integer({ min: 1, max: 5_000 }),
        fc.integer({ min: 1, max: 100_000 }),
        fc.integer({ min: 0, max: 10_000 }),
        fc.integer({ min: 0, max: 1_000 }),
        fc.integer({ min: 0, max: 10_000 }),
        fc.constantFrom('acme', 'bobs'),
        fc.boolean(),
        (fromIssuer, toIssuer, fromFace, toFace, units, serviceBps, toll, royaltyBps, vendor, fromWallet) => {
          fc.pre(fromIssuer !== toIssuer);
          const from: TokenType = { code: 'FROM', name: 'f', kind: 'vendor', issuer: fromIssuer, faceValueMinor: fromFace, currency: 'EUR', acceptedBy: '*' };
          const to: TokenType = { code: 'TO', name: 't', kind: 'vendor', issuer: toIssuer, faceValueMinor: toFace, currency: 'EUR', acceptedBy: '*' };
          let quote;
          try {
            quote = quoteExchange(from, units, to, serviceBps);
          } catch {
            return;
          }
          const fees = { royaltyBps, royaltyBpsByVendor: {}, royaltyBpsByToken: {}, reimbursementTollMinor: toll, customerDataTollMinor: 0, exchangeServiceBps: serviceBps };
          const record = exchangeClearing({ vendor, eventSeq: 1, at: new Date().toISOString(), quote, fromWallet, fees, isVendor });
          const positions = new Map<string, bigint>();
          for (const t of record.transfers) {
            expect(Number.isSafeInteger(t.amountMinor) && t.amountMinor > 0, 'a transfer is a positive integer').to.equal(true);
            positions.set(t.from, (positions.get(t.from) ?? 0n) - BigInt(t.amountMinor));
            positions.set(t.to, (positions.get(t.to) ?? 0n) + BigInt(t.amountMinor));
          }
          let total = 0n;
          for (const v of positions.values()) total += v;
          expect(total).to.equal(0n);
          const compensation = record.transfers.find((t) => t.kind === 'compensation');
          expect(compensation?.amountMinor).to.equal(quote.valueOutMinor);
          // The mall charges itself nothing.
          for (const t of record.transfers) expect(t.from).to.not.equal(t.to);
          if (fromIssuer === 'mall') expect(record.transfers.filter((t) => t.kind === 'toll' || t.kind === 'service-charge')).to.deep.equal([]);
        },
      ),
      { numRuns: 500 },
    );
  });
});

forEachStore('mall-sync: exchanges, loyalty earning, wallet-paid sales and token sales', (store) => {
  let mall: MallRig;
  let acme: RawVendor;
  let bobs: RawVendor;

  beforeEach(async () => {
    mall = await startMall({ store });
    ({ acme, bobs } = await registerEconomy(mall));
  });
  afterEach(async () => {
    await mall?.close();
  });

  it('clears an exchange from the wallet at bobs of ACME for BOB: compensation, service charge, toll and royalty; the ack covers them; the wallet pays', async () => {
    await customerWithWallet(mall, acme);
    bobs.register('b1', 'C1');
    expect((await bobs.push(mall)).status).to.equal(200);
    const auth = await vendorPost(mall, bobs.keys, 'bobs', '/v1/vendors/bobs/wallet/authorisations', { key: 'bobs:auth-0001', card: 'C1', token: 'ACME', units: 100, purpose: 'exchange', pin: '2468' });
    expect(auth.status, auth.text).to.equal(200);
    const quote = quoteExchange(tt('ACME'), 100, tt('BOB'), 100);
    // 500 gross, 5 service charge, 24 BOB (480), 15 left with acme.
    expect([quote.serviceChargeMinor, quote.to.units, quote.valueOutMinor, quote.remainderMinor]).to.deep.equal([5, 24, 480, 15]);
    bobs.exchange('b1', quote, 'wallet', auth.body.authorisation.id as string);
    const res = await bobs.push(mall);
    expect(res.status, res.text).to.equal(200);
    expect(res.ack.flagged).to.deep.equal([]);
    // compensation acme -> bobs 480, service charge acme -> mall 5, toll acme -> mall 7, royalty bobs -> mall 1% of 480 = 4.8 -> 5.
    expect(res.ack.cleared).to.deep.equal({ mall: 17, 'vendor:acme': -492, 'vendor:bobs': 475 });
    const positions = await mall.admin.positions();
    expect(positions.sumMinor).to.equal(0);
    const a = await statementOf(mall, 'acme');
    const b = await statementOf(mall, 'bobs');
    expect(a.totals).to.deep.include({ compensationPayableMinor: 480, serviceChargeMinor: 5, tollMinor: 7, issuedCashMinor: 1000 });
    expect(a.totals.tokensIssued).to.deep.equal({ ACME: 200 });
    expect(b.totals).to.deep.include({ exchanges: 1, compensationReceivableMinor: 480, royaltyMinor: 5 });
    expect(b.totals.tokensExchanged).to.deep.equal({ ACME: 100 });
    const wallet = await mall.get('/v1/vendors/bobs/wallet/C1', await vendorAuth(bobs.keys, 'bobs'));
    expect(wallet.body).to.deep.include({ card: 'C1', balances: {}, held: {} });
    const check = await mall.get('/admin/wallet-check', { authorization: `Bearer ${mall.init.adminToken}` });
    expect(check.body).to.deep.include({ ok: true, positionsSumMinor: 0 });
    expect(check.body.tokens).to.deep.equal([{ token: 'ACME', walletsUnits: 0, storePostingsUnits: 0 }]);
    // The archive alone gives the same figures: the hold is in the registry history, before the batch that used it.
    const audit = await auditArchive(await archiveOf(mall));
    expect(audit.ok, audit.differences.join('\n')).to.equal(true);
  });

  it('flags an exchange whose quote is not the rule at the fee schedule in force at its time, and clears nothing', async () => {
    acme.register('c1', 'C1');
    acme.issue('c1', 'ACME', 400, 5);
    expect((await acme.push(mall)).status).to.equal(200);
    await mall.admin.setFees({ royaltyBps: 250, royaltyBpsByVendor: {}, royaltyBpsByToken: { BOB: 100 }, reimbursementTollMinor: 7, customerDataTollMinor: 25, exchangeServiceBps: 300 });
    // The mall's fee schedule changed to 300 bps: a quote at 100 bps dated now is not the rule.
    const stale = quoteExchange(tt('ACME'), 100, tt('MALL'), 100);
    const bad = acme.exchange('c1', stale, 'card', null, new Date().toISOString());
    // A quote at 50 bps matches no schedule ever in force.
    const wrong = acme.exchange('c1', quoteExchange(tt('ACME'), 100, tt('MALL'), 50));
    // A made-up face value: 100 ACME for 60 MALL.
    const forged = { ...stale, to: { ...stale.to, units: 60 }, valueOutMinor: 600, remainderMinor: 0 };
    const forgedSeq = acme.exchange('c1', forged);
    const fine = acme.exchange('c1', quoteExchange(tt('ACME'), 100, tt('MALL'), 300));
    const res = await acme.push(mall);
    expect(res.status, res.text).to.equal(200);
    const reasons = new Map((res.ack.flagged as { eventSeq: number; reason: string }[]).map((f) => [f.eventSeq, f.reason]));
    expect(reasons.get(bad)).to.match(/quote is not what the rule gives .* 300 bps service charge in force/);
    expect(reasons.get(wrong)).to.match(/quote is not what the rule gives/);
    expect(reasons.get(forgedSeq)).to.match(/quote is not what the rule gives/);
    expect(reasons.has(fine)).to.equal(false);
    // Only the exchange at 300 bps cleared: 500 gross, 15 charge, 48 MALL (480) from the mall, which acme compensates.
    // Only the exchange at 300 bps cleared: 500 gross, 15 charge, 48 MALL (480) given by acme, compensated to the mall
    // as their issuer; toll 7; royalty 2.5% of 480 = 12.
    expect(res.ack.cleared).to.deep.equal({ mall: 514, 'vendor:acme': -514 });
  });

  it('checks an exchange against the fee schedule in force at its time: one made before a change keeps the old charge', async () => {
    await mall.close();
    let offsetMs = 3_600_000;
    mall = await startMall({ store, clock: () => new Date(Date.now() - offsetMs) });
    ({ acme, bobs } = await registerEconomy(mall));
    offsetMs = 0;
    await mall.admin.setFees({ royaltyBps: 250, royaltyBpsByVendor: {}, royaltyBpsByToken: { BOB: 100 }, reimbursementTollMinor: 7, customerDataTollMinor: 25, exchangeServiceBps: 300 });
    const halfHourAgo = new Date(Date.now() - 1_800_000).toISOString();
    acme.add('customer.registered', [], { id: 'c1', card: 'C1', name: 'Ann' }, halfHourAgo);
    acme.add('issuance', [{ account: 'float', token: 'ACME', units: -100 }, { account: 'customer:c1', token: 'ACME', units: 100 }], { customer: 'c1', token: 'ACME', units: 100, reason: 'reward', cashMinor: 0, balancesAfter: {} }, halfHourAgo);
    const q = quoteExchange(tt('ACME'), 30, tt('MALL'), 100);
    // Made half an hour ago, at 100 bps: the schedule then.
    const then = acme.exchange('c1', q, 'card', null, halfHourAgo, halfHourAgo);
    // Made now with a snapshot from half an hour ago: priced by the schedule the store had, in force when the snapshot was issued.
    const withOldSnapshot = acme.exchange('c1', q, 'card', null, halfHourAgo);
    // Made now with a snapshot of now at 100 bps: the schedule in force says 300.
    const now = acme.exchange('c1', q, 'card', null);
    const res = await acme.push(mall);
    const reasons = new Map((res.ack.flagged as { eventSeq: number; reason: string }[]).map((f) => [f.eventSeq, f.reason]));
    expect(reasons.has(then)).to.equal(false);
    expect(reasons.has(withOldSnapshot)).to.equal(false);
    expect(reasons.get(now)).to.match(/300 bps service charge in force/);
    expect(q.serviceBps).to.equal(100);
  });

  it('accepts loyalty earning and a wallet-paid sale, clears the wallet tokens as a redemption, and a reversal gives the wallet its tokens back', async () => {
    await customerWithWallet(mall, acme);
    bobs.register('b1', 'C1');
    expect((await bobs.push(mall)).status).to.equal(200);
    const auth = await vendorPost(mall, bobs.keys, 'bobs', '/v1/vendors/bobs/wallet/authorisations', { key: 'bobs:auth-0002', card: 'C1', token: 'ACME', units: 90, purpose: 'sale', pin: '2468' });
    expect(auth.status, auth.text).to.equal(200);
    const id = auth.body.authorisation.id as string;
    // ACME is accepted only at acme: let bobs take it too.
    await mall.admin.upsertTokenType({ ...tt('ACME'), acceptedBy: ['acme', 'bobs'] });
    const sale = bobs.sale(null, 'ACME', 90, { wallet: [{ authorisation: id, units: 90 }] });
    const salePostings = bobs.postingsOf(sale);
    const earnedSale = bobs.sale('b1', 'BOB', 23, { earned: { BOB: 3 } });
    const res = await bobs.push(mall);
    expect(res.status, res.text).to.equal(200);
    expect(res.ack.flagged).to.deep.equal([]);
    // 90 ACME = 450 from acme to bobs, toll 7; royalty 2.5% of 450 = 11.25 -> 11; bobs' own BOB: royalty 1% of 460 = 4.6 -> 5.
    expect(res.ack.cleared).to.deep.equal({ mall: 23, 'vendor:acme': -457, 'vendor:bobs': 434 });
    const w1 = await mall.get('/v1/vendors/bobs/wallet/C1', await vendorAuth(bobs.keys, 'bobs'));
    expect(w1.body.balances).to.deep.equal({ ACME: 10 });
    expect(earnedSale).to.be.a('number');
    bobs.reverse(sale, null, salePostings);
    const rev = await bobs.push(mall);
    expect(rev.ack.flagged).to.deep.equal([]);
    const w2 = await mall.get('/v1/vendors/bobs/wallet/C1', await vendorAuth(bobs.keys, 'bobs'));
    expect(w2.body.balances).to.deep.equal({ ACME: 100 });
    const check = await mall.get('/admin/wallet-check', { authorization: `Bearer ${mall.init.adminToken}` });
    expect(check.body.ok, JSON.stringify(check.body)).to.equal(true);
    const audit = await auditArchive(await archiveOf(mall));
    expect(audit.ok, audit.differences.join('\n')).to.equal(true);
  });

  it('records token sales with their payment as tokens issued, and flags a payment that does not add up or postings that do not match', async () => {
    acme.register('c1', 'C1');
    const ok = acme.issue('c1', 'ACME', 10, 5, { method: 'cash', tenderedMinor: 100, changeMinor: 50 });
    const short = acme.issue('c1', 'ACME', 10, 5, { method: 'cash', tenderedMinor: 100, changeMinor: 60 });
    const reward = acme.issue('c1', 'ACME', 3, 5, null);
    const mismatched = acme.add('issuance', [{ account: 'float', token: 'ACME', units: -50 }, { account: 'customer:c1', token: 'ACME', units: 50 }], { customer: 'c1', token: 'ACME', units: 5, reason: 'purchase', cashMinor: 25, payment: { method: 'card', approvalRef: 'X1' }, balancesAfter: {} });
    const res = await acme.push(mall);
    const reasons = new Map((res.ack.flagged as { eventSeq: number; reason: string }[]).map((f) => [f.eventSeq, f.reason]));
    expect(reasons.has(ok)).to.equal(false);
    expect(reasons.has(reward)).to.equal(false);
    expect(reasons.get(short)).to.match(/cash tendered less the change/);
    expect(reasons.get(mismatched)).to.match(/postings do not move its units/);
    expect(res.ack.cleared).to.deep.equal({});
    const a = await statementOf(mall, 'acme');
    expect(a.totals.tokensIssued).to.deep.equal({ ACME: 13 });
    expect(a.totals.issuedCashMinor).to.equal(50);
  });
});
