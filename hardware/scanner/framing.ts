/**
 * Framing of the byte stream a barcode scanner sends over a serial line.
 *
 * Pure: no I/O, no timers, no clock. The serial shell feeds it whatever chunks the
 * operating system hands over and acts on the frames that come back; that keeps every
 * decision here testable byte by byte.
 *
 * Rules:
 * - A line ends with CR, LF or CRLF. A CR followed by an LF is one terminator even
 *   when the CR ends one chunk and the LF starts the next.
 * - Printable ASCII (0x20-0x7E) is kept. Every other byte is noise: it is dropped,
 *   counted in `stats.noiseBytes`, and the line that carried it yields a `noise`
 *   frame. The one exception is GS (0x1D) inside a code: in GS1-128, GS1 DataMatrix
 *   and GS1 QR it is the FNC1 field separator, so dropping it would merge two
 *   variable-length fields. A GS that would start the code is noise, because the
 *   leading FNC1 is already said by the AIM modifier (`]C1`, `]d2`, `]Q3`).
 * - A line that starts with an AIM symbology identifier (`]` + letter + modifier) has
 *   it stripped and reported as `symbology`.
 * - A line longer than `lineBytesMax` kept bytes is discarded up to its terminator
 *   and reported as an `overlong` frame: memory stays bounded by `lineBytesMax`
 *   whatever the device sends.
 * - Empty lines, including a line that is only an AIM identifier, yield no code.
 */

export interface Symbology {
  /** The AIM identifier as received, e.g. `]E0`. */
  id: string;
  /** A human name, e.g. `EAN-13`; `unknown` for a letter this table does not know. */
  name: string;
}

export type ScanFrame =
  | { kind: 'code'; code: string; symbology?: Symbology }
  /** A line over `lineBytesMax`; `bytes` counts its kept bytes, all discarded. */
  | { kind: 'overlong'; bytes: number }
  /** Noise bytes dropped from the line that just ended (or from between lines). */
  | { kind: 'noise'; bytes: number }
  /** From `flush()` only: bytes that never saw a terminator, discarded. */
  | { kind: 'unterminated'; bytes: number };

export interface ScanFramerOptions {
  /** Longest line kept, in bytes, AIM identifier included. Default 128. */
  lineBytesMax?: number;
}

export interface ScanFramerStats {
  codes: number;
  noiseBytes: number;
  overlongLines: number;
  emptyLines: number;
  unterminatedLines: number;
}

export const LINE_BYTES_MAX_DEFAULT = 128;

const CR = 0x0d;
const LF = 0x0a;
const GS = 0x1d;
const AIM_FLAG = 0x5d; // ']'

/**
 * AIM identifiers (ISO/IEC 15424) by full id first, then by symbology letter, so that
 * modifiers which change the meaning (EAN-8 vs EAN-13, GS1-128 vs Code 128) are named
 * precisely and the rest still get the family name.
 */
const AIM_NAMES_BY_ID: Readonly<Record<string, string>> = {
  ']E0': 'EAN-13',
  ']E1': 'EAN 2-digit add-on',
  ']E2': 'EAN 5-digit add-on',
  ']E3': 'EAN-13 with add-on',
  ']E4': 'EAN-8',
  ']C0': 'Code 128',
  ']C1': 'GS1-128',
  ']d1': 'Data Matrix',
  ']d2': 'GS1 DataMatrix',
  ']Q1': 'QR Code',
  ']Q3': 'GS1 QR Code',
};

const AIM_NAMES_BY_LETTER: Readonly<Record<string, string>> = {
  A: 'Code 39',
  B: 'Telepen',
  C: 'Code 128',
  d: 'Data Matrix',
  E: 'EAN/UPC',
  e: 'GS1 DataBar',
  F: 'Codabar',
  G: 'Code 93',
  H: 'Code 11',
  I: 'ITF',
  L: 'PDF417',
  M: 'MSI',
  Q: 'QR Code',
  S: 'Industrial 2 of 5',
  X: 'other',
  z: 'Aztec',
};

export function symbologyName(id: string): string {
  return AIM_NAMES_BY_ID[id] ?? AIM_NAMES_BY_LETTER[id.charAt(1)] ?? 'unknown';
}

function isLetter(byte: number): boolean {
  return (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a);
}

function isAimModifier(byte: number): boolean {
  // Modifiers are digits for the common symbologies; Aztec and a few others go on
  // to upper-case letters.
  return (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a);
}

function isPrintable(byte: number): boolean {
  return byte >= 0x20 && byte <= 0x7e;
}

export class ScanFramer {
  readonly lineBytesMax: number;
  readonly stats: ScanFramerStats = {
    codes: 0,
    noiseBytes: 0,
    overlongLines: 0,
    emptyLines: 0,
    unterminatedLines: 0,
  };

