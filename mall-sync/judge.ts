import { z } from 'zod';
import {
  CASHIER_DAY_EVENT_TYPES,
  checkBalanced,
  checkSaleShape,
  entityId,
  FLOAT_ACCOUNT,
  isAcceptedAt,
  isExpired,
  isMallposError,
  REDEEMED_ACCOUNT,
  salePostingsSchema,
  tokenCode,
  type JournalEvent,
  type TokenType,
} from '../core/index.ts';
import { redemptionClearing, reversalClearing } from './clearing.ts';
import type { BatchIngestedData, ClearingRecord, FlaggedRecord } from './events.ts';
import { own } from './store/dict.ts';
import type { MallState } from './store/state.ts';

/**
 * Checks each event of an accepted batch against the mall's registry and computes what
 * the mall clears for it. An event that fails a check is flagged with its reason and not
 * cleared; nothing is dropped silently. Pure: the caller looks up, beforehand, how any
 * earlier sale named by a reversal in this batch ended (`earlierSales`).
 *
 * A signed batch is a claim, not a fact. The checks:
 *  - every event: its identifiers match core's patterns; its postings balance and touch
 *    only the accounts its type may move; its time is no later than its arrival plus
 *    the clock skew and no earlier than the vendor's previous event less the skew. The
 *    mall then reads the event's time within arrival bounds, from arrival less the
 *    longest delay to arrival: that time decides expiry and the statement day;
 *  - sale: its parts agree exactly (core/sale-check.ts); token types known, not expired,
 *    accepted at this vendor; manufacturer tokens only on their listed products; tokens
 *    of any issuer but the vendor itself only up to what the mall allotted to the vendor
 *    (net of what the vendor's cleared sales already redeemed): tokens nobody issued are
 *    not paid for;
 *  - reversal: names a sale the mall cleared, not reversed before, returning the same
 *    tokens; it then reverses that sale's clearing;
 *  - allotment: tokens of another issuer match a mall allotment to this vendor by id
 *    (the event's reference), with the same token and units, used once; tokens the
 *    vendor issues itself need none;
 *  - issuance: token type known, not expired, accepted at this vendor.
 */

/** How far a vendor's clock may run ahead of the mall's, or events may step back in time. */
export const EVENT_CLOCK_SKEW_MS = 5 * 60_000;
/** The longest an event is believed to have waited before reaching the mall (the vendor's offline limit). */
export const EVENT_DELAY_MAX_MS = 72 * 3_600_000;

/** How an earlier sale ended at the mall. */
export type SaleOutcome =
  | { kind: 'cleared'; record: ClearingRecord }
  | { kind: 'flagged'; reason: string }
  | { kind: 'none' };

export interface JudgeInput {
  vendor: string;
  batchSeq: number;
  /** When the batch arrived at the mall. */
  ingestedAt: string;
  events: readonly JournalEvent[];
  state: Readonly<MallState>;
  earlierSales: ReadonlyMap<number, SaleOutcome>;
}

export interface Judgement {
  clearing: ClearingRecord[];
  flagged: FlaggedRecord[];
  allotmentsUsed: { id: string; eventSeq: number }[];
  /** The latest event time accepted from the vendor after this batch. */
  lastEventAt: string | null;
}

/**
 * The event that records an ingested batch, made from the batch and its judgement. Ingest
 * commits it; the audit builds the same event from the archive, so both apply one shape.
 */
export function batchIngestedData(
  batch: { vendor: string; seq: number; hash: string; kid: string; fromSeq: number; toSeq: number; createdAt: string; lastEventHash: string; ack: BatchIngestedData['ack']; registrySeq: number | undefined },
  judgement: Judgement,
): BatchIngestedData {
  return {
    vendor: batch.vendor,
    seq: batch.seq,
    hash: batch.hash,
    kid: batch.kid,
    fromSeq: batch.fromSeq,
    toSeq: batch.toSeq,
    createdAt: batch.createdAt,
    lastEventSeq: batch.toSeq,
    lastEventHash: batch.lastEventHash,
    ack: batch.ack,
    clearing: judgement.clearing,
    flagged: judgement.flagged,
    allotmentsUsed: judgement.allotmentsUsed,
    lastEventAt: judgement.lastEventAt,
    registrySeq: batch.registrySeq,
  };
}

