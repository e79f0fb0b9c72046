import { expect } from 'chai';
import { mock } from 'node:test';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PrintQueue, type PrintQueueOptions, type PrintQueueStatus, PrintQueueFileError } from '../../../hardware/printer/print-queue.ts';
import type { PrintResult, PrinterState, ReceiptPrinter } from '../../../hardware/printer/printer.ts';
import type { Receipt } from '../../../hardware/printer/receipt.ts';
import { PrinterSimulator } from '../../../hardware/printer/simulator.ts';
import { ThermalReceiptPrinter } from '../../../hardware/printer/thermal-printer.ts';
import { sampleReceipt } from './fixtures.ts';

const fast = { retryMinMs: 20, retryMaxMs: 100, idlePollMs: 0 };
/**
 * Deadlines for what must happen, not how fast: generous, so a machine busy with other
 * work passes too. A step of the printer (a status query over loopback) gets as long.
 */
const DEADLINE_MS = 30_000;
const PRINTER_STEP_TIMEOUT_MS = 10_000;

function sale(id: string): Receipt {
  return sampleReceipt({ saleId: id, qr: `mallpos:sale:${id}`, barcode: `R-${id}` });
}

async function until(check: () => boolean, timeoutMs = DEADLINE_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Lets the callbacks of settled promises and I/O run, without waiting for any time to pass. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('hardware/printer PrintQueue with the simulator', function () {
  this.timeout(2 * DEADLINE_MS);
  let dir: string;
  let file: string;
  let sim: PrinterSimulator;
  let printer: ThermalReceiptPrinter;
  const queues: PrintQueue[] = [];

  async function open(extra: Partial<PrintQueueOptions> = {}): Promise<PrintQueue> {
    const q = await PrintQueue.open({ printer, file, ...fast, ...extra });
    queues.push(q);
    return q;
  }

  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'mallpos-queue-'));
    file = path.join(dir, 'spool', 'print-queue.json');
    sim = new PrinterSimulator({ port: 0 });
    await sim.start();
    printer = new ThermalReceiptPrinter({ type: 'epson', interface: sim.url, columns: 42, timeoutMs: PRINTER_STEP_TIMEOUT_MS });
  });

  afterEach(async () => {
    mock.timers.reset();
    for (const q of queues.splice(0)) await q.close();
    await printer.close();
    await sim.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('prints at once when the printer is ready', async () => {
    const q = await open();
    expect(await q.enqueue(sale('S-1'))).to.deep.equal({ ok: true });
    expect(q.status()).to.deep.equal({ printer: 'ready', waiting: 0 });
    expect((await sim.waitForReceipts(1, DEADLINE_MS))[0]?.qr).to.deep.equal(['mallpos:sale:S-1']);
  });

  it('keeps a receipt through paper out, prints it by itself when paper is back, and reprints it', async () => {
    const q = await open();
    const changes: PrintQueueStatus[] = [];
    const off = q.onChange((s) => changes.push(s));
    sim.setState('paper-out');

    const first = await q.enqueue(sale('S-2'));
    expect(first).to.deep.include({ ok: false, canRetry: true, state: 'paper-out' });
    if (!first.ok) expect(first.message).to.include('will print by itself');
    expect(sim.receipts()).to.deep.equal([]);
    expect(q.status()).to.deep.include({ printer: 'paper-out', waiting: 1 });
    expect(q.status().lastError).to.include('out of paper');
    const saved = JSON.parse(await readFile(file, 'utf8')) as { waiting: { receipt: Receipt }[] };
    expect(saved.waiting.map((e) => e.receipt.saleId)).to.deep.equal(['S-2']);

    sim.setState('ready');
    const [printed] = await sim.waitForReceipts(1, DEADLINE_MS);
    expect(printed?.qr).to.deep.equal(['mallpos:sale:S-2']);
    await until(() => q.status().waiting === 0);
    expect(q.status()).to.deep.equal({ printer: 'ready', waiting: 0 });
    expect(changes.at(-1)).to.deep.equal({ printer: 'ready', waiting: 0 });
    expect(changes.some((c) => c.printer === 'paper-out' && c.waiting === 1)).to.equal(true);
    off();

    expect(await q.reprintLast()).to.deep.equal({ ok: true });
    const again = await sim.waitForReceipts(2, DEADLINE_MS);
    expect(again[1]?.lines.map((l) => l.text)).to.include('*** REPRINT ***');
    expect(again[1]?.qr).to.deep.equal(['mallpos:sale:S-2']);
  });

  it('prints waiting receipts in the order they came', async () => {
    const q = await open();
    sim.setState('paper-out');
    const results = await Promise.all(['S-a', 'S-b', 'S-c'].map((id) => q.enqueue(sale(id))));
    for (const r of results) expect(r).to.deep.include({ ok: false, state: 'paper-out' });
    expect(q.status().waiting).to.equal(3);
    sim.setState('ready');
    const got = await sim.waitForReceipts(3, DEADLINE_MS);
    expect(got.map((r) => r.qr[0])).to.deep.equal(['S-a', 'S-b', 'S-c'].map((id) => `mallpos:sale:${id}`));
  });

  it('reprints through the queue while the printer is down', async () => {
    const q = await open();
    expect(await q.reprintLast()).to.deep.include({ ok: false, canRetry: false });
    await q.enqueue(sale('S-3'));
    sim.setState('cover-open');
    expect(await q.reprintLast()).to.deep.include({ ok: false, canRetry: true, state: 'cover-open' });
    expect(q.status().waiting).to.equal(1);
    sim.setState('ready');
    const got = await sim.waitForReceipts(2, DEADLINE_MS);
    expect(got[1]?.lines.map((l) => l.text)).to.include('*** REPRINT ***');
  });

  it('waits through cover open and offline', async () => {
    const q = await open();
    for (const state of ['cover-open', 'offline'] as const) {
      sim.setState(state);
      expect(await q.enqueue(sale(`S-${state}`))).to.deep.include({ ok: false, canRetry: true, state });
      expect(q.status()).to.deep.include({ printer: state, waiting: 1 });
      sim.setState('ready');
      await until(() => q.status().waiting === 0);
    }
    expect(sim.receipts().map((r) => r.qr[0])).to.deep.equal(['mallpos:sale:S-cover-open', 'mallpos:sale:S-offline']);
  });

  it('waits while the printer is unreachable and prints when it is back on the same port', async () => {
    const q = await open();
    const port = sim.port;
    await sim.stop();
    const started = Date.now();
    expect(await q.enqueue(sale('S-4'))).to.deep.include({ ok: false, canRetry: true, state: 'unreachable' });
    // A refused connection is answered when it is refused, not after the printer's timeout.
    expect(Date.now() - started).to.be.below(PRINTER_STEP_TIMEOUT_MS);
    sim = new PrinterSimulator({ port });
    await sim.start();
    const [got] = await sim.waitForReceipts(1, DEADLINE_MS);
    expect(got?.qr).to.deep.equal(['mallpos:sale:S-4']);
    await until(() => q.status().waiting === 0);
  });

  it('keeps waiting receipts in its file for the next queue', async () => {
    sim.setState('paper-out');
    const q1 = await open();
    await q1.enqueue(sale('S-5'));
    await q1.close();

    const q2 = await open();
    expect(q2.status()).to.deep.include({ printer: 'paper-out', waiting: 1 });
    sim.setState('ready');
    const [got] = await sim.waitForReceipts(1, DEADLINE_MS);
    expect(got?.qr).to.deep.equal(['mallpos:sale:S-5']);
    await until(() => q2.status().waiting === 0);
    // The count drops when the receipt has printed; the file follows with the write that close() waits for.
    await q2.close();
    const saved = JSON.parse(await readFile(file, 'utf8')) as { waiting: unknown[]; last: Receipt };
    expect(saved.waiting).to.deep.equal([]);
    expect(saved.last.saleId).to.equal('S-5');
    expect((await readdir(path.dirname(file))).filter((f) => f.endsWith('.tmp'))).to.deep.equal([]);
    // The last receipt survives a restart too, so a reprint still works.
    const q3 = await open();
    expect(await q3.reprintLast()).to.deep.equal({ ok: true });
  });

  it('refuses a receipt beyond its bound without losing those already waiting', async () => {
    const q = await open({ receiptsMax: 2 });
    sim.setState('paper-out');
    await q.enqueue(sale('S-6'));
    await q.enqueue(sale('S-7'));
    const third = await q.enqueue(sale('S-8'));
    expect(third).to.deep.include({ ok: false, canRetry: false });
    expect(q.status().waiting).to.equal(2);
  });

  it('refuses an invalid receipt without queueing it', async () => {
    const q = await open();
    expect(await q.enqueue(sampleReceipt({ barcode: '{bad' }))).to.deep.include({ ok: false, canRetry: false });
    expect(q.status().waiting).to.equal(0);
  });

  it('stops cleanly with receipts waiting', async () => {
    // Fake timers: the queue's backoff timers fire when the test says, so "no poll after close" needs no waiting.
    mock.timers.enable({ apis: ['setTimeout'] });
    let statusCalls = 0;
    const counting: ReceiptPrinter = {
      print: (r) => printer.print(r),
      status: () => {
        statusCalls += 1;
        return printer.status();
      },
      close: () => printer.close(),
    };
    sim.setState('offline');
    const q = await open({ printer: counting });
    expect(await q.enqueue(sale('S-10'))).to.deep.include({ ok: false, canRetry: true, state: 'offline' });
    await settle();
    await q.close();
    expect(await q.enqueue(sale('S-11'))).to.deep.include({ ok: false, canRetry: false });
    const before = statusCalls;
    mock.timers.tick(60 * fast.retryMaxMs);
    await settle();
    expect(statusCalls).to.equal(before);
  });

  it('refuses to start on a corrupt queue file', async () => {
    await open();
    await writeFile(file, '{"version":1,"waiting":[{"id":"x"');
    let error: unknown;
    try {
      await PrintQueue.open({ printer, file, ...fast });
    } catch (e) {
      error = e;
    }
    expect(error).to.be.instanceOf(PrintQueueFileError);
  });
});

