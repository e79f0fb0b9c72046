import { z } from 'zod';
import { maskCard } from './card-mask.ts';
import { withGs1CheckDigit } from './codes.ts';
import { assert, fail } from './errors.ts';
import { customerAccount, REDEEMED_ACCOUNT, type Posting } from './ledger.ts';
import { mul } from './money.ts';
import { idempotencyKey, pinCode, scanCode, text, tokenCode } from './schemas.ts';
import type { SaleData } from './events.ts';

/**
 * Auctions at a store (claims 24 and 39: tokens used in competitive bidding). The
 * operator lists a lot; customers bid tokens; a bid moves its units from the bidder's
 * account into the lot's escrow account, and the bid it beats goes back to its bidder in
 * the same event, so the escrow only ever holds the high bid. At close the escrow
 * becomes a sale of the lot to the high bidder (cleared by the mall like any sale), or,
 * below the reserve, goes back and the lot closes unsold. Pure rules only: the vendor
 * server journals the events and runs the close timer.
 */

export const LOT_ID_PATTERN = /^lot-[0-9]{6,9}$/;
export const lotId = z.string().regex(LOT_ID_PATTERN, 'a lot id is lot- and 6 to 9 digits');
/** How far ahead a lot may close, and how long it may run at most. */
export const LOT_DURATION_MS_MAX = 90 * 24 * 3_600_000;
/** Anti-sniping: a bid this close to the close (seconds) moves the close to that far after the bid (seconds). */
export const SNIPE_WINDOW_S_DEFAULT = 30;
export const SNIPE_EXTEND_S_DEFAULT = 30;
export const SNIPE_S_MAX = 3_600;
/** Lots open at one time in a store: each is in memory and in every board update. */
export const OPEN_LOTS_MAX = 200;

export function escrowAccount(id: string): string {
  return `escrow:${id}`;
}

export function isEscrowAccount(account: string): boolean {
  return account.startsWith('escrow:');
}

export function makeLotId(serial: number): string {
  assert(Number.isSafeInteger(serial) && serial >= 1 && serial < 1e9, 'lot serial in range');
  return `lot-${String(serial).padStart(6, '0')}`;
}

/**
 * The code of a described item that is no catalog product: a GS1 restricted-circulation
 * number (prefix 29, for use inside one company), so the sale's line is a valid GTIN.
 */
export function describedItemGtin(serial: number): string {
  return withGs1CheckDigit(`29${String(serial).padStart(10, '0')}`);
}

const units = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const positive = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER);
const isoTime = z.iso.datetime({ offset: true });

/** What the operator sends to list a lot (API and CLI). */
export const lotCreateRequest = z.strictObject({
  title: text(1, 80),
  /** A catalog product; absent for a described item. */
  code: scanCode.optional(),
  token: tokenCode,
  reserveUnits: units,
  incrementUnits: positive,
  /** Absent: open now. */
  opensAt: isoTime.optional(),
  closesAt: isoTime,
  buyNowUnits: positive.optional(),
  snipeWindowSeconds: z.number().int().min(0).max(SNIPE_S_MAX).optional(),
  extendSeconds: z.number().int().min(0).max(SNIPE_S_MAX).optional(),
});
export type LotCreateRequest = z.output<typeof lotCreateRequest>;

export const lotCancelRequest = z.strictObject({ reason: text(1, 200) });

/** A bid at a till: the cashier scanned the card; the PIN when the store asks for one. */
export const lotBidRequest = z.strictObject({
  key: idempotencyKey,
  lotId,
  card: scanCode,
  units: positive,
  customerPin: pinCode.optional(),
});
export type LotBidRequest = z.output<typeof lotBidRequest>;

/** A bid at the board: card and PIN are both required, since nobody at a till vouches for the customer. */
export const boardBidRequest = z.strictObject({
  key: idempotencyKey,
  lotId,
  card: scanCode,
  pin: pinCode,
  units: positive,
});
export type BoardBidRequest = z.output<typeof boardBidRequest>;