const posInt = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER);
const reversalData = z.object({ saleSeq: posInt });
const allotmentData = z.object({ token: tokenCode, units: posInt, issuer: entityId, reference: z.string().max(200) });
const issuanceData = z.object({ customer: entityId, token: tokenCode, units: posInt });
const ALLOTMENT_ID = /^alt-[0-9]{6,12}$/;

/**
 * The cashier's day (shifts, cash moves, no-sales, reprints, Z and month/year closures)
 * is accepted as recorded: it moves no tokens, so any posting on it is flagged below.
 */
const KNOWN_TYPES = new Set<string>(['sale', 'reversal', 'allotment', 'issuance', 'customer.registered', 'product.upserted', 'token-type.upserted', ...CASHIER_DAY_EVENT_TYPES]);

/** The accounts each event type may move (core/ledger.ts); anything else is not what the vendor's rules write. */
const customer = (a: string) => a.startsWith('customer:');
const ALLOWED_ACCOUNTS = new Map<string, (account: string) => boolean>([
  ['sale', (a) => a === REDEEMED_ACCOUNT || customer(a)],
  ['reversal', (a) => a === REDEEMED_ACCOUNT || customer(a)],
  ['allotment', (a) => a === FLOAT_ACCOUNT || a.startsWith('issuer:')],
  ['issuance', (a) => a === FLOAT_ACCOUNT || customer(a)],
]);

class Flag extends Error {}

function flag(reason: string): never {
  throw new Flag(reason);
}

/** GTINs compare as 14 digits, so a UPC-A listed with 12 digits matches its EAN-13 form. */
function gtin14(gtin: string): string {
  return gtin.padStart(14, '0');
}

function positiveUnits(postings: JournalEvent['postings'], account: string | null): Map<string, number> {
  const out = new Map<string, number>();
  for (const p of postings) {
    if (p.units > 0 && (account === null || p.account === account)) out.set(p.token, (out.get(p.token) ?? 0) + p.units);
  }
  return out;
}

/** Whether `a` holds exactly the non-zero entries of `b`. */
function sameTally(a: Map<string, number>, b: Readonly<Record<string, number>>): boolean {
  let nonZero = 0;
  for (const t of Object.keys(b)) {
    const n = b[t];
    if (n === 0) continue;
    if (a.get(t) !== n) return false;
    nonZero += 1;
  }
  return a.size === nonZero;
}

const clamp = (n: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, n));

