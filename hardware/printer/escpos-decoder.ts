import {
  type CodePage,
  EPSON_CODE_PAGE_NUMBERS,
  STAR_CODE_PAGE_NUMBERS,
  decodeByte,
} from './code-pages.ts';
import type { ReceiptAlign } from './receipt.ts';

/** Which command set the bytes are in: EPSON ESC/POS or Star line mode. */
export type Emulation = 'epson' | 'star';

export interface DecodedLine {
  text: string;
  align: ReceiptAlign;
  bold: boolean;
}

export interface DecodedBarcode {
  symbology: string;
  data: string;
}

/** What one job printed, up to and including its cut (or to the end of the connection). */
export interface DecodedReceipt {
  lines: DecodedLine[];
  qr: string[];
  barcodes: DecodedBarcode[];
  cut: boolean;
  /** Every byte the job consumed, status queries included. */
  raw: Buffer;
  /** Code pages selected during the job, in order. */
  codePages: CodePage[];
  /** Commands the decoder skipped without understanding, as hex, at most `unknownMax`. */
  unknown: string[];
}

/**
 * Events the decoder reports as it reads. Status queries are reported the moment
 * their last byte arrives, because a real printer answers DLE EOT in real time,
 * even while offline or with a full buffer.
 */
export type DecoderEvent =
  | { type: 'status-query'; command: 'dle-eot' | 'gs-r'; n: number }
  | { type: 'drawer-kick'; kick: DrawerKick }
  | { type: 'receipt'; receipt: DecodedReceipt };

/**
 * A pulse to a cash drawer's solenoid: which pin of the drawer kick-out connector
 * (2 or 5) and how long the pulse is on and then off. EPSON ESC p m t1 t2 gives the
 * times in units of 2 ms (an off time shorter than the on time counts as the on
 * time); Star ESC BEL n1 n2 in units of 10 ms, fired by BEL (drawer 1, pin 2) or SUB
 * (drawer 2, pin 5).
 */
export interface DrawerKick {
  pin: 2 | 5;
  onMs: number;
  offMs: number;
}

const unknownMax = 32;
const lineCharsMax = 512;

const ESC = 0x1b;
const GS = 0x1d;
const DLE = 0x10;
const FS = 0x1c;
const LF = 0x0a;
const RS = 0x1e;
const NUL = 0x00;

// "Need more bytes": the command is incomplete, wait for the next chunk.
const MORE = 0;

const EPSON_BARCODES: Record<number, string> = {
  0: 'UPC-A', 1: 'UPC-E', 2: 'EAN13', 3: 'EAN8', 4: 'CODE39', 5: 'ITF', 6: 'CODABAR',
  65: 'UPC-A', 66: 'UPC-E', 67: 'EAN13', 68: 'EAN8', 69: 'CODE39', 70: 'ITF', 71: 'CODABAR',
  72: 'CODE93', 73: 'CODE128',
};

const STAR_BARCODES: Record<number, string> = {
  0: 'UPC-E', 1: 'UPC-A', 2: 'EAN8', 3: 'EAN13', 4: 'CODE39', 5: 'ITF', 6: 'CODE128', 7: 'CODE93', 8: 'NW7',
};

/**
 * A streaming decoder for the ESC/POS subset receipts use (text, code pages,
 * alignment, bold, QR, barcodes, cuts, status queries) in EPSON or Star line
 * mode. Pure: bytes in, events out, no I/O. Bytes may arrive split anywhere; an
 * incomplete command waits for the next `push`. Commands it does not know are
 * skipped by their documented length where it is known, else as two bytes, and
 * listed in `unknown` so a test can see them.
 */
export class EscPosDecoder {
  private pending: Buffer = Buffer.alloc(0);
  private rawParts: Buffer[] = [];
  private codePage: CodePage = 'PC437';
  private align: ReceiptAlign = 'left';
  private bold = false;
  private line = '';
  private lineAlign: ReceiptAlign = 'left';
  private lineBold = false;
  private current = EscPosDecoder.emptyReceipt();
  private qrStored = '';
  private events: DecoderEvent[] = [];
  private cutPending = false;
  /** Star line mode's drawer pulse (ESC BEL n1 n2), used by the next BEL or SUB; 200 ms on and off after power-on. */
  private starPulse = { onMs: 200, offMs: 200 };

