import { z } from 'zod';
import {
  CASHIER_DAY_EVENT_TYPES,
  checkBalanced,
  customerAccount,
  LOT_EVENT_TYPES,
  checkSaleShape,
  entityId,
  FLOAT_ACCOUNT,
  INSTRUMENTS_ACCOUNT,
  isAcceptedAt,
  isExpired,
  isMallposError,
  mul,
  quoteMatches,
  REDEEMED_ACCOUNT,
  salePostingsSchema,
  tokenCode,
  WALLET_ACCOUNT,
  type ExchangeQuote,
  type JournalEvent,
  type TokenType,
} from '../core/index.ts';
import { bidPostings, escrowAccount, LOT_ID_PATTERN, releasePostings } from '../core/auctions.ts';
import { exchangeClearing, redemptionClearing, reversalClearing } from './clearing.ts';
import {
  customerRegisteredData,
  EconomyCollector,
  exchangeData,
  issuanceData,
  netPostings,
  postsExactly,
  saleEconomyData,
  splitSale,
  useRecords,
  walletMoveData,
} from './economy-judge.ts';
import type { BatchEconomy, BatchIngestedData, ClearingRecord, FlaggedRecord, LotRecord, WalletEffect } from './events.ts';
import { foldInstrumentPostings, InstrumentCollector, type SaleInstruments } from './instruments-judge.ts';
import type { InstrumentBatchEffects } from './instruments-state.ts';
import { dict, own } from './store/dict.ts';
import { feesAt, type MallState } from './store/state.ts';

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
 *  - issuance: token type known, not expired, accepted at this vendor; its postings put
 *    its units from the float on the customer; a payment adds up (cash tendered less
 *    change is the price, the price is face value x units);
 *  - sale with loyalty earning (`earned`: float -> customer) or wallet payment (`wallet`:
 *    `mall-wallet` -> `redeemed`, each under this vendor's authorisation for exactly those
 *    units, captured by the batch);
 *  - exchange: the quote is exactly what core's rule gives for the mall's token types and
 *    the fee schedule in force at the event's time (or at the time of the snapshot the
 *    store priced it with); the postings are the contract's; tokens given up from a card
 *    of another issuer are within what the vendor could hold; from the wallet, under an
 *    authorisation; cleared as compensation, service charge, toll and royalty;
 *  - wallet.moved: to-wallet credits the card's wallet when the batch is ingested (the
 *    card registered at this vendor as that customer, tokens within what the vendor could
 *    hold); from-wallet needs this vendor's authorisation for that card, token and units;
 *  - customer.registered: the card and customer id are well-formed; the directory records
 *    name and contact only with the customer's consent;
 *  - auctions (core/auctions.ts): a lot is listed once, in a token accepted here; a bid
 *    moves exactly its units from the bidder into the lot's escrow and gives back exactly
 *    the high bid the mall knows for it (so the escrow holds the high bid and nothing
 *    else), and beats it; a lot closes once: by one sale from its escrow, of exactly the
 *    high bid to the high bidder (then cleared as any sale), or unsold, giving the high
 *    bid back; it is cancelled only before its first bid.
 * Tokens of another issuer leave a vendor's cards (sales, exchanges, moves to the wallet)
 * only up to what came in: the mall's allotments and moves from the wallet.
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
  economy?: BatchEconomy;
  instruments?: InstrumentBatchEffects;
  clearing: ClearingRecord[];
  flagged: FlaggedRecord[];
  allotmentsUsed: { id: string; eventSeq: number }[];
  /** The latest event time accepted from the vendor after this batch. */
  lastEventAt: string | null;
  /** The lots this batch changed, as they stand after it. */
  lots?: Record<string, LotRecord>;
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
    ...(judgement.economy === undefined ? {} : { economy: judgement.economy }),
    ...(judgement.instruments === undefined ? {} : { instruments: judgement.instruments }),
    ...(judgement.lots === undefined ? {} : { lots: judgement.lots }),
  };
}

