import { z } from 'zod';
import { MallposError } from './errors.ts';
import { customerAccount, REDEEMED_ACCOUNT } from './ledger.ts';
import { add, mul, mulDivRound, sub } from './money.ts';
import { CART_LINES_MAX, LINE_QTY_MAX } from './pricing.ts';
import { entityId, ledgerAccount, productGtin, saleIdCode, strictRecord, tokenCode } from './schemas.ts';

/**
 * The one validator of a sale, used by the vendor server before it journals a sale and
 * by the mall when it ingests one. A sale's lines, allocations, debits, cash and
 * postings must agree exactly:
 *  - lines are numbered 1..n in order, each once; a line's total is its unit price x qty,
 *    and the sale's total is the sum of its lines;
 *  - an allocation pays one listed line in a token the line is priced in, each line at
 *    most once, at most the line's token price x qty, and covers exactly what the
 *    rounding rule gives (core/pricing.ts);
 *  - the debits per token are the sum of the allocations in it, every debit at least 1;
 *    a sale without a customer debits nothing;
 *  - the cash due is the total minus what the tokens cover, the change is what was
 *    tendered minus what was due;
 *  - the postings, netted per account and token, are exactly the customer's debits moved
 *    to `redeemed`: no other account or token, nothing that nets to zero.
 * Pure: it returns the first disagreement as a sentence, or throws it as a typed error.
 */
const units = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const positive = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER);
const TOKENS_PER_LINE_MAX = 64;

const tokenRecord = <T extends z.ZodType>(value: T) => strictRecord(tokenCode, value, TOKENS_PER_LINE_MAX);

export const saleLineSchema = z.strictObject({
  lineNo: positive,
  gtin: productGtin,
  name: z.string().max(200),
  qty: z.number().int().min(1).max(LINE_QTY_MAX),
  unitPriceMinor: units,
  totalMinor: units,
  unitTokenPrices: tokenRecord(units),
});

export const saleAllocationSchema = z.strictObject({ lineNo: positive, token: tokenCode, units: positive, coversMinor: units });

const OFFLINE_ID_PATTERN = /^[a-z0-9][a-z0-9-]{0,39}-[0-9]{1,15}$/;

/** Where an offline sale came from (core/events.ts OfflineSaleInfo): recorded as sent, never priced again. */
export const offlineSaleInfoSchema = z.strictObject({
  offlineId: z.string().regex(OFFLINE_ID_PATTERN, 'an offline id is <terminal id>-<counter>'),
  counter: positive,
  tillAt: z.iso.datetime({ offset: true }),
  receivedAt: z.iso.datetime({ offset: true }),
  catalogVersion: units,
  priceDifferences: z
    .array(z.strictObject({ code: productGtin, tillUnitMinor: units, serverUnitMinor: units.nullable() }))
    .max(CART_LINES_MAX),
  afterZ: z.boolean(),
});

export const saleDataSchema = z.strictObject({
  saleId: saleIdCode,
  customer: entityId.nullable(),
  currency: z.string().regex(/^[A-Z]{3}$/),
  lines: z.array(saleLineSchema).min(1).max(CART_LINES_MAX),
  allocations: z.array(saleAllocationSchema).max(CART_LINES_MAX),
  debits: tokenRecord(positive),
  totalMinor: units,
  cash: z.strictObject({ dueMinor: units, tenderedMinor: units, changeMinor: units }),
  balancesAfter: tokenRecord(units).nullable(),
  offline: offlineSaleInfoSchema.optional(),
});

export const salePostingSchema = z.strictObject({ account: ledgerAccount, token: tokenCode, units: z.number().int().min(-Number.MAX_SAFE_INTEGER).max(Number.MAX_SAFE_INTEGER) });
export const salePostingsSchema = z.array(salePostingSchema).max(2 * CART_LINES_MAX);

export type CheckedSale = z.output<typeof saleDataSchema>;
export type CheckedPosting = z.output<typeof salePostingSchema>;

export type SaleCheck = { ok: true; data: CheckedSale; postings: CheckedPosting[] } | { ok: false; problem: string };

function firstIssue(prefix: string, error: z.ZodError): string {
  const issue = error.issues[0];
  const path = issue?.path.map(String).join('.') ?? '';
  return `${prefix}${path === '' ? '' : `.${path}`}: ${issue?.message ?? 'not valid'}`;
}

/** Checks a sale's data and postings; returns the first disagreement rather than throwing. */
export function checkSaleShape(postingsIn: unknown, dataIn: unknown): SaleCheck {
  const parsedData = saleDataSchema.safeParse(dataIn);
  if (!parsedData.success) return { ok: false, problem: firstIssue('sale data', parsedData.error) };
  const parsedPostings = salePostingsSchema.safeParse(postingsIn);
  if (!parsedPostings.success) return { ok: false, problem: firstIssue('postings', parsedPostings.error) };
  const d = parsedData.data;
  const postings = parsedPostings.data;
  try {
    const problem = agreement(d, postings);
    return problem === null ? { ok: true, data: d, postings } : { ok: false, problem };
  } catch (err) {
    // An amount out of range (CORE_ERR_OVERFLOW) is one more way of not agreeing.
    if (err instanceof MallposError) return { ok: false, problem: err.message };
    throw err;
  }
}

