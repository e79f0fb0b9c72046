import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { io, type Socket } from 'socket.io-client';
import type { Ack, JournalEvent, OfflineSaleAck, OfflineSaleRecord } from '../../core/index.ts';
import { MallAdminClient } from '../../mall-sync/admin-client.ts';
import type { RunningMall } from '../../mall-sync/server.ts';
import { authorityFor } from '../helpers/http.ts';
import { initMallAndVendor, pinMall, registerDemoVendor, startTestMall } from '../helpers/mall.ts';
import { killHard, operatorApi, pairTill, runCli, spawnVendorServer, type ChildServer } from '../helpers/process.ts';
import { tempDir } from '../helpers/vendor.ts';

const SALES_PER_TILL = 25;
const PRODUCTS = [
  { code: '4006381333931', name: 'Pen', unitPriceMinor: 450 },
  { code: '5901234123457', name: 'Bread', unitPriceMinor: 289 },
];
/** Bounds on waiting for an ack: they catch a hang and say nothing about speed. */
const ACK_TIMEOUT_MS = 30_000;

/**
 * The store server killed in the middle of a day with two tills selling: the tills keep
 * the cash sales they make while it is down (here: the records they would forward), the
 * server is restarted and killed again half-way through their forwarding, and restarted
 * once more. Every offline sale is journalled exactly once, the day's totals include
 * them, an independent sum over the exported journal equals what the tills recorded,
 * and the batches bring every event to the mall without a flag.
 */