describe('hardware/printer PrintQueue rules with a scripted printer', () => {
  /** A printer whose answers a test sets, to pin down retry and drop behaviour. */
  class ScriptedPrinter implements ReceiptPrinter {
    state: PrinterState = 'ready';
    printed: string[] = [];
    statusCalls = 0;
    reject = new Set<string>();
    async print(r: Receipt): Promise<PrintResult> {
      if (this.reject.has(r.saleId)) return { ok: false, canRetry: false, state: 'ready', message: 'cannot print this one' };
      if (this.state !== 'ready') return { ok: false, canRetry: true, state: this.state, message: `printer ${this.state}` };
      this.printed.push(r.saleId);
      return { ok: true };
    }
    async status(): Promise<PrinterState> {
      this.statusCalls++;
      return this.state;
    }
    async close(): Promise<void> {}
  }

  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'mallpos-queue-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('drops a receipt the printer can never print so it does not block the rest', async () => {
    const p = new ScriptedPrinter();
    const q = await PrintQueue.open({ printer: p, file: path.join(dir, 'q.json'), ...fast });
    p.state = 'paper-out';
    await q.enqueue(sale('A'));
    await q.enqueue(sale('B'));
    await q.enqueue(sale('C'));
    p.reject.add('B');
    p.state = 'ready';
    await until(() => q.status().waiting === 0);
    expect(p.printed).to.deep.equal(['A', 'C']);
    await q.close();
  });

  it('backs off between status polls while the printer stays down', async () => {
    // Fake timers: the backoff is about time, so the test moves the clock itself.
    mock.timers.enable({ apis: ['setTimeout'] });
    try {
      const p = new ScriptedPrinter();
      const q = await PrintQueue.open({ printer: p, file: path.join(dir, 'q.json'), retryMinMs: 20, retryMaxMs: 80, idlePollMs: 0 });
      p.state = 'unreachable';
      await q.enqueue(sale('A'));
      await settle();
      // Each wait doubles from 20 ms up to 80 ms: no poll a millisecond early, one poll when it is due.
      for (const delayMs of [20, 40, 80, 80, 80]) {
        const before = p.statusCalls;
        mock.timers.tick(delayMs - 1);
        await settle();
        expect(p.statusCalls, `no poll before ${delayMs} ms`).to.equal(before);
        mock.timers.tick(1);
        await settle();
        expect(p.statusCalls, `one poll after ${delayMs} ms`).to.equal(before + 1);
      }
      await q.close();
    } finally {
      mock.timers.reset();
    }
  });

  it('refreshes the printer state when idle so the screen stays current', async () => {
    const p = new ScriptedPrinter();
    const q = await PrintQueue.open({ printer: p, file: path.join(dir, 'q.json'), retryMinMs: 20, retryMaxMs: 80, idlePollMs: 30 });
    const seen: PrinterState[] = [];
    q.onChange((s) => seen.push(s.printer));
    p.state = 'cover-open';
    await until(() => q.status().printer === 'cover-open');
    p.state = 'ready';
    await until(() => q.status().printer === 'ready');
    expect(seen).to.deep.equal(['cover-open', 'ready']);
    await q.close();
  });
});
