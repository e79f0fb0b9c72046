import { SerialPort, type SerialPortMock } from 'serialport';
import { LINE_BYTES_MAX_DEFAULT, ScanFramer, type ScanFrame, type ScanFramerStats } from './framing.ts';
import type { Scan, Scanner, ScannerStatus, ScannerWarning } from './scanner.ts';

/** The real binding (the default) or `SerialPortMock.binding` in tests. */
export type ScannerBinding = typeof SerialPort.binding | typeof SerialPortMock.binding;

type PortOptions = ConstructorParameters<typeof SerialPort>[0];
type DataBits = 5 | 6 | 7 | 8;
type Parity = 'none' | 'even' | 'odd' | 'mark' | 'space';
type StopBits = 1 | 1.5 | 2;

const DATA_BITS: readonly DataBits[] = [5, 6, 7, 8];
const PARITIES: readonly Parity[] = ['none', 'even', 'odd', 'mark', 'space'];
const STOP_BITS: readonly StopBits[] = [1, 1.5, 2];

export interface SerialScannerOptions {
  /** Device path, e.g. `/dev/ttyACM0` or a virtual scanner's `devicePath`. */
  path: string;
  baudRate?: number;
  dataBits?: DataBits;
  parity?: Parity;
  stopBits?: StopBits;
  /** The same code read again within this many ms of its last read is a double read. */
  duplicateWindowMs?: number;
  /** First wait before reopening a lost device; doubles on each failure. */
  reconnectDelayMinMs?: number;
  /** Longest wait between attempts to reopen, so a replugged device is back soon. */
  reconnectDelayMaxMs?: number;
  lineBytesMax?: number;
  /** A partial line with no new byte for this long is discarded with a warning. */
  lineIdleMs?: number;
  /** Scans waiting for slow listeners, at most. */
  scanQueueMax?: number;
  binding?: ScannerBinding;
  /** Clock for `Scan.at` and the duplicate window. */
  now?: () => number;
}

type Settings = Required<Omit<SerialScannerOptions, 'binding'>> & { binding: ScannerBinding | undefined };

