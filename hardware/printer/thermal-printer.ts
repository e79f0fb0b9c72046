import net from 'node:net';
import { constants as fsConstants, promises as fsp } from 'node:fs';
import { BreakLine, CharacterSet, PrinterTypes, ThermalPrinter } from 'node-thermal-printer';
import { type CodePage, toCodePage } from './code-pages.ts';
import {
  type CashDrawer,
  checkDrawerPulse,
  DRAWER_PULSE_DEFAULT,
  type DrawerPulse,
  type DrawerState,
  type KickResult,
  type PrintResult,
  type PrinterState,
  type ReceiptPrinter,
  printFailure,
  printerMessage,
} from './printer.ts';
import { type Columns, COLUMNS, type Receipt, type ReceiptAlign, checkReceipt, layoutReceipt } from './receipt.ts';

export type PrinterModel = 'epson' | 'star';

/**
 * The code pages a receipt can be printed in. PC858 is the default: it is PC850
 * (Western European: ü è î ø å ß ñ ç …) with "€" at 0xD5, and every EPSON TM
 * model and Star model we target has it (ESC t 19, ESC GS t 4). WPC1252 prints
 * the same letters and adds typographic quotes, but older EPSON firmware lacks it.
 */
export type ReceiptCodePage = Extract<CodePage, 'PC858' | 'WPC1252'>;

export interface ThermalReceiptPrinterOptions {
  type: PrinterModel;
  /** `tcp://host:port` (port 9100 when left out) or a device path such as `/dev/usb/lp0`. */
  interface: string;
  columns: Columns;
  codePage?: ReceiptCodePage;
  /**
   * Bound on each step (status query, job hand-over); 3000 ms by default. An
   * EPSON print over TCP takes three steps, so it gives up within three timeouts.
   */
  timeoutMs?: number;
  /** The cash drawer's pin and pulse; pin 2, 100 ms on, 200 ms off by default. */
  drawer?: DrawerPulse;
  /**
   * Which level of pin 3 means the drawer is open; `high` by default. Drawers wire
   * their switch either way: if the screen says open while it is shut, set `low`.
   */
  drawerOpenLevel?: 'high' | 'low';
}

const libCodePage: Record<ReceiptCodePage, CharacterSet> = {
  PC858: CharacterSet.PC858_EURO,
  WPC1252: CharacterSet.WPC1252,
};

type Target = { kind: 'tcp'; host: string; port: number } | { kind: 'device'; path: string };

/** Parses the interface string the same way node-thermal-printer does, so both agree on the target. */
export function parseInterface(spec: string): Target {
  const tcp = /^tcp:\/\/([^/:]+)(?::(\d+))?\/?$/i.exec(spec);
  if (tcp) {
    const port = tcp[2] === undefined ? 9100 : Number(tcp[2]);
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new RangeError(`bad printer port in ${spec}`);
    return { kind: 'tcp', host: tcp[1] as string, port };
  }
  if (/^[a-z][a-z0-9+.-]*:/i.test(spec)) throw new RangeError(`unsupported printer interface ${spec}: use tcp://host:port or a device path`);
  if (spec.length === 0) throw new RangeError('printer interface is empty');
  return { kind: 'device', path: spec };
}

/**
 * Reads what EPSON's real-time status bytes say. Each byte has bit 1 and bit 4
 * set and bits 0 and 7 clear; anything else is not a status byte.
 * - s1 (DLE EOT 1, printer): bit 3 offline.
 * - s2 (DLE EOT 2, offline cause): bit 2 cover open, bit 5 printing stopped by paper end, bit 6 error.
 * - s4 (DLE EOT 4, roll paper sensor): bits 5 and 6 paper end (bits 2 and 3, near end, still print).
 * Cover open wins over paper out because opening the cover is how paper is loaded.
 */
export function stateFromEpsonStatus(s1: number, s2: number, s4: number): PrinterState | undefined {
  for (const s of [s1, s2, s4]) if ((s & 0x93) !== 0x12) return undefined;
  if (s2 & 0x04) return 'cover-open';
  if (s2 & 0x20 || s4 & 0x60) return 'paper-out';
  if (s1 & 0x08 || s2 & 0x40) return 'offline';
  return 'ready';
}

/**
 * The bytes that pulse the drawer. EPSON: ESC p m t1 t2 (m 0 for pin 2, 1 for pin 5;
 * times in units of 2 ms). Star line mode: ESC BEL n1 n2 sets the pulse (units of
 * 10 ms), then BEL fires drawer 1 (pin 2) or SUB drawer 2 (pin 5).
 */
