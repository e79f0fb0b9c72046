import { randomUUID } from 'node:crypto';
import { bytesUnder } from '../helpers/file-bytes.ts';
import { join } from 'node:path';
import { expect } from 'chai';
import { bpsOf, type Ack, type CustomerDataView, type CustomerView, type ExchangeAck, type ExchangeView, type SaleAck, type TokenSaleAck, type WalletMoveAck } from '../../core/index.ts';
import { auditArchive } from '../../mall-sync/audit.ts';
import { readWebhookSecrets } from '../../vendor-server/economy/webhook-secret.ts';
import { webhookSignature } from '../../vendor-server/economy/webhooks.ts';
import { DEMO_CUSTOMERS, DEMO_PROFILES, type DemoProfileName } from '../../vendor-server/init.ts';
import { http } from '../helpers/http.ts';
import { TEST_FEES } from '../helpers/mall.ts';
import { until } from '../helpers/process.ts';
import { tempDir } from '../helpers/temp.ts';
import { openChildStore, startChildMall, type ChildStore } from '../helpers/child-stores.ts';
import { call, expectOk } from '../helpers/vendor.ts';

const BREAD = '5901234123457'; // ACME Market: €2.89 or 58 ACME
const PEN = '4006381333931'; // ACME Market: €4.50
const CAPPUCCINO = '9002001000011'; // Bella Café: €3.20 or 32 BELLA
const FACE: Record<string, number> = { MALL: 10, ACME: 5, BELLA: 10, SUNNY: 10 };
const today = () => new Date().toISOString().slice(0, 10);
const key = (terminalId: string) => `${terminalId}:${randomUUID()}`;
/** The wallet PIN Zoe chooses with her first deposit. */
const ZOE_PIN = '362514907788';

type Store = ChildStore;

/**
 * A mall and two stores, each a real child process (mall-sync serve, vendor-server
 * serve), with one till each over socket.io: the whole path of tokens that travel
 * between stores, from a customer joining at one store to the mall's statements.
 */