  constructor(readonly emulation: Emulation = 'epson') {}

  private static emptyReceipt(): Omit<DecodedReceipt, 'raw'> {
    return { lines: [], qr: [], barcodes: [], cut: false, codePages: [], unknown: [] };
  }

  /** Feeds bytes; returns the events they completed. */
  push(chunk: Uint8Array): DecoderEvent[] {
    this.pending = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : Buffer.from(chunk);
    let i = 0;
    while (i < this.pending.length) {
      const used = this.emulation === 'epson' ? this.stepEpson(this.pending, i) : this.stepStar(this.pending, i);
      if (used === MORE) break;
      this.rawParts.push(this.pending.subarray(i, i + used));
      i += used;
      // A cut closes the receipt only now, so its own bytes belong to the receipt it cut.
      if (this.cutPending) {
        this.cutPending = false;
        this.finishReceipt();
      }
    }
    this.pending = Buffer.from(this.pending.subarray(i));
    return this.drain();
  }

  /** The connection ended: flushes a partly printed line and reports the job if it printed anything. */
  end(): DecoderEvent[] {
    if (this.pending.length > 0) {
      this.noteUnknown(`truncated ${this.pending.subarray(0, 8).toString('hex')}`);
      this.rawParts.push(this.pending);
      this.pending = Buffer.alloc(0);
    }
    this.flushPartialLine();
    if (this.hasContent()) this.finishReceipt();
    return this.drain();
  }

  /** True when the job in progress has printed something (text, a code or a cut). */
  hasContent(): boolean {
    const c = this.current;
    return c.cut || c.qr.length > 0 || c.barcodes.length > 0 || c.lines.some((l) => l.text.trim() !== '') || this.line.trim() !== '';
  }

  private drain(): DecoderEvent[] {
    const out = this.events;
    this.events = [];
    return out;
  }

  // ---- shared state changes --------------------------------------------------

  private reset(): void {
    this.align = 'left';
    this.bold = false;
    // Both command sets start in PC437 after initialisation.
    this.selectCodePage('PC437', false);
  }

  private selectCodePage(page: CodePage | undefined, record = true): void {
    if (page === undefined) {
      this.noteUnknown('code page not in the table');
      return;
    }
    this.codePage = page;
    if (record) this.current.codePages.push(page);
  }

  private text(bytes: Uint8Array): void {
    for (const b of bytes) {
      if (this.line.length === 0) {
        this.lineAlign = this.align;
        this.lineBold = this.bold;
      }
      if (this.line.length < lineCharsMax) this.line += decodeByte(this.codePage, b);
    }
  }

  private endLine(): void {
    if (this.line.length === 0) {
      this.lineAlign = this.align;
      this.lineBold = this.bold;
    }
    this.current.lines.push({ text: this.line, align: this.lineAlign, bold: this.lineBold });
    this.line = '';
  }

  private flushPartialLine(): void {
    if (this.line.length > 0) this.endLine();
  }

  private cut(): void {
    this.flushPartialLine();
    this.current.cut = true;
    this.cutPending = true;
  }

  private finishReceipt(): void {
    const receipt: DecodedReceipt = { ...this.current, raw: Buffer.concat(this.rawParts) };
    this.rawParts = [];
    this.current = EscPosDecoder.emptyReceipt();
    this.events.push({ type: 'receipt', receipt });
  }

  private noteUnknown(what: string): void {
    if (this.current.unknown.length < unknownMax) this.current.unknown.push(what);
  }

  private unknown(b: Buffer, i: number, length: number): number {
    this.noteUnknown(b.subarray(i, i + Math.min(length, 4)).toString('hex'));
    return length;
  }

  private barcode(symbology: string, data: Uint8Array): void {
    this.flushPartialLine();
    let text = Buffer.from(data).toString('latin1');
    if (symbology === 'CODE128') text = decodeCode128(text);
    this.current.barcodes.push({ symbology, data: text });
  }