/** A lot as journalled when it is listed (`lot.opened`). */
export interface LotSpec {
  lotId: string;
  title: string;
  gtin: string;
  /** Whether `gtin` is a catalog product (false: a described item's restricted-circulation code). */
  product: boolean;
  token: string;
  reserveUnits: number;
  incrementUnits: number;
  opensAt: string;
  closesAt: string;
  buyNowUnits: number | null;
  snipeWindowSeconds: number;
  extendSeconds: number;
}

export interface LotBidData {
  lotId: string;
  customer: string;
  units: number;
  /** The bid this one beat, released in the same event (null for the first bid). */
  previous: { customer: string; units: number } | null;
  /** The close after this bid (moved on by anti-sniping). */
  closesAt: string;
  /** The bid reached the buy-now price: the lot closes at once. */
  buyNow: boolean;
  balancesAfter: Record<string, number>;
}

export interface LotCancelledData {
  lotId: string;
  reason: string;
}

/** A lot closed without a sale: no bid reached the reserve; the high bid, if any, goes back. */
export interface LotClosedData {
  lotId: string;
  outcome: 'unsold';
  released: { customer: string; units: number } | null;
}

/** Set on the sale a lot's close makes: the lot and the seq of the winning bid. */
export interface SaleLot {
  lotId: string;
  bidSeq: number;
}

/** What the vendor server keeps of a lot. */
export interface LotState {
  spec: LotSpec;
  status: 'open' | 'closed' | 'cancelled';
  /** The close as moved on by late bids. */
  closesAt: string;
  high: { customer: string; units: number; seq: number; terminal: string | null } | null;
  bids: number;
  closedSeq: number | null;
  /** The sale of a sold lot. */
  saleId: string | null;
}

/** A lot as tills and the board see it; the bidder is shown by a masked card only. */
export interface LotView {
  lotId: string;
  title: string;
  gtin: string;
  token: string;
  incrementUnits: number;
  buyNowUnits: number | null;
  opensAt: string;
  closesAt: string;
  status: 'scheduled' | 'open' | 'closed' | 'cancelled';
  high: { units: number; card: string } | null;
  bids: number;
  /** The least a new bid may be (null when the lot takes no bids). */
  minBidUnits: number | null;
  reserveMet: boolean;
  /** For a closed lot: sold (with its sale id and winning card) or not. */
  result: { sold: boolean; saleId: string | null; units: number | null; card: string | null } | null;
}

export interface BidAck {
  lotId: string;
  seq: number;
  at: string;
  units: number;
  closesAt: string;
  buyNow: boolean;
  balancesAfter: Record<string, number>;
}

/** The least the next bid may be: the increment for the first, then the high bid plus the increment, never above buy-now. */
export function minimumBid(lot: LotState): number {
  const min = lot.high === null ? lot.spec.incrementUnits : lot.high.units + lot.spec.incrementUnits;
  return lot.spec.buyNowUnits === null ? min : Math.min(min, lot.spec.buyNowUnits);
}

export function lotPhase(lot: LotState, nowMs: number): LotView['status'] {
  if (lot.status !== 'open') return lot.status;
  return nowMs < Date.parse(lot.spec.opensAt) ? 'scheduled' : 'open';
}

/** Whether an open lot is due to close: its time passed, or a bid reached the buy-now price. */
export function lotDue(lot: LotState, nowMs: number): boolean {
  if (lot.status !== 'open') return false;
  if (lot.spec.buyNowUnits !== null && lot.high !== null && lot.high.units >= lot.spec.buyNowUnits) return true;
  return nowMs >= Date.parse(lot.closesAt);
}

/**
 * Checks a bid against the lot and returns the units it holds (a bid above the buy-now
 * price buys at that price) and the close after it. Refusals are typed errors.
 */