describe('e2e: offline sales forwarded exactly once across store server kills', function () {
  this.timeout(300_000);
  let dir: string;
  let cleanup: () => Promise<void>;
  let operatorToken: string;
  let server: ChildServer | null = null;
  let mall: RunningMall;
  let admin: MallAdminClient;

  before(async () => {
    let root: string;
    ({ dir: root, cleanup } = await tempDir('mallpos-offline-crash-'));
    const setup = await initMallAndVendor(root);
    dir = setup.vendorDir;
    operatorToken = setup.vendorInit.operatorToken;
    mall = await startTestMall(setup.mallDir);
    admin = new MallAdminClient(mall.url, setup.adminToken, mall.caPem);
    await registerDemoVendor(admin, dir);
    await pinMall(dir, setup.mallDir, mall.url);
  });
  after(async () => {
    if (server !== null) await killHard(server.child);
    await mall?.close();
    await cleanup();
  });

  const op = operatorApi(() => server, () => operatorToken);

  const connect = async (credential: string): Promise<Socket> => {
    if (server === null) throw new Error('no server');
    const socket = io(server.url, { auth: { token: credential }, ca: authorityFor(server.url), transports: ['websocket'], reconnection: false, forceNew: true });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('connect_error', reject);
    });
    return socket;
  };

  const emit = async <T>(socket: Socket, event: string, payload: unknown): Promise<Ack<T>> => (await socket.timeout(ACK_TIMEOUT_MS).emitWithAck(event, payload)) as Ack<T>;

  it('journals every offline sale of two tills once, through a kill in the middle of forwarding', async () => {
    server = await spawnVendorServer(dir);
    const tills: { terminalId: string; credential: string }[] = [];
    for (const name of ['Till 1', 'Till 2']) {
      tills.push(await pairTill(op, server.url, name));
    }
    // Both tills sell online first, and copy the catalog.
    let onlineMinor = 0;
    let catalogVersion = 0;
    for (const till of tills) {
      const socket = await connect(till.credential);
      const login = await emit(socket, 'cashier:login', { staffId: 'ana', pin: '1234' });
      expect(login.ok).to.equal(true);
      const sale = await emit<{ totalMinor: number }>(socket, 'sale:commit', { key: `${till.terminalId}:${randomUUID()}`, lines: [{ code: PRODUCTS[0]?.code, qty: 1 }], card: null, tenders: [], cashTenderedMinor: 1000 });
      if (!sale.ok) throw new Error(sale.error.message);
      onlineMinor += sale.data.totalMinor;
      const catalog = await emit<{ version: number }>(socket, 'catalog:get', { sinceVersion: null });
      if (!catalog.ok) throw new Error(catalog.error.message);
      catalogVersion = catalog.data.version;
      socket.disconnect();
    }

    // The server dies; the tills keep selling for cash and record each sale.
    await killHard(server.child);
    server = null;
    const records = new Map<string, OfflineSaleRecord[]>();
    for (const till of tills) {
      const mine: OfflineSaleRecord[] = [];
      for (let counter = 1; counter <= SALES_PER_TILL; counter++) {
        const p = PRODUCTS[counter % PRODUCTS.length] ?? PRODUCTS[0];
        if (p === undefined) throw new Error('no product');
        const qty = 1 + (counter % 4);
        const totalMinor = p.unitPriceMinor * qty;
        const cashTenderedMinor = Math.ceil(totalMinor / 500) * 500;
        mine.push({
          key: `${till.terminalId}:${randomUUID()}`,
          offlineId: `${till.terminalId}-${counter}`,
          counter,
          at: new Date().toISOString(),
          catalogVersion,
          cashier: 'ana',
          currency: 'EUR',
          lines: [{ code: p.code, name: p.name, qty, unitPriceMinor: p.unitPriceMinor, totalMinor }],
          totalMinor,
          cashTenderedMinor,
          changeMinor: cashTenderedMinor - totalMinor,
        });
      }
      records.set(till.terminalId, mine);
    }

    // Back up: both tills forward in order; the server is killed after a few acks.
    server = await spawnVendorServer(dir);
    const killAfter = 5 + Math.floor(Math.random() * 20);
    let acked = 0;
    let reached: () => void = () => undefined;
    const killMoment = new Promise<void>((resolve) => (reached = resolve));
    const forwardAll = async (till: { terminalId: string; credential: string }): Promise<void> => {
      let socket: Socket;
      try {
        socket = await connect(till.credential);
      } catch {
        return; // The server died before this till reached it.
      }
      try {
        for (const r of records.get(till.terminalId) ?? []) {
          let ack: Ack<OfflineSaleAck>;
          try {
            ack = await emit<OfflineSaleAck>(socket, 'offline-sale:forward', r);
          } catch {
            return; // The server died with this forward in flight: its outcome is learnt by the next forward.
          }
          if (!ack.ok) throw new Error(`forward refused: ${ack.error.code} ${ack.error.message}`);
          acked += 1;
          if (acked === killAfter) reached();
        }
      } finally {
        socket.disconnect();
      }
    };
    const first = Promise.all(tills.map((t) => forwardAll(t)));
    await Promise.race([killMoment, first]);
    await killHard(server.child);
    await first;
    expect(acked).to.be.at.least(killAfter);

    // Up again: each till forwards everything it holds from its first unconfirmed sale on;
    // here, from the start, so every forward already journalled is repeated too.
    server = await spawnVendorServer(dir);
    for (const till of tills) {
      const socket = await connect(till.credential);
      for (const r of records.get(till.terminalId) ?? []) {
        const ack = await emit<OfflineSaleAck>(socket, 'offline-sale:forward', r);
        if (!ack.ok) throw new Error(`forward refused: ${ack.error.code} ${ack.error.message}`);
        expect(ack.data.offlineId).to.equal(r.offlineId);
      }
      socket.disconnect();
    }

    // An independent sum over the exported journal.
    const exported = await op('GET', '/api/ledger/export?format=jsonl');
    expect(exported.status).to.equal(200);
    const lines = exported.text.trim().split('\n');
    lines.pop();
    const events = lines.map((l) => (JSON.parse(l) as { event: JournalEvent }).event);
    const offline = events.filter((e): e is Extract<JournalEvent, { type: 'sale' }> => e.type === 'sale' && e.data.offline !== undefined);
    const all = [...records.values()].flat();
    expect(offline.map((e) => e.data.offline?.offlineId).sort()).to.deep.equal(all.map((r) => r.offlineId).sort());
    const tillsMinor = all.reduce((s, r) => s + r.totalMinor, 0);
    expect(offline.reduce((s, e) => s + e.data.totalMinor, 0)).to.equal(tillsMinor);
    for (const e of offline) {
      const r = all.find((x) => x.offlineId === e.data.offline?.offlineId);
      expect([e.key, e.data.offline?.tillAt, e.data.lines[0]?.unitPriceMinor]).to.deep.equal([r?.key, r?.at, r?.lines[0]?.unitPriceMinor]);
    }
    // The days' totals hold the online and the offline sales: summed over the days the
    // sales were journalled on, two when the run crosses midnight (UTC).
    const days = [...new Set(events.filter((e) => e.type === 'sale').map((e) => e.at.slice(0, 10)))];
    const totals = { sales: 0, grossMinor: 0 };
    for (const date of days) {
      const t = JSON.parse((await op('GET', `/api/totals?date=${date}`)).text) as { sales: number; grossMinor: number };
      totals.sales += t.sales;
      totals.grossMinor += t.grossMinor;
    }
    expect([totals.sales, totals.grossMinor]).to.deep.equal([2 + all.length, onlineMinor + tillsMinor]);

    // Every event reaches the mall in the batches, none flagged.
    const pushed = await op('POST', '/api/sync/push');
    expect(pushed.status, pushed.text).to.equal(200);
    const sync = JSON.parse(pushed.text) as { drained: boolean; eventsWaiting: number; flaggedEvents: number };
    expect([sync.drained, sync.eventsWaiting, sync.flaggedEvents]).to.deep.equal([true, 0, 0]);
    const health = JSON.parse((await op('GET', '/health')).text) as { journalSeq: number };
    expect(health.journalSeq).to.be.at.least(events.length);
    expect((await admin.cursor('acme')).lastEventSeq).to.equal(health.journalSeq);

    server.child.kill('SIGTERM');
    await new Promise((r) => server?.child.once('exit', r));
    server = null;
    const verify = await runCli(['verify', '--data-dir', dir]);
    expect(verify.code, verify.stderr).to.equal(0);
  });
});
