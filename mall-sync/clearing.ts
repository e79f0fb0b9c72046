import { add, bpsOf, mul, sub, sum, type ExchangeQuote, type FeeSchedule, type TokenType } from '../core/index.ts';
import { dict, own } from './store/dict.ts';
import { issuerPartyAccount, MALL_ACCOUNT, vendorAccount, type ClearingRecord, type Transfer } from './events.ts';

/**
 * The mall's clearing rules: pure functions from a redemption (or an allotment) and the
 * registry to double-entry transfers in integer minor units. Every fee is rounded once,
 * where it is computed, by core/money.ts's rule (round half up).
 *
 * A redemption at vendor X of n tokens of type T (face value F, issuer I):
 *  - gross = n x F;
 *  - royalty = bpsOf(gross, rate), the rate being the fee schedule's rate for X, else
 *    for T, else the default (claims 1, 15, 40): X owes the mall;
 *  - when I is not X, I owes X the face value (reimbursement, claims 8, 22, 30), and I
 *    pays the mall the reimbursement toll once per sale and issuer (claim 42). Mall
 *    tokens have I = mall: the mall reimburses X and charges itself no toll.
 * An allotment of mall tokens to X is a purchase at face value: X owes the mall n x F
 * (claims 4, 27, 28). Tokens of other issuers are allotted without a purchase; their
 * issuer pays when they are redeemed.
 */

/** The clearing account of a party: the mall, a vendor, or another issuer. */
export function partyAccount(party: string, isVendor: (id: string) => boolean): string {
  if (party === MALL_ACCOUNT) return MALL_ACCOUNT;
  return isVendor(party) ? vendorAccount(party) : issuerPartyAccount(party);
}

export function royaltyBpsFor(fees: FeeSchedule, vendor: string, token: string): number {
  return own(fees.royaltyBpsByVendor, vendor) ?? own(fees.royaltyBpsByToken, token) ?? fees.royaltyBps;
}

export interface RedemptionInput {
  vendor: string;
  eventSeq: number;
  at: string;
  /** Tokens taken by type (all positive). */
  debits: Readonly<Record<string, number>>;
  tokenTypes: Readonly<Record<string, TokenType>>;
  fees: FeeSchedule;
  isVendor: (id: string) => boolean;
}

/** The clearing of one sale. Throws CORE_ERR_OVERFLOW when an amount is out of range. */
export function redemptionClearing(input: RedemptionInput): ClearingRecord {
  const x = vendorAccount(input.vendor);
  const transfers: Transfer[] = [];
  const tolled: string[] = [];
  const grosses: number[] = [];
  const tokens = dict<number>();
  for (const [token, units] of Object.entries(input.debits)) {
    const tt = own(input.tokenTypes, token);
    if (tt === undefined) throw new Error(`assertion failed: token type ${token} checked before clearing`);
    if (units <= 0) continue;
    tokens[token] = units;
    const gross = mul(units, tt.faceValueMinor);
    grosses.push(gross);
    const bps = royaltyBpsFor(input.fees, input.vendor, token);
    const royalty = bpsOf(gross, bps);
    if (royalty > 0) transfers.push({ kind: 'royalty', from: x, to: MALL_ACCOUNT, amountMinor: royalty, token, units, bps });
    const issuer = partyAccount(tt.issuer, input.isVendor);
    if (issuer !== x) {
      transfers.push({ kind: 'reimbursement', from: issuer, to: x, amountMinor: gross, token, units });
      if (issuer !== MALL_ACCOUNT && !tolled.includes(issuer)) tolled.push(issuer);
    }
  }
  const toll = input.fees.reimbursementTollMinor;
  if (toll > 0) {
    for (const issuer of tolled) transfers.push({ kind: 'toll', from: issuer, to: MALL_ACCOUNT, amountMinor: toll, token: null, units: 0 });
  }
  return { eventSeq: input.eventSeq, at: input.at, type: 'sale', saleSeq: null, tokens, grossMinor: sum(grosses), transfers };
}

/** A reversal undoes exactly what its sale cleared: every figure negated. */
export function reversalClearing(sale: ClearingRecord, eventSeq: number, at: string): ClearingRecord {
  const tokens = dict<number>();
  for (const [token, units] of Object.entries(sale.tokens)) tokens[token] = 0 - units;
  return {
    eventSeq,
    at,
    type: 'reversal',
    saleSeq: sale.eventSeq,
    tokens,
    grossMinor: 0 - sale.grossMinor,
    // `0 - x` rather than `-x`: a toll's 0 units must not become -0.
    transfers: sale.transfers.map((t) => ({ ...t, amountMinor: 0 - t.amountMinor, units: 0 - t.units })),
    ...(sale.fromWallet === undefined ? {} : { fromWallet: negated(sale.fromWallet) }),
    // What instruments paid goes back to them, out of the vendor's instrument tally too.
    ...(sale.fromInstruments === undefined ? {} : { fromInstruments: negated(sale.fromInstruments) }),
  };
}