const posInt = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER);
const reversalData = z.object({ saleSeq: posInt });
const allotmentData = z.object({ token: tokenCode, units: posInt, issuer: entityId, reference: z.string().max(200) });
const ALLOTMENT_ID = /^alt-[0-9]{6,12}$/;
const lotIdSchema = z.string().regex(LOT_ID_PATTERN);
const heldBid = z.strictObject({ customer: entityId, units: posInt });
const lotOpenedData = z.object({ lotId: lotIdSchema, token: tokenCode });
const lotBidData = z.object({ lotId: lotIdSchema, customer: entityId, units: posInt, previous: heldBid.nullable() });
const lotCancelledData = z.object({ lotId: lotIdSchema });
const lotClosedData = z.object({ lotId: lotIdSchema, outcome: z.literal('unsold'), released: heldBid.nullable() });
const saleLotData = z.strictObject({ lotId: lotIdSchema, bidSeq: posInt });
/** A lot's escrow account: checked as an account of core's shape, like `mall-wallet`. */
const ESCROW_ACCOUNT = /^escrow:lot-[0-9]{6,9}$/;

function sameHeld(a: { customer: string; units: number } | null, b: { customer: string; units: number } | null): boolean {
  return a === null ? b === null : b !== null && a.customer === b.customer && a.units === b.units;
}

function heldText(h: { customer: string; units: number } | null, token: string): string {
  return h === null ? 'nothing' : `${h.units} ${token} of customer ${h.customer}`;
}

function triples(postings: readonly { account: string; token: string; units: number }[]): [string, string, number][] {
  return postings.map((p) => [p.account, p.token, p.units]);
}

/**
 * The cashier's day (shifts, cash moves, no-sales, reprints, Z and month/year closures)
 * is accepted as recorded: it moves no tokens, so any posting on it is flagged below.
 */
const KNOWN_TYPES = new Set<string>(['sale', 'reversal', 'allotment', 'issuance', 'exchange', 'wallet.moved', 'instrument.sold', 'instrument.voided', 'customer.registered', 'product.upserted', 'token-type.upserted', ...CASHIER_DAY_EVENT_TYPES, ...LOT_EVENT_TYPES]);

/** The accounts each event type may move (core/ledger.ts); anything else is not what the vendor's rules write. */
const customer = (a: string) => a.startsWith('customer:');
const ALLOWED_ACCOUNTS = new Map<string, (account: string) => boolean>([
  ['sale', (a) => a === REDEEMED_ACCOUNT || customer(a)],
  ['reversal', (a) => a === REDEEMED_ACCOUNT || customer(a) || a === FLOAT_ACCOUNT || a === WALLET_ACCOUNT || a === INSTRUMENTS_ACCOUNT],
  ['allotment', (a) => a === FLOAT_ACCOUNT || a.startsWith('issuer:')],
  ['issuance', (a) => a === FLOAT_ACCOUNT || customer(a)],
  ['exchange', (a) => a === REDEEMED_ACCOUNT || customer(a) || a === FLOAT_ACCOUNT || a === WALLET_ACCOUNT],
  ['wallet.moved', (a) => customer(a) || a === WALLET_ACCOUNT],
  ['instrument.sold', (a) => a === FLOAT_ACCOUNT || a === INSTRUMENTS_ACCOUNT],
  ['instrument.voided', (a) => a === FLOAT_ACCOUNT || a === INSTRUMENTS_ACCOUNT],
  // Which escrow: the one of the event's own lot, checked with its postings below.
  ['lot.bid', (a) => customer(a) || ESCROW_ACCOUNT.test(a)],
  ['lot.closed', (a) => customer(a) || ESCROW_ACCOUNT.test(a)],
]);
/**
 * A sale moves the float only for the loyalty tokens it says it earned, `mall-wallet` only
 * for wallet tokens it names, `instruments` only when instruments paid it, and an escrow
 * only that of the lot it sells.
 */
function saleAccounts(data: unknown): (account: string) => boolean {
  const d = data as { earned?: unknown; wallet?: unknown; instruments?: unknown; lot?: { lotId?: unknown } } | null;
  const earns = typeof d === 'object' && d !== null && d.earned !== undefined;
  const pays = typeof d === 'object' && d !== null && d.wallet !== undefined;
  const bearer = typeof d === 'object' && d !== null && d.instruments !== undefined;
  const lotId = typeof d === 'object' && d !== null && typeof d.lot === 'object' && d.lot !== null && typeof d.lot.lotId === 'string' ? d.lot.lotId : null;
  const escrow = lotId === null ? null : escrowAccount(lotId);
  return (a) => a === REDEEMED_ACCOUNT || customer(a) || (earns && a === FLOAT_ACCOUNT) || (pays && a === WALLET_ACCOUNT) || (bearer && a === INSTRUMENTS_ACCOUNT) || (escrow !== null && a === escrow);
}

