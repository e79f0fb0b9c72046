import { expect } from 'chai';
import { mock } from 'node:test';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { DecodedReceipt } from '../../../hardware/printer/escpos-decoder.ts';
import { EscPosDecoder } from '../../../hardware/printer/escpos-decoder.ts';
import { type Columns, type Receipt, layoutReceipt } from '../../../hardware/printer/receipt.ts';
import { PrinterSimulator } from '../../../hardware/printer/simulator.ts';
import { ThermalReceiptPrinter, parseInterface, stateFromEpsonStatus } from '../../../hardware/printer/thermal-printer.ts';
import { sampleReceipt } from './fixtures.ts';
import { closedPort, silentServer } from './helpers.ts';

/** A bound on waiting for what must happen, generous enough for a machine busy with other work. */
const DEADLINE_MS = 30_000;

/** Polls with setImmediate, which the fake timers of some tests leave alone. */
async function until(what: string, check: () => boolean): Promise<void> {
  const deadline = Date.now() + DEADLINE_MS;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** Checks a decoded receipt line by line against the layout, and the codes and cut after it. */
function expectPrinted(got: DecodedReceipt, r: Receipt, columns: Columns): void {
  const want = layoutReceipt(r, columns);
  const printed = got.lines.filter((l) => l.text !== '');
  expect(printed.map((l) => l.text)).to.deep.equal(want.map((l) => l.text));
  for (const [i, line] of want.entries()) {
    expect(printed[i]?.align, `align of line ${i} "${line.text}"`).to.equal(line.align);
    expect(printed[i]?.bold, `bold of line ${i} "${line.text}"`).to.equal(line.bold);
  }
  expect(got.qr).to.deep.equal([r.qr]);
  expect(got.qr[0]).to.include(r.saleId);
  expect(got.barcodes).to.deep.equal([{ symbology: 'CODE128', data: r.barcode }]);
  expect(got.cut).to.equal(true);
  expect(got.unknown).to.deep.equal([]);
}

describe('hardware/printer ThermalReceiptPrinter over TCP to the simulator', function () {
  this.timeout(2 * DEADLINE_MS);
  let sim: PrinterSimulator;

  afterEach(async () => {
    await sim?.stop();
  });

  for (const columns of [32, 48] as const) {
    it(`prints an EPSON receipt at ${columns} columns that decodes line by line`, async () => {
      sim = new PrinterSimulator({ port: 0 });
      await sim.start();
      const printer = new ThermalReceiptPrinter({ type: 'epson', interface: sim.url, columns });
      const r = sampleReceipt();
      expect(await printer.print(r)).to.deep.equal({ ok: true });
      const [got] = await sim.waitForReceipts(1, DEADLINE_MS);
      const printed = (got as DecodedReceipt).lines.map((l) => l.text);

      expect(printed[0]).to.equal('Bäckerei Müller');
      expect(printed.find((t) => t.startsWith('Sale '))).to.match(/ S-2025-000123$/);
      expect(printed).to.include.members(['Müsli', 'Crème fraîche', 'Smørrebrød']);
      expect(printed.find((t) => t.startsWith('  1 x €3.50'))).to.match(/ €3\.50$/);
      expect(printed.find((t) => t.startsWith('ACME tokens') && t.endsWith('455 ACME'))).to.have.length(columns);
      expect(printed.find((t) => t.startsWith('Change'))).to.match(/ €1\.50$/);
      expect(printed.find((t) => t.startsWith('Mall gift tokens'))).to.match(/ 12 MALL$/);
      expect(printed).to.include('Danke für Ihren Einkauf!');
      expectPrinted(got as DecodedReceipt, r, columns);
      expect(got?.codePages).to.deep.equal(['PC858']);
      await printer.close();
    });
  }

  it('prints a Star line mode receipt that decodes line by line', async () => {
    sim = new PrinterSimulator({ port: 0, emulation: 'star' });
    await sim.start();
    const printer = new ThermalReceiptPrinter({ type: 'star', interface: sim.url, columns: 48 });
    const r = sampleReceipt({ kind: 'refund' });
    expect(await printer.print(r)).to.deep.equal({ ok: true });
    const [got] = await sim.waitForReceipts(1, DEADLINE_MS);
    expectPrinted(got as DecodedReceipt, r, 48);
    expect(await printer.status()).to.equal('ready');
  });

  it('prints in WPC1252 when asked', async () => {
    sim = new PrinterSimulator({ port: 0 });
    await sim.start();
    const printer = new ThermalReceiptPrinter({ type: 'epson', interface: sim.url, columns: 42, codePage: 'WPC1252' });
    const r = sampleReceipt();
    expect(await printer.print(r)).to.deep.equal({ ok: true });
    const [got] = await sim.waitForReceipts(1, DEADLINE_MS);
    expectPrinted(got as DecodedReceipt, r, 42);
    expect(got?.codePages).to.deep.equal(['WPC1252']);
  });

  it('keeps one code page for a whole receipt and prints letters it lacks as their base letter', async () => {
    sim = new PrinterSimulator({ port: 0 });
    await sim.start();
    const printer = new ThermalReceiptPrinter({ type: 'epson', interface: sim.url, columns: 42 });
    const r = sampleReceipt({ lines: [{ name: 'Żubrówka Gödöllő 漢', qty: 1, price: '9 ACME', total: '9 ACME' }] });
    expect(await printer.print(r)).to.deep.equal({ ok: true });
    const [got] = await sim.waitForReceipts(1, DEADLINE_MS);
    expect(got?.lines.map((l) => l.text)).to.include('Zubrówka Gödöllo ?');
    expect(got?.codePages).to.deep.equal(['PC858']);
  });

  it('reads the real EPSON status in every state', async () => {
    sim = new PrinterSimulator({ port: 0 });
    await sim.start();
    const printer = new ThermalReceiptPrinter({ type: 'epson', interface: sim.url, columns: 48 });
    for (const state of ['paper-out', 'cover-open', 'offline', 'ready'] as const) {
      sim.setState(state);
      expect(await printer.status()).to.equal(state);
    }
  });

  for (const state of ['paper-out', 'cover-open', 'offline'] as const) {
    it(`does not send a job while ${state}, and says so`, async () => {
      sim = new PrinterSimulator({ port: 0 });
      await sim.start();
      sim.setState(state);
      const printer = new ThermalReceiptPrinter({ type: 'epson', interface: sim.url, columns: 48 });
      const result = await printer.print(sampleReceipt());
      expect(result).to.deep.include({ ok: false, canRetry: true, state });
      if (!result.ok) expect(result.message).to.match(/^The printer /);
      // One more status query: the simulator accepts connections in order, so a job sent
      // before it would have been accepted (and counted) before this one is answered.
      expect(await printer.status()).to.equal(state);
      expect(sim.stats().connections, 'two status queries and no job').to.equal(2);
      expect(sim.receipts()).to.deep.equal([]);
      expect(sim.stats().discarded).to.equal(0);
    });
  }

  it('does not report ok when the paper ends during the job', async () => {
    sim = new PrinterSimulator({ port: 0 });
    await sim.start();
    sim.paperLeftFor(1);
    const printer = new ThermalReceiptPrinter({ type: 'epson', interface: sim.url, columns: 48 });
    const result = await printer.print(sampleReceipt());
    expect(result).to.deep.include({ ok: false, canRetry: true, state: 'paper-out' });
    if (!result.ok) expect(result.message).to.include('may not have printed completely');
  });

  it('reports unreachable when nothing listens, without waiting for its timeout', async () => {
    sim = new PrinterSimulator({ port: 0 });
    const timeoutMs = DEADLINE_MS / 2;
    const printer = new ThermalReceiptPrinter({ type: 'epson', interface: `tcp://127.0.0.1:${await closedPort()}`, columns: 48, timeoutMs });
    const started = Date.now();
    expect(await printer.status()).to.equal('unreachable');
    expect(await printer.print(sampleReceipt())).to.deep.include({ ok: false, canRetry: true, state: 'unreachable' });
    // Two refused connections take no time; each would take the whole timeout if they were waited out.
    expect(Date.now() - started).to.be.below(timeoutMs);
  });

  it('reports unreachable when a printer accepts but never answers, within its timeout', async () => {
    sim = new PrinterSimulator({ port: 0 });
    const hung = await silentServer();
    // Fake timers: the printer gives up when its 200 ms are up by the clock the test moves.
    mock.timers.enable({ apis: ['setTimeout'] });
    try {
      const printer = new ThermalReceiptPrinter({ type: 'epson', interface: `tcp://127.0.0.1:${hung.port}`, columns: 48, timeoutMs: 200 });
      let result: unknown;
      const printing = printer.print(sampleReceipt()).then((r) => (result = r));
      // The status query connects and waits for an answer that never comes.
      await until('the printer to connect', () => hung.connections() > 0);
      mock.timers.tick(199);
      await new Promise((resolve) => setImmediate(resolve));
      expect(result, 'still waiting before its timeout').to.equal(undefined);
      mock.timers.tick(1);
      await printing;
      expect(result).to.deep.include({ ok: false, state: 'unreachable' });
    } finally {
      mock.timers.reset();
      await hung.close();
    }
  });

  it('serialises concurrent prints so receipts never interleave', async () => {
    sim = new PrinterSimulator({ port: 0 });
    await sim.start();
    const printer = new ThermalReceiptPrinter({ type: 'epson', interface: sim.url, columns: 32 });
    const ids = ['S-1', 'S-2', 'S-3'];
    const results = await Promise.all(ids.map((id) => printer.print(sampleReceipt({ saleId: id, qr: `sale:${id}` }))));
    expect(results.every((x) => x.ok)).to.equal(true);
    const got = await sim.waitForReceipts(3, DEADLINE_MS);
    expect(got.map((r) => r.qr[0])).to.deep.equal(ids.map((id) => `sale:${id}`));
  });

  it('refuses an invalid receipt without sending anything', async () => {
    sim = new PrinterSimulator({ port: 0 });
    await sim.start();
    const printer = new ThermalReceiptPrinter({ type: 'epson', interface: sim.url, columns: 32 });
    const result = await printer.print(sampleReceipt({ qr: 'sale:Müller' }));
    expect(result).to.deep.include({ ok: false, canRetry: false });
    expect(sim.stats().connections).to.equal(0);
  });

  it('fails without retry after close', async () => {
    sim = new PrinterSimulator({ port: 0 });
    await sim.start();
    const printer = new ThermalReceiptPrinter({ type: 'epson', interface: sim.url, columns: 32 });
    await printer.close();
    expect(await printer.print(sampleReceipt())).to.deep.include({ ok: false, canRetry: false });
    expect(await printer.status()).to.equal('unreachable');
  });
});

describe('hardware/printer ThermalReceiptPrinter on a device path', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'mallpos-lp-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes the job to an existing device and the bytes decode', async () => {
    const device = path.join(dir, 'lp0');
    await writeFile(device, '');
    const printer = new ThermalReceiptPrinter({ type: 'epson', interface: device, columns: 42 });
    expect(await printer.status()).to.equal('ready');
    const r = sampleReceipt();
    expect(await printer.print(r)).to.deep.equal({ ok: true });
    const d = new EscPosDecoder('epson');
    const events = [...d.push(await readFile(device)), ...d.end()];
    const got = events.flatMap((e) => (e.type === 'receipt' ? [e.receipt] : []));
    expectPrinted(got[0] as DecodedReceipt, r, 42);
  });

  it('never creates a missing device path', async () => {
    const device = path.join(dir, 'missing-lp');
    const printer = new ThermalReceiptPrinter({ type: 'epson', interface: device, columns: 42 });
    expect(await printer.status()).to.equal('unreachable');
    expect(await printer.print(sampleReceipt())).to.deep.include({ ok: false, state: 'unreachable' });
    const exists = await stat(device).then(() => true, () => false);
    expect(exists).to.equal(false);
  });
});

