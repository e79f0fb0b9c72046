import { z } from 'zod';
import { maskCardsInText } from '../../core/index.ts';

/**
 * A receipt as the terminal hands it to a printer: every amount is already a
 * display string ("120 ACME", "€3.50") because the printer must never do money
 * arithmetic; it only lays text out.
 */
export interface Receipt {
  store: { name: string; address: string[] };
  terminal: string;
  cashier: string;
  /** ISO 8601 local time with its offset; printed as written (date, hour and minute). */
  at: string;
  /** The sale's id, or a report's (for example "Z 12"). */
  saleId: string;
  kind: 'sale' | 'refund' | 'reprint' | 'report';
  /** What the id names when it is neither a sale nor a report ("Token sale", "Card"); printed before it. */
  idLabel?: string;
  /** A report's title, printed large under the store's name ("X REPORT"). */
  title?: string;
  /** A reprint counted by the store: printed as "DUPLICATE — reprint N". */
  reprintCount?: number;
  /** A report's figures: titled groups of label and amount. */
  sections?: ReceiptSection[];
  lines: ReceiptItem[];
  tenders: { label: string; amount: string }[];
  cash?: { due: string; tendered: string; change: string };
  /** Balances left, one per token type. */
  balances: { label: string; amount: string }[];
  footer?: string[];
  /** QR payload: the sale's signed proof, or its id so a scan finds the sale. Printable ASCII. Reports have none. */
  qr?: string;
  /** CODE128 payload used to find the sale for a return. Printable ASCII without "{". Reports have none. */
  barcode?: string;
}

export interface ReceiptSection {
  title: string;
  rows: { label: string; amount: string }[];
}

export interface ReceiptItem {
  name: string;
  qty: number;
  price: string;
  total: string;
}

export type Columns = 32 | 42 | 48;
export const COLUMNS: readonly Columns[] = [32, 42, 48];

export type ReceiptAlign = 'left' | 'center' | 'right';

/**
 * One printed text line. `text` never holds more than `columns` characters and
 * holds no control characters; left lines that carry an amount are padded to the
 * full width so every amount ends in the last column.
 */
export interface ReceiptLine {
  text: string;
  align: ReceiptAlign;
  bold: boolean;
}

// Limits keep one receipt well inside a printer's receive buffer and a queue file small.
export const receiptLimits = {
  textCharsMax: 64,
  nameCharsMax: 200,
  amountCharsMax: 20,
  addressLinesMax: 4,
  itemsMax: 500,
  tendersMax: 16,
  balancesMax: 16,
  footerLinesMax: 8,
  // A signed receipt proof is about 540 characters and a gift certificate's signed form
  // about 300; 1,024 is a version 25 QR code at correction M, still 3 dots a module on
  // 58 mm paper (thermal-printer.ts qrCellDots).
  qrCharsMax: 1_024,
  barcodeCharsMax: 24,
  qtyAbsMax: 1_000_000,
  nameLinesMax: 3,
  sectionsMax: 12,
  sectionRowsMax: 64,
} as const;

const L = receiptLimits;
const text = z.string().max(L.textCharsMax);
const amount = z.string().min(1).max(L.amountCharsMax);
const labelled = z.object({ label: text, amount }).strict();

/**
 * The schema a receipt is checked against before it is printed or queued, and
 * again when a queue file is read back. QR and barcode payloads are restricted to
 * printable ASCII because node-thermal-printer sizes those commands by string
 * length, which is only the byte count for ASCII.
 */