describe('e2e: tokens between two stores of one mall (child processes)', function () {
  this.timeout(300_000);
  let cleanups: (() => Promise<void>)[] = [];
  after(async () => {
    for (const c of cleanups) await c().catch(() => undefined);
    cleanups = [];
  });

  it('a customer joins at A, buys and earns A tokens, exchanges them at B, spends at B, buys online, pays from the wallet; statements agree to the minor unit', async () => {
    const { dir, cleanup } = await tempDir('mallpos-economy-');
    cleanups.push(cleanup);
    const m = await startChildMall(dir, cleanups);
    const mall = m.server;
    const mallDir = m.dir;
    const admin = m.admin;
    await admin.setFees(TEST_FEES);
    const openStore = (profile: DemoProfileName): Promise<Store> =>
      openChildStore(m, dir, profile, cleanups, {
        // ACME rewards cash: 2 ACME for every whole euro paid in cash, at most 50 a sale.
        ...(profile === 'acme' ? { loyalty: { token: 'ACME', rules: [{ kind: 'per-amount' as const, everyMinor: 100, units: 2 }], capPerSale: 50 } } : {}),
      });
    const a = await openStore('acme');
    const b = await openStore('bella');
    const ask = async <T>(s: Store, event: Parameters<typeof call>[1], payload: Record<string, unknown>): Promise<T> =>
      expectOk((await call(s.till.socket, event, payload)) as Ack<T>);
    const units = (c: CustomerView, token: string) => c.balances.find((x) => x.token === token)?.units ?? 0;
    // Each store's copy of the mall's registry must list the other store's tokens before an exchange is priced.
    await until('the stores hold the mall snapshot and its float', async () => {
      for (const s of [a, b]) {
        const float = await http(`${s.server.url}/api/float`, 'GET', undefined, { authorization: `Bearer ${s.operatorToken}` });
        if ((float.body as Record<string, number>)['MALL'] !== 10_000) return undefined;
      }
      return true;
    });

    // 1. Zoe joins at ACME with a new card and agrees to share her contact data.
    const zoe = await ask<CustomerView>(a, 'customer:register', { key: key(a.till.terminalId), name: 'Zoe Quinn', card: null, consent: true, contact: { email: 'zoe@example.org' } });
    // 2. She buys 400 ACME tokens for €20.00 cash.
    const bought = await ask<TokenSaleAck>(a, 'tokens:sell', { key: key(a.till.terminalId), card: zoe.card, token: 'ACME', units: 400, payment: { method: 'cash', tenderedMinor: 2_000 } });
    expect(bought.priceMinor).to.equal(2_000);
    expect(units(bought.customer, 'ACME')).to.equal(400);
    // 3. A pen paid in cash earns loyalty tokens: €4.50 in cash -> 4 whole euros -> 8 ACME.
    const penSale = await ask<SaleAck>(a, 'sale:commit', { key: key(a.till.terminalId), lines: [{ code: PEN, qty: 1 }], card: zoe.card, tenders: [], cashTenderedMinor: 500 });
    expect(penSale.earned).to.deep.equal({ ACME: 8 });
    expect(penSale.balancesAfter?.['ACME']).to.equal(408);
    // 4. She moves 358 ACME into her mall wallet; the mall credits it from ACME's batch. Her
    // wallet has no PIN yet: she chooses one with this first deposit, and ACME sets it at the mall.
    const noPin = await call(a.till.socket, 'wallet:move', { key: key(a.till.terminalId), card: zoe.card, direction: 'to-wallet', token: 'ACME', units: 358 });
    expect(noPin.ok ? null : noPin.error.code).to.equal('MALL_ERR_WALLET_PIN_NOT_SET');
    const moved = await ask<WalletMoveAck>(a, 'wallet:move', { key: key(a.till.terminalId), card: zoe.card, direction: 'to-wallet', token: 'ACME', units: 358, newWalletPin: ZOE_PIN });
    expect(units(moved.customer, 'ACME')).to.equal(50);
    await until('the wallet credited at the mall', async () => ((await admin.customer(zoe.card)) as { wallet?: { balances?: Record<string, number> } }).wallet?.balances?.['ACME'] === 358 || undefined);

    // 5. At Bella the same card opens an account there (Bella is not her home store).
    await ask<CustomerView>(b, 'customer:register', { key: key(b.till.terminalId), name: 'Zoe Quinn', card: zoe.card, consent: false });
    // 6. She exchanges 300 ACME from the wallet for BELLA: €15.00 less 1% = €14.85 -> 148 BELLA, 5c remainder.
    const quote = await ask<ExchangeView>(b, 'exchange:quote', { card: zoe.card, from: { token: 'ACME', units: 300, source: 'wallet' }, to: 'BELLA' });
    expect(quote.quote).to.include({ grossMinor: 1_500, serviceChargeMinor: 15, valueOutMinor: 1_480, remainderMinor: 5 });
    // Bella cannot take from the wallet by naming the card: the mall wants Zoe's PIN.
    const guessed = await call(b.till.socket, 'exchange:commit', { key: key(b.till.terminalId), card: zoe.card, from: { token: 'ACME', units: 300, source: 'wallet' }, to: 'BELLA', expectUnits: 148, walletPin: '0000' });
    expect(guessed.ok ? null : guessed.error.code).to.equal('MALL_ERR_WALLET_PIN');
    const exchanged = await ask<ExchangeAck>(b, 'exchange:commit', { key: key(b.till.terminalId), card: zoe.card, from: { token: 'ACME', units: 300, source: 'wallet' }, to: 'BELLA', expectUnits: 148, walletPin: ZOE_PIN });
    expect(units(exchanged.customer, 'BELLA')).to.equal(148);
    // 7. She spends 32 BELLA on a cappuccino at Bella.
    const coffee = await ask<SaleAck>(b, 'sale:commit', { key: key(b.till.terminalId), lines: [{ code: CAPPUCCINO, qty: 1 }], card: zoe.card, tenders: [{ token: 'BELLA' }], cashTenderedMinor: 0 });
    expect(coffee.debits).to.deep.equal({ BELLA: 32 });
    expect(coffee.balancesAfter?.['BELLA']).to.equal(116);

    // 8. She buys 100 more ACME online: the web shop's signed webhook credits them once.
    const secret = (await readWebhookSecrets(a.dir))?.current.secret as string;
    const raw = JSON.stringify({ paymentId: `pay_${randomUUID()}`, provider: 'testpay', card: zoe.card, token: 'ACME', units: 100, amountMinor: 500, currency: 'EUR' });
    const t = Math.floor(Date.now() / 1000);
    for (let i = 0; i < 2; i++) {
      const delivered = await http(`${a.server.url}/webhooks/payments`, 'POST', raw, { 'content-type': 'application/json', 'mallpos-signature': `t=${t},v1=${webhookSignature(secret, t, raw)}` });
      expect(delivered.status, delivered.text).to.equal(200);
    }
    // 9. Back at ACME she pays a loaf of bread (58 ACME) from her wallet (58 of the 58 left there).
    const bread = await ask<SaleAck>(a, 'sale:commit', { key: key(a.till.terminalId), lines: [{ code: BREAD, qty: 1 }], card: zoe.card, tenders: [{ token: 'ACME', units: 58, source: 'wallet' }], cashTenderedMinor: 0, walletPin: ZOE_PIN });
    expect(bread.debits).to.deep.equal({ ACME: 58 });
    const zoeAtA = await ask<CustomerView>(a, 'customer:lookup', { card: zoe.card });
    expect(units(zoeAtA, 'ACME')).to.equal(50 + 100);

    // 10. Bella asks the mall about Zoe (consent: a toll) and about Max (no consent: refused, no toll).
    const max = await ask<CustomerView>(a, 'customer:register', { key: key(a.till.terminalId), name: 'Max Mustermann', card: null, consent: false });
    await until('both customers in the mall directory', async () => {
      for (const card of [zoe.card, max.card]) if ((await admin.customer(card).catch(() => null)) === null) return undefined;
      return true;
    });
    const data = await ask<CustomerDataView>(b, 'customer:data-request', { key: key(b.till.terminalId), card: zoe.card });
    expect(data.home.vendorId).to.equal('acme');
    expect(data.contact.email).to.equal('zoe@example.org');
    expect(data.tollMinor).to.equal(TEST_FEES.customerDataTollMinor);
    const refused = await call(b.till.socket, 'customer:data-request', { key: key(b.till.terminalId), card: max.card });
    expect(refused.ok).to.equal(false);
    expect(!refused.ok && refused.error.code).to.equal('MALL_ERR_NO_CONSENT');

    // Everything reaches the mall: each store's cursor equals its journal.
    for (const s of [a, b]) {
      await until(`${s.id}'s events all acknowledged by the mall`, async () => {
        const sync = await http(`${s.server.url}/api/sync`, 'GET', undefined, { authorization: `Bearer ${s.operatorToken}` });
        const st = sync.body as { eventsWaiting: number; lastError: string | null };
        return st.eventsWaiting === 0 ? st : undefined;
      });
    }
    expect(await admin.flagged()).to.deep.equal([]);
    expect(await admin.alarms()).to.deep.equal([]);

    // The clearing recomputed by hand from what the tills were told, by the published rules.
    const R = TEST_FEES.royaltyBps;
    const expected: Record<string, number> = { mall: 0, 'vendor:acme': 0, 'vendor:bella': 0 };
    const move = (from: string, to: string, amount: number) => {
      expected[from] = (expected[from] ?? 0) - amount;
      expected[to] = (expected[to] ?? 0) + amount;
    };
    move('vendor:acme', 'mall', 10_000 * FACE['MALL']!); // mall tokens bought for the float
    move('vendor:bella', 'mall', 10_000 * FACE['MALL']!);
    move('vendor:acme', 'vendor:bella', exchanged.quote.valueOutMinor); // compensation (claim 30)
    move('vendor:acme', 'mall', exchanged.quote.serviceChargeMinor); // service charge (claim 37)
    move('vendor:acme', 'mall', TEST_FEES.reimbursementTollMinor); // toll on the reimbursement (claim 42)
    move('vendor:bella', 'mall', bpsOf(exchanged.quote.valueOutMinor, R)); // royalty on the exchange (claim 40)
    move('vendor:bella', 'mall', bpsOf(32 * FACE['BELLA']!, R)); // royalty on the cappuccino
    move('vendor:acme', 'mall', bpsOf(58 * FACE['ACME']!, R)); // royalty on the bread paid from the wallet
    move('vendor:bella', 'mall', TEST_FEES.customerDataTollMinor); // the data toll (claim 41)
    const positions = await admin.positions();
    expect(positions.sumMinor).to.equal(0);
    expect(positions.positions).to.deep.equal(expected);

    const statements = await admin.statements(today(), today());
    const of = (vendor: string) => statements.find((s) => s.vendor === vendor)?.statement.totals;
    expect(of('acme')).to.include({ compensationPayableMinor: 1_480, serviceChargeMinor: 15, tollMinor: TEST_FEES.reimbursementTollMinor, royaltyMinor: bpsOf(290, R), dataTollMinor: 0 });
    // Issued at ACME today: the demo's opening rewards to its customers, the 400 bought at the till and the 100 online.
    const seeded = DEMO_CUSTOMERS.reduce((n, _c, i) => n + DEMO_PROFILES.acme.ownTokenReward(i), 0);
    expect(of('acme')?.tokensIssued).to.deep.equal({ ACME: seeded + 400 + 100 });
    expect(of('acme')?.issuedCashMinor).to.equal(2_000 + 500);
    expect(of('bella')).to.include({ compensationReceivableMinor: 1_480, exchanges: 1, royaltyMinor: bpsOf(1_480, R) + bpsOf(320, R), dataTollMinor: TEST_FEES.customerDataTollMinor });
    const wallet = await admin.walletCheck();
    expect(wallet).to.deep.include({ ok: true });

    // Anyone holding the mall's archive recomputes the same positions from the signed batches alone.
    const audit = await auditArchive(join(mallDir, 'archive'));
    expect(audit.differences).to.deep.equal([]);
    expect(audit.positions).to.deep.equal(positions.positions);

    // Zoe's wallet PIN is kept nowhere: not in the stores' or the mall's files, nor in any process's log.
    const kept = (await bytesUnder(dir)) + mall.output() + a.server.output() + b.server.output();
    expect(kept).to.include('wallet.pin-set');
    expect(kept.includes(ZOE_PIN), 'the PIN is written somewhere').to.equal(false);
  });
});