describe('hardware/printer EPSON status and interface parsing', () => {
  it('maps DLE EOT bytes to a state', () => {
    expect(stateFromEpsonStatus(0x12, 0x12, 0x12)).to.equal('ready');
    expect(stateFromEpsonStatus(0x12, 0x12, 0x1e)).to.equal('ready'); // near end still prints
    expect(stateFromEpsonStatus(0x1a, 0x32, 0x7e)).to.equal('paper-out');
    expect(stateFromEpsonStatus(0x12, 0x12, 0x72)).to.equal('paper-out');
    expect(stateFromEpsonStatus(0x1a, 0x16, 0x12)).to.equal('cover-open');
    expect(stateFromEpsonStatus(0x1a, 0x36, 0x7e)).to.equal('cover-open');
    expect(stateFromEpsonStatus(0x1a, 0x12, 0x12)).to.equal('offline');
    expect(stateFromEpsonStatus(0x1a, 0x52, 0x12)).to.equal('offline');
    expect(stateFromEpsonStatus(0x00, 0x12, 0x12)).to.equal(undefined);
  });

  it('parses interfaces like node-thermal-printer', () => {
    expect(parseInterface('tcp://10.0.0.5:9101')).to.deep.equal({ kind: 'tcp', host: '10.0.0.5', port: 9101 });
    expect(parseInterface('tcp://printer.local')).to.deep.equal({ kind: 'tcp', host: 'printer.local', port: 9100 });
    expect(parseInterface('/dev/usb/lp0')).to.deep.equal({ kind: 'device', path: '/dev/usb/lp0' });
    expect(() => parseInterface('printer:auto')).to.throw(RangeError);
    expect(() => new ThermalReceiptPrinter({ type: 'epson', interface: 'tcp://x', columns: 40 as Columns })).to.throw(RangeError);
  });
});
