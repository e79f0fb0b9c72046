import { expect } from 'chai';
import net from 'node:net';
import { EscPosDecoder, type DecoderEvent } from '../../../hardware/printer/escpos-decoder.ts';
import { checkDrawerPulse } from '../../../hardware/printer/printer.ts';
import { PrinterSimulator } from '../../../hardware/printer/simulator.ts';
import { drawerFromEpsonStatus, drawerKickBytes, ThermalReceiptPrinter } from '../../../hardware/printer/thermal-printer.ts';
import { sampleReceipt } from './fixtures.ts';
import { closedPort } from './helpers.ts';

/** A bound on waiting for what must happen, generous enough for a machine busy with other work. */
const DEADLINE_MS = 30_000;

async function until(what: string, check: () => boolean): Promise<void> {
  const deadline = Date.now() + DEADLINE_MS;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Sends bytes on one connection and resolves with the first `expectBytes` bytes answered. */
function ask(port: number, bytes: Buffer, expectBytes: number): Promise<number[]> {
  return new Promise((resolve, reject) => {
    const got: number[] = [];
    const s = net.connect({ host: '127.0.0.1', port }, () => s.write(bytes));
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no answer within ${DEADLINE_MS} ms`));
    }, DEADLINE_MS);
    s.on('data', (c: Buffer) => {
      got.push(...c);
      if (got.length >= expectBytes) {
        clearTimeout(timer);
        s.end();
        resolve(got.slice(0, expectBytes));
      }
    });
    s.on('error', reject);
  });
}

function kicksOf(events: DecoderEvent[]): unknown[] {
  return events.filter((e) => e.type === 'drawer-kick').map((e) => (e.type === 'drawer-kick' ? e.kick : null));
}

describe('hardware/printer cash drawer', function () {
  this.timeout(2 * DEADLINE_MS);

  describe('decoding drawer kicks', () => {
    it('reads EPSON ESC p for pin 2 and pin 5, split anywhere, with the pulse in ms', () => {
      const bytes = Buffer.from([0x1b, 0x70, 0x00, 50, 100, 0x1b, 0x70, 0x31, 25, 10]);
      const d = new EscPosDecoder('epson');
      const events: DecoderEvent[] = [];
      for (const b of bytes) events.push(...d.push(Buffer.from([b])));
      // An off time shorter than the on time counts as the on time, as EPSON documents.
      expect(kicksOf(events)).to.deep.equal([
        { pin: 2, onMs: 100, offMs: 200 },
        { pin: 5, onMs: 50, offMs: 50 },
      ]);
      expect(d.end()).to.deep.equal([]);
    });

    it('reads Star ESC BEL n1 n2 then BEL (drawer 1) and SUB (drawer 2)', () => {
      const d = new EscPosDecoder('star');
      const events = d.push(Buffer.from([0x1b, 0x07, 10, 20, 0x07, 0x1a]));
      expect(kicksOf(events)).to.deep.equal([
        { pin: 2, onMs: 100, offMs: 200 },
        { pin: 5, onMs: 100, offMs: 200 },
      ]);
    });

    it('does not take ESC p with an unknown connector as a kick', () => {
      const d = new EscPosDecoder('epson');
      expect(kicksOf(d.push(Buffer.from([0x1b, 0x70, 0x07, 50, 100, 0x41, 0x0a])))).to.deep.equal([]);
      const [receipt] = d.end();
      expect(receipt?.type === 'receipt' && receipt.receipt.unknown).to.deep.equal(['1b70073264']);
    });

    it('the bytes the driver sends decode to the configured pin and pulse', () => {
      for (const pulse of [{ pin: 2, onMs: 100, offMs: 200 }, { pin: 5, onMs: 60, offMs: 500 }] as const) {
        expect(kicksOf(new EscPosDecoder('epson').push(drawerKickBytes('epson', pulse)))).to.deep.equal([pulse]);
        expect(kicksOf(new EscPosDecoder('star').push(drawerKickBytes('star', pulse)))).to.deep.equal([pulse]);
      }
    });

    it('refuses a pin or pulse ESC p cannot say', () => {
      expect(() => checkDrawerPulse({ pin: 3 as 2, onMs: 100, offMs: 100 })).to.throw(RangeError, /pin is 2 or 5/);
      expect(() => checkDrawerPulse({ pin: 2, onMs: 600, offMs: 100 })).to.throw(RangeError, /onMs/);
      expect(() => checkDrawerPulse({ pin: 2, onMs: 100, offMs: 1.5 })).to.throw(RangeError, /offMs/);
      expect(() => new ThermalReceiptPrinter({ type: 'epson', interface: 'tcp://127.0.0.1:9100', columns: 42, drawer: { pin: 5, onMs: 0, offMs: 100 } })).to.throw(RangeError);
    });

    it('reads the drawer from DLE EOT 1 bit 2 with either wiring, and nothing from a non-status byte', () => {
      expect(drawerFromEpsonStatus(0x16, 'high')).to.equal('open');
      expect(drawerFromEpsonStatus(0x12, 'high')).to.equal('closed');
      expect(drawerFromEpsonStatus(0x16, 'low')).to.equal('closed');
      expect(drawerFromEpsonStatus(0x12, 'low')).to.equal('open');
      expect(drawerFromEpsonStatus(0xff, 'high')).to.equal('unknown');
    });
  });

  describe('the simulated drawer', () => {
    let sim: PrinterSimulator;
    afterEach(async () => {
      await sim.stop();
    });

    it('opens on a kick, answers DLE EOT 1 and GS r 2 with pin 3 high, and closes when pushed shut', async () => {
      sim = new PrinterSimulator({ port: 0 });
      await sim.start();
      expect(await ask(sim.port, Buffer.from([0x10, 0x04, 1, 0x1d, 0x72, 2]), 2)).to.deep.equal([0x12, 0x00]);
      await ask(sim.port, Buffer.concat([Buffer.from([0x1b, 0x70, 0x01, 30, 60]), Buffer.from([0x10, 0x04, 1])]), 1);
      expect(sim.drawerOpen()).to.equal(true);
      expect(sim.drawerKicks().map(({ pin, onMs, offMs }) => ({ pin, onMs, offMs }))).to.deep.equal([{ pin: 5, onMs: 60, offMs: 120 }]);
      expect(await ask(sim.port, Buffer.from([0x10, 0x04, 1, 0x1d, 0x72, 2, 0x1d, 0x72, 50]), 3)).to.deep.equal([0x16, 0x01, 0x01]);
      // The drawer kick printed nothing: no receipt.
      expect(sim.receipts()).to.deep.equal([]);
      sim.closeDrawer();
      expect(await ask(sim.port, Buffer.from([0x10, 0x04, 1, 0x1d, 0x72, 2]), 2)).to.deep.equal([0x12, 0x00]);
    });

    it('keeps the drawer bit apart from the printer state: open with the paper out', async () => {
      sim = new PrinterSimulator({ port: 0 });
      await sim.start();
      sim.setState('paper-out');
      sim.openDrawerByHand();
      expect(await ask(sim.port, Buffer.from([0x10, 0x04, 1, 0x10, 0x04, 4]), 2)).to.deep.equal([0x1e, 0x7e]);
    });

    it('closes by itself after drawerCloseAfterMs', async () => {
      sim = new PrinterSimulator({ port: 0, drawerCloseAfterMs: 50 });
      await sim.start();
      await ask(sim.port, Buffer.from([0x1b, 0x70, 0x00, 50, 100, 0x10, 0x04, 1]), 1);
      expect(sim.drawerKicks()).to.have.length(1);
      await until('the drawer to close by itself', () => !sim.drawerOpen());
    });
  });

  describe('ThermalReceiptPrinter as a cash drawer', () => {
    let sim: PrinterSimulator;
    afterEach(async () => {
      await sim?.stop();
    });

    it('kicks with the configured pin and pulse over TCP and reads the drawer back (EPSON)', async () => {
      sim = new PrinterSimulator({ port: 0 });
      await sim.start();
      const printer = new ThermalReceiptPrinter({ type: 'epson', interface: sim.url, columns: 42, drawer: { pin: 5, onMs: 120, offMs: 240 } });
      expect(await printer.drawerState()).to.equal('closed');
      expect(await printer.kickDrawer()).to.deep.equal({ ok: true });
      const [kick] = await sim.waitForDrawerKicks(1, DEADLINE_MS);
      expect(kick).to.include({ pin: 5, onMs: 120, offMs: 240 });
      expect(await printer.drawerState()).to.equal('open');
      sim.closeDrawer();
      expect(await printer.drawerState()).to.equal('closed');
      // A receipt printed afterwards carries no kick: kicks are their own jobs.
      expect(await printer.print(sampleReceipt())).to.deep.equal({ ok: true });
      await sim.waitForReceipts(1, DEADLINE_MS);
      expect(sim.drawerKicks()).to.have.length(1);
      await printer.close();
    });

    it('kicks a Star drawer; its state is unknown because Star line mode reports none', async () => {
      sim = new PrinterSimulator({ port: 0, emulation: 'star' });
      await sim.start();
      const printer = new ThermalReceiptPrinter({ type: 'star', interface: sim.url, columns: 42 });
      expect(await printer.kickDrawer()).to.deep.equal({ ok: true });
      const [kick] = await sim.waitForDrawerKicks(1, DEADLINE_MS);
      expect(kick).to.include({ pin: 2, onMs: 100, offMs: 200 });
      expect(await printer.drawerState()).to.equal('unknown');
      await printer.close();
    });

    it('reports a kick to an unreachable printer as a failure, never a throw, and the state as unknown', async () => {
      const port = await closedPort();
      const printer = new ThermalReceiptPrinter({ type: 'epson', interface: `tcp://127.0.0.1:${port}`, columns: 42, timeoutMs: 2000 });
      const result = await printer.kickDrawer();
      expect(result.ok).to.equal(false);
      expect(result.ok === false && result.message).to.match(/key/);
      expect(await printer.drawerState()).to.equal('unknown');
      await printer.close();
      expect((await printer.kickDrawer()).ok).to.equal(false);
    });
  });
});