  // ---- EPSON ESC/POS -----------------------------------------------------------

  private stepEpson(b: Buffer, i: number): number {
    const c = b[i] as number;
    if (c >= 0x20) return this.textRun(b, i);
    switch (c) {
      case LF:
        this.endLine();
        return 1;
      case ESC:
        return this.epsonEsc(b, i);
      case GS:
        return this.gs(b, i);
      case DLE:
        return this.dle(b, i);
      case FS:
        return this.fs(b, i);
      default:
        // CR, HT, FF and other control bytes move nothing we record.
        return 1;
    }
  }

  private textRun(b: Buffer, i: number): number {
    let j = i;
    while (j < b.length && (b[j] as number) >= 0x20) j++;
    this.text(b.subarray(i, j));
    return j - i;
  }

  private epsonEsc(b: Buffer, i: number): number {
    if (b.length < i + 2) return MORE;
    const op = b[i + 1] as number;
    const arg = (k: number): number | undefined => b[i + 1 + k];
    const need = (total: number): boolean => b.length >= i + total;
    switch (op) {
      case 0x40: // ESC @ initialise
        this.reset();
        return 2;
      case 0x21: // ESC ! n print mode, bit 3 emphasised
        if (!need(3)) return MORE;
        this.bold = ((arg(1) as number) & 0x08) !== 0;
        return 3;
      case 0x45: // ESC E n emphasised
        if (!need(3)) return MORE;
        this.bold = ((arg(1) as number) & 0x01) !== 0;
        return 3;
      case 0x61: // ESC a n justification
        if (!need(3)) return MORE;
        this.align = alignOf(arg(1) as number);
        return 3;
      case 0x74: // ESC t n code table
        if (!need(3)) return MORE;
        this.selectCodePage(EPSON_CODE_PAGE_NUMBERS[arg(1) as number]);
        return 3;
      case 0x64: // ESC d n print and feed n lines
      case 0x4a: // ESC J n print and feed n dots
        if (!need(3)) return MORE;
        this.flushPartialLine();
        return 3;
      case 0x69: // ESC i, ESC m: obsolete cuts
      case 0x6d:
        this.cut();
        return 2;
      case 0x32: case 0x3c: case 0x53: case 0x4c: case 0x0c:
        return 2;
      case 0x2d: case 0x47: case 0x4d: case 0x7b: case 0x56: case 0x52: case 0x33: case 0x20:
      case 0x55: case 0x72: case 0x54: case 0x3d: case 0x25: case 0x3f: case 0x65: case 0x4b:
        return need(3) ? 3 : MORE;
      case 0x42: // ESC B n t buzzer
      case 0x24: // ESC $ nL nH
      case 0x5c: // ESC \ nL nH
      case 0x63: // ESC c x n
        return need(4) ? 4 : MORE;
      case 0x70: { // ESC p m t1 t2 drawer kick
        if (!need(5)) return MORE;
        const m = arg(1) as number;
        const t1 = arg(2) as number;
        const t2 = arg(3) as number;
        if (m === 0 || m === 48 || m === 1 || m === 49) {
          this.events.push({ type: 'drawer-kick', kick: { pin: m === 0 || m === 48 ? 2 : 5, onMs: t1 * 2, offMs: Math.max(t1, t2) * 2 } });
        } else {
          this.noteUnknown(b.subarray(i, i + 5).toString('hex'));
        }
        return 5;
      }
      case 0x57: // ESC W page mode area
        return need(10) ? 10 : MORE;
      case 0x44: // ESC D n1..nk NUL tab stops
        return untilByte(b, i + 2, NUL, 33);
      case 0x2a: { // ESC * m nL nH d… bit image
        if (!need(5)) return MORE;
        const m = arg(1) as number;
        const dots = (arg(2) as number) + (arg(3) as number) * 256;
        const total = 5 + dots * (m <= 1 ? 1 : 3);
        return need(total) ? total : MORE;
      }
      default:
        return this.unknown(b, i, 2);
    }
  }

