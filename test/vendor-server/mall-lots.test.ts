import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import type { JWK } from 'jose';
import { isMallposError, type FlattenedJws } from '../../core/index.ts';
import { MALL_LOT_RECEIPT_TYP } from '../../core/auctions.ts';
import { verifyJson } from '../../mall-sync/jws.ts';
import { MallLotForwarder } from '../../vendor-server/auctions/mall-lots.ts';
import type { VendorKeys } from '../../vendor-server/config.ts';
import { MALL_REQUEST_DEFAULTS, MallRequests } from '../../vendor-server/sync/mall-requests.ts';
import { fundBidders, registerEconomy, startMall, type MallRig, type RawVendor } from '../mall-sync/helpers.ts';
import { call, startDemoStore, type DemoStore } from '../helpers/vendor.ts';

/**
 * The store's side of mall-wide lots: two stores forward their customers' bids to the real
 * mall (in this process), each beating the last by the increment; the store whose customer
 * won reads the receipt of the mall's sale; a mall that cannot be reached, or a store linked
 * to none, is refused with VND_ERR_MALL_LOT_OFFLINE and nothing is held or journalled.
 */
const PIN1 = '804172935516';
const PIN2 = '271828';

async function refusedWith(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (isMallposError(err)) return err.code;
    throw err;
  }
  throw new Error('expected a refusal');
}

describe('vendor-server: forwarding bids on mall lots', function () {
  this.timeout(60_000);
  let mall: MallRig;
  let acme: RawVendor;
  let bobs: RawVendor;
  let nowMs = Date.now();
  const clock = () => new Date(nowMs);
  const forwarder = (v: RawVendor, url = mall.mall.url) =>
    new MallLotForwarder(() => new MallRequests({ mallUrl: url, mallCaPem: mall.mall.caPem, vendorId: v.vendorId, keys: v.keys as unknown as VendorKeys, ...MALL_REQUEST_DEFAULTS }));

  before(async () => {
    mall = await startMall({ clock });
    ({ acme, bobs } = await registerEconomy(mall));
    await fundBidders(mall, acme, bobs, [PIN1, PIN2]);
  });
  after(async () => {
    await mall?.close();
  });

  it('lists the mall lots at both stores, forwards bids that beat each other by the increment, and gives the winner\'s store the receipt', async () => {
    const lot = await mall.admin.createLot({ key: 'lot:clock-000001', title: 'Station clock', token: 'MALL', reserveUnits: 10, incrementUnits: 5, closesAt: new Date(nowMs + 3_600_000).toISOString() });
    const atAcme = forwarder(acme);
    const atBobs = forwarder(bobs);
    const listed = await atBobs.list();
    expect(listed.map((l) => [l.lotId, l.mall, l.status, l.minBidUnits])).to.deep.equal([[lot.lotId, true, 'open', 5]]);
    const first = await atAcme.bid({ key: 't001:bid-000001', lotId: lot.lotId, card: 'C1', units: 10, walletPin: PIN1 });
    expect(first).to.deep.include({ lotId: lot.lotId, units: 10, nextMinBidUnits: 15 });
    expect(first.wallet.held).to.deep.equal({ MALL: 10 });
    // A retry of the till's key is the same answer from the mall.
    expect(await atAcme.bid({ key: 't001:bid-000001', lotId: lot.lotId, card: 'C1', units: 10, walletPin: PIN1 })).to.deep.equal(first);
    expect(await refusedWith(atBobs.bid({ key: 't002:bid-000001', lotId: lot.lotId, card: 'C2', units: 14, walletPin: PIN2 }))).to.equal('MALL_ERR_BID_TOO_LOW');
    expect(await refusedWith(atBobs.bid({ key: 't002:bid-000002', lotId: lot.lotId, card: 'C2', units: 15 }))).to.equal('MALL_ERR_WALLET_PIN_REQUIRED');
    const second = await atBobs.bid({ key: 't002:bid-000003', lotId: lot.lotId, card: 'C2', units: 15, walletPin: PIN2 });
    expect(second.wallet.held).to.deep.equal({ MALL: 15 });
    expect(mall.mall.store.state.walletHeld['C1']).to.equal(undefined);
    const third = await atAcme.bid({ key: 't001:bid-000002', lotId: lot.lotId, card: 'C1', units: 20, walletPin: PIN1 });
    expect(third.units).to.equal(20);
    nowMs += 3_600_001;
    // The mall's timer or this call closes it; either way once.
    await mall.mall.lots.closeDue();
    const won = await atAcme.lot({ lotId: lot.lotId });
    expect(won.result).to.deep.include({ sold: true, units: 20, vendor: 'acme' });
    expect(won.receipt).to.deep.include({ lotId: lot.lotId, title: 'Station clock', token: 'MALL', units: 20, card: 'C1', vendor: 'acme' });
    // The receipt is signed with the mall key: the payload is the receipt, checked with the mall's public key.
    expect(won.receiptJws).to.not.equal(null);
    const signed = await verifyJson<unknown>(won.receiptJws as FlattenedJws, mall.mall.keys.publicJwk as unknown as JWK, MALL_LOT_RECEIPT_TYP);
    expect(signed).to.deep.equal(won.receipt);
    const tampered = { ...(won.receiptJws as FlattenedJws), payload: Buffer.from(JSON.stringify({ ...won.receipt, units: 1 })).toString('base64url') };
    expect(await verifyJson(tampered, mall.mall.keys.publicJwk as unknown as JWK, MALL_LOT_RECEIPT_TYP).then(() => 'verified', () => 'refused')).to.equal('refused');
    const lost = await atBobs.lot({ lotId: lot.lotId });
    expect([lost.receipt, lost.receiptJws]).to.deep.equal([null, null]);
    expect(await refusedWith(atBobs.bid({ key: 't002:bid-000004', lotId: lot.lotId, card: 'C2', units: 30, walletPin: PIN2 }))).to.equal('MALL_ERR_LOT_CLOSED');
    expect((await mall.admin.walletCheck()).ok).to.equal(true);
  });

  it('refuses at once when the mall cannot be reached: nothing is held at the mall', async () => {
    const lot = await mall.admin.createLot({ key: 'lot:vase-000001', title: 'Vase', token: 'MALL', reserveUnits: 0, incrementUnits: 1, closesAt: new Date(nowMs + 3_600_000).toISOString() });
    const before = JSON.stringify(mall.mall.store.state);
    // A port nothing listens on: the address of a mall that is down.
    const down = forwarder(acme, 'https://127.0.0.1:1');
    expect(await refusedWith(down.list())).to.equal('VND_ERR_MALL_LOT_OFFLINE');
    expect(await refusedWith(down.bid({ key: 't001:bid-000009', lotId: lot.lotId, card: 'C2', units: 5, walletPin: PIN2 }))).to.equal('VND_ERR_MALL_LOT_OFFLINE');
    expect(JSON.stringify(mall.mall.store.state)).to.equal(before);
  });
});

