import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { expect } from 'chai';
import type { Ack, CustomerView, FlattenedJws, TokenSaleAck, WalletMoveAck } from '../../core/index.ts';
import type { MallLotBidAnswer, MallLotReceipt, MallLotView } from '../../core/auctions.ts';
import { auditArchive } from '../../mall-sync/audit.ts';
import type { DemoProfileName } from '../../vendor-server/init.ts';
import { http } from '../helpers/http.ts';
import { TEST_FEES } from '../helpers/mall.ts';
import { killHard, until } from '../helpers/process.ts';
import { tempDir } from '../helpers/temp.ts';
import { openChildStore, startChildMall, type ChildStore } from '../helpers/child-stores.ts';
import { call, expectOk } from '../helpers/vendor.ts';

const key = (terminalId: string) => `${terminalId}:${randomUUID()}`;
/** Long enough for both stores' bids before the close, on a loaded machine. */
const CLOSE_AFTER_MS = 20_000;

type Store = ChildStore;

/**
 * A mall lot across two stores, each a real child process (mall-sync serve, vendor-server
 * serve) with a till over socket.io: a customer of each store puts mall tokens into the
 * mall wallet; both tills see the mall's lot; the bids go through each store to the mall,
 * each beating the last by the increment, the outbid customer's hold released at once; the
 * mall closes the lot on its own timer; the winner's store gets the signed receipt; once
 * the mall is down, a till's bid is refused at once.
 */