export const receiptSchema = z
  .object({
    store: z.object({ name: text.min(1), address: z.array(text).max(L.addressLinesMax) }).strict(),
    terminal: text,
    cashier: text,
    at: z.string().max(40).regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/, 'expected an ISO 8601 date and time'),
    saleId: text.min(1),
    kind: z.enum(['sale', 'refund', 'reprint', 'report']),
    idLabel: text.min(1).max(16).optional(),
    title: text.min(1).optional(),
    reprintCount: z.int().min(1).max(L.qtyAbsMax).optional(),
    sections: z
      .array(z.object({ title: text, rows: z.array(labelled).max(L.sectionRowsMax) }).strict())
      .max(L.sectionsMax)
      .optional(),
    lines: z
      .array(
        z
          .object({
            name: z.string().max(L.nameCharsMax),
            qty: z.int().min(-L.qtyAbsMax).max(L.qtyAbsMax),
            price: amount,
            total: amount,
          })
          .strict(),
      )
      .max(L.itemsMax),
    tenders: z.array(labelled).max(L.tendersMax),
    cash: z.object({ due: amount, tendered: amount, change: amount }).strict().optional(),
    balances: z.array(labelled).max(L.balancesMax),
    footer: z.array(text).max(L.footerLinesMax).optional(),
    qr: z.string().min(1).max(L.qrCharsMax).regex(/^[\x20-\x7e]+$/, 'expected printable ASCII').optional(),
    barcode: z
      .string()
      .min(1)
      .max(L.barcodeCharsMax)
      .regex(/^[\x20-\x7a\x7c-\x7e]+$/, 'expected printable ASCII without "{"')
      .optional(),
  })
  .strict();

export type ReceiptCheck = { ok: true; receipt: Receipt } | { ok: false; problem: string };

/** Checks an untrusted value against `receiptSchema`; the problem names the first bad field. */
export function checkReceipt(value: unknown): ReceiptCheck {
  const parsed = receiptSchema.safeParse(value);
  if (parsed.success) return { ok: true, receipt: parsed.data };
  const issue = parsed.error.issues[0];
  const where = issue && issue.path.length > 0 ? `${issue.path.join('.')}: ` : '';
  return { ok: false, problem: `${where}${issue?.message ?? 'invalid receipt'}` };
}

/**
 * Lays a receipt out for a printer `columns` characters wide. Pure: the same
 * receipt and width always give the same lines. Names wrap at word boundaries
 * (at most `nameLinesMax` lines, the last one truncated with "."); amounts are
 * never cut: when a label and its amount do not fit on one line, the amount moves
 * to its own right-aligned line.
 */
export function layoutReceipt(r: Receipt, columns: Columns): ReceiptLine[] {
  if (!COLUMNS.includes(columns)) throw new RangeError(`columns must be 32, 42 or 48, got ${String(columns)}`);
  const n = columns;
  const out: ReceiptLine[] = [];
  // A card number is a bearer credential: whatever text the caller hands over, no line
  // prints one whole. The mask keeps the length, so the layout does not change.
  const left = (t: string, bold = false): void => {
    out.push({ text: maskCardsInText(t), align: 'left', bold });
  };
  const centre = (t: string, bold = false): void => {
    for (const part of wrap(t, n, 2)) out.push({ text: maskCardsInText(part), align: 'center', bold });
  };
  const pairs = (label: string, value: string, bold = false): void => {
    for (const t of pair(label, value, n)) left(t, bold);
  };
  const rule = (): void => left('-'.repeat(n));

  centre(r.store.name, true);
  for (const a of r.store.address) centre(a);
  if (r.kind === 'refund') centre('*** REFUND ***', true);
  if (r.title !== undefined) centre(r.title, true);
  if (r.kind === 'reprint') centre(r.reprintCount === undefined ? '*** REPRINT ***' : `DUPLICATE — reprint ${r.reprintCount}`, true);
  rule();
  pairs(r.idLabel ?? (r.kind === 'report' ? 'Report' : 'Sale'), r.saleId);
  pairs('Date', formatAt(r.at));
  pairs('Terminal', r.terminal);
  pairs('Cashier', r.cashier);
  rule();
  for (const item of r.lines) {
    for (const t of wrap(item.name, n, L.nameLinesMax)) left(t);
    for (const t of pair(`${item.qty} x ${item.price}`, item.total, n, 2)) left(t);
  }
  if (r.lines.length > 0) rule();
  if (r.tenders.length > 0) {
    left(r.kind === 'refund' ? 'Refunded' : 'Paid', true);
    for (const t of r.tenders) pairs(t.label, t.amount);
  }
  if (r.cash) {
    pairs('Cash due', r.cash.due);
    pairs('Cash tendered', r.cash.tendered);
    pairs('Change', r.cash.change, true);
  }
  for (const section of r.sections ?? []) {
    rule();
    if (section.title !== '') left(section.title, true);
    for (const row of section.rows) pairs(row.label, row.amount);
  }
  if (r.balances.length > 0) {
    rule();
    left('Balances left', true);
    for (const b of r.balances) pairs(b.label, b.amount);
  }
  if (r.footer && r.footer.length > 0) {
    rule();
    for (const f of r.footer) centre(f);
  }
  for (const line of out) {
    if (width(line.text) > n) throw new Error(`layout produced a line of ${width(line.text)} characters for ${n} columns`);
  }
  return out;
}