  private gs(b: Buffer, i: number): number {
    if (b.length < i + 2) return MORE;
    const op = b[i + 1] as number;
    const need = (total: number): boolean => b.length >= i + total;
    switch (op) {
      case 0x56: { // GS V m [n] cut
        if (!need(3)) return MORE;
        const m = b[i + 2] as number;
        const total = m === 0 || m === 1 || m === 48 || m === 49 ? 3 : 4;
        if (!need(total)) return MORE;
        this.cut();
        return total;
      }
      case 0x72: // GS r n transmit status
        if (!need(3)) return MORE;
        this.events.push({ type: 'status-query', command: 'gs-r', n: b[i + 2] as number });
        return 3;
      case 0x6b: // GS k barcode
        return this.gsK(b, i);
      case 0x28: { // GS ( fn pL pH d…: QR and other two-dimensional codes
        if (!need(5)) return MORE;
        const total = 5 + (b[i + 3] as number) + (b[i + 4] as number) * 256;
        if (!need(total)) return MORE;
        if (b[i + 2] === 0x6b) this.twoDimensional(b.subarray(i + 5, i + total));
        return total;
      }
      case 0x38: { // GS 8 L p1 p2 p3 p4 graphics data
        if (!need(7)) return MORE;
        const total = 7 + b.readUInt32LE(i + 3);
        return need(total) ? total : MORE;
      }
      case 0x76: { // GS v 0 m xL xH yL yH d… raster image
        if (!need(8)) return MORE;
        const total = 8 + ((b[i + 4] as number) + (b[i + 5] as number) * 256) * ((b[i + 6] as number) + (b[i + 7] as number) * 256);
        if (!need(total)) return MORE;
        this.flushPartialLine();
        return total;
      }
      case 0x21: case 0x42: case 0x48: case 0x66: case 0x68: case 0x77: case 0x62: case 0x61:
      case 0x49: case 0x7c: case 0x45: case 0x54:
        return need(3) ? 3 : MORE;
      case 0x4c: case 0x57: case 0x50: case 0x24: case 0x5c:
        return need(4) ? 4 : MORE;
      default:
        return this.unknown(b, i, 2);
    }
  }

  private gsK(b: Buffer, i: number): number {
    if (b.length < i + 3) return MORE;
    const m = b[i + 2] as number;
    const symbology = EPSON_BARCODES[m] ?? `type ${m}`;
    if (m <= 6) {
      // Function A: data ends with NUL.
      const end = b.indexOf(NUL, i + 3);
      if (end < 0) return b.length - i > 260 ? this.unknown(b, i, 3) : MORE;
      this.barcode(symbology, b.subarray(i + 3, end));
      return end + 1 - i;
    }
    // Function B: a length byte, then the data.
    if (b.length < i + 4) return MORE;
    const total = 4 + (b[i + 3] as number);
    if (b.length < i + total) return MORE;
    this.barcode(symbology, b.subarray(i + 4, i + total));
    return total;
  }

  private twoDimensional(data: Uint8Array): void {
    const cn = data[0];
    const fn = data[1];
    if (cn !== 0x31) return; // only QR (cn 49) is recorded
    if (fn === 0x50) this.qrStored = Buffer.from(data.subarray(3)).toString('latin1');
    if (fn === 0x51) {
      this.flushPartialLine();
      this.current.qr.push(this.qrStored);
    }
  }

  private dle(b: Buffer, i: number): number {
    if (b.length < i + 2) return MORE;
    const op = b[i + 1] as number;
    if (op === 0x04) {
      if (b.length < i + 3) return MORE;
      this.events.push({ type: 'status-query', command: 'dle-eot', n: b[i + 2] as number });
      return 3;
    }
    if (op === 0x05) return b.length >= i + 3 ? 3 : MORE;
    if (op === 0x14) return b.length >= i + 5 ? 5 : MORE;
    return 1;
  }

