import { z } from 'zod';
import { checkBalanced, isAcceptedAt, isExpired, isMallposError, REDEEMED_ACCOUNT, FLOAT_ACCOUNT, type JournalEvent, type TokenType } from '../core/index.ts';
import { redemptionClearing, reversalClearing } from './clearing.ts';
import type { ClearingRecord, FlaggedRecord } from './events.ts';
import type { MallState } from './store/state.ts';

/**
 * Checks each event of an accepted batch against the mall's registry and computes what
 * the mall clears for it. An event that fails a check is flagged with its reason and not
 * cleared; nothing is dropped silently. Pure: the caller looks up, beforehand, how any
 * earlier sale named by a reversal in this batch ended (`earlierSales`).
 *
 * The checks:
 *  - sale: token types known, not expired at the event's time, accepted at this vendor;
 *    manufacturer tokens only on their listed products (allocations lineNo -> line gtin);
 *    debits, allocations and postings agree on the tokens taken;
 *  - reversal: names a sale the mall cleared, not reversed before, returning the same
 *    tokens; it then reverses that sale's clearing;
 *  - allotment: tokens of another issuer match a mall allotment to this vendor by id
 *    (the event's reference), with the same token and units, used once; tokens the
 *    vendor issues itself need none;
 *  - issuance: token type known, not expired, accepted at this vendor.
 */

/** How an earlier sale ended at the mall. */
export type SaleOutcome =
  | { kind: 'cleared'; record: ClearingRecord }
  | { kind: 'flagged'; reason: string }
  | { kind: 'none' };

export interface JudgeInput {
  vendor: string;
  batchSeq: number;
  ingestedAt: string;
  events: readonly JournalEvent[];
  state: Readonly<MallState>;
  earlierSales: ReadonlyMap<number, SaleOutcome>;
}

export interface Judgement {
  clearing: ClearingRecord[];
  flagged: FlaggedRecord[];
  allotmentsUsed: { id: string; eventSeq: number }[];
}

const posInt = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER);
const saleData = z.object({
  lines: z.array(z.object({ lineNo: posInt, gtin: z.string().max(20) })).max(10_000),
  allocations: z.array(z.object({ lineNo: posInt, token: z.string().max(20), units: posInt })).max(10_000),
  debits: z.record(z.string().max(20), z.number().int().min(0).max(Number.MAX_SAFE_INTEGER)),
});
type SaleData = z.output<typeof saleData>;
const reversalData = z.object({ saleSeq: posInt });
const allotmentData = z.object({ token: z.string().max(20), units: posInt, issuer: z.string().max(80), reference: z.string().max(200) });
const issuanceData = z.object({ token: z.string().max(20), units: posInt });

const KNOWN_TYPES = new Set(['sale', 'reversal', 'allotment', 'issuance', 'customer.registered', 'product.upserted', 'token-type.upserted']);

/** The accounts each event type may move (core/ledger.ts); anything else is not what the vendor's rules write. */
const customer = (a: string) => a.startsWith('customer:');
const ALLOWED_ACCOUNTS: Record<string, (account: string) => boolean> = {
  sale: (a) => a === REDEEMED_ACCOUNT || customer(a),
  reversal: (a) => a === REDEEMED_ACCOUNT || customer(a),
  allotment: (a) => a === FLOAT_ACCOUNT || a.startsWith('issuer:'),
  issuance: (a) => a === FLOAT_ACCOUNT || customer(a),
};

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isPosInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 1;
const isCode = (v: unknown): v is string => typeof v === 'string' && v.length <= 20;

/**
 * The sale data when it plainly passes `saleData` (the common case), checked by hand: the
 * same values zod would give back, without its copies. Null when it does not, or when it
 * has anything zod treats specially (a `__proto__` key, an object that is not plain): the
 * caller then asks the schema, for the data or for the message.
 */
function plainSaleData(data: unknown): SaleData | null {
  if (!isObject(data)) return null;
  const { lines, allocations, debits } = data;
  if (!Array.isArray(lines) || lines.length > 10_000) return null;
  for (const l of lines as unknown[]) {
    if (!isObject(l) || !isPosInt(l.lineNo) || !isCode(l.gtin)) return null;
  }
  if (!Array.isArray(allocations) || allocations.length > 10_000) return null;
  for (const a of allocations as unknown[]) {
    if (!isObject(a) || !isPosInt(a.lineNo) || !isCode(a.token) || !isPosInt(a.units)) return null;
  }
  if (!isObject(debits) || Object.getPrototypeOf(debits) !== Object.prototype) return null;
  for (const token of Object.keys(debits)) {
    const n = debits[token];
    if (token === '__proto__' || token === 'constructor' || token.length > 20 || typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) return null;
  }
  return data as SaleData;
}

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
function sameTally(a: Map<string, number>, b: Record<string, number>): boolean {
  let nonZero = 0;
  for (const t of Object.keys(b)) {
    const n = b[t];
    if (n === 0) continue;
    if (a.get(t) !== n) return false;
    nonZero += 1;
  }
  return a.size === nonZero;
}

/** The own enumerable entries of a record as a map. */
function mapOf(record: Record<string, number>): Map<string, number> {
  const out = new Map<string, number>();
  for (const k of Object.keys(record)) out.set(k, record[k] as number);
  return out;
}

