import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { expect } from 'chai';
import type { Ack, InstrumentSaleAck, InstrumentView, SaleAck, TokenType } from '../../core/index.ts';
import { MallAdminClient } from '../../mall-sync/admin-client.ts';
import { initMall } from '../../mall-sync/init.ts';
import { loadConfig, loadKeys, writeConfig } from '../../vendor-server/config.ts';
import { demoOwnTokenType, demoTokenTypes, initVendor, type DemoProfileName } from '../../vendor-server/init.ts';
import type { RunningVendorServer } from '../../vendor-server/server.ts';
import { pinMall, TEST_FEES } from '../helpers/mall.ts';
import { killHard, spawnMall, until } from '../helpers/process.ts';
import { tempDir } from '../helpers/temp.ts';
import { connectTill, pairTill } from '../helpers/xchg-store.ts';
import { call, expectOk, startTestVendor, type TerminalClient } from '../helpers/vendor.ts';
import { TEST_PIN_HASH_COST } from '../helpers/pin-cost.ts';

const PEN = '4006381333931'; // ACME Market: €4.50 or 45 MALL
const STRUDEL = '9002001000042'; // Bella Café: €4.50 or 45 MALL
/** A mall address where nothing listens: a store started with it cannot reach the mall. */
const NOWHERE = 'https://127.0.0.1:9';
const today = () => new Date().toISOString().slice(0, 10);

interface Store {
  id: string;
  dir: string;
  operatorToken: string;
  server: RunningVendorServer;
  credential: string;
  till: { terminalId: string; socket: TerminalClient };
}

/**
 * One mall gift certificate, two stores that cannot reach the mall, and a third that can.
 * The real mall (mall-sync serve, a child process) issues a certificate of 100 MALL and
 * publishes its offline policy; ACME and Bella, both cut off from the mall, each take 80
 * of it within the policy; when they reconnect the mall honours the first batch, flags the
 * second as a double spend with an alarm naming the certificate and both stores, and, the
 * spend being within the policy, the issuer bears the loss in the statements. Cora, online,
 * is refused at once.
 */
