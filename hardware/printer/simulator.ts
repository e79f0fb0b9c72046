import net from 'node:net';
import { appendFileSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { type DecodedReceipt, type DrawerKick, type Emulation, EscPosDecoder, renderReceipt } from './escpos-decoder.ts';

/** The states the simulated printer can be put in; `unreachable` is simulated by `stop()`. */
export type SimulatorState = 'ready' | 'paper-out' | 'cover-open' | 'offline';

export interface PrinterSimulatorOptions {
  /** 9100 by default; 0 picks a free port (tests). */
  port?: number;
  /** 127.0.0.1 by default. */
  host?: string;
  emulation?: Emulation;
  /** Width used when writing receipts out as text. */
  columns?: number;
  /** Appends each printed receipt, as readable text, to this file. */
  outFile?: string;
  /** Writes each printed receipt, as readable text, to this stream (for example process.stdout). */
  outStream?: Writable;
  /** Receipts kept in memory; the oldest are dropped beyond it. */
  receiptsMax?: number;
  /** Bytes one connection may send before the simulator drops it, as a printer's buffer would overflow. */
  connectionBytesMax?: number;
  /**
   * How long the simulated cash drawer stays open after a kick before the "cashier"
   * pushes it shut; left out (or 0), it stays open until `closeDrawer()`.
   */
  drawerCloseAfterMs?: number;
}

/** A drawer kick the simulator received, with when it arrived. */
export interface ReceivedDrawerKick extends DrawerKick {
  at: string;
}

export interface SimulatorStats {
  connections: number;
  statusQueries: number;
  /** Jobs that arrived while the printer could not print, and so were not printed. */
  discarded: number;
  /** Status queries received and not yet answered (holdStatus). */
  statusHeld: number;
}

/**
 * EPSON real-time status bytes (DLE EOT n) for each state. Every byte has bits 1
 * and 4 set. n=1 printer: bit 3 offline. n=2 offline cause: bit 2 cover open,
 * bit 5 stopped by paper end, bit 6 error. n=3 error cause: bit 3 autocutter
 * error. n=4 roll paper sensor: bits 2-3 near end, bits 5-6 paper end.
 * `offline` is modelled as an autocutter error: the printer answers but will not
 * print until someone clears it.
 */
export function epsonStatusByte(state: SimulatorState, n: number): number | undefined {
  const table: Record<SimulatorState, [number, number, number, number]> = {
    ready: [0x12, 0x12, 0x12, 0x12],
    'paper-out': [0x1a, 0x32, 0x12, 0x7e],
    'cover-open': [0x1a, 0x16, 0x12, 0x12],
    offline: [0x1a, 0x52, 0x1a, 0x12],
  };
  return n >= 1 && n <= 4 ? table[state][n - 1] : undefined;
}

/**
 * The answer to DLE EOT n with the drawer's switch in: n=1 bit 2 is the level of pin 3
 * of the drawer kick-out connector. The simulated drawer's switch drives pin 3 high
 * while the drawer is open, the most common wiring.
 */
export function epsonStatusWithDrawer(state: SimulatorState, n: number, drawerOpen: boolean): number | undefined {
  const byte = epsonStatusByte(state, n);
  if (byte === undefined) return undefined;
  return n === 1 && drawerOpen ? byte | 0x04 : byte;
}

/** GS r n: n=1 paper sensor (bits 0-1 near end, 2-3 end), n=2 drawer (bit 0: pin 3 level, high while open). */
export function gsrStatusByte(state: SimulatorState, n: number, drawerOpen: boolean): number | undefined {
  if (n === 1 || n === 49) return state === 'paper-out' ? 0x0f : 0x00;
  if (n === 2 || n === 50) return drawerOpen ? 0x01 : 0x00;
  return undefined;
}

/**
 * A network receipt printer on a TCP port (raw port 9100 protocol) that
 * decodes what it receives instead of putting it on paper.
 *
 * Each connection is a job; each cut ends a receipt, and bytes left when the
 * connection closes make one more receipt if they printed anything. Status
 * queries are answered the moment they arrive (EPSON emulation; Star line mode
 * has no DLE EOT).
 *
 * The cash drawer on its kick-out connector: a drawer kick (EPSON ESC p, Star BEL or
 * SUB) opens it in every state, because the drawer is wired apart from the print
 * mechanism and a cashier still gives change when the paper has run out. It closes
 * after `drawerCloseAfterMs` or when `closeDrawer()` is called, as a cashier pushes it
 * shut. DLE EOT 1 (bit 2) and GS r 2 (bit 0) report it as pin 3 high while open.
 *
 * States: `paper-out`, `cover-open` and `offline` all keep answering status
 * queries with the matching bits, like a real printer that is switched on, and
 * print nothing: a job that arrives in one of them is counted in
 * `stats().discarded` and never recorded as a receipt. A printer that is switched
 * off or unplugged is simulated by `stop()`: connections are refused.
 */
export class PrinterSimulator {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  private state: SimulatorState = 'ready';
  private readonly printed: DecodedReceipt[] = [];
  private readonly listeners = new Set<(r: DecodedReceipt) => void>();
  private readonly counters: Omit<SimulatorStats, 'statusHeld'> = { connections: 0, statusQueries: 0, discarded: 0 };
  private readonly emulation: Emulation;
  private readonly receiptsMax: number;
  private readonly connectionBytesMax: number;
  private boundPort = 0;
  private receiptsLeftOnRoll: number | undefined;
  private drawerIsOpen = false;
  private drawerTimer: NodeJS.Timeout | undefined;
  private readonly kicks: ReceivedDrawerKick[] = [];
  private readonly kickListeners = new Set<(k: ReceivedDrawerKick) => void>();
  /** Status answers held back while the printer is busy (holdStatus), in order. */
  private held: (() => void)[] | null = null;

  constructor(private readonly options: PrinterSimulatorOptions = {}) {
    this.emulation = options.emulation ?? 'epson';
    this.receiptsMax = options.receiptsMax ?? 1000;
    this.connectionBytesMax = options.connectionBytesMax ?? 4 * 1024 * 1024;
  }

  /** Starts listening; resolves with the bound address. */
  async start(): Promise<{ host: string; port: number }> {
    if (this.server) throw new Error('simulator already started');
    const host = this.options.host ?? '127.0.0.1';
    const server = net.createServer((socket) => this.accept(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.options.port ?? 9100, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('simulator has no TCP address');
    this.boundPort = address.port;
    return { host, port: address.port };
  }

  get port(): number {
    return this.boundPort;
  }

  /** `tcp://host:port` for ThermalReceiptPrinter. */
  get url(): string {
    return `tcp://${this.options.host ?? '127.0.0.1'}:${this.boundPort}`;
  }

  /** Stops listening and drops every open connection. */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    this.clearDrawerTimer();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Sets the state; a roll limited by `paperLeftFor` counts as replaced by a full one. */
  setState(state: SimulatorState): void {
    this.state = state;
    this.receiptsLeftOnRoll = undefined;
  }

  /**
   * Loads a roll with paper for `receipts` more receipts: after that many are
   * printed the state becomes `paper-out`, as when the paper ends during a job.
   */
  paperLeftFor(receipts: number): void {
    if (!Number.isInteger(receipts) || receipts < 1) throw new RangeError('receipts must be a positive integer');
    this.receiptsLeftOnRoll = receipts;
  }

  getState(): SimulatorState {
    return this.state;
  }

  receipts(): DecodedReceipt[] {
    return [...this.printed];
  }

  stats(): SimulatorStats {
    return { ...this.counters, statusHeld: this.held?.length ?? 0 };
  }

  clear(): void {
    this.printed.length = 0;
    this.kicks.length = 0;
  }

  /** Whether the cash drawer is open now. */
  drawerOpen(): boolean {
    return this.drawerIsOpen;
  }

  /** Every drawer kick received (since the last `clear()`), oldest first; the newest 1000 are kept. */
  drawerKicks(): ReceivedDrawerKick[] {
    return this.kicks.map((k) => ({ ...k }));
  }

  /** Pushes the drawer shut, as the cashier does after taking or giving cash. */
  closeDrawer(): void {
    this.clearDrawerTimer();
    this.drawerIsOpen = false;
  }

  /** Opens the drawer by hand (with its key), without a kick. */
  openDrawerByHand(): void {
    this.clearDrawerTimer();
    this.drawerIsOpen = true;
  }

  onDrawerKick(cb: (k: ReceivedDrawerKick) => void): () => void {
    this.kickListeners.add(cb);
    return () => {
      this.kickListeners.delete(cb);
    };
  }

  /** Resolves once at least `n` drawer kicks are recorded; rejects after `timeoutMs`. */
  waitForDrawerKicks(n: number, timeoutMs: number): Promise<ReceivedDrawerKick[]> {
    if (this.kicks.length >= n) return Promise.resolve(this.drawerKicks());
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new Error(`expected ${n} drawer kicks within ${timeoutMs} ms, got ${this.kicks.length}`));
      }, timeoutMs);
      const off = this.onDrawerKick(() => {
        if (this.kicks.length < n) return;
        clearTimeout(timer);
        off();
        resolve(this.drawerKicks());
      });
    });
  }

  private clearDrawerTimer(): void {
    if (this.drawerTimer !== undefined) clearTimeout(this.drawerTimer);
    this.drawerTimer = undefined;
  }

  private kick(k: DrawerKick): void {
    const received: ReceivedDrawerKick = { ...k, at: new Date().toISOString() };
    this.kicks.push(received);
    if (this.kicks.length > 1000) this.kicks.shift();
    this.drawerIsOpen = true;
    this.clearDrawerTimer();
    const closeAfterMs = this.options.drawerCloseAfterMs ?? 0;
    if (closeAfterMs > 0) {
      this.drawerTimer = setTimeout(() => {
        this.drawerTimer = undefined;
        this.drawerIsOpen = false;
      }, closeAfterMs);
      this.drawerTimer.unref();
    }
    for (const cb of [...this.kickListeners]) {
      try {
        cb(received);
      } catch {
        // A listener's failure must not stop the drawer from opening.
      }
    }
  }

  onReceipt(cb: (r: DecodedReceipt) => void): () => void {
    this.listeners.add(cb);
    return () => {
      this.listeners.delete(cb);
    };
  }

  /** Resolves once at least `n` receipts are recorded; rejects after `timeoutMs`. */
  waitForReceipts(n: number, timeoutMs: number): Promise<DecodedReceipt[]> {
    if (this.printed.length >= n) return Promise.resolve(this.receipts());
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new Error(`expected ${n} receipts within ${timeoutMs} ms, got ${this.printed.length}`));
      }, timeoutMs);
      const off = this.onReceipt(() => {
        if (this.printed.length < n) return;
        clearTimeout(timer);
        off();
        resolve(this.receipts());
      });
    });
  }

  private accept(socket: net.Socket): void {
    this.counters.connections++;
    this.sockets.add(socket);
    const decoder = new EscPosDecoder(this.emulation);
    let bytes = 0;
    // A job is spoiled when it printed something while the printer could not print.
    let spoiled = false;
    let ended = false;

    const handle = (events: ReturnType<EscPosDecoder['push']>): void => {
      for (const e of events) {
        if (e.type === 'status-query') {
          this.answer(socket, e.command, e.n);
          continue;
        }
        if (e.type === 'drawer-kick') {
          this.kick(e.kick);
          continue;
        }
        if (spoiled || this.state !== 'ready') this.counters.discarded++;
        else this.record(e.receipt);
        spoiled = false;
      }
      if (this.state !== 'ready' && decoder.hasContent()) spoiled = true;
    };
    const finish = (): void => {
      if (ended) return;
      ended = true;
      this.sockets.delete(socket);
      handle(decoder.end());
    };

    socket.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > this.connectionBytesMax) {
        socket.destroy();
        return;
      }
      handle(decoder.push(chunk));
    });
    socket.on('end', () => {
      finish();
      socket.end();
    });
    socket.on('close', finish);
    // A client that resets the connection is normal for a raw print port; nothing to report.
    socket.on('error', () => undefined);
  }

  /**
   * A printer busy with something else: status queries are answered only when the
   * returned function is called (in the order they came), so a job waits for its status
   * check as long as the test wants, or until the client's own timeout.
   */
  holdStatus(): () => void {
    if (this.held !== null) throw new Error('status answers are already held');
    const held: (() => void)[] = [];
    this.held = held;
    return () => {
      if (this.held !== held) return;
      this.held = null;
      for (const answer of held) answer();
    };
  }

  private answer(socket: net.Socket, command: 'dle-eot' | 'gs-r', n: number): void {
    if (this.held !== null) {
      this.held.push(() => this.answer(socket, command, n));
      return;
    }
    this.counters.statusQueries++;
    if (this.emulation !== 'epson') return;
    const byte = command === 'dle-eot' ? epsonStatusWithDrawer(this.state, n, this.drawerIsOpen) : gsrStatusByte(this.state, n, this.drawerIsOpen);
    if (byte !== undefined && socket.writable) socket.write(Buffer.from([byte]));
  }

  private record(r: DecodedReceipt): void {
    this.printed.push(r);
    if (this.printed.length > this.receiptsMax) this.printed.shift();
    if (this.receiptsLeftOnRoll !== undefined && --this.receiptsLeftOnRoll === 0) {
      this.receiptsLeftOnRoll = undefined;
      this.state = 'paper-out';
    }
    this.writeOut(r);
    for (const cb of [...this.listeners]) {
      try {
        cb(r);
      } catch {
        // A listener's failure must not stop the printer from recording.
      }
    }
  }

  private writeOut(r: DecodedReceipt): void {
    const { outFile, outStream } = this.options;
    if (!outFile && !outStream) return;
    const columns = this.options.columns ?? 48;
    const text = `${renderReceipt(r, columns)}\n`;
    if (outFile) appendFileSync(outFile, text);
    if (outStream) outStream.write(text);
  }
}