describe('vendor-server: a till asking for mall lots at a store linked to no mall', function () {
  this.timeout(60_000);
  let store: DemoStore;
  before(async () => {
    store = await startDemoStore();
  });
  after(async () => {
    await store?.close();
  });

  it('is refused with VND_ERR_MALL_LOT_OFFLINE and nothing is journalled; another till\'s key is refused', async () => {
    const { socket, terminalId } = await store.openTill();
    const seq = store.server.ledger.state.seq;
    const listed = await call(socket, 'mall-lots:list', {});
    expect(listed.ok ? null : listed.error.code).to.equal('VND_ERR_MALL_LOT_OFFLINE');
    const bid = await call(socket, 'mall-lot:bid', { key: `${terminalId}:${randomUUID()}`, lotId: 'mlot-000001', card: 'C1', units: 5, walletPin: '1234' });
    expect(bid.ok ? null : bid.error.code).to.equal('VND_ERR_MALL_LOT_OFFLINE');
    const foreign = await call(socket, 'mall-lot:bid', { key: `t999:${randomUUID()}`, lotId: 'mlot-000001', card: 'C1', units: 5 });
    expect(foreign.ok ? null : foreign.error.code).to.equal('VND_ERR_IDEMPOTENCY_KEY');
    const storeLot = await call(socket, 'mall-lot:bid', { key: `${terminalId}:${randomUUID()}`, lotId: 'lot-000001', card: 'C1', units: 5 });
    expect(storeLot.ok ? null : storeLot.error.code).to.equal('CORE_ERR_VALIDATION');
    expect(store.server.ledger.state.seq).to.equal(seq);
  });
});