function agreement(d: CheckedSale, postings: readonly CheckedPosting[]): string | null {
  // Lines: 1..n in order, each total exact, the sale total their sum.
  let total = 0;
  for (let i = 0; i < d.lines.length; i++) {
    const line = d.lines[i] as CheckedSale['lines'][number];
    if (line.lineNo !== i + 1) return `line ${i + 1} is numbered ${line.lineNo}: lines are numbered 1..n, each once`;
    if (line.totalMinor !== mul(line.unitPriceMinor, line.qty)) return `line ${line.lineNo}'s total is not its unit price times its quantity`;
    total = add(total, line.totalMinor);
  }
  if (d.totalMinor !== total) return `the sale's total ${d.totalMinor} is not the sum of its lines, ${total}`;
  // A till sells only for cash while it cannot reach the store server.
  if (d.offline !== undefined && (d.customer !== null || d.allocations.length > 0)) return 'an offline sale is for cash only: no customer, no tokens';

  // Allocations: each pays one listed line once, in a token the line is priced in, covering what the rounding rule gives.
  // Whether each line (by index) is paid already: an allocation's line was found at
  // lineNo - 1, so that is an index of the lines.
  const paid = new Array<boolean>(d.lines.length).fill(false);
  const allocated = new Map<string, number>();
  let covered = 0;
  for (const a of d.allocations) {
    const line = d.lines[a.lineNo - 1];
    if (line === undefined) return `an allocation pays line ${a.lineNo}, which the sale does not have`;
    if (paid[a.lineNo - 1] === true) return `line ${a.lineNo} is paid by more than one allocation`;
    paid[a.lineNo - 1] = true;
    const price = Object.hasOwn(line.unitTokenPrices, a.token) ? line.unitTokenPrices[a.token] : undefined;
    if (price === undefined || price === 0) return `line ${a.lineNo} is not priced in ${a.token}`;
    const lineUnits = mul(price, line.qty);
    if (a.units > lineUnits) return `${a.units} ${a.token} pay line ${a.lineNo}, which costs ${lineUnits} ${a.token}`;
    const covers = a.units === lineUnits ? line.totalMinor : mulDivRound(line.totalMinor, a.units, lineUnits);
    if (a.coversMinor !== covers) return `the allocation to line ${a.lineNo} covers ${a.coversMinor}, the rounding rule gives ${covers}`;
    allocated.set(a.token, add(allocated.get(a.token) ?? 0, a.units));
    covered = add(covered, covers);
  }

  // Debits: exactly the allocations per token; none without a customer.
  const debitTokens = Object.keys(d.debits);
  if (d.customer === null && (debitTokens.length > 0 || d.allocations.length > 0)) return 'a sale without a customer debits tokens';
  if (debitTokens.length !== allocated.size) return 'the debits and the allocations name different tokens';
  for (const token of debitTokens) {
    if (allocated.get(token) !== d.debits[token]) return `the debit of ${d.debits[token]} ${token} is not what the allocations take, ${allocated.get(token) ?? 0}`;
  }

  // Cash: due is what the tokens do not cover; change is what was tendered over that.
  if (d.cash.dueMinor !== sub(d.totalMinor, covered)) return `the cash due ${d.cash.dueMinor} is not the total less what the tokens cover, ${sub(d.totalMinor, covered)}`;
  if (d.cash.tenderedMinor < d.cash.dueMinor) return 'less cash was tendered than was due';
  if (d.cash.changeMinor !== sub(d.cash.tenderedMinor, d.cash.dueMinor)) return 'the change is not the cash tendered less the cash due';

  // Postings: netted per account and token, exactly the debits moved from the customer to `redeemed`.
  const net = new Map<string, number>();
  for (const p of postings) {
    if (p.units === 0) return 'a posting of zero units';
    const k = `${p.account}\u0000${p.token}`;
    net.set(k, add(net.get(k) ?? 0, p.units));
  }
  const expected = new Map<string, number>();
  if (d.customer !== null) {
    const customer = customerAccount(d.customer);
    for (const token of debitTokens) {
      const n = d.debits[token] as number;
      expected.set(`${customer}\u0000${token}`, 0 - n);
      expected.set(`${REDEEMED_ACCOUNT}\u0000${token}`, n);
    }
  }
  for (const [k, n] of net) {
    const want = expected.get(k);
    if (want === n) continue;
    const [account, token] = k.split('\u0000') as [string, string];
    if (want === undefined) return `the postings move ${n} ${token} on ${account}, which the sale does not debit`;
    if (want !== n) return `the postings move ${n} ${token} on ${account}, the sale's debits say ${want}`;
  }
  for (const [k, n] of expected) {
    if (!net.has(k)) {
      const [account, token] = k.split('\u0000') as [string, string];
      return `the postings do not move the ${n} ${token} the sale debits on ${account}`;
    }
  }
  return null;
}

/** The first disagreement in a sale, or null when its parts agree. */
export function saleProblem(postings: unknown, data: unknown): string | null {
  const r = checkSaleShape(postings, data);
  return r.ok ? null : r.problem;
}

/** Throws CORE_ERR_SALE_INCONSISTENT when a sale's parts do not agree exactly. */
export function checkSale(postings: unknown, data: unknown): void {
  const problem = saleProblem(postings, data);
  if (problem !== null) throw new MallposError('CORE_ERR_SALE_INCONSISTENT', `the sale does not add up: ${problem}`);
}

/**
 * Throws CORE_ERR_SALE_INCONSISTENT when the parts of a sale this process built itself
 * (the vendor server, before it journals one) do not agree. Its shape is given by its
 * types and the catalog it was priced from, so only the agreement is checked here, on
 * every sale; the schema is for sales that arrive from outside (the mall's ingest).
 */
export function checkBuiltSale(postings: readonly CheckedPosting[], data: CheckedSale): void {
  let problem: string | null;
  try {
    problem = agreement(data, postings);
  } catch (err) {
    if (!(err instanceof MallposError)) throw err;
    problem = err.message;
  }
  if (problem !== null) throw new MallposError('CORE_ERR_SALE_INCONSISTENT', `the sale does not add up: ${problem}`);
}
