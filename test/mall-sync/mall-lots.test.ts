import { expect } from 'chai';
import { auditArchive } from '../../mall-sync/audit.ts';
import { MALL_LOTS_LISTED_MAX, MALL_LOTS_OPEN_MAX } from '../../mall-sync/lots.ts';
import { MALL_ANSWER_BYTES_MAX } from '../../vendor-server/sync/mall-requests.ts';
import type { MallEvent } from '../../mall-sync/events.ts';
import type { MallStore } from '../../mall-sync/store/store.ts';
import { until } from '../helpers/process.ts';
import { archiveOf, forEachStore, fundBidders, http, runMallCli, registerEconomy, startMall, storeFingerprint, vendorAuth, vendorPost, vendorPostToken, type MallRig, type RawVendor } from './helpers.ts';

/**
 * Mall-wide lots: two stores forward bids for their customers on one lot in mall tokens;
 * each bid holds the units in the bidder's mall wallet and releases the bid it beat in the
 * same mall event; the close is one mall event, made once, also when the mall was down at
 * the close time; a sold lot's units leave the winner's wallet and the wallet check still
 * passes. Hostile stores: no PIN, a wrong PIN, a replayed key with another body, a card
 * with too little, a bid on a closed lot; none of them changes anything but the PIN count.
 */
const PIN1 = '804172935516';
const PIN2 = '271828';

async function mallEvents(store: MallStore, type: MallEvent['type']): Promise<MallEvent[]> {
  const out: MallEvent[] = [];
  for (let seq = 1; seq <= store.state.seq; seq++) {
    const e = await store.read(seq);
    if (e.type === type) out.push(e);
  }
  return out;
}