describe('e2e: one gift certificate spent at two offline stores (the real mall)', function () {
  this.timeout(300_000);
  let cleanups: (() => Promise<void>)[] = [];
  after(async () => {
    for (const c of cleanups) await c().catch(() => undefined);
    cleanups = [];
  });

  it('both offline tills accept within the limits, the mall flags the double spend, the statement assigns the loss, an online store refuses', async () => {
    const { dir, cleanup } = await tempDir('mallpos-instruments-two-');
    cleanups.push(cleanup);
    const mallDir = join(dir, 'mall');
    const mallInit = await initMall({ dataDir: mallDir });
    const mall = await spawnMall(mallDir);
    cleanups.unshift(() => killHard(mall.child));
    const admin = new MallAdminClient(mall.url, mallInit.adminToken, mall.caPem);
    await admin.addParty({ id: 'sunny-foods', name: 'Sunny Foods', kind: 'manufacturer' });
    await admin.setFees({ ...TEST_FEES, royaltyBps: 0, royaltyBpsByToken: {}, reimbursementTollMinor: 0 });
    await admin.setInstrumentPolicy({ offlineInstrumentMaxMinor: 1_000, offlineStoreDailyMaxMinor: 5_000, snapshotMaxAgeHours: 24 });

    const start = async (s: Omit<Store, 'server' | 'till'> & { till?: Store['till'] }, mallUrl: string): Promise<Store> => {
      const server = await startTestVendor(s.dir, { mallUrl, syncOverrides: { backoffBaseMs: 50, backoffMaxMs: 500 } });
      cleanups.unshift(() => server.close());
      const socket = await connectTill(server.url, server.caPem, s.credential);
      cleanups.unshift(async () => void socket.close());
      expectOk(await call(socket, 'cashier:login', { staffId: 'ana', pin: '1234' }));
      return { ...s, server, till: { terminalId: s.till?.terminalId ?? '', socket } };
    };
    const open = async (id: string, profile: DemoProfileName): Promise<Store> => {
      const storeDir = join(dir, id);
      const init = await initVendor({ dataDir: storeDir, demo: true, mallFloat: true, demoProfile: profile, vendorId: id, pinHashCost: TEST_PIN_HASH_COST });
      await admin.registerVendor({ id, name: init.config.storeName, jwk: (await loadKeys(storeDir)).publicJwk as Record<string, unknown> });
      const types = profile === 'acme' ? demoTokenTypes('acme') : [demoOwnTokenType('bella')];
      if (id !== 'cora') for (const tt of types) await admin.upsertTokenType(tt);
      await pinMall(storeDir, mallDir, mall.url);
      const config = await loadConfig(storeDir);
      await writeConfig(storeDir, { ...config, mall: { ...(config.mall as NonNullable<typeof config.mall>), batchAgeMs: 100 } });
      const server = await startTestVendor(storeDir, { syncOverrides: { backoffBaseMs: 50, backoffMaxMs: 500 } });
      const till = await pairTill(server.url, init.operatorToken, server.caPem);
      expectOk(await call(till.socket, 'cashier:login', { staffId: 'ana', pin: '1234' }));
      // The mall's snapshot, with its key directory and policy, is in the store's cache.
      await until(`${id} holds the mall's key directory`, () => (server.sync?.cachedSnapshot()?.instruments !== undefined ? true : undefined), 30_000);
      const store: Store = { id, dir: storeDir, operatorToken: init.operatorToken, server, credential: till.credential, till: { terminalId: till.terminalId, socket: till.socket } };
      cleanups.unshift(() => server.close());
      cleanups.unshift(async () => void till.socket.close());
      return store;
    };
    /** Restarts a store's server with another mall address (NOWHERE: cut off); its cached snapshot stays. */
    const restart = async (s: Store, mallUrl: string): Promise<Store> => {
      s.till.socket.close();
      await s.server.close();
      return start(s, mallUrl);
    };

    await admin.upsertTokenType((demoTokenTypes('acme')[0]) as TokenType);
    // Issued first: the mall's instrument key is in the snapshot each store then caches.
    const [cert] = (await admin.issueInstruments({ key: `issue-${randomUUID()}`, token: 'MALL', units: 100, expiresAt: new Date(Date.now() + 30 * 86_400_000).toISOString() })).instruments;
    if (cert === undefined) throw new Error('no certificate issued');
    let acme = await open('acme', 'acme');
    let bella = await open('bella', 'bella');
    const cora = await open('cora', 'acme');

    // Online first: Cora pays part of a sale with another certificate, reserved at the mall and
    // captured by the batch; ACME sells a certificate of its own tokens, which the mall learns
    // of from its batch. Neither is flagged.
    const [other] = (await admin.issueInstruments({ key: `issue-${randomUUID()}`, token: 'MALL', units: 200, expiresAt: new Date(Date.now() + 30 * 86_400_000).toISOString() })).instruments;
    if (other === undefined) throw new Error('no certificate issued');
    const paid = expectOk(await call<SaleAck>(cora.till.socket, 'sale:commit', { key: `${cora.till.terminalId}:${randomUUID()}`, card: null, tenders: [], lines: [{ code: PEN, qty: 1 }], instruments: [{ instrument: other.compact }], cashTenderedMinor: 0 }));
    expect(paid.instruments?.[0]).to.deep.include({ code: other.code, units: 45, remainingAfter: 155, offline: false });
    const sold = expectOk(await call<InstrumentSaleAck>(acme.till.socket, 'instrument:sell', { key: `${acme.till.terminalId}:${randomUUID()}`, token: 'ACME', units: 400, payment: { method: 'cash', tenderedMinor: 2_000 } }));
    let seen: unknown = null;
    await until('the online sale and the certificate sold at the mall', async () => {
      const [o, s] = [await admin.instrument(other.code), await admin.instrument(sold.code).catch(() => null)];
      seen = { other: o, sold: s };
      return o.remainingUnits === 155 && o.heldUnits === 0 && s?.soldBy === 'acme' ? true : undefined;
    }, 60_000).catch(async (err: Error) => {
      // What the mall and the stores' sync said last, for whoever reads a timeout.
      const sync = { acme: await acme.server.sync?.status(), cora: await cora.server.sync?.status() };
      throw new Error(`${err.message}; the mall's instruments: ${JSON.stringify(seen)}; the stores' sync: ${JSON.stringify(sync)}`);
    });
    expect(await admin.instrument(sold.code)).to.deep.include({ issuer: 'acme', state: 'live', remainingUnits: 400 });
    expect((await acme.server.sync?.status())?.flaggedEvents, 'the mall flagged none of ACME\'s events').to.equal(0);

    // Both stores lose the mall.
    acme = await restart(acme, NOWHERE);
    bella = await restart(bella, NOWHERE);
    const sale = (s: Store, body: Record<string, unknown>) => call<SaleAck>(s.till.socket, 'sale:commit', { key: `${s.till.terminalId}:${randomUUID()}`, card: null, tenders: [], ...body });
    // Each takes 80 MALL (€8.00, within the €10.00 one instrument may give offline), the rest in cash.
    const atAcme = expectOk(await sale(acme, { lines: [{ code: PEN, qty: 2 }], instruments: [{ instrument: cert.compact, units: 80 }], cashTenderedMinor: 100 }));
    const atBella = expectOk(await sale(bella, { lines: [{ code: STRUDEL, qty: 2 }], instruments: [{ instrument: cert.compact, units: 80 }], cashTenderedMinor: 100 }));
    for (const ack of [atAcme, atBella]) expect(ack.instruments?.[0]).to.deep.include({ code: cert.code, units: 80, remainingAfter: 20, offline: true });
    // The store's own record already refuses more than it saw remain.
    const more = (await sale(acme, { lines: [{ code: PEN, qty: 1 }], instruments: [{ instrument: cert.compact, units: 21 }], cashTenderedMinor: 500 })) as Ack<SaleAck>;
    expect(more.ok ? null : more.error.code).to.equal('VND_ERR_INSTRUMENT_INSUFFICIENT');

    // ACME reconnects first: its redemption is honoured.
    acme = await restart(acme, mall.url);
    await until('ACME\'s batch at the mall', async () => ((await admin.instrument(cert.code)).remainingUnits === 20 ? true : undefined), 60_000);
    // Then Bella: 80 taken where 20 remained, a double spend of 60.
    bella = await restart(bella, mall.url);
    const spent = await until('the double spend flagged', async () => {
      const s = await admin.instrument(cert.code);
      return s.doubleSpent ? s : undefined;
    }, 60_000);
    expect(spent).to.deep.include({ remainingUnits: 0, state: 'spent' });
    await until('Bella\'s batch acknowledged', async () => ((await bella.server.sync?.status())?.eventsWaiting === 0 ? true : undefined), 60_000);
    expect((await bella.server.sync?.status())?.flaggedEvents, 'a double spend within the policy is an alarm, not a flagged event').to.equal(0);
    const alarms = (await admin.alarms()) as unknown as { kind: string; instrument?: string; stores?: string[]; message: string }[];
    const alarm = alarms.find((a) => a.kind === 'double-spend' && a.instrument === cert.code);
    expect(alarm?.stores).to.deep.equal(['acme', 'bella']);
    // Within the offline policy: the issuer bears the loss, 60 MALL at face value.
    expect(alarm?.message).to.match(/the issuer mall bears the loss of 600/);
    const statements = await admin.statements(today(), today());
    const ofBella = statements.find((s) => s.vendor === 'bella')?.statement.totals as unknown as Record<string, number>;
    // Bella is reimbursed the whole 80 MALL (€8.00) and charged nothing back.
    expect(ofBella['instrumentsDoubleSpent']).to.equal(1);
    expect(ofBella['doubleSpendChargedMinor'] ?? 0).to.equal(0);
    expect(ofBella['reimbursementReceivableMinor']).to.equal(800);

    // Cora can reach the mall: the spent certificate is refused at once, and nothing changes there.
    const before = JSON.stringify({ seq: cora.server.ledger.state.seq, balances: cora.server.ledger.state.balances });
    const view = expectOk(await call<InstrumentView>(cora.till.socket, 'instrument:inquire', { instrument: cert.compact }));
    expect(view).to.deep.include({ remainingUnits: 0, source: 'mall', state: 'spent' });
    const refused = (await sale(cora, { lines: [{ code: PEN, qty: 1 }], instruments: [{ instrument: cert.compact }], cashTenderedMinor: 500 })) as Ack<SaleAck>;
    expect(refused.ok ? null : refused.error.code).to.equal('MALL_ERR_INSTRUMENT_SPENT');
    expect(JSON.stringify({ seq: cora.server.ledger.state.seq, balances: cora.server.ledger.state.balances })).to.equal(before);
  });
});
