import { expect } from 'chai';
import { SerialPort, SerialPortMock } from 'serialport';
import { findScannerPath, SerialScanner, type SerialScannerOptions } from '../../../hardware/scanner/serial-scanner.ts';
import { VirtualScanner } from '../../../hardware/scanner/virtual-scanner.ts';
import { Recorder, until } from './helpers.ts';

/** Lets queued callbacks run once, without waiting for any time to pass. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('SerialScanner on a socat pseudo-terminal (real serialport binding)', function () {
  this.timeout(60_000);
  let virtual: VirtualScanner;
  let scanner: SerialScanner | undefined;

  beforeEach(async () => {
    virtual = await VirtualScanner.create();
  });

  afterEach(async () => {
    await scanner?.stop();
    scanner = undefined;
    await virtual.close();
  });

  async function started(options: Partial<SerialScannerOptions> = {}): Promise<{ scanner: SerialScanner; seen: Recorder }> {
    const s = new SerialScanner({ path: virtual.devicePath, ...options });
    scanner = s;
    const seen = new Recorder(s);
    await s.start();
    return { scanner: s, seen };
  }

  describe('reading codes', () => {
    for (const ending of ['CR', 'LF', 'CRLF'] as const) {
      it(`delivers a code ended by ${ending}, stamped with the time it was read`, async () => {
        const { scanner: s, seen } = await started();
        expect(s.status()).to.deep.equal({ state: 'connected', path: virtual.devicePath });
        const before = Date.now();
        await virtual.scan('4006381333931', { ending });
        const [scan] = await until('a scan', () => seen.scans.length === 1 && seen.scans);
        expect(scan).to.deep.include({ code: '4006381333931' });
        expect(scan?.symbology).to.equal(undefined);
        expect(scan?.at).to.be.within(before, Date.now());
        // Whatever the ending left behind is read before the next code.
        await virtual.scan('42', { ending });
        await until('the next scan', () => seen.scans.length >= 2);
        expect(seen.codes, 'a CRLF must not yield a second, empty scan').to.deep.equal(['4006381333931', '42']);
        expect(seen.warnings).to.deep.equal([]);
      });
    }

    it('reports the AIM symbology and strips it from the code', async () => {
      const { seen } = await started();
      await virtual.scan('96385074', { aim: ']E4', ending: 'CRLF' });
      await virtual.scan('HTTPS://MALL.EXAMPLE/C/42', { aim: ']Q1' });
      await until('two scans', () => seen.scans.length === 2);
      expect(seen.scans.map(({ code, symbology }) => ({ code, symbology }))).to.deep.equal([
        { code: '96385074', symbology: { id: ']E4', name: 'EAN-8' } },
        { code: 'HTTPS://MALL.EXAMPLE/C/42', symbology: { id: ']Q1', name: 'QR Code' } },
      ]);
    });

    it('joins a code that arrives in many delayed writes', async () => {
      // The idle bound is far beyond any pause a busy machine puts between the writes.
      const { scanner: s, seen } = await started({ lineIdleMs: 60_000 });
      await virtual.scan('4006381333931', { aim: ']E0', ending: 'CRLF', chunks: 8, chunkDelayMs: 15 });
      await virtual.scan('42');
      await until('two scans', () => seen.scans.length >= 2);
      expect(seen.codes).to.deep.equal(['4006381333931', '42']);
      expect(seen.warnings).to.deep.equal([]);
      expect(s.stats.codes).to.equal(2);
    });

    it('drops noise bytes, warns about them, and still delivers the code', async () => {
      const { scanner: s, seen } = await started({ lineIdleMs: 60_000 });
      await virtual.scan('5901234123457', { noise: true, chunks: 3, chunkDelayMs: 10 });
      await until('a scan', () => seen.scans.length === 1);
      expect(seen.codes).to.deep.equal(['5901234123457']);
      expect(seen.warnings.map((w) => w.kind)).to.include('noise');
      expect(s.stats.noiseBytes).to.equal(3);
    });

    it('discards an over-long line with a warning and reads the next code', async () => {
      const { seen } = await started();
      await virtual.writeRaw(`${'9'.repeat(300)}\r\n`);
      await virtual.scan('123');
      await until('a scan', () => seen.scans.length === 1);
      expect(seen.codes).to.deep.equal(['123']);
      expect(seen.warnings).to.have.length(1);
      expect(seen.warnings[0]?.kind).to.equal('overlong');
      expect(seen.warnings[0]?.message).to.match(/300-byte line/);
    });

    it('discards bytes that never get a line ending, so they cannot prefix the next code', async () => {
      const { seen } = await started({ lineIdleMs: 80 });
      await virtual.writeRaw('123');
      await until('a warning', () => seen.warnings.length === 1);
      expect(seen.warnings[0]?.kind).to.equal('unterminated');
      await virtual.scan('456');
      await until('a scan', () => seen.scans.length === 1);
      expect(seen.codes).to.deep.equal(['456']);
    });

    it('delivers scans one at a time and in order, waiting for async listeners', async () => {
      const { scanner: s } = await started();
      const handled: string[] = [];
      let busy = 0;
      let busyMax = 0;
      s.onScan(async (scan) => {
        busy += 1;
        busyMax = Math.max(busyMax, busy);
        await settle();
        handled.push(scan.code);
        busy -= 1;
      });
      const codes = ['1001', '1002', '1003', '1004', '1005'];
      await virtual.writeRaw(codes.map((c) => `${c}\r`).join(''));
      await until('five handled scans', () => handled.length === 5);
      expect(handled).to.deep.equal(codes);
      expect(busyMax).to.equal(1);
    });

    it('drops scans past the queue bound with a warning instead of growing', async () => {
      const { scanner: s, seen } = await started({ scanQueueMax: 2 });
      let release: () => void = () => undefined;
      const gate = new Promise<void>((resolve) => {
        release = resolve;
      });
      const handled: string[] = [];
      s.onScan(async (scan) => {
        await gate;
        handled.push(scan.code);
      });
      await virtual.writeRaw('A1\rA2\rA3\rA4\rA5\r');
      await until('two queue-full warnings', () => seen.warnings.length === 2);
      expect(seen.warnings.map((w) => w.kind)).to.deep.equal(['queue-full', 'queue-full']);
      release();
      await until('three handled scans', () => handled.length === 3);
      expect(handled).to.deep.equal(['A1', 'A2', 'A3']);
    });

    it('reports a throwing listener as a warning and still serves the others', async () => {
      const { scanner: s, seen } = await started();
      s.onScan(() => {
        throw new Error('screen crashed');
      });
      const unsubscribe = s.onScan(() => {
        throw new Error('unsubscribed listener was called');
      });
      unsubscribe();
      await virtual.scan('777');
      await until('a scan', () => seen.scans.length === 1);
      expect(seen.warnings).to.have.length(1);
      expect(seen.warnings[0]).to.deep.include({ kind: 'listener-error' });
      expect(seen.warnings[0]?.message).to.match(/screen crashed/);
    });
  });

  describe('double reads', () => {
    // The window is about time, so the scanner reads a clock the test moves.
    let clock = 0;
    const now = () => clock;
    beforeEach(() => {
      clock = 1_000_000;
    });

    it('suppresses the same code read again within the window', async () => {
      const { seen } = await started({ duplicateWindowMs: 200, now });
      await virtual.writeRaw('4006381333931\r');
      await until('a scan', () => seen.scans.length === 1);
      clock += 40;
      await virtual.writeRaw('4006381333931\r');
      // A different code after it: once that is delivered, the double read was handled.
      await virtual.writeRaw('777\r');
      await until('the next code', () => seen.codes.includes('777'));
      expect(seen.codes).to.deep.equal(['4006381333931', '777']);
    });

    it('delivers the same code again after the window: a second item', async () => {
      const { seen } = await started({ duplicateWindowMs: 200, now });
      await virtual.scan('4006381333931');
      await until('a scan', () => seen.scans.length === 1);
      clock += 260;
      await virtual.scan('4006381333931');
      await until('a second scan', () => seen.scans.length === 2);
      expect(seen.scans[1]!.at - seen.scans[0]!.at).to.equal(260);
    });

    it('does not suppress a code that follows a different one', async () => {
      const { seen } = await started({ duplicateWindowMs: 200 });
      await virtual.writeRaw('111\r222\r111\r');
      await until('three scans', () => seen.scans.length === 3);
      expect(seen.codes).to.deep.equal(['111', '222', '111']);
    });
  });

  describe('unplug and replug', () => {
    it('goes disconnected when unplugged, told by the port itself, and comes back by itself on replug', async () => {
      const { scanner: s, seen } = await started();
      await virtual.scan('1');
      await until('a scan', () => seen.scans.length === 1);

      await virtual.unplug();
      const lost = await until('disconnected', () => seen.statuses.find((st) => st.state === 'disconnected'));
      // "device lost" comes from the port's hang-up; nothing polls an open port.
      expect(lost.error).to.match(/device lost/);
      expect(lost.retryInMs).to.equal(100);
      expect(s.status().state).to.equal('disconnected');

      await virtual.replug();
      await until('connected again', () => s.status().state === 'connected');
      await virtual.scan('2', { aim: ']E0' });
      await until('the next scan', () => seen.scans.length === 2);
      expect(seen.codes).to.deep.equal(['1', '2']);
      expect(seen.statuses.at(-1)).to.deep.equal({ state: 'connected', path: virtual.devicePath });
    });

    it('starts without the device, says why, and connects when it appears', async () => {
      await virtual.unplug();
      const { scanner: s, seen } = await started();
      const status = s.status();
      expect(status.state).to.equal('disconnected');
      expect(status.error).to.match(/No such file or directory/);
      expect(status.retryInMs).to.equal(100);
      await virtual.replug();
      await until('connected', () => s.status().state === 'connected');
      await virtual.scan('42');
      await until('a scan', () => seen.scans.length === 1);
    });

    it('backs off exponentially up to a bounded delay', async () => {
      await virtual.unplug();
      const { seen } = await started({ reconnectDelayMinMs: 10, reconnectDelayMaxMs: 40 });
      await until('six retries', () => seen.statuses.length >= 6);
      expect(seen.statuses.slice(0, 6).map((st) => st.retryInMs)).to.deep.equal([10, 20, 40, 40, 40, 40]);
    });

    it('waits while another program holds the port, then takes it', async () => {
      const holder = new SerialPort({ path: virtual.devicePath, baudRate: 9600, autoOpen: false });
      await new Promise<void>((resolve, reject) => holder.open((error) => (error ? reject(error) : resolve())));
      const { scanner: s } = await started();
      expect(s.status().state).to.equal('disconnected');
      expect(s.status().error).to.match(/lock/i);
      await new Promise<void>((resolve) => holder.close(() => resolve()));
      await until('connected', () => s.status().state === 'connected');
    });

    it('stops retrying after stop() and can be started again', async () => {
      await virtual.unplug();
      const delays = { reconnectDelayMinMs: 10, reconnectDelayMaxMs: 10 };
      const { scanner: s, seen } = await started(delays);
      await s.stop();
      expect(s.status()).to.deep.equal({ state: 'stopped', path: virtual.devicePath });
      const count = seen.statuses.length;
      // A twin with the same delays, started after the stop, retries three times. Timers of
      // equal length fire in the order they were set, so a retry the stop had missed would
      // have come first: no fixed sleep needs to guess how long is long enough.
      const twin = new SerialScanner({ path: virtual.devicePath, ...delays });
      const twinSeen = new Recorder(twin);
      await twin.start();
      await until('three retries of the twin', () => twinSeen.statuses.length >= 4);
      await twin.stop();
      expect(seen.statuses).to.have.length(count);

      await virtual.replug();
      await s.start();
      expect(s.status().state).to.equal('connected');
      // stop() released the port's lock, so the same path opens again at once.
      await s.stop();
      await s.start();
      expect(s.status().state).to.equal('connected');
    });
  });
});

describe('SerialScanner with SerialPortMock (what a pty cannot show)', () => {
  afterEach(() => SerialPortMock.binding.reset());

  it('passes the line settings to the binding', async () => {
    // A Linux pty keeps CS8 and no parity whatever it is asked, so only a binding
    // that records its open options shows that 7E2 reaches the driver.
    const path = '/dev/ttyMOCK0';
    SerialPortMock.binding.createPort(path);
    const opened: Record<string, unknown>[] = [];
    const base = SerialPortMock.binding;
    const recording: typeof SerialPortMock.binding = {
      ...base,
      open: async (options) => {
        opened.push({ ...options });
        return base.open(options);
      },
    };
    const s = new SerialScanner({ path, baudRate: 19200, dataBits: 7, parity: 'even', stopBits: 2, binding: recording });
    await s.start();
    expect(s.status().state).to.equal('connected');
    expect(opened).to.have.length(1);
    expect(opened[0]).to.include({ path, baudRate: 19200, dataBits: 7, parity: 'even', stopBits: 2 });
    await s.stop();
  });

  it('finds a scanner by USB vendor and product id', async () => {
    SerialPortMock.binding.createPort('/dev/ttyACM7', { vendorId: '05e0', productId: '1200' });
    SerialPortMock.binding.createPort('/dev/ttyUSB0', { vendorId: '0403', productId: '6001' });
    const binding = SerialPortMock.binding;
    expect(await findScannerPath({ vendorId: '05E0', productId: '0x1200' }, { binding })).to.equal('/dev/ttyACM7');
    expect(await findScannerPath({ vendorId: '05e0', productId: '9999' }, { binding })).to.equal(undefined);
  });

  it('returns undefined rather than throwing where ports cannot be listed', async () => {
    // Containers without udevadm make the real list() reject.
    const found = await findScannerPath({ vendorId: '05e0', productId: '1200' });
    expect(found === undefined || typeof found === 'string').to.equal(true);
    const failing: typeof SerialPortMock.binding = {
      ...SerialPortMock.binding,
      list: () => Promise.reject(new Error('spawn udevadm ENOENT')),
    };
    expect(await findScannerPath({ vendorId: '05e0', productId: '1200' }, { binding: failing })).to.equal(undefined);
  });

  it('refuses line settings that no port accepts', () => {
    expect(() => new SerialScanner({ path: '/dev/x', baudRate: 0 })).to.throw(RangeError);
    expect(() => new SerialScanner({ path: '/dev/x', dataBits: 9 as 8 })).to.throw(RangeError);
    expect(() => new SerialScanner({ path: '/dev/x', parity: 'weird' as 'none' })).to.throw(RangeError);
    expect(() => new SerialScanner({ path: '' })).to.throw(TypeError);
    expect(() => new SerialScanner({ path: '/dev/x', reconnectDelayMinMs: 500, reconnectDelayMaxMs: 100 })).to.throw(RangeError);
  });
});