export function checkBid(lot: LotState | undefined, bidUnits: number, nowMs: number): { units: number; closesAt: string; buyNow: boolean } {
  if (lot === undefined) return fail('VND_ERR_LOT_UNKNOWN');
  if (lot.status === 'cancelled') fail('VND_ERR_LOT_CLOSED', `lot ${lot.spec.lotId} was cancelled`);
  if (lot.status === 'closed' || lotDue(lot, nowMs)) fail('VND_ERR_LOT_CLOSED', `lot ${lot.spec.lotId} has closed`);
  if (nowMs < Date.parse(lot.spec.opensAt)) fail('VND_ERR_LOT_CLOSED', `lot ${lot.spec.lotId} opens at ${lot.spec.opensAt}`, { opensAt: lot.spec.opensAt });
  const min = minimumBid(lot);
  if (bidUnits < min) {
    fail('VND_ERR_BID_TOO_LOW', `the least bid on ${lot.spec.lotId} is ${min} ${lot.spec.token}`, { minBidUnits: min, token: lot.spec.token });
  }
  const buyNow = lot.spec.buyNowUnits !== null && bidUnits >= lot.spec.buyNowUnits;
  const units = buyNow ? (lot.spec.buyNowUnits as number) : bidUnits;
  const closeMs = Date.parse(lot.closesAt);
  const windowMs = lot.spec.snipeWindowSeconds * 1000;
  const extended = closeMs - nowMs <= windowMs ? Math.max(closeMs, nowMs + lot.spec.extendSeconds * 1000) : closeMs;
  return { units, closesAt: new Date(extended).toISOString(), buyNow };
}

/**
 * The postings of a bid: the bidder's units into escrow, and the bid it beats back to
 * its bidder. A bidder raising their own bid pays only the difference (the postings net).
 */
export function bidPostings(lot: string, token: string, customer: string, bidUnits: number, previous: { customer: string; units: number } | null): Posting[] {
  const escrow = escrowAccount(lot);
  const postings: Posting[] = [
    { account: customerAccount(customer), token, units: -bidUnits },
    { account: escrow, token, units: bidUnits },
  ];
  if (previous !== null) postings.push({ account: escrow, token, units: -previous.units }, { account: customerAccount(previous.customer), token, units: previous.units });
  return postings;
}

/** The postings that give a held bid back to its bidder. */
export function releasePostings(lot: string, token: string, held: { customer: string; units: number }): Posting[] {
  return [
    { account: escrowAccount(lot), token, units: -held.units },
    { account: customerAccount(held.customer), token, units: held.units },
  ];
}

/**
 * The sale a sold lot becomes: one line (the lot at its winning bid), paid entirely by
 * the escrowed tokens, which move from the escrow to `redeemed` as any redemption's do.
 * The line's price is the tokens' face value, so the mall's royalty and reimbursement
 * are those of an ordinary sale of that value.
 */
export function lotSale(input: {
  lot: LotState;
  saleId: string;
  currency: string;
  faceValueMinor: number;
  balancesAfter: Record<string, number>;
}): { postings: Posting[]; data: SaleData } {
  const { lot } = input;
  assert(lot.high !== null, `lot ${lot.spec.lotId} has a high bid`);
  const { token } = lot.spec;
  const n = lot.high.units;
  const totalMinor = mul(input.faceValueMinor, n);
  const data: SaleData = {
    saleId: input.saleId,
    customer: lot.high.customer,
    currency: input.currency,
    lines: [{ lineNo: 1, gtin: lot.spec.gtin, name: lot.spec.title, qty: 1, unitPriceMinor: totalMinor, totalMinor, unitTokenPrices: { [token]: n } }],
    allocations: [{ lineNo: 1, token, units: n, coversMinor: totalMinor }],
    debits: { [token]: n },
    totalMinor,
    cash: { dueMinor: 0, tenderedMinor: 0, changeMinor: 0 },
    balancesAfter: input.balancesAfter,
    lot: { lotId: lot.spec.lotId, bidSeq: lot.high.seq },
  };
  return {
    postings: [
      { account: escrowAccount(lot.spec.lotId), token, units: -n },
      { account: REDEEMED_ACCOUNT, token, units: n },
    ],
    data,
  };
}