  readonly #line: Uint8Array;
  #lineBytes = 0;
  /** Kept bytes of an over-long line seen so far; 0 while the line is within bounds. */
  #overlongBytes = 0;
  #lineNoiseBytes = 0;
  /** The previous byte was a CR, so an LF now completes that terminator, not a new one. */
  #afterCr = false;

  constructor(options: ScanFramerOptions = {}) {
    const lineBytesMax = options.lineBytesMax ?? LINE_BYTES_MAX_DEFAULT;
    if (!Number.isSafeInteger(lineBytesMax) || lineBytesMax < 1) {
      throw new RangeError(`lineBytesMax must be a positive integer, got ${lineBytesMax}`);
    }
    this.lineBytesMax = lineBytesMax;
    this.#line = new Uint8Array(lineBytesMax);
  }

  /** Bytes of the current, unterminated line (kept and noise): 0 between lines. */
  get pendingBytes(): number {
    return this.#lineBytes + this.#overlongBytes + this.#lineNoiseBytes;
  }

  push(chunk: Buffer | Uint8Array): ScanFrame[] {
    const frames: ScanFrame[] = [];
    for (const byte of chunk) {
      if (byte === CR) {
        this.#endLine(frames);
        this.#afterCr = true;
        continue;
      }
      if (byte === LF) {
        if (!this.#afterCr) this.#endLine(frames);
        this.#afterCr = false;
        continue;
      }
      this.#afterCr = false;
      const kept = isPrintable(byte) || (byte === GS && this.#lineBytes + this.#overlongBytes > 0);
      if (!kept) {
        this.#lineNoiseBytes += 1;
        this.stats.noiseBytes += 1;
      } else if (this.#overlongBytes > 0) {
        this.#overlongBytes += 1;
      } else if (this.#lineBytes === this.lineBytesMax) {
        // From here on the line is only counted: its bytes are already lost as a code.
        this.#overlongBytes = this.#lineBytes + 1;
        this.#lineBytes = 0;
      } else {
        this.#line[this.#lineBytes] = byte;
        this.#lineBytes += 1;
      }
    }
    return frames;
  }

  /**
   * Discards a line that has no terminator yet and reports it. The shell calls this
   * when the line has sat idle too long (a scanner configured without a suffix) or
   * when the device goes away, so that half a code never joins the next one.
   */
  flush(): ScanFrame[] {
    const frames: ScanFrame[] = [];
    this.#afterCr = false;
    if (this.#lineNoiseBytes > 0) {
      frames.push({ kind: 'noise', bytes: this.#lineNoiseBytes });
      this.#lineNoiseBytes = 0;
    }
    const bytes = this.#lineBytes + this.#overlongBytes;
    if (bytes > 0) {
      frames.push({ kind: 'unterminated', bytes });
      this.stats.unterminatedLines += 1;
      this.#lineBytes = 0;
      this.#overlongBytes = 0;
    }
    return frames;
  }

  #endLine(frames: ScanFrame[]): void {
    let noiseBytes = this.#lineNoiseBytes;
    this.#lineNoiseBytes = 0;
    let frame: ScanFrame | undefined;
    if (this.#overlongBytes > 0) {
      frame = { kind: 'overlong', bytes: this.#overlongBytes };
      this.stats.overlongLines += 1;
      this.#overlongBytes = 0;
    } else {
      const parsed = parseLine(this.#line.subarray(0, this.#lineBytes));
      this.#lineBytes = 0;
      noiseBytes += parsed.leadingGsBytes;
      this.stats.noiseBytes += parsed.leadingGsBytes;
      frame = parsed.frame;
      if (frame === undefined) this.stats.emptyLines += 1;
      else this.stats.codes += 1;
    }
    if (noiseBytes > 0) frames.push({ kind: 'noise', bytes: noiseBytes });
    if (frame !== undefined) frames.push(frame);
  }
}

function parseLine(line: Uint8Array): { frame: ScanFrame | undefined; leadingGsBytes: number } {
  let start = 0;
  let symbology: Symbology | undefined;
  const [flag, letter, modifier] = line;
  if (
    flag === AIM_FLAG &&
    letter !== undefined &&
    modifier !== undefined &&
    isLetter(letter) &&
    isAimModifier(modifier)
  ) {
    const id = String.fromCharCode(flag, letter, modifier);
    symbology = { id, name: symbologyName(id) };
    start = 3;
  }
  const afterAim = start;
  while (line[start] === GS) start += 1;
  const leadingGsBytes = start - afterAim;
  if (start === line.length) return { frame: undefined, leadingGsBytes };
  // Only printable ASCII and GS reach here, so latin1 decodes each byte to itself.
  const code = Buffer.from(line.buffer, line.byteOffset + start, line.length - start).toString('latin1');
  const frame: ScanFrame =
    symbology === undefined ? { kind: 'code', code } : { kind: 'code', code, symbology };
  return { frame, leadingGsBytes };
}