export function drawerKickBytes(type: PrinterModel, pulse: DrawerPulse): Buffer {
  if (type === 'epson') {
    return Buffer.from([0x1b, 0x70, pulse.pin === 2 ? 0 : 1, Math.round(pulse.onMs / 2), Math.round(pulse.offMs / 2)]);
  }
  const tens = (ms: number): number => Math.max(1, Math.round(ms / 10));
  return Buffer.from([0x1b, 0x07, tens(pulse.onMs), tens(pulse.offMs), pulse.pin === 2 ? 0x07 : 0x1a]);
}

/** The drawer from DLE EOT 1: bit 2 is pin 3's level; anything not a status byte is unknown. */
export function drawerFromEpsonStatus(s1: number, openLevel: 'high' | 'low'): DrawerState {
  if ((s1 & 0x93) !== 0x12) return 'unknown';
  const high = (s1 & 0x04) !== 0;
  return high === (openLevel === 'high') ? 'open' : 'closed';
}

/**
 * A receipt printer driven through node-thermal-printer (EPSON or Star, TCP or a
 * device path). This is the only file that imports node-thermal-printer.
 *
 * What it can know about the printer depends on the link:
 * - EPSON over TCP: the real status (DLE EOT 1, 2 and 4) is read before a job is
 *   sent and again after node-thermal-printer's `execute()` resolves, because
 *   `execute()` resolving only means the bytes left the socket. A job is never
 *   sent to a printer that is not ready, and `ok` is never reported when the
 *   status afterwards says paper out, cover open or offline.
 * - Star over TCP: Star line mode does not answer DLE EOT and
 *   node-thermal-printer reads no Star status, so `status()` is only whether the
 *   port accepts a connection.
 * - A device path: `status()` is whether the path exists and is writable; the
 *   path is never created (node-thermal-printer would create a plain file there).
 */
export class ThermalReceiptPrinter implements ReceiptPrinter, CashDrawer {
  private readonly target: Target;
  private readonly timeoutMs: number;
  private readonly codePage: ReceiptCodePage;
  private readonly pulse: DrawerPulse;
  private chain: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(private readonly options: ThermalReceiptPrinterOptions) {
    if (options.type !== 'epson' && options.type !== 'star') throw new RangeError(`unsupported printer type ${String(options.type)}`);
    if (!COLUMNS.includes(options.columns)) throw new RangeError(`columns must be 32, 42 or 48, got ${String(options.columns)}`);
    this.target = parseInterface(options.interface);
    this.timeoutMs = options.timeoutMs ?? 3000;
    if (!(this.timeoutMs > 0 && this.timeoutMs <= 60_000)) throw new RangeError('timeoutMs must be in (0, 60000]');
    this.codePage = options.codePage ?? 'PC858';
    if (!(this.codePage in libCodePage)) throw new RangeError(`unsupported code page ${String(this.codePage)}`);
    this.pulse = checkDrawerPulse(options.drawer ?? DRAWER_PULSE_DEFAULT);
    if (options.drawerOpenLevel !== undefined && options.drawerOpenLevel !== 'high' && options.drawerOpenLevel !== 'low') {
      throw new RangeError(`drawerOpenLevel is high or low, got ${String(options.drawerOpenLevel)}`);
    }
  }

  /**
   * Opens the cash drawer: the pulse alone, as its own job, so it never waits behind
   * a receipt that is still being laid out and never lands in the middle of one.
   */
  kickDrawer(): Promise<KickResult> {
    const unreachable: KickResult = { ok: false, message: 'The cash drawer did not open: the printer it hangs on cannot be reached. Open it with its key.' };
    return this.serially(async () => {
      if (this.closed) return { ok: false, message: 'The cash drawer cannot be opened: printing has stopped on this terminal.' };
      const job = this.newLibPrinter();
      job.add(drawerKickBytes(this.options.type, this.pulse));
      try {
        await withTimeout(job.execute(), this.timeoutMs);
      } catch {
        return unreachable;
      }
      return { ok: true };
    }, unreachable);
  }

  /** The drawer as pin 3 says (EPSON over TCP, DLE EOT 1 bit 2); `unknown` elsewhere or without an answer. */
  drawerState(): Promise<DrawerState> {
    return this.serially(async (): Promise<DrawerState> => {
      const t = this.target;
      if (this.closed || t.kind !== 'tcp' || this.options.type !== 'epson') return 'unknown';
      try {
        const [s1] = await queryEpsonStatus(t.host, t.port, [1], this.timeoutMs);
        return drawerFromEpsonStatus(s1 as number, this.options.drawerOpenLevel ?? 'high');
      } catch {
        return 'unknown';
      }
    }, 'unknown');
  }