  private fs(b: Buffer, i: number): number {
    if (b.length < i + 2) return MORE;
    const op = b[i + 1] as number;
    const need = (total: number): boolean => b.length >= i + total;
    switch (op) {
      case 0x2e: case 0x26:
        return 2;
      case 0x21: case 0x43: case 0x57: case 0x2d:
        return need(3) ? 3 : MORE;
      case 0x70: case 0x53:
        return need(4) ? 4 : MORE;
      case 0x28: {
        if (!need(5)) return MORE;
        const total = 5 + (b[i + 3] as number) + (b[i + 4] as number) * 256;
        return need(total) ? total : MORE;
      }
      default:
        return this.unknown(b, i, 2);
    }
  }

  // ---- Star line mode ------------------------------------------------------------

  private stepStar(b: Buffer, i: number): number {
    const c = b[i] as number;
    if (c >= 0x20) return this.textRun(b, i);
    switch (c) {
      case LF:
        this.endLine();
        return 1;
      case 0x0b: // VT and FF feed paper, printing a pending line first
      case 0x0c:
        this.flushPartialLine();
        return 1;
      case ESC:
        return this.starEsc(b, i);
      case GS:
        return this.gs(b, i);
      case DLE:
        return this.dle(b, i);
      case 0x07: // BEL fires drawer 1, SUB drawer 2
      case 0x1a:
        this.events.push({ type: 'drawer-kick', kick: { pin: c === 0x07 ? 2 : 5, ...this.starPulse } });
        return 1;
      default:
        return 1;
    }
  }

  private starEsc(b: Buffer, i: number): number {
    if (b.length < i + 2) return MORE;
    const op = b[i + 1] as number;
    const need = (total: number): boolean => b.length >= i + total;
    switch (op) {
      case 0x40: // ESC @ initialise
        this.reset();
        return 2;
      case 0x45: // ESC E emphasised on
        this.bold = true;
        return 2;
      case 0x46: // ESC F emphasised off
        this.bold = false;
        return 2;
      case 0x64: // ESC d n cut: 0, 2 full; 1, 3 partial
        if (!need(3)) return MORE;
        this.cut();
        return 3;
      case 0x62: { // ESC b n1 n2 n3 n4 d… RS barcode
        if (!need(6)) return MORE;
        const end = b.indexOf(RS, i + 6);
        if (end < 0) return b.length - i > 260 ? this.unknown(b, i, 6) : MORE;
        const n1 = b[i + 2] as number;
        this.barcode(STAR_BARCODES[n1 >= 48 ? n1 - 48 : n1] ?? `type ${n1}`, b.subarray(i + 6, end));
        return end + 1 - i;
      }
      case 0x1d:
        return this.starEscGs(b, i);
      case 0x1e: // ESC RS x n
        return need(4) ? 4 : MORE;
      case 0x07: // ESC BEL n1 n2 drawer pulse times, fired by BEL or SUB
        if (!need(4)) return MORE;
        this.starPulse = { onMs: (b[i + 2] as number) * 10, offMs: (b[i + 3] as number) * 10 };
        return 4;
      case 0x69: // ESC i n1 n2 character size
      case 0x70: // ESC p n1 n2
        return need(4) ? 4 : MORE;
      case 0x6b: { // ESC k n1 n2 d… image line of 24 dots
        if (!need(4)) return MORE;
        const total = 4 + ((b[i + 2] as number) + (b[i + 3] as number) * 256) * 24;
        if (!need(total)) return MORE;
        this.flushPartialLine();
        return total;
      }
      case 0x44: // ESC D n… NUL tab stops
        return untilByte(b, i + 2, NUL, 33);
      case 0x34: case 0x35: case 0x30: case 0x32: case 0x4d: case 0x50: case 0x3a:
        return 2;
      case 0x2d: case 0x5f: case 0x33: case 0x7a: case 0x31: case 0x61: case 0x4a: case 0x49:
      case 0x52: case 0x41: case 0x6c: case 0x51:
        return need(3) ? 3 : MORE;
      default:
        return this.unknown(b, i, 2);
    }
  }