/** The view of a lot for tills and the board; `cardOf` names a customer's card (masked here). */
export function lotView(lot: LotState, nowMs: number, cardOf: (customer: string) => string | null): LotView {
  const status = lotPhase(lot, nowMs);
  const masked = (customer: string) => {
    const card = cardOf(customer);
    return card === null ? '' : maskCard(card);
  };
  const reserveMet = lot.high !== null && lot.high.units >= lot.spec.reserveUnits;
  return {
    lotId: lot.spec.lotId,
    title: lot.spec.title,
    gtin: lot.spec.gtin,
    token: lot.spec.token,
    incrementUnits: lot.spec.incrementUnits,
    buyNowUnits: lot.spec.buyNowUnits,
    opensAt: lot.spec.opensAt,
    closesAt: lot.closesAt,
    status,
    high: lot.high === null ? null : { units: lot.high.units, card: masked(lot.high.customer) },
    bids: lot.bids,
    minBidUnits: status === 'open' || status === 'scheduled' ? minimumBid(lot) : null,
    reserveMet,
    result:
      lot.status === 'closed'
        ? { sold: lot.saleId !== null, saleId: lot.saleId, units: lot.saleId === null ? null : (lot.high?.units ?? null), card: lot.saleId === null || lot.high === null ? null : masked(lot.high.customer) }
        : null,
  };
}

/**
 * Mall-wide lots: the mall lists them in mall tokens, every member store forwards bids,
 * and the escrow is a hold on the bidder's mall wallet. Their ids differ from a store's
 * lots so that a till never confuses the two.
 */
export const MALL_LOT_ID_PATTERN = /^mlot-[0-9]{6,9}$/;
export const mallLotId = z.string().regex(MALL_LOT_ID_PATTERN, 'a mall lot id is mlot- and 6 to 9 digits');

export function makeMallLotId(serial: number): string {
  assert(Number.isSafeInteger(serial) && serial >= 1 && serial < 1e9, 'mall lot serial in range');
  return `mlot-${String(serial).padStart(6, '0')}`;
}

/** A mall lot as stores (and their tills) see it: bidders by masked card only. */
export interface MallLotView {
  lotId: string;
  mall: true;
  title: string;
  token: string;
  incrementUnits: number;
  opensAt: string;
  closesAt: string;
  status: 'scheduled' | 'open' | 'closed' | 'cancelled';
  high: { units: number; card: string; vendor: string } | null;
  bids: number;
  minBidUnits: number | null;
  reserveMet: boolean;
  result: { sold: boolean; saleId: string | null; units: number | null; card: string | null; vendor: string | null; closedAt: string | null } | null;
}

/**
 * What the winner's store prints when the customer picks the lot up: the mall's record of
 * the sale, read back from the mall (only by the store the winning bid came through).
 */
export interface MallLotReceipt {
  saleId: string;
  lotId: string;
  title: string;
  token: string;
  units: number;
  card: string;
  vendor: string;
  closedAt: string;
  closedSeq: number;
}

/** The `typ` of the mall's signature over a sold mall lot's receipt (flattened JWS, EdDSA, the mall key). */
export const MALL_LOT_RECEIPT_TYP = 'mallpos-mall-lot-receipt+jws';

export interface MallLotBidAnswer {
  lotId: string;
  card: string;
  units: number;
  at: string;
  closesAt: string;
  /** The least the next bid may be. */
  nextMinBidUnits: number;
  wallet: { card: string; balances: Record<string, number>; held: Record<string, number>; asOf: string };
}