/** Stands in for the payer of a wallet-paid sale without a customer, for core's sale check only. */
const WALLET_PAYER = 'wallet-payer';

/**
 * Why an event is flagged, thrown out of the checks. A flag is an expected outcome, met
 * for every event of a batch from a vendor whose tokens the mall does not know, so it
 * captures no stack trace: that would cost more than the check that threw it.
 */
class Flag extends Error {
  constructor(reason: string) {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      super(reason);
    } finally {
      Error.stackTraceLimit = limit;
    }
  }
}

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
  /** Units of each token that left the vendor's cards in this batch (sales, exchanges, moves to the wallet), net of reversals. */
  const outHere = new Map<string, number>();
  /** Units of each token moved from the wallet onto the vendor's cards in this batch. */
  const inHere = new Map<string, number>();
  const economy = new EconomyCollector(state, vendor);
  const instruments = new InstrumentCollector(state, vendor, Date.parse(input.ingestedAt));
  /** Lots this batch changed, as they stand after it. */
  const lotsHere = new Map<string, LotRecord>();
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

  /**
   * Tokens of another issuer leave the vendor's cards only up to what came in: the mall's
   * allotments and moves from the wallet, less what already left. The vendor's own tokens
   * are its own liability.
   */
  const withinCirculation = (token: string, n: number, what: string): void => {
    const tt = tokenType(token);
    if (tt.issuer === vendor) return;
    const t = own(vendorRecord.tokens, token);
    const allotted = t?.allottedUnits ?? 0;
    const walletIn = (t?.walletInUnits ?? 0) + (inHere.get(token) ?? 0);
    // Tokens paid by instruments never were on the vendor's cards; tokens put into certificates it sold left its float.
    const out =
      (t?.redeemedUnits ?? 0) - (t?.walletRedeemedUnits ?? 0) - (t?.instrumentRedeemedUnits ?? 0) + (t?.exchangedUnits ?? 0) + (t?.walletOutUnits ?? 0) + (t?.instrumentSoldUnits ?? 0) + (outHere.get(token) ?? 0);
    if (out + n > allotted + walletIn) {
      flag(`${what} ${n} ${token}, which would bring ${vendor}'s redemptions to ${out + n}, beyond the ${allotted + walletIn} the mall allotted to it${walletIn > 0 ? ' and customers moved in from the wallet' : ''}`);
    }
  };
  const bump = (m: Map<string, number>, token: string, n: number) => m.set(token, (m.get(token) ?? 0) + n);
  const lotOf = (id: string): LotRecord | undefined => lotsHere.get(id) ?? (vendorRecord.lots === undefined ? undefined : own(vendorRecord.lots, id));
  /** The open lot an event names; flagged when it was never listed or is closed already. */
  const openLot = (id: string): LotRecord => {
    const lot = lotOf(id);
    if (lot === undefined) flag(`lot ${id} was never listed by ${vendor}`);
    if (lot.status !== 'open') flag(`lot ${id} was already ${lot.status === 'cancelled' ? 'cancelled' : 'closed'} by event ${String(lot.closedBy)}`);
    return lot;
  };
  /** Checks the captures of an event's wallet uses; an alarm is raised even though the event is then flagged. */
  const captures = (uses: readonly { authorisation: string; token: string; units: number }[], card: string | null, seq: number): WalletEffect[] => {
    const effects: WalletEffect[] = [];
    for (const u of uses) {
      const r = economy.checkCapture(u, card, seq, effects);
      if (!r.ok) {
        if (r.alarm && r.card !== null) economy.alarm(seq, r.card, u.authorisation, r.reason);
        flag(r.reason);
      }
      effects.push(r.effect);
    }
    return effects;
  };

  for (const e of input.events) {
    if (e.type === 'sale' || e.type === 'reversal' || e.type === 'exchange' || e.type === 'wallet.moved') economy.notePostings(e.postings);
    const atMs = typeof e.at === 'string' && e.at.length <= 40 ? Date.parse(e.at) : Number.NaN;
    // The mall believes an event happened between arrival less the longest delay and arrival.
    const judgedMs = Number.isNaN(atMs) ? arrivalMs : clamp(atMs, arrivalMs - EVENT_DELAY_MAX_MS, arrivalMs);
    const when = new Date(judgedMs);
    const at = when.toISOString();
    instruments.begin();
    try {
      if (Number.isNaN(atMs)) flag('the event has no valid time');
      if (atMs > arrivalMs + EVENT_CLOCK_SKEW_MS) flag(`the event is dated ${e.at.slice(0, 40)}, after it reached the mall at ${input.ingestedAt}`);
      if (lastAtMs !== null && atMs < lastAtMs - EVENT_CLOCK_SKEW_MS) flag(`the event is dated ${e.at.slice(0, 40)}, before the vendor's previous event at ${new Date(lastAtMs).toISOString()}`);
      lastAtMs = lastAtMs === null ? atMs : Math.max(lastAtMs, atMs);
      if (!KNOWN_TYPES.has(e.type)) flag(`unknown event type ${String(e.type).slice(0, 40)}`);
      if (e.postings.length > 0) {
        // Core's account pattern predates the wallet: `mall-wallet` is checked as an account of the same shape.
        // So are a lot's escrow accounts.
        const stands = (a: unknown) => a === WALLET_ACCOUNT || (typeof a === 'string' && ESCROW_ACCOUNT.test(a));
        const shape = salePostingsSchema.safeParse(e.postings.some((p) => stands(p?.account)) ? e.postings.map((p) => (stands(p.account) ? { ...p, account: REDEEMED_ACCOUNT } : p)) : e.postings);
        if (!shape.success) flag(`a posting is not valid at ${shape.error.issues[0]?.path.join('.') ?? '?'}: ${shape.error.issues[0]?.message ?? ''}`);
        const allowed = e.type === 'sale' ? saleAccounts(e.data) : (ALLOWED_ACCOUNTS.get(e.type) ?? (() => false));
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
          const raw = e.data as unknown as Record<string, unknown>;
          const extra = raw.earned !== undefined || raw.wallet !== undefined || raw.instruments !== undefined;
          let bearer: SaleInstruments | null = null;
          let checked;
          let uses: { authorisation: string; token: string; units: number }[] = [];
          const walletUnits = new Map<string, number>();
          let sold: { id: string; lot: LotRecord } | null = null;
          if (raw.lot !== undefined) {
            // A lot's close: exactly its high bid, from its escrow, to its high bidder; once.
            if (extra) flag('a lot\'s sale neither earns tokens nor is paid from the wallet');
            const parsedLot = saleLotData.safeParse(raw.lot);
            if (!parsedLot.success) flag(`the sale's lot is malformed at ${parsedLot.error.issues[0]?.path.join('.') ?? '?'}`);
            const id = parsedLot.data.lotId;
            const lot = openLot(id);
            const high = lot.high;
            if (high === null) flag(`lot ${id} has no bid to sell`);
            if (raw.customer !== high.customer) flag(`lot ${id} is sold to customer ${String(raw.customer).slice(0, 40)}, its high bid is customer ${high.customer}'s`);
            const escrow = escrowAccount(id);
            if (!postsExactly(netPostings(e.postings), [[escrow, lot.token, 0 - high.units], [REDEEMED_ACCOUNT, lot.token, high.units]])) {
              flag(`the sale of lot ${id} does not move the high bid of ${high.units} ${lot.token} from its escrow to ${REDEEMED_ACCOUNT}`);
            }
            const { lot: _lot, ...core } = raw;
            checked = checkSaleShape(e.postings.map((p) => (p.account === escrow ? { ...p, account: customerAccount(high.customer) } : p)), core);
            sold = { id, lot };
          } else if (!extra) checked = checkSaleShape(e.postings, e.data);
          else {
            const parsed = saleEconomyData.safeParse(raw);
            if (!parsed.success) flag(`the sale's earned or wallet data is malformed at ${parsed.error.issues[0]?.path.join('.') ?? '?'}`);
            uses = parsed.data.wallet ?? [];
            for (const u of uses) bump(walletUnits, u.token, u.units);
            const earned = parsed.data.earned ?? {};
            for (const token of Object.keys(earned)) spendable(token, when, false);
            const customerId = typeof raw.customer === 'string' ? raw.customer : null;
            if (raw.instruments !== undefined) bearer = instruments.judgeSale(raw.instruments, e.seq, when, at, flag);
            const split = splitSale(e.postings, customerId, earned, Object.fromEntries(walletUnits), WALLET_PAYER);
            if ('problem' in split) flag(`the sale does not add up: ${split.problem}`);
            let corePostings = split.postings;
            if (bearer !== null) {
              const folded = foldInstrumentPostings(split.postings, bearer.units, `customer:${customerId ?? WALLET_PAYER}`);
              if ('problem' in folded) flag(`the sale does not add up: ${folded.problem}`);
              corePostings = folded.postings;
            }
            const { earned: _earned, wallet: _wallet, instruments: _instruments, ...core } = raw;
            checked = checkSaleShape(corePostings, customerId === null && (uses.length > 0 || bearer !== null) ? { ...core, customer: WALLET_PAYER } : core);
          }
          if (!checked.ok) flag(`the sale does not add up: ${checked.problem}`);
          const d = checked.data;
          const customerId = (e.data as { customer: string | null }).customer;
          const tokens = Object.keys(d.debits);
          for (const [token, w] of walletUnits) if ((own(d.debits, token) ?? 0) < w) flag(`the sale pays ${w} ${token} from the wallet but debits ${own(d.debits, token) ?? 0}`);
          const bearerUnits = bearer?.units ?? new Map<string, number>();
          for (const [token, n] of bearerUnits) if ((own(d.debits, token) ?? 0) < n + (walletUnits.get(token) ?? 0)) flag(`the sale pays ${n} ${token} by instruments but debits ${own(d.debits, token) ?? 0}`);
          if (tokens.length === 0) {
            // A cash-only sale moves no tokens: nothing for the mall to clear.
            salesHere.set(e.seq, { kind: 'none' });
            if (customerId !== null) economy.sale(customerId, 1, d.totalMinor, at);
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
          // Tokens paid from the wallet never were on the vendor's cards.
          for (const token of tokens) {
            const fromCard = (d.debits[token] as number) - (walletUnits.get(token) ?? 0) - (bearerUnits.get(token) ?? 0);
            if (fromCard > 0) withinCirculation(token, fromCard, 'the sale redeems');
          }
          const effects = captures(uses, null, e.seq);
          const record = redemptionClearing({ vendor, eventSeq: e.seq, at, debits: d.debits, tokenTypes: state.tokenTypes, fees: state.fees, isVendor });
          if (uses.length > 0) {
            record.fromWallet = Object.fromEntries(walletUnits);
            record.walletUses = useRecords(state, uses);
          }
          if (bearer !== null) {
            record.fromInstruments = Object.fromEntries(bearerUnits);
            record.instrumentUses = bearer.records;
            record.transfers.push(...bearer.transfers);
          }
          clearing.push(record);
          salesHere.set(e.seq, { kind: 'cleared', record });
          if (sold !== null) lotsHere.set(sold.id, { ...sold.lot, status: 'closed', closedBy: e.seq, saleSeq: e.seq });
          for (const [token, n] of Object.entries(record.tokens)) bump(outHere, token, n - (walletUnits.get(token) ?? 0) - (bearerUnits.get(token) ?? 0));
          economy.apply(effects);
          if (customerId !== null) economy.sale(customerId, 1, d.totalMinor, at);
          break;
        }
        case 'reversal': {
          const parsed = reversalData.safeParse(e.data);
          if (!parsed.success || parsed.data.saleSeq >= e.seq) flag('the reversal does not name an earlier sale');
          const saleSeq = parsed.data.saleSeq;
          const outcome = salesHere.get(saleSeq) ?? input.earlierSales.get(saleSeq) ?? { kind: 'none' };
          // Loyalty tokens the sale earned go back to the float: that is no return of what the sale took.
          const returned = positiveUnits(e.postings.filter((p) => p.account !== FLOAT_ACCOUNT), null);
          const rev = e.data as { customer?: unknown; saleTotalMinor?: unknown };
          const saleCustomer = typeof rev.customer === 'string' ? rev.customer : null;
          const saleTotal = typeof rev.saleTotalMinor === 'number' && Number.isSafeInteger(rev.saleTotalMinor) && rev.saleTotalMinor >= 0 ? rev.saleTotalMinor : 0;
          for (const p of e.postings) if (p.account === REDEEMED_ACCOUNT && p.units > 0) flag('the reversal takes tokens in instead of returning them');
          if (outcome.kind === 'none') {
            if (returned.size > 0) flag(`the reversal names event ${saleSeq}, which is not a token sale the mall cleared`);
            if (saleCustomer !== null) economy.sale(saleCustomer, -1, 0 - saleTotal, at);
            break;
          }
          if (outcome.kind === 'flagged') flag(`the reversal names sale ${saleSeq}, which was flagged and not cleared (${outcome.reason})`);
          const earlier = reversedHere.get(saleSeq) ?? own(vendorRecord.reversedSales, String(saleSeq));
          if (earlier !== undefined) flag(`sale ${saleSeq} was already reversed by event ${earlier}`);
          if (!sameTally(returned, outcome.record.tokens)) flag(`the reversal does not return the tokens sale ${saleSeq} took`);
          const fromWallet = outcome.record.fromWallet ?? {};
          for (const [token, w] of Object.entries(fromWallet)) {
            const back = e.postings.filter((p) => p.account === WALLET_ACCOUNT && p.token === token).reduce((n, p) => n + p.units, 0);
            if (back !== w) flag(`the reversal gives ${back} ${token} back to ${WALLET_ACCOUNT}, sale ${saleSeq} took ${w} from the wallet`);
          }
          const fromInstruments = outcome.record.fromInstruments ?? {};
          for (const token of new Set([...Object.keys(fromInstruments), ...e.postings.filter((p) => p.account === INSTRUMENTS_ACCOUNT).map((p) => p.token)])) {
            const back = e.postings.filter((p) => p.account === INSTRUMENTS_ACCOUNT && p.token === token).reduce((n, p) => n + p.units, 0);
            const took = own(fromInstruments, token) ?? 0;
            if (back !== took) flag(`the reversal gives ${back} ${token} back to ${INSTRUMENTS_ACCOUNT}, sale ${saleSeq} took ${took} from instruments`);
          }
          const record = reversalClearing(outcome.record, e.seq, at);
          clearing.push(record);
          reversedHere.set(saleSeq, e.seq);
          for (const [token, n] of Object.entries(record.tokens)) bump(outHere, token, n + (own(fromWallet, token) ?? 0) + (own(fromInstruments, token) ?? 0));
          // Instruments the sale used get back what it took off them.
          instruments.giveBack(outcome.record.instrumentUses ?? [], e.seq);
          // A wallet-paid sale refunded: the tokens go back to the wallets they came from.
          economy.apply((outcome.record.walletUses ?? []).map((u) => ({ kind: 'refund' as const, card: u.card, token: u.token, units: u.units, eventSeq: e.seq, authorisation: u.authorisation })));
          if (saleCustomer !== null) economy.sale(saleCustomer, -1, 0 - saleTotal, at);
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
          const d = parsed.data;
          const tt = spendable(d.token, when, true);
          if (!postsExactly(netPostings(e.postings), [[FLOAT_ACCOUNT, d.token, 0 - d.units], [`customer:${d.customer}`, d.token, d.units]])) flag('the issuance\'s postings do not move its units from the float to the customer');
          const cashMinor = d.cashMinor ?? 0;
          if (d.payment !== undefined) {
            if (d.reason !== 'purchase') flag('only a purchase of tokens carries a payment');
            const price = mul(d.units, tt.faceValueMinor);
            if (cashMinor !== price) flag(`the issuance charges ${cashMinor}, ${d.units} ${d.token} at face value are ${price}`);
            if (d.payment.method === 'cash' && d.payment.tenderedMinor - d.payment.changeMinor !== cashMinor) flag('the cash tendered less the change is not the price of the tokens');
          }
          economy.issue({ eventSeq: e.seq, at, token: d.token, units: d.units, cashMinor, reason: d.reason ?? 'purchase' });
          break;
        }
        case 'exchange': {
          const parsed = exchangeData.safeParse(e.data);
          if (!parsed.success) flag(`the exchange data is malformed at ${parsed.error.issues[0]?.path.join('.') ?? '?'}`);
          const d = parsed.data;
          const q = d.quote as ExchangeQuote;
          const from = tokenType(q.from.token);
          if (isExpired(from, when)) flag(`${from.code} tokens expired at ${from.expiresAt ?? ''}, before this exchange`);
          const to = spendable(q.to.token, when, false);
          const bps = feesAt(state, at).exchangeServiceBps;
          const snapshotMs = Date.parse(d.snapshotIssuedAt);
          // The store priced it with its snapshot's schedule: accepted when that was in force then.
          const snapshotBps = !Number.isNaN(snapshotMs) && snapshotMs <= judgedMs ? feesAt(state, new Date(snapshotMs).toISOString()).exchangeServiceBps : bps;
          if (!quoteMatches(q, from, to, bps) && !quoteMatches(q, from, to, snapshotBps)) {
            flag(`the exchange quote is not what the rule gives for ${q.from.units} ${q.from.token} into ${q.to.token} at the mall's face values and the ${bps} bps service charge in force at ${at}`);
          }
          const source = d.source === 'wallet' ? WALLET_ACCOUNT : `customer:${d.customer}`;
          const expected: [string, string, number][] = [
            [source, q.from.token, 0 - q.from.units],
            [REDEEMED_ACCOUNT, q.from.token, q.from.units],
            [FLOAT_ACCOUNT, q.to.token, 0 - q.to.units],
            [`customer:${d.customer}`, q.to.token, q.to.units],
          ];
          if (!postsExactly(netPostings(e.postings), expected)) flag(`the exchange's postings are not the ${d.source} exchange of ${q.from.units} ${q.from.token} for ${q.to.units} ${q.to.token}`);
          let effects: WalletEffect[] = [];
          if (d.source === 'wallet') {
            if (d.authorisation === null) flag('an exchange from the wallet needs the mall\'s authorisation');
            effects = captures([{ authorisation: d.authorisation, token: q.from.token, units: q.from.units }], null, e.seq);
          } else {
            if (d.authorisation !== null) flag('an exchange from a card carries no wallet authorisation');
            withinCirculation(q.from.token, q.from.units, 'the exchange takes');
            bump(outHere, q.from.token, q.from.units);
          }
          clearing.push(exchangeClearing({ vendor, eventSeq: e.seq, at, quote: q, fromWallet: d.source === 'wallet', fees: feesAt(state, at), isVendor }));
          economy.apply(effects);
          break;
        }
        case 'wallet.moved': {
          const parsed = walletMoveData.safeParse(e.data);
          if (!parsed.success) flag(`the wallet move data is malformed at ${parsed.error.issues[0]?.path.join('.') ?? '?'}`);
          const d = parsed.data;
          tokenType(d.token);
          const cust = `customer:${d.customer}`;
          const expected: [string, string, number][] =
            d.direction === 'to-wallet' ? [[cust, d.token, 0 - d.units], [WALLET_ACCOUNT, d.token, d.units]] : [[WALLET_ACCOUNT, d.token, 0 - d.units], [cust, d.token, d.units]];
          if (!postsExactly(netPostings(e.postings), expected)) flag(`the postings are not a move of ${d.units} ${d.token} ${d.direction}`);
          if (!economy.isRegisteredHere(d.card, d.customer)) flag(`card ${d.card} is not registered at ${vendor} as customer ${d.customer}`);
          if (d.direction === 'to-wallet') {
            if (d.authorisation !== null) flag('a move to the wallet carries no authorisation');
            withinCirculation(d.token, d.units, 'the move to the wallet takes');
            bump(outHere, d.token, d.units);
            economy.apply([{ kind: 'credit', card: d.card, token: d.token, units: d.units, eventSeq: e.seq }]);
          } else {
            if (d.authorisation === null) flag('a move from the wallet needs the mall\'s authorisation for that card, token and units');
            const effects = captures([{ authorisation: d.authorisation, token: d.token, units: d.units }], d.card, e.seq);
            bump(inHere, d.token, d.units);
            economy.apply(effects);
          }
          economy.moved(d.direction, d.token, d.units);
          break;
        }
        case 'lot.opened': {
          const parsed = lotOpenedData.safeParse(e.data);
          if (!parsed.success) flag(`the lot data is malformed at ${parsed.error.issues[0]?.path.join('.') ?? '?'}`);
          const d = parsed.data;
          if (lotOf(d.lotId) !== undefined) flag(`lot ${d.lotId} was already listed`);
          spendable(d.token, when, true);
          lotsHere.set(d.lotId, { token: d.token, status: 'open', high: null, closedBy: null, saleSeq: null });
          break;
        }
        case 'lot.bid': {
          const parsed = lotBidData.safeParse(e.data);
          if (!parsed.success) flag(`the bid data is malformed at ${parsed.error.issues[0]?.path.join('.') ?? '?'}`);
          const d = parsed.data;
          const lot = openLot(d.lotId);
          if (!sameHeld(d.previous, lot.high)) flag(`the bid on lot ${d.lotId} gives back ${heldText(d.previous, lot.token)}, the escrow holds ${heldText(lot.high, lot.token)}`);
          if (lot.high !== null && d.units <= lot.high.units) flag(`the bid of ${d.units} ${lot.token} on lot ${d.lotId} does not beat the high bid of ${lot.high.units}`);
          if (!postsExactly(netPostings(e.postings), triples(bidPostings(d.lotId, lot.token, d.customer, d.units, d.previous)))) {
            flag(`the bid's postings are not ${d.units} ${lot.token} from customer ${d.customer} into the escrow of lot ${d.lotId}, giving back ${heldText(d.previous, lot.token)}`);
          }
          lotsHere.set(d.lotId, { ...lot, high: { customer: d.customer, units: d.units } });
          break;
        }
        case 'lot.cancelled': {
          const parsed = lotCancelledData.safeParse(e.data);
          if (!parsed.success) flag(`the lot data is malformed at ${parsed.error.issues[0]?.path.join('.') ?? '?'}`);
          const lot = openLot(parsed.data.lotId);
          if (lot.high !== null) flag(`lot ${parsed.data.lotId} holds a bid: it is closed, not cancelled`);
          lotsHere.set(parsed.data.lotId, { ...lot, status: 'cancelled', closedBy: e.seq });
          break;
        }
        case 'lot.closed': {
          const parsed = lotClosedData.safeParse(e.data);
          if (!parsed.success) flag(`the lot data is malformed at ${parsed.error.issues[0]?.path.join('.') ?? '?'}`);
          const d = parsed.data;
          const lot = openLot(d.lotId);
          if (!sameHeld(d.released, lot.high)) flag(`lot ${d.lotId} closes giving back ${heldText(d.released, lot.token)}, the escrow holds ${heldText(lot.high, lot.token)}`);
          if (!postsExactly(netPostings(e.postings), d.released === null ? [] : triples(releasePostings(d.lotId, lot.token, d.released)))) {
            flag(`the postings of lot ${d.lotId}'s close do not give back ${heldText(d.released, lot.token)}`);
          }
          lotsHere.set(d.lotId, { ...lot, status: 'closed', closedBy: e.seq });
          break;
        }
        case 'instrument.sold': {
          const sold = instruments.judgeSold(e.data, e.postings, e.seq, when, flag);
          // The float's tokens go into the certificate: another issuer's only up to what the mall allotted.
          withinCirculation(sold.token, sold.units, 'the gift certificate sold takes');
          bump(outHere, sold.token, sold.units);
          break;
        }
        case 'instrument.voided': {
          const back = instruments.judgeVoided(e.data, e.postings, e.seq, flag);
          bump(outHere, back.token, 0 - back.units);
          break;
        }
        case 'customer.registered': {
          const parsed = customerRegisteredData.safeParse(e.data);
          if (!parsed.success) flag(`the customer data is malformed at ${parsed.error.issues[0]?.path.join('.') ?? '?'}`);
          const d = parsed.data;
          const consent = d.consent === true;
          economy.register({
            card: d.card,
            customer: d.id,
            consent,
            at,
            eventSeq: e.seq,
            // Name and contact are kept only when the customer agreed to share them.
            ...(consent ? { name: d.name, ...(d.contact === undefined ? {} : { contact: d.contact }) } : {}),
          });
          break;
        }
        default:
          break;
      }
      instruments.commit();
    } catch (err) {
      instruments.discard();
      // An amount out of range (CORE_ERR_OVERFLOW) is the event's problem, not the mall's.
      if (!(err instanceof Flag) && !isMallposError(err)) throw err;
      flagged.push({ vendor, batchSeq: input.batchSeq, eventSeq: e.seq, at, type: String(e.type).slice(0, 40), reason: err.message });
      if (e.type === 'sale') salesHere.set(e.seq, { kind: 'flagged', reason: err.message });
    }
  }
  const econ = economy.result();
  const bearer = instruments.result();
  return {
    clearing,
    flagged,
    allotmentsUsed,
    lastEventAt: lastAtMs === null ? null : new Date(lastAtMs).toISOString(),
    ...(econ === undefined ? {} : { economy: econ }),
    ...(bearer === undefined ? {} : { instruments: bearer }),
    ...(lotsHere.size === 0 ? {} : { lots: dict(Object.fromEntries(lotsHere)) }),
  };
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