function assertPositiveInteger(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(`${name} must be a positive integer, got ${value}`);
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * A scanner on a serial port (USB CDC-ACM, USB-serial adapter or RS-232) through the
 * `serialport` package. See `Scanner` for the rules it keeps.
 *
 * A lost device is noticed from the port closing or erroring; it is then reopened with
 * exponential backoff from `reconnectDelayMinMs` to `reconnectDelayMaxMs`. Attempts
 * have no count limit, only a bounded delay: a checkout scanner unplugged for an hour
 * must still come back by itself when it is plugged in again.
 */
export class SerialScanner implements Scanner {
  readonly #settings: Settings;
  #framer: ScanFramer;
  #status: ScannerStatus;
  #running = false;
  /** The port in use; any event from another (older) port object is stale. */
  #port: SerialPort | undefined;
  #connecting: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #retryDelayMs: number;
  #idleTimer: NodeJS.Timeout | undefined;
  #lastRead: { code: string; at: number } | undefined;
  readonly #queue: Scan[] = [];
  #delivering = false;
  readonly #scanListeners = new Set<(s: Scan) => void>();
  readonly #statusListeners = new Set<(s: ScannerStatus) => void>();
  readonly #warningListeners = new Set<(w: ScannerWarning) => void>();

  constructor(options: SerialScannerOptions) {
    if (typeof options.path !== 'string' || options.path.length === 0) {
      throw new TypeError('path must be a non-empty device path');
    }
    // 9600 8N1 is what scanners ship with; the rest are bounds with room to spare.
    const s: Settings = {
      path: options.path,
      baudRate: options.baudRate ?? 9600,
      dataBits: options.dataBits ?? 8,
      parity: options.parity ?? 'none',
      stopBits: options.stopBits ?? 1,
      duplicateWindowMs: options.duplicateWindowMs ?? 200,
      reconnectDelayMinMs: options.reconnectDelayMinMs ?? 100,
      reconnectDelayMaxMs: options.reconnectDelayMaxMs ?? 2000,
      lineBytesMax: options.lineBytesMax ?? LINE_BYTES_MAX_DEFAULT,
      lineIdleMs: options.lineIdleMs ?? 1000,
      scanQueueMax: options.scanQueueMax ?? 32,
      binding: options.binding,
      now: options.now ?? Date.now,
    };
    this.#settings = s;
    assertPositiveInteger('baudRate', s.baudRate);
    if (!DATA_BITS.includes(s.dataBits)) throw new RangeError(`dataBits must be one of ${DATA_BITS.join(', ')}`);
    if (!PARITIES.includes(s.parity)) throw new RangeError(`parity must be one of ${PARITIES.join(', ')}`);
    if (!STOP_BITS.includes(s.stopBits)) throw new RangeError(`stopBits must be one of ${STOP_BITS.join(', ')}`);
    assertPositiveInteger('reconnectDelayMinMs', s.reconnectDelayMinMs);
    assertPositiveInteger('reconnectDelayMaxMs', s.reconnectDelayMaxMs);
    assertPositiveInteger('lineIdleMs', s.lineIdleMs);
    assertPositiveInteger('scanQueueMax', s.scanQueueMax);
    if (!Number.isSafeInteger(s.duplicateWindowMs) || s.duplicateWindowMs < 0) {
      throw new RangeError(`duplicateWindowMs must be a non-negative integer, got ${s.duplicateWindowMs}`);
    }
    if (s.reconnectDelayMaxMs < s.reconnectDelayMinMs) {
      throw new RangeError('reconnectDelayMaxMs must not be below reconnectDelayMinMs');
    }
    this.#framer = new ScanFramer({ lineBytesMax: s.lineBytesMax });
    this.#retryDelayMs = s.reconnectDelayMinMs;
    this.#status = { state: 'stopped', path: s.path };
  }

  status(): ScannerStatus {
    return { ...this.#status };
  }

  /** Counters from the framer of the current run (noise bytes, over-long lines, ...). */
  get stats(): Readonly<ScanFramerStats> {
    return { ...this.#framer.stats };
  }

  onScan(cb: (s: Scan) => void): () => void {
    this.#scanListeners.add(cb);
    return () => this.#scanListeners.delete(cb);
  }

  onStatus(cb: (s: ScannerStatus) => void): () => void {
    this.#statusListeners.add(cb);
    return () => this.#statusListeners.delete(cb);
  }

  onWarning(cb: (w: ScannerWarning) => void): () => void {
    this.#warningListeners.add(cb);
    return () => this.#warningListeners.delete(cb);
  }

  async start(): Promise<void> {
    // A start() right after an unawaited stop() must not race it for the port.
    await this.#stopping;
    if (this.#running) return this.#connecting;
    this.#running = true;
    this.#framer = new ScanFramer({ lineBytesMax: this.#settings.lineBytesMax });
    this.#retryDelayMs = this.#settings.reconnectDelayMinMs;
    this.#lastRead = undefined;
    await this.#connect();
  }

  async stop(): Promise<void> {
    if (!this.#running) return this.#stopping;
    this.#running = false;
    const stopping = this.#close();
    this.#stopping = stopping;
    try {
      await stopping;
    } finally {
      if (this.#stopping === stopping) this.#stopping = undefined;
    }
  }

  async #close(): Promise<void> {
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
    this.#queue.length = 0;
    const port = this.#port;
    this.#port = undefined;
    // An open in flight sees that its port is no longer current and closes it itself.
    await this.#connecting;
    if (port !== undefined) await closeQuietly(port);
    this.#setStatus({ state: 'stopped', path: this.#settings.path });
  }

  #connect(): Promise<void> {
    const s = this.#settings;
    const options = {
      path: s.path,
      baudRate: s.baudRate,
      dataBits: s.dataBits,
      parity: s.parity,
      stopBits: s.stopBits,
      autoOpen: false,
      // SerialPort spreads its options over the detected binding, so an explicit
      // binding (the mock, in tests) takes its place.
      ...(s.binding === undefined ? {} : { binding: s.binding }),
    } as PortOptions;
    let port: SerialPort;
    try {
      port = new SerialPort(options);
    } catch (error) {
      // The constructor only throws for options that can never open a port.
      this.#running = false;
      this.#setStatus({ state: 'stopped', path: s.path, error: describe(error) });
      return Promise.reject(error);
    }
    this.#port = port;
    port.on('data', (chunk: Buffer) => this.#onData(port, chunk));
    // 'close' carries a DisconnectedError when the device went away, and nothing when
    // the stream itself was destroyed.
    port.on('close', (error?: Error | null) => this.#onLost(port, error ? describe(error) : 'port closed'));
    port.on('end', () => this.#onLost(port, 'port reached end of stream'));
    port.on('error', (error: Error) => this.#onLost(port, describe(error)));
    const connecting = new Promise<void>((resolve) => {
      port.open((error) => {
        if (this.#port !== port) {
          // stop() ran while this open was in flight.
          if (error === null) void closeQuietly(port).then(resolve);
          else resolve();
          return;
        }
        if (error !== null) {
          this.#port = undefined;
          this.#scheduleRetry(openFailure(s.path, error));
        } else {
          this.#retryDelayMs = s.reconnectDelayMinMs;
          this.#setStatus({ state: 'connected', path: s.path });
        }
        resolve();
      });
    });
    this.#connecting = connecting;
    return connecting.finally(() => {
      if (this.#connecting === connecting) this.#connecting = undefined;
    });
  }

  #onLost(port: SerialPort, reason: string): void {
    if (this.#port !== port) return;
    this.#port = undefined;
    if (port.isOpen) void closeQuietly(port);
    clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
    this.#handleFrames(this.#framer.flush());
    this.#scheduleRetry(`device lost: ${reason}`);
  }

  #scheduleRetry(reason: string): void {
    if (!this.#running) return;
    const delayMs = this.#retryDelayMs;
    this.#retryDelayMs = Math.min(delayMs * 2, this.#settings.reconnectDelayMaxMs);
    this.#setStatus({ state: 'disconnected', path: this.#settings.path, error: reason, retryInMs: delayMs });
    clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      if (this.#running) void this.#connect().catch(() => undefined);
    }, delayMs);
  }

  #onData(port: SerialPort, chunk: Buffer): void {
    if (this.#port !== port) return;
    this.#handleFrames(this.#framer.push(chunk));
    clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
    if (this.#framer.pendingBytes > 0) {
      this.#idleTimer = setTimeout(() => {
        this.#idleTimer = undefined;
        this.#handleFrames(this.#framer.flush());
      }, this.#settings.lineIdleMs);
    }
  }

  #handleFrames(frames: ScanFrame[]): void {
    const lineBytesMax = this.#settings.lineBytesMax;
    for (const frame of frames) {
      switch (frame.kind) {
        case 'code':
          this.#onCode(frame.code, frame.symbology);
          break;
        case 'noise':
          this.#warn('noise', `dropped ${frame.bytes} byte(s) that cannot be part of a code; many of them usually mean a wrong baud rate or parity`);
          break;
        case 'overlong':
          this.#warn('overlong', `discarded a ${frame.bytes}-byte line, longer than the ${lineBytesMax}-byte limit`);
          break;
        case 'unterminated':
          this.#warn('unterminated', `discarded ${frame.bytes} byte(s) that had no line ending; the scanner must send a CR or LF suffix`);
          break;
      }
    }
  }

  #onCode(code: string, symbology: Scan['symbology']): void {
    const at = this.#settings.now();
    const last = this.#lastRead;
    this.#lastRead = { code, at };
    // The window slides from the latest read, so a scanner in continuous mode held
    // over one item yields one scan, not one every window.
    if (last !== undefined && last.code === code && at - last.at < this.#settings.duplicateWindowMs) return;
    if (this.#queue.length >= this.#settings.scanQueueMax) {
      this.#warn('queue-full', `dropped scan ${code}: ${this.#queue.length} scans already wait for listeners`);
      return;
    }
    this.#queue.push(symbology === undefined ? { code, at } : { code, symbology, at });
    void this.#deliver();
  }

  async #deliver(): Promise<void> {
    if (this.#delivering) return;
    this.#delivering = true;
    try {
      for (let scan = this.#queue.shift(); scan !== undefined; scan = this.#queue.shift()) {
        for (const listener of [...this.#scanListeners]) {
          try {
            const result: unknown = listener(scan);
            if (isThenable(result)) await result;
          } catch (error) {
            this.#warn('listener-error', `a scan listener failed on ${scan.code}: ${describe(error)}`);
          }
        }
      }
    } finally {
      this.#delivering = false;
    }
  }

  #setStatus(status: ScannerStatus): void {
    this.#status = status;
    for (const listener of [...this.#statusListeners]) {
      try {
        listener({ ...status });
      } catch (error) {
        this.#warn('listener-error', `a status listener failed: ${describe(error)}`);
      }
    }
  }

  #warn(kind: string, message: string): void {
    for (const listener of [...this.#warningListeners]) {
      try {
        listener({ kind, message });
      } catch {
        // A failing warning listener has nowhere left to report to.
      }
    }
  }
}

/** The binding's own message, which usually names the path already, without its `Error: ` prefix. */
function openFailure(path: string, error: unknown): string {
  const message = describe(error).replace(/^Error: /, '');
  return message.includes(path) ? message : `cannot open ${path}: ${message}`;
}

function closeQuietly(port: SerialPort): Promise<void> {
  return new Promise((resolve) => {
    if (!port.isOpen) {
      resolve();
      return;
    }
    // A close error means the descriptor is already gone, which is what we wanted.
    port.close(() => resolve());
  });
}

/**
 * The path of the first serial device with this USB vendor and product id (hex, as
 * `lsusb` shows them, e.g. `{ vendorId: '05e0', productId: '1200' }`), or undefined.
 * Also undefined where ports cannot be listed, as in containers without `udevadm`:
 * the caller then falls back to a configured path.
 */
export async function findScannerPath(
  ids: { vendorId: string; productId: string },
  options: { binding?: ScannerBinding } = {},
): Promise<string | undefined> {
  const normalise = (id: string | undefined): string | undefined => id?.toLowerCase().replace(/^0x/, '');
  const vendorId = normalise(ids.vendorId);
  const productId = normalise(ids.productId);
  let ports: Awaited<ReturnType<typeof SerialPort.list>>;
  try {
    ports = await (options.binding ?? SerialPort.binding).list();
  } catch {
    return undefined;
  }
  const found = ports.find((p) => normalise(p.vendorId) === vendorId && normalise(p.productId) === productId);
  return found?.path;
}