export function judgeBatch(input: JudgeInput): Judgement {
  const { vendor, state } = input;
  const clearing: ClearingRecord[] = [];
  const flagged: FlaggedRecord[] = [];
  const allotmentsUsed: { id: string; eventSeq: number }[] = [];
  const usedHere = new Map<string, number>();
  const salesHere = new Map<number, SaleOutcome>();
  const reversedHere = new Map<number, number>();
  /** Units of each token this batch's cleared sales redeemed, net of its reversals. */
  const redeemedHere = new Map<string, number>();
  const isVendor = (id: string) => own(state.vendors, id) !== undefined;
  const vendorRecord = own(state.vendors, vendor);
  if (vendorRecord === undefined) throw new Error(`assertion failed: vendor ${vendor} registered before judging`);
  const arrivalMs = Date.parse(input.ingestedAt);
  if (Number.isNaN(arrivalMs)) throw new Error(`assertion failed: arrival time ${input.ingestedAt} is a time`);
  let lastAtMs = vendorRecord.lastEventAt === null ? null : Date.parse(vendorRecord.lastEventAt);

  const tokenType = (code: string): TokenType => {
    const tt = own(state.tokenTypes, code);
    if (tt === undefined) flag(`token type ${code.slice(0, 20)} is not registered at the mall`);
    return tt;
  };
  const spendable = (code: string, at: Date, acceptance: boolean): TokenType => {
    const tt = tokenType(code);
    if (isExpired(tt, at)) flag(`${code} tokens expired at ${tt.expiresAt ?? ''}, before this event (judged at ${at.toISOString()}, within the bounds of its arrival)`);
    if (acceptance && !isAcceptedAt(tt, vendor)) flag(`${code} tokens are not accepted at ${vendor}`);
    return tt;
  };

  for (const e of input.events) {
    const atMs = typeof e.at === 'string' && e.at.length <= 40 ? Date.parse(e.at) : Number.NaN;
    // The mall believes an event happened between arrival less the longest delay and arrival.
    const judgedMs = Number.isNaN(atMs) ? arrivalMs : clamp(atMs, arrivalMs - EVENT_DELAY_MAX_MS, arrivalMs);
    const when = new Date(judgedMs);
    const at = when.toISOString();
    try {
      if (Number.isNaN(atMs)) flag('the event has no valid time');
      if (atMs > arrivalMs + EVENT_CLOCK_SKEW_MS) flag(`the event is dated ${e.at.slice(0, 40)}, after it reached the mall at ${input.ingestedAt}`);
      if (lastAtMs !== null && atMs < lastAtMs - EVENT_CLOCK_SKEW_MS) flag(`the event is dated ${e.at.slice(0, 40)}, before the vendor's previous event at ${new Date(lastAtMs).toISOString()}`);
      lastAtMs = lastAtMs === null ? atMs : Math.max(lastAtMs, atMs);
      if (!KNOWN_TYPES.has(e.type)) flag(`unknown event type ${String(e.type).slice(0, 40)}`);
      if (e.postings.length > 0) {
        const shape = salePostingsSchema.safeParse(e.postings);
        if (!shape.success) flag(`a posting is not valid at ${shape.error.issues[0]?.path.join('.') ?? '?'}: ${shape.error.issues[0]?.message ?? ''}`);
        const allowed = ALLOWED_ACCOUNTS.get(e.type) ?? (() => false);
        const stray = e.postings.find((p) => !allowed(p.account));
        if (stray !== undefined) flag(`a ${String(e.type).slice(0, 40)} may not post to account ${stray.account}`);
        try {
          checkBalanced(e.postings);
        } catch (err) {
          if (isMallposError(err)) flag(`the postings are not valid: ${err.message}`);
          throw err;
        }
      }
      switch (e.type) {
        case 'sale': {
          const checked = checkSaleShape(e.postings, e.data);
          if (!checked.ok) flag(`the sale does not add up: ${checked.problem}`);
          const d = checked.data;
          const tokens = Object.keys(d.debits);
          if (tokens.length === 0) {
            // A cash-only sale moves no tokens: nothing for the mall to clear.
            salesHere.set(e.seq, { kind: 'none' });
            break;
          }
          for (const token of tokens) spendable(token, when, true);
          for (const a of d.allocations) {
            const tt = tokenType(a.token);
            if (tt.kind !== 'manufacturer') continue;
            const gtin = (d.lines[a.lineNo - 1] as { gtin: string }).gtin;
            const wanted = gtin14(gtin);
            const listed = (tt.products ?? []).some((p) => gtin14(p) === wanted);
            if (!listed) flag(`${a.token} tokens paid for product ${gtin}, which is not on ${tt.issuer}'s product list`);
          }
          for (const token of tokens) {
            const tt = tokenType(token);
            // The vendor's own tokens are its own liability; any other issuer's must come from the mall's allotments.
            if (tt.issuer === vendor) continue;
            const tally = own(vendorRecord.tokens, token);
            const allotted = tally?.allottedUnits ?? 0;
            const redeemed = (tally?.redeemedUnits ?? 0) + (redeemedHere.get(token) ?? 0);
            const n = d.debits[token] as number;
            if (redeemed + n > allotted) {
              flag(`the sale redeems ${n} ${token}, which would bring ${vendor}'s redemptions to ${redeemed + n}, beyond the ${allotted} the mall allotted to it`);
            }
          }
          const record = redemptionClearing({ vendor, eventSeq: e.seq, at, debits: d.debits, tokenTypes: state.tokenTypes, fees: state.fees, isVendor });
          clearing.push(record);
          salesHere.set(e.seq, { kind: 'cleared', record });
          for (const [token, n] of Object.entries(record.tokens)) redeemedHere.set(token, (redeemedHere.get(token) ?? 0) + n);
          break;
        }
        case 'reversal': {
          const parsed = reversalData.safeParse(e.data);
          if (!parsed.success || parsed.data.saleSeq >= e.seq) flag('the reversal does not name an earlier sale');
          const saleSeq = parsed.data.saleSeq;
          const outcome = salesHere.get(saleSeq) ?? input.earlierSales.get(saleSeq) ?? { kind: 'none' };
          const returned = positiveUnits(e.postings, null);
          for (const p of e.postings) if (p.account === REDEEMED_ACCOUNT && p.units > 0) flag('the reversal takes tokens in instead of returning them');
          if (outcome.kind === 'none') {
            if (returned.size > 0) flag(`the reversal names event ${saleSeq}, which is not a token sale the mall cleared`);
            break;
          }
          if (outcome.kind === 'flagged') flag(`the reversal names sale ${saleSeq}, which was flagged and not cleared (${outcome.reason})`);
          const earlier = reversedHere.get(saleSeq) ?? own(vendorRecord.reversedSales, String(saleSeq));
          if (earlier !== undefined) flag(`sale ${saleSeq} was already reversed by event ${earlier}`);
          if (!sameTally(returned, outcome.record.tokens)) flag(`the reversal does not return the tokens sale ${saleSeq} took`);
          const record = reversalClearing(outcome.record, e.seq, at);
          clearing.push(record);
          reversedHere.set(saleSeq, e.seq);
          for (const [token, n] of Object.entries(record.tokens)) redeemedHere.set(token, (redeemedHere.get(token) ?? 0) + n);
          break;
        }
        case 'allotment': {
          const parsed = allotmentData.safeParse(e.data);
          if (!parsed.success) flag(`the allotment data is malformed at ${parsed.error.issues[0]?.path.join('.') ?? '?'}`);
          const d = parsed.data;
          const tt = tokenType(d.token);
          if (d.issuer !== tt.issuer) flag(`the allotment says ${d.token} is issued by ${d.issuer}, the mall registers ${tt.issuer}`);
          if (!sameTally(positiveUnits(e.postings, FLOAT_ACCOUNT), { [d.token]: d.units })) flag('the allotment\'s postings do not put its units into the float');
          if (tt.issuer === vendor) break;
          const a = ALLOTMENT_ID.test(d.reference) ? own(state.allotments, d.reference) : undefined;
          if (a === undefined || a.vendor !== vendor) flag(`allotment ${d.reference.slice(0, 80)} of ${d.units} ${d.token} was never issued by the mall to ${vendor}`);
          if (a.token !== d.token || a.units !== d.units) flag(`allotment ${a.id} is for ${a.units} ${a.token}, not ${d.units} ${d.token}`);
          const usedBy = usedHere.get(a.id) ?? a.used?.eventSeq;
          if (usedBy !== undefined) flag(`allotment ${a.id} was already taken into the float by event ${usedBy}`);
          usedHere.set(a.id, e.seq);
          allotmentsUsed.push({ id: a.id, eventSeq: e.seq });
          break;
        }
        case 'issuance': {
          const parsed = issuanceData.safeParse(e.data);
          if (!parsed.success) flag(`the issuance data is malformed at ${parsed.error.issues[0]?.path.join('.') ?? '?'}`);
          spendable(parsed.data.token, when, true);
          break;
        }
        default:
          break;
      }
    } catch (err) {
      // An amount out of range (CORE_ERR_OVERFLOW) is the event's problem, not the mall's.
      if (!(err instanceof Flag) && !isMallposError(err)) throw err;
      flagged.push({ vendor, batchSeq: input.batchSeq, eventSeq: e.seq, at, type: String(e.type).slice(0, 40), reason: err.message });
      if (e.type === 'sale') salesHere.set(e.seq, { kind: 'flagged', reason: err.message });
    }
  }
  return { clearing, flagged, allotmentsUsed, lastEventAt: lastAtMs === null ? null : new Date(lastAtMs).toISOString() };
}

/** How the sale at `saleSeq` ended, read from the batch.ingested data that covered it. */
export function saleOutcomeIn(data: { clearing: ClearingRecord[]; flagged: FlaggedRecord[] }, saleSeq: number): SaleOutcome {
  const record = data.clearing.find((c) => c.eventSeq === saleSeq && c.type === 'sale');
  if (record !== undefined) return { kind: 'cleared', record };
  const f = data.flagged.find((x) => x.eventSeq === saleSeq && x.type === 'sale');
  if (f !== undefined) return { kind: 'flagged', reason: f.reason };
  return { kind: 'none' };
}

/** The index (batch seq - 1) of the batch holding event `eventSeq`, by binary search over first event seqs. */
export function batchIndexOf(batchFromSeqs: readonly number[], eventSeq: number): number {
  let lo = 0;
  let hi = batchFromSeqs.length - 1;
  if (hi < 0 || eventSeq < (batchFromSeqs[0] ?? 1)) return -1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if ((batchFromSeqs[mid] as number) <= eventSeq) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
