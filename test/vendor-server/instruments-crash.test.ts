import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { expect } from 'chai';
import type { Ack, InstrumentView, SaleAck } from '../../core/index.ts';
import { killHard, spawnVendorServer, type ChildServer } from '../helpers/process.ts';
import { connectTill, pairTill } from '../helpers/xchg-store.ts';
import { call, expectOk, tempDir, type TerminalClient } from '../helpers/vendor.ts';
import { linkInstrumentStore, startInstrumentMall, type InstrumentMall } from './instruments-rig.ts';

const PEN = '4006381333931'; // 45 MALL
const MUESLI = '9001001000014'; // 40 SUNNY

/**
 * The store's spent set is durable: the vendor server as a child process takes a coupon
 * and part of a gift certificate while the mall is unreachable, is killed with SIGKILL
 * right after the answers, and after the restart (the journal replayed) refuses the coupon
 * again and knows what remains on the certificate; the same after a clean stop (from the
 * checkpoint). Online, a kill between the mall's reservation and the journal leaves no
 * second hold: the till's retry gets the same reservation.
 */
describe('vendor-server: the spent set of gift certificates and coupons survives SIGKILL', function () {
  this.timeout(180_000);
  let root: string;
  let cleanup: () => Promise<void>;
  let mall: InstrumentMall;
  let vendorDir: string;
  let operatorToken: string;
  let server: (ChildServer & { caPem: string }) | null = null;
  let till: { terminalId: string; credential: string; socket: TerminalClient };

  const start = async (env: NodeJS.ProcessEnv = {}) => {
    server = await spawnVendorServer(vendorDir, undefined, 0, env);
    const socket = await connectTill(server.url, server.caPem, till.credential);
    till = { ...till, socket };
    expectOk(await call(socket, 'cashier:login', { staffId: 'ana', pin: '1234' }));
  };
  const stop = async (hard: boolean) => {
    till.socket.disconnect();
    if (server === null) return;
    if (hard) await killHard(server.child);
    else {
      const exited = new Promise((resolve) => server?.child.once('exit', resolve));
      server.child.kill('SIGTERM');
      await exited;
    }
    server = null;
  };
  const sale = (body: Record<string, unknown>, key = `${till.terminalId}:${randomUUID()}`) =>
    call<SaleAck>(till.socket, 'sale:commit', { key, card: null, tenders: [], cashTenderedMinor: 0, ...body });

  before(async () => {
    ({ dir: root, cleanup } = await tempDir('mallpos-instruments-crash-'));
    mall = await startInstrumentMall(join(root, 'mall'));
    vendorDir = join(root, 'vendor');
    operatorToken = (await linkInstrumentStore(vendorDir, mall)).operatorToken;
    server = await spawnVendorServer(vendorDir);
    till = await pairTill(server.url, operatorToken, server.caPem, 'Till 1');
    expectOk(await call(till.socket, 'cashier:login', { staffId: 'ana', pin: '1234' }));
  });
  after(async () => {
    till?.socket.disconnect();
    if (server !== null) await killHard(server.child);
    await mall?.close();
    await cleanup();
  });

  it('refuses a second spend it has seen, after SIGKILL and after a clean restart', async () => {
    mall.down = true;
    const coupon = await mall.issue('coupon', 40);
    const gift = await mall.issue('gift', 300);
    const used = expectOk(await sale({ lines: [{ code: MUESLI, qty: 1 }], instruments: [{ instrument: coupon.compact }] }));
    expect(used.instruments?.[0]).to.deep.include({ code: coupon.code, offline: true, remainingAfter: 0 });
    const part = expectOk(await sale({ lines: [{ code: PEN, qty: 1 }], instruments: [{ instrument: gift.compact }] }));
    expect(part.instruments?.[0]).to.deep.include({ code: gift.code, units: 45, remainingAfter: 255 });

    for (const hard of [true, false]) {
      await stop(hard);
      await start();
      const again = await sale({ lines: [{ code: MUESLI, qty: 1 }], instruments: [{ instrument: coupon.compact }] });
      expect(again.ok, JSON.stringify(again)).to.equal(false);
      if (!again.ok) expect(again.error.code).to.equal('VND_ERR_INSTRUMENT_SPENT');
      const view = expectOk(await call<InstrumentView>(till.socket, 'instrument:inquire', { instrument: gift.compact }));
      expect(view).to.deep.include({ remainingUnits: 255, source: 'store' });
      // More than remains is refused; what remains is still taken.
      const excess = (await sale({ lines: [{ code: PEN, qty: 7 }], instruments: [{ instrument: gift.compact, units: 256 }], cashTenderedMinor: 10_000 })) as Ack<SaleAck>;
      expect(excess.ok).to.equal(false);
      if (!excess.ok) expect(excess.error.code).to.equal('VND_ERR_INSTRUMENT_INSUFFICIENT');
    }
    const rest = expectOk(await sale({ lines: [{ code: PEN, qty: 1 }], instruments: [{ instrument: gift.compact }] }));
    expect(rest.instruments?.[0]).to.deep.include({ units: 45, remainingAfter: 210 });
  });

  it('online: killed between the reservation and the journal, the retry gets the same reservation and one sale', async () => {
    mall.down = false;
    const gift = await mall.issue('gift', 100);
    await stop(false);
    await start({ MALLPOS_VENDOR_STOP_AT: 'instrument-reserved' });
    const key = `${till.terminalId}:${randomUUID()}`;
    const body = { lines: [{ code: PEN, qty: 1 }], instruments: [{ instrument: gift.compact }] };
    const lost = await sale(body, key).catch((err: unknown) => err as Error);
    expect(lost instanceof Error || !(lost as Ack<SaleAck>).ok, 'the store died before answering').to.equal(true);
    await new Promise<void>((resolve) => (server?.child.exitCode !== null || server.child.signalCode !== null ? resolve() : server.child.once('exit', () => resolve())));
    const reservations = mall.reservations.size;
    expect(reservations).to.be.at.least(1);
    server = null;
    await start();
    const ack = expectOk(await sale(body, key));
    expect(ack.instruments?.[0]).to.deep.include({ code: gift.code, units: 45, remainingAfter: 55, offline: false });
    expect(mall.reservations.size, 'the retry was answered with the reservation made before the kill').to.equal(reservations);
    expect(mall.instruments.get(gift.code)?.remainingUnits).to.equal(55);
    expect(expectOk(await sale(body, key)).seq).to.equal(ack.seq);
  });
});