/** Number of characters a string takes on paper: one per code point once cleaned. */
export function width(s: string): number {
  return Array.from(s).length;
}

/**
 * Makes text safe to print: NFC so "e" + combining accent is one character (one
 * column, one code-page byte), and every control character becomes a space so
 * a product name can never carry a printer command such as a cut or a drawer kick.
 */
export function clean(s: string): string {
  let out = '';
  for (const ch of s.normalize('NFC')) out += isControl(ch) ? ' ' : ch;
  return out.trim();
}

function isControl(ch: string): boolean {
  const c = ch.codePointAt(0) ?? 0;
  return c < 0x20 || (c >= 0x7f && c <= 0x9f) || c === 0x2028 || c === 0x2029;
}

function take(s: string, count: number): string {
  return Array.from(s).slice(0, count).join('');
}

function truncate(s: string, n: number): string {
  return width(s) <= n ? s : `${take(s, n - 1)}.`;
}

/** Word wrap to `n` columns and at most `linesMax` lines; an over-long word is split. */
export function wrap(raw: string, n: number, linesMax: number): string[] {
  const words = clean(raw).split(/ +/).filter((w) => w.length > 0);
  const lines: string[] = [];
  let current = '';
  for (let word of words) {
    while (width(word) > n) {
      if (current) {
        lines.push(current);
        current = '';
      }
      lines.push(take(word, n));
      word = Array.from(word).slice(n).join('');
    }
    if (!current) current = word;
    else if (width(current) + 1 + width(word) <= n) current += ` ${word}`;
    else {
      lines.push(current);
      current = word;
    }
  }
  if (current) lines.push(current);
  if (lines.length === 0) return [''];
  if (lines.length <= linesMax) return lines;
  const kept = lines.slice(0, linesMax);
  const last = kept[linesMax - 1] ?? '';
  kept[linesMax - 1] = width(last) < n ? `${last}.` : truncate(last, n);
  return kept;
}

/**
 * A label (after `indent` spaces) and a right-aligned value on one line of
 * exactly `n` columns, or, when they do not fit together, the label on its own
 * line and the value right-aligned below it: a value (an amount or an id) is
 * never truncated.
 */
export function pair(rawLabel: string, rawValue: string, n: number, indent = 0): string[] {
  const label = ' '.repeat(indent) + clean(rawLabel);
  const value = clean(rawValue);
  const lw = width(label);
  const vw = width(value);
  if (lw + 1 + vw <= n) return [label + ' '.repeat(n - lw - vw) + value];
  const lines = label.trim() ? [truncate(label, n)] : [];
  for (const part of chunk(value, n)) lines.push(' '.repeat(n - width(part)) + part);
  return lines;
}

function chunk(s: string, n: number): string[] {
  const chars = Array.from(s);
  const parts: string[] = [];
  for (let i = 0; i < chars.length; i += n) parts.push(chars.slice(i, i + n).join(''));
  return parts.length > 0 ? parts : [''];
}

/** "2025-03-01T14:05:09+01:00" → "2025-03-01 14:05": the terminal's local time as it wrote it. */
export function formatAt(iso: string): string {
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})/.exec(iso);
  return m ? `${m[1]} ${m[2]}` : clean(iso);
}