forEachStore('mall-sync: mall-wide lots', function (store) {
  this.timeout(60_000);
  let mall: MallRig;
  let acme: RawVendor;
  let bobs: RawVendor;
  let nowMs = Date.now();
  const clock = () => new Date(nowMs);
  const admin = () => ({ authorization: `Bearer ${mall.init.adminToken}` });
  const adminGet = async (path: string) => (await mall.get(path, admin())).body;

  beforeEach(async () => {
    nowMs = Date.now();
    mall = await startMall({ store, clock });
    ({ acme, bobs } = await registerEconomy(mall));
    // acme bought 500 MALL from the mall; its customers C1 and C2 each put 100 MALL into the wallet.
    await fundBidders(mall, acme, bobs, [PIN1, PIN2]);
  });
  afterEach(async () => {
    await mall?.close();
  });

  const createLot = async (body: Record<string, unknown> = {}) => {
    const res = await mall.admin.request<{ lotId: string }>('POST', '/admin/lots', {
      key: 'lot:lamp-000001',
      title: 'Brass lamp',
      token: 'MALL',
      reserveUnits: 30,
      incrementUnits: 5,
      closesAt: new Date(nowMs + 3_600_000).toISOString(),
      ...body,
    });
    return res.lotId;
  };
  const bid = (vendor: RawVendor, lot: string, key: string, card: string, units: number, pin?: string) =>
    vendorPost(mall, vendor.keys, vendor.vendorId, `/v1/vendors/${vendor.vendorId}/lots/${lot}/bids`, { key, card, units, ...(pin === undefined ? {} : { pin }) });
  const wallet = async (card: string) => (await mall.get(`/v1/vendors/acme/wallet/${card}`, await vendorAuth(acme.keys, 'acme'))).body;
  const hold = (card: string, units: number, pin: string, key: string) =>
    vendorPost(mall, acme.keys, 'acme', '/v1/vendors/acme/wallet/authorisations', { key, card, token: 'MALL', units, purpose: 'sale', pin });

  it('takes bids from two stores, each beating the last by the increment, holds the high bid only, sells at close once, and the wallet check passes', async () => {
    const lot = await createLot();
    expect(lot).to.equal('mlot-000001');
    const first = await bid(acme, lot, 'acme:bid-000001', 'C1', 20, PIN1);
    expect(first.status, first.text).to.equal(200);
    expect(first.body).to.deep.include({ lotId: lot, units: 20, nextMinBidUnits: 25 });
    expect(await wallet('C1')).to.deep.include({ balances: { MALL: 100 }, held: { MALL: 20 } });
    // Bob's store bids for C2: less than the increment above is refused, the increment is taken.
    const low = await bid(bobs, lot, 'bobs:bid-000001', 'C2', 24, PIN2);
    expect([low.status, low.body.error.code]).to.deep.equal([409, 'MALL_ERR_BID_TOO_LOW']);
    const second = await bid(bobs, lot, 'bobs:bid-000002', 'C2', 25, PIN2);
    expect(second.status, second.text).to.equal(200);
    // Outbid: C1's hold is released in the same event, C2's units are held.
    expect((await wallet('C1')).held).to.deep.equal({});
    expect((await wallet('C2')).held).to.deep.equal({ MALL: 25 });
    const bids = await mallEvents(mall.mall.store, 'mall-lot.bid');
    expect(bids.map((e) => e.data)).to.have.length(2);
    expect((bids[1]?.data as { previous: unknown }).previous).to.deep.equal({ card: 'C1', vendor: 'acme', units: 20 });
    // Held units cannot be spent elsewhere: C2 has 75 free, a hold of 76 is refused.
    const over = await hold('C2', 76, PIN2, 'acme:hold-000001');
    expect([over.status, over.body.error.code]).to.deep.equal([409, 'MALL_ERR_WALLET_INSUFFICIENT']);
    // C1 comes back at 30 through acme (the reserve); the lots list shows it to any store, masked.
    expect((await bid(acme, lot, 'acme:bid-000002', 'C1', 30, PIN1)).status).to.equal(200);
    expect((await wallet('C2')).held).to.deep.equal({});
    const listed = (await mall.get('/v1/vendors/bobs/lots', await vendorAuth(bobs.keys, 'bobs'))).body.lots;
    expect(listed).to.have.length(1);
    expect(listed[0]).to.deep.include({ lotId: lot, mall: true, status: 'open', bids: 3, minBidUnits: 35, reserveMet: true });
    expect(listed[0].high.card).to.not.equal('C1');
    // The close time passes: the timer closes the lot, once.
    nowMs += 3_600_001;
    await until('the lot closed', async () => ((await adminGet(`/admin/lots/${lot}`)).status === 'closed' ? true : undefined), 10_000);
    const detail = await adminGet(`/admin/lots/${lot}`);
    expect(detail.result).to.deep.include({ sold: true, saleId: 'mls-000001', units: 30, vendor: 'acme' });
    expect(await wallet('C1')).to.deep.include({ balances: { MALL: 70 }, held: {} });
    expect(await wallet('C2')).to.deep.include({ balances: { MALL: 100 }, held: {} });
    // The winner's store gets the receipt; the other store sees the result only.
    const mine = (await mall.get(`/v1/vendors/acme/lots/${lot}`, await vendorAuth(acme.keys, 'acme'))).body;
    expect(mine.receipt).to.deep.include({ saleId: 'mls-000001', lotId: lot, title: 'Brass lamp', token: 'MALL', units: 30, card: 'C1', vendor: 'acme' });
    const theirs = (await mall.get(`/v1/vendors/bobs/lots/${lot}`, await vendorAuth(bobs.keys, 'bobs'))).body;
    expect(theirs.receipt).to.equal(null);
    // A bid after the close is refused and changes nothing.
    const before = storeFingerprint(mall.mall);
    const late = await bid(bobs, lot, 'bobs:bid-000003', 'C2', 40, PIN2);
    expect([late.status, late.body.error.code]).to.deep.equal([409, 'MALL_ERR_LOT_CLOSED']);
    expect(storeFingerprint(mall.mall)).to.equal(before);
    // Closing again (the timer, a restart) makes no second close.
    expect(await mall.mall.lots.closeDue()).to.equal(0);
    await mall.restart();
    expect(await mallEvents(mall.mall.store, 'mall-lot.closed')).to.have.length(1);
    const check = await adminGet('/admin/wallet-check');
    expect(check.ok, JSON.stringify(check.problems)).to.equal(true);
    expect(check.positionsSumMinor).to.equal(0);
    expect(check.tokens).to.deep.include({ token: 'MALL', walletsUnits: 200, storePostingsUnits: 200 });
    // The archive's audit replays the lot's events with the batches and agrees.
    const audit = await auditArchive(await archiveOf(mall));
    expect(audit.differences).to.deep.equal([]);
    expect(audit.ok).to.equal(true);
  });

  it('closes a lot whose time passed while the mall was down exactly once at start, releasing a bid below the reserve', async () => {
    const lot = await createLot({ reserveUnits: 50 });
    expect((await bid(bobs, lot, 'bobs:bid-000001', 'C2', 40, PIN2)).status).to.equal(200);
    await mall.mall.close();
    nowMs += 3_600_001;
    await mall.restart();
    // Closed before the mall answered anyone: no wait.
    const detail = await adminGet(`/admin/lots/${lot}`);
    expect(detail).to.deep.include({ status: 'closed' });
    expect(detail.result).to.deep.include({ sold: false, saleId: null });
    expect(await wallet('C2')).to.deep.include({ balances: { MALL: 100 }, held: {} });
    await mall.restart();
    const closed = await mallEvents(mall.mall.store, 'mall-lot.closed');
    expect(closed.map((e) => e.data)).to.deep.equal([{ lotId: lot, outcome: 'unsold', winner: null, released: { card: 'C2', vendor: 'bobs', units: 40 }, saleId: null }]);
    expect((await adminGet('/admin/wallet-check')).ok).to.equal(true);
  });

  it('moves the close on for a late bid (anti-sniping), refuses bids before the lot opens, and lets a bidder raise their own bid by the difference', async () => {
    const scheduled = await createLot({ key: 'lot:later-000001', opensAt: new Date(nowMs + 60_000).toISOString() });
    const early = await bid(acme, scheduled, 'acme:bid-000009', 'C1', 20, PIN1);
    expect([early.status, early.body.error.code]).to.deep.equal([409, 'MALL_ERR_LOT_CLOSED']);
    const closesAt = nowMs + 3_600_000;
    const lot = await createLot({ snipeWindowSeconds: 60, extendSeconds: 120 });
    expect((await bid(acme, lot, 'acme:bid-000001', 'C1', 20, PIN1)).body.closesAt).to.equal(new Date(closesAt).toISOString());
    // Ten seconds before the close: the close moves to two minutes after the bid.
    nowMs = closesAt - 10_000;
    const late = await bid(bobs, lot, 'bobs:bid-000001', 'C2', 25, PIN2);
    expect(late.body.closesAt).to.equal(new Date(nowMs + 120_000).toISOString());
    // At the old close time the lot is still open (a close finds it not due), and C2 raises its own bid: 40 held, not 65.
    nowMs = closesAt + 1;
    await mall.mall.lots.closeDue();
    expect((await adminGet(`/admin/lots/${lot}`)).status).to.equal('open');
    expect((await bid(bobs, lot, 'bobs:bid-000002', 'C2', 40, PIN2)).status).to.equal(200);
    expect(await wallet('C2')).to.deep.include({ held: { MALL: 40 } });
    nowMs += 120_001;
    await mall.mall.lots.closeDue();
    expect((await adminGet(`/admin/lots/${lot}`)).result).to.deep.include({ sold: true, units: 40, vendor: 'bobs' });
    expect(await wallet('C2')).to.deep.include({ balances: { MALL: 60 }, held: {} });
    expect((await adminGet(`/admin/lots/${scheduled}`)).result).to.deep.include({ sold: false });
    expect((await adminGet('/admin/wallet-check')).ok).to.equal(true);
  });

  it('refuses hostile bids: no PIN, a wrong PIN, a replayed key with another body, too little in the wallet; only the PIN count changes', async () => {
    const lot = await createLot();
    const ok = await bid(acme, lot, 'acme:bid-000001', 'C1', 20, PIN1);
    expect(ok.status).to.equal(200);
    const before = storeFingerprint(mall.mall);
    const none = await bid(bobs, lot, 'bobs:bid-000001', 'C2', 25);
    expect([none.status, none.body.error.code]).to.deep.equal([403, 'MALL_ERR_WALLET_PIN_REQUIRED']);
    // Another body under a key already used: refused, whatever the PIN.
    const replayed = await bid(acme, lot, 'acme:bid-000001', 'C1', 90, PIN1);
    expect([replayed.status, replayed.body.error.code]).to.deep.equal([400, 'MALL_ERR_VALIDATION']);
    // The same body under the key is the same answer (and no second bid).
    const again = await bid(acme, lot, 'acme:bid-000001', 'C1', 20, PIN1);
    expect(again.text).to.equal(ok.text);
    const poor = await bid(bobs, lot, 'bobs:bid-000002', 'C2', 101, PIN2);
    expect([poor.status, poor.body.error.code]).to.deep.equal([409, 'MALL_ERR_WALLET_INSUFFICIENT']);
    const unknown = await bid(bobs, 'mlot-000404', 'bobs:bid-000003', 'C2', 30, PIN2);
    expect([unknown.status, unknown.body.error.code]).to.deep.equal([404, 'MALL_ERR_LOT_UNKNOWN']);
    // A token signed for one body does not carry another (its `bh` claim), nor does another store's key.
    const path = `/v1/vendors/bobs/lots/${lot}/bids`;
    const signedFor = await vendorPostToken(bobs.keys, 'bobs', JSON.stringify({ key: 'bobs:bid-000005', card: 'C2', units: 25, pin: PIN2 }));
    const swapped = await vendorPost(mall, bobs.keys, 'bobs', path, { key: 'bobs:bid-000005', card: 'C2', units: 95, pin: PIN2 }, signedFor);
    expect(swapped.status).to.equal(401);
    const impostor = await vendorPost(mall, acme.keys, 'bobs', path, { key: 'bobs:bid-000006', card: 'C2', units: 25, pin: PIN2 });
    expect(impostor.status).to.equal(401);
    // Malformed bodies: validation errors, prototype keys included.
    for (const body of [{ key: 'bobs:bid-000007', card: 'C2', units: 0, pin: PIN2 }, { key: 'bobs:bid-000007', card: 'C2', units: 1.5, pin: PIN2 }, { key: 'bobs:bid-000007', card: 'C2', units: 25, pin: PIN2, extra: 1 }, JSON.parse('{"key":"bobs:bid-000007","card":"C2","units":25,"__proto__":{"pin":"1"}}')]) {
      const r = await vendorPost(mall, bobs.keys, 'bobs', path, body);
      expect([r.status, r.body.error.code], JSON.stringify(body)).to.deep.equal([400, 'MALL_ERR_VALIDATION']);
    }
    expect(storeFingerprint(mall.mall)).to.equal(before);
    // A wrong PIN is counted (the wallet's PIN rules), and nothing else changes.
    const wrong = await bid(bobs, lot, 'bobs:bid-000004', 'C2', 25, '0000');
    expect([wrong.status, wrong.body.error.code]).to.deep.equal([403, 'MALL_ERR_WALLET_PIN']);
    expect((await adminGet('/admin/wallets/C2/pin')).failures).to.equal(1);
    expect(await wallet('C1')).to.deep.include({ held: { MALL: 20 } });
    expect(await wallet('C2')).to.deep.include({ held: {} });
    expect(await mallEvents(mall.mall.store, 'mall-lot.bid')).to.have.length(1);
  });

  it('bounds the lots open at once and those a store is shown: closed ones drop off after a day', async () => {
    for (let i = 1; i <= MALL_LOTS_OPEN_MAX; i++) await createLot({ key: `lot:many-${String(i).padStart(6, '0')}`, title: `Lot ${i}` });
    const before = storeFingerprint(mall.mall);
    const over = await fetchAdmin('POST', '/admin/lots', { key: 'lot:many-over', title: 'One more', token: 'MALL', reserveUnits: 0, incrementUnits: 1, closesAt: new Date(nowMs + 60_000).toISOString() });
    expect([over.status, over.body.error.code]).to.deep.equal([400, 'MALL_ERR_LOT_INVALID']);
    expect(storeFingerprint(mall.mall)).to.equal(before);
    const shown = async () => (await mall.get('/v1/vendors/bobs/lots', await vendorAuth(bobs.keys, 'bobs'))).body.lots as { lotId: string; status: string }[];
    const open = await shown();
    expect(open).to.have.length(MALL_LOTS_LISTED_MAX);
    // With titles at their longest, the answer stays within what a store reads of the mall's answers.
    expect(JSON.stringify({ lots: open.map((l) => ({ ...l, title: 'x'.repeat(80) })) }).length).to.be.below(MALL_ANSWER_BYTES_MAX);
    expect(open[0]?.lotId, 'newest first').to.equal(`mlot-${String(MALL_LOTS_OPEN_MAX).padStart(6, '0')}`);
    nowMs += 3_600_001;
    await mall.mall.lots.closeDue();
    expect((await shown()).every((l) => l.status === 'closed')).to.equal(true);
    nowMs += 24 * 3_600_000 + 1;
    expect(await shown()).to.deep.equal([]);
  });

  it('lists only in mall tokens, cancels with the hold released, and refuses bids on a cancelled lot', async () => {
    const bad = await mall.get('/admin/lots', admin());
    expect(bad.body).to.deep.equal([]);
    const notMall = await fetchAdmin('POST', '/admin/lots', { key: 'lot:acme-000001', title: 'Pen', token: 'ACME', reserveUnits: 0, incrementUnits: 1, closesAt: new Date(nowMs + 60_000).toISOString() });
    expect([notMall.status, notMall.body.error.code]).to.deep.equal([400, 'MALL_ERR_LOT_INVALID']);
    // The operator's CLI lists and cancels (through the running mall, or on PostgreSQL a process of its own on the same database).
    const created = await runMallCli(['lot', 'create', '--data-dir', mall.dir, '--title', 'Brass lamp', '--token', 'MALL', '--reserve', '30', '--increment', '5', '--opens', new Date(nowMs).toISOString(), '--closes', new Date(nowMs + 3_600_000).toISOString()]);
    expect(created.code, created.stderr).to.equal(0);
    const lot = (JSON.parse(created.stdout) as { lotId: string }).lotId;
    expect((await bid(acme, lot, 'acme:bid-000001', 'C1', 20, PIN1)).status).to.equal(200);
    const cancelled = await runMallCli(['lot', 'cancel', '--data-dir', mall.dir, '--lot', lot, '--reason', 'withdrawn by the owner']);
    expect(cancelled.code, cancelled.stderr).to.equal(0);
    expect(JSON.parse(cancelled.stdout)).to.deep.include({ status: 'cancelled', cancelReason: 'withdrawn by the owner' });
    const shown = await runMallCli(['lot', 'show', '--data-dir', mall.dir, '--lot', lot]);
    expect(JSON.parse(shown.stdout)).to.deep.include({ lotId: lot, status: 'cancelled', bids: 1, highCard: 'C1' });
    expect(await wallet('C1')).to.deep.include({ held: {} });
    const late = await bid(bobs, lot, 'bobs:bid-000001', 'C2', 25, PIN2);
    expect([late.status, late.body.error.code]).to.deep.equal([409, 'MALL_ERR_LOT_CLOSED']);
    expect((await adminGet('/admin/wallet-check')).ok).to.equal(true);
  });

  const fetchAdmin = (method: 'POST', path: string, body: unknown) => http(`${mall.mall.url}${path}`, method, body, admin());
});