  print(r: Receipt): Promise<PrintResult> {
    return this.serially(() => this.printNow(r), printFailure('unreachable'));
  }

  status(): Promise<PrinterState> {
    return this.serially(() => (this.closed ? Promise.resolve<PrinterState>('unreachable') : this.readState()), 'unreachable');
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.chain;
  }

  /** The exact bytes a receipt is sent as; useful to inspect a job without a printer. */
  encode(r: Receipt): Buffer {
    return this.buildJob(r).getBuffer();
  }

  private serially<T>(work: () => Promise<T>, onCrash: T): Promise<T> {
    const run = this.chain.then(work).catch(() => onCrash);
    this.chain = run;
    return run;
  }

  private async printNow(r: Receipt): Promise<PrintResult> {
    if (this.closed) {
      return { ok: false, canRetry: false, state: 'unreachable', message: 'Printing has stopped on this terminal. Restart it to print.' };
    }
    const check = checkReceipt(r);
    if (!check.ok) {
      return { ok: false, canRetry: false, state: 'ready', message: `This receipt cannot be printed (${check.problem}). The sale is kept.` };
    }
    const before = await this.readState();
    if (before !== 'ready') return printFailure(before);

    const job = this.buildJob(check.receipt);
    try {
      await withTimeout(job.execute(), this.timeoutMs);
    } catch {
      return printFailure('unreachable');
    }

    if (this.target.kind === 'tcp' && this.options.type === 'epson') {
      const after = await this.readState();
      if (after !== 'ready') {
        return printFailure(after, `${printerMessage(after)} The receipt may not have printed completely.`);
      }
    }
    return { ok: true };
  }

  private async readState(): Promise<PrinterState> {
    const t = this.target;
    if (t.kind === 'device') return (await deviceWritable(t.path)) ? 'ready' : 'unreachable';
    if (this.options.type === 'star') {
      const probe = this.newLibPrinter();
      const reachable = await withTimeout(probe.isPrinterConnected(), this.timeoutMs).catch(() => false);
      return reachable ? 'ready' : 'unreachable';
    }
    try {
      const [s1, s2, s4] = await queryEpsonStatus(t.host, t.port, [1, 2, 4], this.timeoutMs);
      return stateFromEpsonStatus(s1 as number, s2 as number, s4 as number) ?? 'offline';
    } catch {
      return 'unreachable';
    }
  }

  private newLibPrinter(): ThermalPrinter {
    return new ThermalPrinter({
      type: this.options.type === 'epson' ? PrinterTypes.EPSON : PrinterTypes.STAR,
      interface: this.options.interface,
      width: this.options.columns,
      // Lines arrive laid out already; the library's own folding would split them again.
      breakLine: BreakLine.NONE,
      removeSpecialCharacters: false,
      options: { timeout: this.timeoutMs },
    });
  }

  private buildJob(r: Receipt): ThermalPrinter {
    const p = this.newLibPrinter();
    // ESC @ first, then the code page: initialising afterwards would reset the code page to PC437.
    p.add(Buffer.from([0x1b, 0x40]));
    p.setCharacterSet(libCodePage[this.codePage]);
    let align: ReceiptAlign = 'left';
    let bold = false;
    for (const line of layoutReceipt(r, this.options.columns)) {
      if (line.align !== align) {
        setAlign(p, line.align);
        align = line.align;
      }
      if (line.bold !== bold) {
        p.bold(line.bold);
        bold = line.bold;
      }
      p.println(toCodePage(this.codePage, line.text));
    }
    if (bold) p.bold(false);
    p.alignCenter();
    if (this.options.type === 'epson') {
      if (r.qr !== undefined) p.printQR(r.qr, { cellSize: qrCellDots(r.qr, this.options.columns), correction: 'M', model: 2 });
      // Type 73 is CODE128 (GS k m=73); HRI below so a cashier can key it in.
      if (r.barcode !== undefined) p.printBarcode(r.barcode, 73, { hriPos: 2, hriFont: 0, width: barcodeModuleDots(r.barcode, this.options.columns), height: 80 });
    } else {
      // node-thermal-printer 4.6.1's Star printQR leaves out the "ESC GS y D 1 m"
      // header before the data length, so a Star printer prints the payload as
      // text and no code; the command is written out here instead.
      if (r.qr !== undefined) p.add(starQr(r.qr, qrCellDots(r.qr, this.options.columns)));
      if (r.barcode !== undefined) p.code128(r.barcode, { text: 2, width: this.options.columns >= 42 ? 'MEDIUM' : 'SMALL', height: 80 });
    }
    p.cut();
    return p;
  }
}

