import { join } from 'node:path';
import { expect } from 'chai';
import { MallAdminClient } from '../../mall-sync/admin-client.ts';
import { auditArchive } from '../../mall-sync/audit.ts';
import { initMall } from '../../mall-sync/init.ts';
import { MALL_STOP_AT_ENV, type MallStopPoint } from '../../mall-sync/stop-at.ts';
import { http } from '../helpers/http.ts';
import { killHard, spawnMall, START_DEADLINE_MS, type ChildServer } from '../helpers/process.ts';
import { tempDir } from '../helpers/temp.ts';
import { registerEconomy, vendorAuth, vendorPost, type RawVendor } from '../mall-sync/helpers.ts';

const PIN = '470215';
/** Long enough for a bid and a restart before the close, on a loaded machine. */
const CLOSE_AFTER_MS = 12_000;

/**
 * The real mall (`mall-sync serve`, a child process on the embedded store) killed with
 * SIGKILL by its own close timer at the moments of a mall lot's close that matter: while
 * the close is being made durable (signed into the archive, not committed), and once it is
 * durable. After each restart the lot is closed exactly once: the winner's wallet is
 * debited once, nothing stays held, and the mall's audit of its archive and its wallet
 * check agree.
 */
describe('e2e: the mall killed while it closes a mall lot (child process)', function () {
  this.timeout(240_000);
  let dir: string;
  let cleanup: () => Promise<void>;
  let adminToken: string;
  let mall: (ChildServer & { caPem: string }) | null = null;
  let acme: RawVendor;

  const start = async (stopAt: MallStopPoint | null) => {
    mall = await spawnMall(dir, 0, START_DEADLINE_MS, stopAt === null ? {} : { [MALL_STOP_AT_ENV]: stopAt });
    return mall;
  };
  const url = () => mall?.url ?? '';
  const admin = () => new MallAdminClient(url(), adminToken, mall?.caPem ?? '');
  const wallet = async () => (await http(`${url()}/v1/vendors/acme/wallet/C1`, 'GET', undefined, await vendorAuth(acme.keys, 'acme'))).body as { balances: Record<string, number>; held: Record<string, number> };
  const audited = async () => {
    const check = await admin().walletCheck();
    expect(check.ok, JSON.stringify(check)).to.equal(true);
    const audit = await auditArchive(join(dir, 'archive'));
    expect(audit.differences).to.deep.equal([]);
    expect(audit.ok).to.equal(true);
  };
  /** Lists a lot closing soon, bids `units` for C1 and restarts the mall set to die at `stopAt`; resolves when it has died of it. */
  const closeKilledAt = async (stopAt: MallStopPoint, key: string, units: number): Promise<string> => {
    await start(null);
    const lot = await admin().createLot({ key, title: 'Brass lamp', token: 'MALL', reserveUnits: 0, incrementUnits: 1, snipeWindowSeconds: 0, closesAt: new Date(Date.now() + CLOSE_AFTER_MS).toISOString() });
    const bid = await vendorPost(url(), acme.keys, 'acme', `/v1/vendors/acme/lots/${lot.lotId}/bids`, { key: `acme:${key}`, card: 'C1', units, pin: PIN });
    expect(bid.status, bid.text).to.equal(200);
    await killHard((mall as ChildServer).child);
    const child = (await start(stopAt)).child;
    const signal = await new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, s) => resolve(s)));
    expect(signal).to.equal('SIGKILL');
    mall = null;
    return lot.lotId;
  };

  before(async () => {
    ({ dir, cleanup } = await tempDir('mallpos-mall-lot-crash-'));
    adminToken = (await initMall({ dataDir: dir })).adminToken;
    await start(null);
    ({ acme } = await registerEconomy({ admin: admin() }));
    const allot = await admin().allot({ vendor: 'acme', token: 'MALL', units: 500, reference: 'float' });
    acme.add('allotment', [{ account: 'issuer:mall', token: 'MALL', units: -500 }, { account: 'float', token: 'MALL', units: 500 }], { token: 'MALL', units: 500, issuer: 'mall', reference: allot.id });
    acme.register('c1', 'C1');
    acme.issue('c1', 'MALL', 100, 10);
    acme.move('c1', 'C1', 'to-wallet', 'MALL', 100);
    expect((await acme.push(url())).ack.flagged).to.deep.equal([]);
    expect((await vendorPost(url(), acme.keys, 'acme', '/v1/vendors/acme/wallet/pin', { key: 'acme:pin-1', card: 'C1', pin: PIN })).status).to.equal(200);
    await killHard((mall as ChildServer).child);
    mall = null;
  });
  after(async () => {
    if (mall !== null) await killHard(mall.child);
    await cleanup?.();
  });

  it('killed while the close is being made durable: it never was; the start closes the lot once', async () => {
    const lotId = await closeKilledAt('mall-lot-close-archived', 'lot:crash-000001', 30);
    await start(null);
    const lot = await admin().lot(lotId);
    expect(lot).to.deep.include({ status: 'closed' });
    expect(lot.result).to.deep.include({ sold: true, saleId: 'mls-000001', units: 30 });
    expect(await wallet()).to.deep.include({ balances: { MALL: 70 }, held: {} });
    await audited();
    await killHard((mall as ChildServer).child);
    mall = null;
  });

  it('killed with the close durable: the restart finds it closed and closes nothing again', async () => {
    const lotId = await closeKilledAt('mall-lot-close-durable', 'lot:crash-000002', 20);
    await start(null);
    const lot = await admin().lot(lotId);
    expect(lot.result).to.deep.include({ sold: true, saleId: 'mls-000002', units: 20 });
    expect(await wallet()).to.deep.include({ balances: { MALL: 50 }, held: {} });
    expect((await admin().lots()).map((l) => [l.lotId, l.status, l.closedSeq !== null])).to.deep.equal([
      ['mlot-000001', 'closed', true],
      ['mlot-000002', 'closed', true],
    ]);
    await audited();
    await killHard((mall as ChildServer).child);
    mall = null;
  });
});