function negated(r: Readonly<Record<string, number>>): Record<string, number> {
  const out = dict<number>();
  for (const [k, n] of Object.entries(r)) out[k] = 0 - n;
  return out;
}

export interface ExchangeInput {
  vendor: string;
  eventSeq: number;
  at: string;
  quote: ExchangeQuote;
  /** Whether the surrendered tokens came from the mall wallet rather than a card at the vendor. */
  fromWallet: boolean;
  fees: FeeSchedule;
  isVendor: (id: string) => boolean;
}

/**
 * The clearing of an exchange at vendor X of n tokens F (issuer I) for m tokens O
 * (issuer J), quote q (core/economy.ts):
 *  - compensation: I owes J q.valueOutMinor (claim 30): J's tokens now stand where I's
 *    did; when X gave its own tokens, J is X;
 *  - service charge: I owes the mall q.serviceChargeMinor (claim 37), none when I is the mall;
 *  - toll: I owes the mall the reimbursement toll (claim 42), none when I is the mall;
 *  - royalty: X owes the mall its royalty rate for O on q.valueOutMinor (claim 40).
 * The remainder (q.remainderMinor) moves nowhere: it stays with I, whose liability for
 * the surrendered tokens ends. Zero amounts are left out.
 */
export function exchangeClearing(input: ExchangeInput): ClearingRecord {
  const q = input.quote;
  const x = vendorAccount(input.vendor);
  const i = partyAccount(q.from.issuer, input.isVendor);
  const j = partyAccount(q.to.issuer, input.isVendor);
  if (i === j) throw new Error('assertion failed: an exchange is between two issuers');
  const transfers: Transfer[] = [];
  if (q.valueOutMinor > 0) transfers.push({ kind: 'compensation', from: i, to: j, amountMinor: q.valueOutMinor, token: q.to.token, units: q.to.units });
  if (i !== MALL_ACCOUNT) {
    if (q.serviceChargeMinor > 0) transfers.push({ kind: 'service-charge', from: i, to: MALL_ACCOUNT, amountMinor: q.serviceChargeMinor, token: q.from.token, units: q.from.units });
    const toll = input.fees.reimbursementTollMinor;
    if (toll > 0) transfers.push({ kind: 'toll', from: i, to: MALL_ACCOUNT, amountMinor: toll, token: null, units: 0 });
  }
  const bps = royaltyBpsFor(input.fees, input.vendor, q.to.token);
  const royalty = bpsOf(q.valueOutMinor, bps);
  if (royalty > 0) transfers.push({ kind: 'royalty', from: x, to: MALL_ACCOUNT, amountMinor: royalty, token: q.to.token, units: q.to.units, bps });
  const tokens = dict<number>();
  tokens[q.from.token] = q.from.units;
  const record: ClearingRecord = { eventSeq: input.eventSeq, at: input.at, type: 'exchange', saleSeq: null, tokens, grossMinor: q.grossMinor, transfers };
  if (input.fromWallet) record.fromWallet = dict({ [q.from.token]: q.from.units });
  return record;
}

/** What a vendor owes for an allotment: mall tokens are bought at face value. */
export function allotmentPurchase(vendor: string, tt: TokenType, units: number): { purchaseMinor: number; transfers: Transfer[] } {
  if (tt.issuer !== MALL_ACCOUNT) return { purchaseMinor: 0, transfers: [] };
  const purchaseMinor = mul(units, tt.faceValueMinor);
  return {
    purchaseMinor,
    transfers: [{ kind: 'allotment', from: vendorAccount(vendor), to: MALL_ACCOUNT, amountMinor: purchaseMinor, token: tt.code, units }],
  };
}

/** The change of each clearing account's position over a batch's clearing (accounts sorted, zeros left out). */
export function clearedByAccount(clearing: readonly ClearingRecord[]): Record<string, number> {
  const net = new Map<string, number>();
  for (const c of clearing) {
    for (const t of c.transfers) {
      net.set(t.from, sub(net.get(t.from) ?? 0, t.amountMinor));
      net.set(t.to, add(net.get(t.to) ?? 0, t.amountMinor));
    }
  }
  const out = Object.create(null) as Record<string, number>;
  for (const account of [...net.keys()].sort()) {
    const n = net.get(account) as number;
    if (n !== 0) out[account] = n;
  }
  return out;
}