export function judgeBatch(input: JudgeInput): Judgement {
  const { vendor, state } = input;
  const clearing: ClearingRecord[] = [];
  const flagged: FlaggedRecord[] = [];
  const allotmentsUsed: { id: string; eventSeq: number }[] = [];
  const usedHere = new Map<string, number>();
  const salesHere = new Map<number, SaleOutcome>();
  const reversedHere = new Map<number, number>();
  const isVendor = (id: string) => state.vendors[id] !== undefined;
  const vendorRecord = state.vendors[vendor];
  if (vendorRecord === undefined) throw new Error(`assertion failed: vendor ${vendor} registered before judging`);

  const tokenType = (code: string): TokenType => {
    const tt = state.tokenTypes[code];
    if (tt === undefined) flag(`token type ${code.slice(0, 20)} is not registered at the mall`);
    return tt;
  };
  const spendable = (code: string, at: Date, acceptance: boolean): TokenType => {
    const tt = tokenType(code);
    if (isExpired(tt, at)) flag(`${code} tokens expired at ${tt.expiresAt ?? ''}, before this event`);
    if (acceptance && !isAcceptedAt(tt, vendor)) flag(`${code} tokens are not accepted at ${vendor}`);
    return tt;
  };

  for (const e of input.events) {
    const atMs = typeof e.at === 'string' ? Date.parse(e.at) : Number.NaN;
    const when = new Date(atMs);
    const at = Number.isNaN(atMs) ? input.ingestedAt : when.toISOString();
    try {
      if (Number.isNaN(atMs)) flag('the event has no valid time');
      if (!KNOWN_TYPES.has(e.type)) flag(`unknown event type ${String(e.type).slice(0, 40)}`);
      if (e.postings.length > 0) {
        const allowed = ALLOWED_ACCOUNTS[e.type] ?? (() => false);
        const stray = e.postings.find((p) => typeof p.account !== 'string' || !allowed(p.account));
        if (stray !== undefined) flag(`a ${String(e.type).slice(0, 40)} may not post to account ${String(stray.account).slice(0, 60)}`);
        try {
          checkBalanced(e.postings);
        } catch (err) {
          if (isMallposError(err)) flag(`the postings are not valid: ${err.message}`);
          throw err;
        }
      }
      switch (e.type) {
        case 'sale': {
          let d = plainSaleData(e.data);
          if (d === null) {
            const parsed = saleData.safeParse(e.data);
            if (!parsed.success) flag(`the sale data is malformed at ${parsed.error.issues[0]?.path.join('.') ?? '?'}`);
            d = parsed.data;
          }
          const debits: Record<string, number> = {};
          let debited = 0;
          for (const token of Object.keys(d.debits)) {
            const n = d.debits[token] as number;
            if (n > 0) {
              debits[token] = n;
              debited += 1;
            }
          }
          if (debited === 0) {
            // A cash-only sale moves no tokens: nothing for the mall to clear.
            salesHere.set(e.seq, { kind: 'none' });
            break;
          }
          const allocated: Record<string, number> = {};
          for (const a of d.allocations) allocated[a.token] = (allocated[a.token] ?? 0) + a.units;
          if (!sameTally(mapOf(allocated), debits)) flag('the sale\'s allocations do not add up to its debits');
          if (!sameTally(positiveUnits(e.postings, REDEEMED_ACCOUNT), debits)) flag('the sale\'s postings do not take the tokens it debits');
          for (const token of Object.keys(debits)) spendable(token, when, true);
          let lines: Map<number, string> | null = null;
          for (const a of d.allocations) {
            const tt = tokenType(a.token);
            if (tt.kind !== 'manufacturer') continue;
            lines ??= new Map(d.lines.map((l) => [l.lineNo, l.gtin]));
            const gtin = lines.get(a.lineNo);
            if (gtin === undefined) flag(`allocation to line ${a.lineNo}, which the sale does not have`);
            const wanted = gtin14(gtin);
            const listed = (tt.products ?? []).some((p) => gtin14(p) === wanted);
            if (!listed) flag(`${a.token} tokens paid for product ${gtin}, which is not on ${tt.issuer}'s product list`);
          }
          const record = redemptionClearing({ vendor, eventSeq: e.seq, at, debits, tokenTypes: state.tokenTypes, fees: state.fees, isVendor });
          clearing.push(record);
          salesHere.set(e.seq, { kind: 'cleared', record });
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
          const earlier = reversedHere.get(saleSeq) ?? vendorRecord.reversedSales[saleSeq];
          if (earlier !== undefined) flag(`sale ${saleSeq} was already reversed by event ${earlier}`);
          if (!sameTally(returned, outcome.record.tokens)) flag(`the reversal does not return the tokens sale ${saleSeq} took`);
          clearing.push(reversalClearing(outcome.record, e.seq, at));
          reversedHere.set(saleSeq, e.seq);
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
          const a = state.allotments[d.reference];
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
      if (err instanceof Flag) {
        flagged.push({ vendor, batchSeq: input.batchSeq, eventSeq: e.seq, at, type: String(e.type).slice(0, 40), reason: err.message });
        if (e.type === 'sale') salesHere.set(e.seq, { kind: 'flagged', reason: err.message });
      } else if (isMallposError(err)) {
        // An amount out of range (CORE_ERR_OVERFLOW) is the event's problem, not the mall's.
        flagged.push({ vendor, batchSeq: input.batchSeq, eventSeq: e.seq, at, type: String(e.type).slice(0, 40), reason: err.message });
        if (e.type === 'sale') salesHere.set(e.seq, { kind: 'flagged', reason: err.message });
      } else {
        throw err;
      }
    }
  }
  return { clearing, flagged, allotmentsUsed };
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