describe('e2e: a mall lot with bids from two stores (child processes)', function () {
  this.timeout(300_000);
  let cleanups: (() => Promise<void>)[] = [];
  after(async () => {
    for (const c of cleanups) await c().catch(() => undefined);
    cleanups = [];
  });

  it('takes bids from both stores, closes on the mall\'s timer, gives the winner\'s store the receipt, and refuses bids once the mall is down', async () => {
    const { dir, cleanup } = await tempDir('mallpos-mall-lot-');
    cleanups.push(cleanup);
    const m = await startChildMall(dir, cleanups);
    const mall = m.server;
    const mallDir = m.dir;
    const admin = m.admin;
    await admin.setFees(TEST_FEES);
    const openStore = (profile: DemoProfileName): Promise<Store> => openChildStore(m, dir, profile, cleanups);
    const a = await openStore('acme');
    const b = await openStore('bella');
    const ask = async <T>(s: Store, event: Parameters<typeof call>[1], payload: Record<string, unknown>): Promise<T> => expectOk((await call(s.till.socket, event, payload)) as Ack<T>);
    await until('the stores hold the mall snapshot and its float', async () => {
      for (const s of [a, b]) {
        const float = await http(`${s.server.url}/api/float`, 'GET', undefined, { authorization: `Bearer ${s.operatorToken}` });
        if ((float.body as Record<string, number>)['MALL'] !== 10_000) return undefined;
      }
      return true;
    });

    // A customer at each store buys 100 MALL and puts them into the mall wallet, choosing its PIN.
    const customers: { store: Store; card: string; pin: string }[] = [];
    for (const [s, name, pin] of [[a, 'Zoe Quinn', '362514907788'], [b, 'Yan Ruiz', '815062']] as const) {
      const c = await ask<CustomerView>(s, 'customer:register', { key: key(s.till.terminalId), name, card: null, consent: false });
      await ask<TokenSaleAck>(s, 'tokens:sell', { key: key(s.till.terminalId), card: c.card, token: 'MALL', units: 100, payment: { method: 'cash', tenderedMinor: 1_000 } });
      await ask<WalletMoveAck>(s, 'wallet:move', { key: key(s.till.terminalId), card: c.card, direction: 'to-wallet', token: 'MALL', units: 100, newWalletPin: pin });
      customers.push({ store: s, card: c.card, pin });
    }
    const [zoe, yan] = customers as [(typeof customers)[0], (typeof customers)[0]];
    const walletOf = async (card: string) => ((await admin.customer(card)) as { wallet: { balances: Record<string, number>; held: Record<string, number> } }).wallet;
    await until('both wallets credited at the mall', async () => ((await walletOf(zoe.card)).balances['MALL'] === 100 && (await walletOf(yan.card)).balances['MALL'] === 100) || undefined);

    const lot = await admin.createLot({ key: 'lot:e2e-000001', title: 'Brass lamp', token: 'MALL', reserveUnits: 20, incrementUnits: 5, snipeWindowSeconds: 0, closesAt: new Date(Date.now() + CLOSE_AFTER_MS).toISOString() });
    // Both tills see it, marked as the mall's.
    for (const s of [a, b]) {
      const lots = await ask<MallLotView[]>(s, 'mall-lots:list', {});
      expect(lots.map((l) => [l.lotId, l.mall, l.status, l.minBidUnits])).to.deep.equal([[lot.lotId, true, 'open', 5]]);
    }
    const bid = (c: typeof zoe, units: number, pin: string | undefined = c.pin) =>
      call<MallLotBidAnswer>(c.store.till.socket, 'mall-lot:bid', { key: key(c.store.till.terminalId), lotId: lot.lotId, card: c.card, units, ...(pin === undefined ? {} : { walletPin: pin }) });
    // Store A's tills hear of bids placed through store B: A asks the mall and pushes what changed.
    const pushedToA: MallLotView[][] = [];
    a.till.socket.on('mall-lots:update', (lots: MallLotView[]) => pushedToA.push(lots));
    expect(expectOk(await bid(zoe, 20)).wallet.held).to.deep.equal({ MALL: 20 });
    const wrongPin = await bid(yan, 25, '000000');
    expect(wrongPin.ok ? null : wrongPin.error.code).to.equal('MALL_ERR_WALLET_PIN');
    const low = await bid(yan, 24);
    expect(low.ok ? null : low.error.code).to.equal('MALL_ERR_BID_TOO_LOW');
    expect(expectOk(await bid(yan, 25)).wallet.held).to.deep.equal({ MALL: 25 });
    await until('store A pushed the high bid placed through store B', () => (pushedToA.some((lots) => lots.some((l) => l.lotId === lot.lotId && l.high?.units === 25)) ? true : undefined), 30_000);
    // Outbid: Zoe's hold is released at once.
    expect((await walletOf(zoe.card)).held).to.deep.equal({});
    expectOk(await bid(zoe, 30));
    expect((await walletOf(yan.card)).held).to.deep.equal({});

    // The mall's timer closes the lot; Zoe's store gets the receipt, signed by the mall.
    const closed = await until('the mall closed the lot', async () => {
      const l = await admin.lot(lot.lotId);
      return l.status === 'closed' ? l : undefined;
    }, CLOSE_AFTER_MS + 30_000);
    expect(closed.result).to.deep.include({ sold: true, units: 30, vendor: a.id });
    const won = await ask<MallLotView & { receipt: MallLotReceipt | null; receiptJws: FlattenedJws | null }>(a, 'mall-lot:get', { lotId: lot.lotId });
    expect(won.receipt).to.deep.include({ lotId: lot.lotId, units: 30, card: zoe.card, vendor: a.id });
    expect(won.receiptJws).to.not.equal(null);
    const other = await ask<MallLotView & { receipt: MallLotReceipt | null }>(b, 'mall-lot:get', { lotId: lot.lotId });
    expect(other.receipt).to.equal(null);
    expect(await walletOf(zoe.card)).to.deep.include({ balances: { MALL: 70 }, held: {} });
    expect(await walletOf(yan.card)).to.deep.include({ balances: { MALL: 100 }, held: {} });
    expect((await admin.walletCheck()).ok).to.equal(true);
    const audit = await auditArchive(join(mallDir, 'archive'));
    expect(audit.differences).to.deep.equal([]);

    // The mall goes down: a till's bid is refused at once, and the store journals nothing.
    await killHard(mall.child);
    const exportBefore = (await http(`${b.server.url}/api/ledger/export?format=jsonl`, 'GET', undefined, { authorization: `Bearer ${b.operatorToken}` })).text;
    const offline = await bid(yan, 40);
    expect(offline.ok ? null : offline.error.code).to.equal('VND_ERR_MALL_LOT_OFFLINE');
    const listed = await call(b.till.socket, 'mall-lots:list', {});
    expect(listed.ok ? null : listed.error.code).to.equal('VND_ERR_MALL_LOT_OFFLINE');
    const exportAfter = (await http(`${b.server.url}/api/ledger/export?format=jsonl`, 'GET', undefined, { authorization: `Bearer ${b.operatorToken}` })).text;
    expect(exportAfter.split('\n').length).to.equal(exportBefore.split('\n').length);
  });
});