/**
 * A QR code in Star line mode: model 2 (ESC GS y S 0 2), correction M
 * (ESC GS y S 1 1), cell size (ESC GS y S 2 n), data with automatic expansion
 * (ESC GS y D 1 0 nL nH d…), then print (ESC GS y P). The payload is ASCII, so
 * its length is its byte count.
 */
export function starQr(payload: string, cellDots: number): Buffer {
  const data = Buffer.from(payload, 'latin1');
  return Buffer.concat([
    Buffer.from([0x1b, 0x1d, 0x79, 0x53, 0x30, 0x02]),
    Buffer.from([0x1b, 0x1d, 0x79, 0x53, 0x31, 0x01]),
    Buffer.from([0x1b, 0x1d, 0x79, 0x53, 0x32, cellDots]),
    Buffer.from([0x1b, 0x1d, 0x79, 0x44, 0x31, 0x00, data.length & 0xff, data.length >> 8]),
    data,
    Buffer.from([0x1b, 0x1d, 0x79, 0x50]),
  ]);
}

function setAlign(p: ThermalPrinter, align: ReceiptAlign): void {
  if (align === 'center') p.alignCenter();
  else if (align === 'right') p.alignRight();
  else p.alignLeft();
}

/**
 * The widest CODE128 module (2 or 3 dots) that keeps the barcode on the paper:
 * font A is 12 dots a column, and code set B takes 11 modules a character plus
 * 35 for start, check and stop. On 58 mm paper a payload over 14 characters
 * overflows even at 2 dots; keep return codes short.
 */
export function barcodeModuleDots(payload: string, columns: Columns): number {
  const modules = 11 * payload.length + 35;
  return modules * 3 <= columns * 12 ? 3 : 2;
}

/** Bytes a QR code holds at error correction M in byte mode, by version (1-40). */
const QR_M_BYTES = [
  14, 26, 42, 62, 84, 106, 122, 152, 180, 213, 251, 287, 331, 362, 412, 450, 504, 560, 624, 666, 711, 779, 857, 911, 997, 1059, 1125, 1190, 1264, 1370, 1452,
  1538, 1628, 1722, 1809, 1911, 1989, 2099, 2213, 2331,
];

/**
 * The widest QR module (at most 6 dots) that keeps the code and its quiet zone (4
 * modules each side) on the paper: the code's version follows from the payload's
 * length, its side is 17 + 4 x version modules, and the paper is 12 dots a column. A
 * signed receipt proof (about 540 bytes, version 18) gets 3 dots on 58 mm paper and 5
 * on 80 mm; a short sale id keeps 6.
 */
export function qrCellDots(payload: string, columns: Columns): number {
  const index = QR_M_BYTES.findIndex((bytes) => bytes >= payload.length);
  const version = index < 0 ? 40 : index + 1;
  const side = 17 + 4 * version + 8;
  return Math.max(1, Math.min(6, Math.floor((columns * 12) / side)));
}

async function deviceWritable(path: string): Promise<boolean> {
  try {
    const st = await fsp.stat(path);
    if (!(st.isCharacterDevice() || st.isFIFO() || st.isFile())) return false;
    await fsp.access(path, fsConstants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Sends DLE EOT n for each n on one connection and returns the status bytes in
 * order. One query is answered before the next is sent so a reply can never be
 * attributed to the wrong question. Rejects on refusal, on a closed connection
 * and when `timeoutMs` passes.
 */
export function queryEpsonStatus(host: string, port: number, queries: number[], timeoutMs: number): Promise<number[]> {
  return new Promise((resolve, reject) => {
    const answers: number[] = [];
    let settled = false;
    const socket = net.connect({ host, port });
    const finish = (err: Error | undefined): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(answers);
    };
    const timer = setTimeout(() => finish(new Error(`no status from ${host}:${port} within ${timeoutMs} ms`)), timeoutMs);
    const ask = (): void => {
      const n = queries[answers.length];
      if (n === undefined) finish(undefined);
      else socket.write(Buffer.from([0x10, 0x04, n]));
    };
    socket.on('connect', ask);
    socket.on('data', (chunk: Buffer) => {
      for (const byte of chunk) {
        if (answers.length < queries.length) answers.push(byte);
      }
      ask();
    });
    socket.on('error', (err) => finish(err));
    socket.on('close', () => finish(new Error(`printer ${host}:${port} closed the connection before answering`)));
  });
}

/**
 * Bounds a promise. The original promise keeps a rejection handler so a late
 * failure from node-thermal-printer (after the timeout won) is not an unhandled
 * rejection.
 */
function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  work.catch(() => undefined);
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    work.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}
