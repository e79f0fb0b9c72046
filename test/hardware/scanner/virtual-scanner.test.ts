import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { lstat, mkdtemp, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { scanCommand, sendScans } from '../../../hardware/scanner/scan-cli.ts';
import { SerialScanner } from '../../../hardware/scanner/serial-scanner.ts';
import { encodeScan, socatAvailable, SocatMissingError, splitChunks, VirtualScanner } from '../../../hardware/scanner/virtual-scanner.ts';
import { processesMentioning, Recorder, until } from './helpers.ts';

const exists = (path: string): Promise<boolean> => lstat(path).then(() => true, () => false);

describe('VirtualScanner', () => {
  it('encodes a scan as a configured scanner would send it', () => {
    expect(encodeScan('123', { ending: 'CRLF', aim: ']E0' }).toString('latin1')).to.equal(']E0123\r\n');
    expect(encodeScan('1234', { noise: true })).to.deep.equal(Buffer.from([0x00, 0x31, 0x32, 0xff, 0x33, 0x34, 0x07, 0x0d]));
    expect(() => encodeScan('12\r3')).to.throw(TypeError);
    expect(splitChunks(Buffer.from('abcdefg'), 3).map((c) => Buffer.from(c).toString())).to.deep.equal(['ab', 'cd', 'efg']);
    expect(splitChunks(Buffer.from('ab'), 5)).to.have.length(2);
  });

  it('makes stable links that unplug removes and replug restores', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mallpos-vscan-test-'));
    const virtual = await VirtualScanner.create({ dir });
    try {
      expect(virtual.devicePath).to.equal(join(dir, 'device'));
      expect(await readlink(virtual.devicePath)).to.match(/^\/dev\/pts\/\d+$/);
      expect(await readlink(virtual.feedPath)).to.match(/^\/dev\/pts\/\d+$/);
      await virtual.unplug();
      expect(virtual.plugged).to.equal(false);
      expect(await exists(virtual.devicePath)).to.equal(false);
      await virtual.replug();
      expect(virtual.plugged).to.equal(true);
      expect(await exists(virtual.devicePath)).to.equal(true);
      expect(await exists(virtual.feedPath)).to.equal(true);
    } finally {
      await virtual.close();
      await rm(dir, { recursive: true, force: true });
    }
    expect(await processesMentioning(dir)).to.deep.equal([]);
  });

  it('says plainly that socat is missing, and starts nothing, on a machine without it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mallpos-vscan-nosocat-'));
    const saved = process.env['PATH'];
    process.env['PATH'] = join(dir, 'bin');
    let failure: unknown;
    try {
      expect(await socatAvailable()).to.equal(false);
      await VirtualScanner.create({ dir }).catch((error: unknown) => (failure = error));
    } finally {
      process.env['PATH'] = saved;
    }
    try {
      expect(failure).to.be.instanceOf(SocatMissingError);
      expect((failure as Error).message).to.match(/^socat is not installed/);
      expect(await exists(join(dir, 'device'))).to.equal(false);
      expect(await processesMentioning(dir)).to.deep.equal([]);
      expect(await socatAvailable()).to.equal(true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses to write while unplugged', async () => {
    const virtual = await VirtualScanner.create();
    try {
      await virtual.unplug();
      let failure: unknown;
      await virtual.scan('1').catch((error: unknown) => (failure = error));
      expect(String(failure)).to.match(/unplugged/);
    } finally {
      await virtual.close();
    }
  });

  it('leaves no socat behind when its owner is killed with SIGKILL', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mallpos-vscan-orphan-'));
    const module = fileURLToPath(new URL('../../../hardware/scanner/virtual-scanner.ts', import.meta.url));
    const program = `const { VirtualScanner } = await import(${JSON.stringify(module)});
      await VirtualScanner.create({ dir: ${JSON.stringify(dir)} });
      console.log('ready');
      setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', program], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (text: Buffer) => {
          if (text.toString().includes('ready')) resolve();
        });
        child.once('exit', (code) => reject(new Error(`child exited early with ${code}`)));
      });
      expect(await processesMentioning(dir)).to.not.deep.equal([]);
      child.kill('SIGKILL');
      await until('socat to go', async () => (await processesMentioning(dir)).length === 0);
      await until('links to go', async () => !(await exists(join(dir, 'device'))));
    } finally {
      child.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('scan command', () => {
  let virtual: VirtualScanner;
  let scanner: SerialScanner;
  let seen: Recorder;

  beforeEach(async () => {
    virtual = await VirtualScanner.create();
    // The command's pause between codes is the sender's; on a busy machine both codes can
    // reach the reader at once, which the duplicate window (tested with a clock of its own
    // in serial-scanner.test.ts) would rightly drop. This is about what the command types.
    scanner = new SerialScanner({ path: virtual.devicePath, duplicateWindowMs: 0 });
    seen = new Recorder(scanner);
    await scanner.start();
  });

  afterEach(async () => {
    await scanner.stop();
    await virtual.close();
  });

  it('types codes into the virtual scanner, a second scan of the same code included', async () => {
    await scanCommand().parseAsync(['--device', virtual.feedPath, '--aim', ']E0', '--gap-ms', '250', '4006381333931', '4006381333931'], {
      from: 'user',
    });
    await until('two scans', () => seen.scans.length === 2);
    expect(seen.scans.map((s) => [s.code, s.symbology?.name])).to.deep.equal([
      ['4006381333931', 'EAN-13'],
      ['4006381333931', 'EAN-13'],
    ]);
  });

  it('says plainly when there is no virtual scanner or the code is not one', async () => {
    const missing = await sendScans(['1'], { device: join(virtual.dir, 'nope') }).catch((error: unknown) => error);
    expect(String(missing)).to.match(/no virtual scanner at/);
    const regular = await sendScans(['1'], { device: fileURLToPath(import.meta.url) }).catch((error: unknown) => error);
    expect(String(regular)).to.match(/not a terminal device/);
    const bad = await sendScans(['12\u00e93'], { device: virtual.feedPath }).catch((error: unknown) => error);
    expect(String(bad)).to.match(/not a code/);
  });
});
