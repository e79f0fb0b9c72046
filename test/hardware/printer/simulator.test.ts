import { expect } from 'chai';
import { mock } from 'node:test';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { PrinterSimulator, type SimulatorState, epsonStatusByte } from '../../../hardware/printer/simulator.ts';

/** A bound on waiting for what must happen, generous enough for a machine busy with other work. */
const DEADLINE_MS = 30_000;

async function until(what: string, check: () => boolean): Promise<void> {
  const deadline = Date.now() + DEADLINE_MS;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Sends bytes on one connection and collects what comes back until the simulator has answered `expect` bytes. */
function exchange(port: number, bytes: Buffer, expectBytes: number, timeoutMs = DEADLINE_MS): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const got: Buffer[] = [];
    let total = 0;
    const s = net.connect({ host: '127.0.0.1', port }, () => {
      s.write(bytes);
      if (expectBytes === 0) s.end();
    });
    const timer = setTimeout(() => {
      s.destroy();
      resolve(Buffer.concat(got));
    }, timeoutMs);
    s.on('data', (c: Buffer) => {
      got.push(c);
      total += c.length;
      if (total >= expectBytes) {
        clearTimeout(timer);
        s.end();
        resolve(Buffer.concat(got));
      }
    });
    s.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(got));
    });
    s.on('error', reject);
  });
}

const job = Buffer.concat([Buffer.from([0x1b, 0x40, 0x1b, 0x74, 19]), Buffer.from([0x4d, 0x81, 0x73, 0x6c, 0x69, 0x20, 0xd5, 0x0a]), Buffer.from([0x1d, 0x56, 0x00])]);

describe('hardware/printer PrinterSimulator', function () {
  this.timeout(2 * DEADLINE_MS);
  let sim: PrinterSimulator;
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'mallpos-sim-'));
    sim = new PrinterSimulator({ port: 0, outFile: path.join(dir, 'printed.txt'), columns: 32 });
    await sim.start();
  });

  afterEach(async () => {
    await sim.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const expected: Record<SimulatorState, number[]> = {
    ready: [0x12, 0x12, 0x12, 0x12],
    'paper-out': [0x1a, 0x32, 0x12, 0x7e],
    'cover-open': [0x1a, 0x16, 0x12, 0x12],
    offline: [0x1a, 0x52, 0x1a, 0x12],
  };

  for (const state of Object.keys(expected) as SimulatorState[]) {
    it(`answers DLE EOT 1-4 with EPSON's bits when ${state}`, async () => {
      sim.setState(state);
      const queries = Buffer.from([0x10, 0x04, 1, 0x10, 0x04, 2, 0x10, 0x04, 3, 0x10, 0x04, 4]);
      const answer = await exchange(sim.port, queries, 4);
      expect([...answer]).to.deep.equal(expected[state]);
      for (const b of answer) expect(b & 0x93).to.equal(0x12);
      expect(epsonStatusByte(state, 5)).to.equal(undefined);
    });
  }

  it('answers GS r 1 with the paper sensor', async () => {
    expect([...(await exchange(sim.port, Buffer.from([0x1d, 0x72, 0x01]), 1))]).to.deep.equal([0x00]);
    sim.setState('paper-out');
    expect([...(await exchange(sim.port, Buffer.from([0x1d, 0x72, 0x01]), 1))]).to.deep.equal([0x0f]);
  });

  it('holds status answers while busy and gives them, in order, when released', async () => {
    const release = sim.holdStatus();
    expect(() => sim.holdStatus()).to.throw('already held');
    const answer = exchange(sim.port, Buffer.from([0x10, 0x04, 1, 0x10, 0x04, 2]), 2);
    await until('both queries received', () => sim.stats().statusHeld === 2);
    expect(sim.stats().statusQueries).to.equal(0);
    sim.setState('paper-out');
    release();
    // Answered as the printer is when released, in the order asked.
    expect([...(await answer)]).to.deep.equal([0x1a, 0x32]);
    expect(sim.stats()).to.include({ statusQueries: 2, statusHeld: 0 });
    release();
    expect([...(await exchange(sim.port, Buffer.from([0x10, 0x04, 1]), 1))]).to.deep.equal([0x1a]);
  });

  it('records a job, decodes it and writes it out as text', async () => {
    const seen: string[] = [];
    const off = sim.onReceipt((r) => seen.push(r.lines[0]?.text ?? ''));
    await exchange(sim.port, job, 0);
    const [r] = await sim.waitForReceipts(1, DEADLINE_MS);
    off();
    expect(r?.lines.map((l) => l.text)).to.deep.equal(['Müsli €']);
    expect(r?.cut).to.equal(true);
    expect(r?.raw.equals(job)).to.equal(true);
    expect(seen).to.deep.equal(['Müsli €']);
    const text = await readFile(path.join(dir, 'printed.txt'), 'utf8');
    expect(text).to.include('Müsli €\n8<---');
  });

  for (const state of ['paper-out', 'cover-open', 'offline'] as const) {
    it(`prints nothing while ${state}`, async () => {
      sim.setState(state);
      await exchange(sim.port, job, 0);
      await until('the job to be handled', () => sim.stats().discarded + sim.receipts().length > 0);
      expect(sim.receipts()).to.deep.equal([]);
      expect(sim.stats().discarded).to.equal(1);
    });
  }

  it('runs out of paper after the receipts left on the roll', async () => {
    sim.paperLeftFor(1);
    await exchange(sim.port, job, 0);
    await sim.waitForReceipts(1, DEADLINE_MS);
    expect(sim.getState()).to.equal('paper-out');
  });

  it('refuses connections once stopped, like a printer switched off', async () => {
    const port = sim.port;
    await sim.stop();
    const err = await new Promise<NodeJS.ErrnoException>((resolve) => {
      net.connect({ host: '127.0.0.1', port }).on('error', resolve);
    });
    expect(err.code).to.equal('ECONNREFUSED');
  });

  it('rejects waitForReceipts after its timeout', async () => {
    // Fake timers: the rejection is due at 50 ms exactly, not at whatever a busy machine manages.
    mock.timers.enable({ apis: ['setTimeout'] });
    try {
      let failed = false;
      const waiting = sim.waitForReceipts(1, 50).catch(() => {
        failed = true;
      });
      mock.timers.tick(49);
      await new Promise((resolve) => setImmediate(resolve));
      expect(failed).to.equal(false);
      mock.timers.tick(1);
      await waiting;
      expect(failed).to.equal(true);
    } finally {
      mock.timers.reset();
    }
  });

  it('does not answer DLE EOT in Star line mode', async () => {
    const star = new PrinterSimulator({ port: 0, emulation: 'star' });
    await star.start();
    try {
      const answer = await exchange(star.port, Buffer.from([0x10, 0x04, 1]), 1, 150);
      expect(answer.length).to.equal(0);
    } finally {
      await star.stop();
    }
  });
});