  private starEscGs(b: Buffer, i: number): number {
    if (b.length < i + 3) return MORE;
    const op = b[i + 2] as number;
    const need = (total: number): boolean => b.length >= i + total;
    switch (op) {
      case 0x74: // ESC GS t n code page
        if (!need(4)) return MORE;
        this.selectCodePage(STAR_CODE_PAGE_NUMBERS[b[i + 3] as number]);
        return 4;
      case 0x61: // ESC GS a n alignment
        if (!need(4)) return MORE;
        this.align = alignOf(b[i + 3] as number);
        return 4;
      case 0x79: // ESC GS y: QR code
      case 0x78: // ESC GS x: PDF417
        return this.starTwoDimensional(b, i, op === 0x79);
      default:
        return this.unknown(b, i, 3);
    }
  }

  private starTwoDimensional(b: Buffer, i: number, qr: boolean): number {
    if (b.length < i + 4) return MORE;
    const sub = b[i + 3] as number;
    const need = (total: number): boolean => b.length >= i + total;
    if (sub === 0x53) { // S: settings, ESC GS y S x n (PDF417 size takes two more)
      if (!need(5)) return MORE;
      const total = !qr && b[i + 4] === 0x30 ? 8 : 6;
      return need(total) ? total : MORE;
    }
    if (sub === 0x44) { // D: data
      if (qr) {
        // ESC GS y D 1 m nL nH d…
        if (!need(8)) return MORE;
        const total = 8 + (b[i + 6] as number) + (b[i + 7] as number) * 256;
        if (!need(total)) return MORE;
        this.qrStored = b.subarray(i + 8, total + i).toString('latin1');
        return total;
      }
      // ESC GS x D nL nH d…
      if (!need(6)) return MORE;
      const total = 6 + (b[i + 4] as number) + (b[i + 5] as number) * 256;
      return need(total) ? total : MORE;
    }
    if (sub === 0x50) { // P: print
      if (qr) {
        this.flushPartialLine();
        this.current.qr.push(this.qrStored);
      }
      return 4;
    }
    return this.unknown(b, i, 4);
  }
}

function alignOf(n: number): ReceiptAlign {
  if (n === 1 || n === 49) return 'center';
  if (n === 2 || n === 50) return 'right';
  return 'left';
}

// Length of a command whose data ends with `stop`, or MORE when it has not arrived.
function untilByte(b: Buffer, from: number, stop: number, lengthMax: number): number {
  const end = b.indexOf(stop, from);
  if (end >= 0) return end + 1 - (from - 2);
  return b.length - from > lengthMax ? b.length - (from - 2) : MORE;
}

/**
 * EPSON CODE128 data starts with a code set ("{A", "{B", "{C"); set C packs two
 * digits per byte. The human-readable payload is what the barcode encodes.
 */
export function decodeCode128(data: string): string {
  let set: 'A' | 'B' | 'C' = 'B';
  let out = '';
  for (let k = 0; k < data.length; k++) {
    const ch = data[k] as string;
    if (ch === '{' && k + 1 < data.length) {
      const next = data[k + 1] as string;
      k++;
      if (next === 'A' || next === 'B' || next === 'C') set = next;
      else if (next === '{') out += '{';
      continue;
    }
    out += set === 'C' ? String(ch.charCodeAt(0)).padStart(2, '0') : ch;
  }
  return out;
}

/**
 * A decoded receipt as plain text, the way it would look on paper: centred and
 * right-aligned lines padded to `columns`, codes shown as [QR …] and
 * [CODE128 …], and the cut as a dashed line.
 */
export function renderReceipt(r: DecodedReceipt, columns: number): string {
  const out: string[] = [];
  for (const line of r.lines) {
    const text = line.text.replace(/\s+$/, '');
    const w = Array.from(text).length;
    const pad = Math.max(0, columns - w);
    if (line.align === 'center') out.push(' '.repeat(Math.floor(pad / 2)) + text);
    else if (line.align === 'right') out.push(' '.repeat(pad) + text);
    else out.push(text);
  }
  for (const q of r.qr) out.push(`[QR ${q}]`);
  for (const bc of r.barcodes) out.push(`[${bc.symbology} ${bc.data}]`);
  out.push(r.cut ? '8<'.padEnd(columns, '-') : '(no cut)');
  return `${out.join('\n')}\n`;
}
