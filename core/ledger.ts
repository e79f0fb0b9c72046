import { assert, fail } from './errors.ts';
import { add, checkSignedAmount } from './money.ts';

/**
 * Accounts of a vendor's token ledger:
 *   `customer:<id>`   a customer's balance            (never negative)
 *   `float`           the vendor's unspent allotments  (never negative)
 *   `redeemed`        tokens taken in at checkout, reimbursed by their issuer later
 *   `issuer:<party>`  the source of allotted tokens (negative: what the party issued here)
 *   `instruments`     gift certificates sold here less instruments redeemed here (core/instruments.ts)
 *   `escrow:<lot>`    the high bid held on an auction lot (never negative; core/auctions.ts)
 * A transaction is a set of postings that sums to zero per token type.
 */
export interface Posting {
  account: string;
  token: string;
  units: number;
}

export const FLOAT_ACCOUNT = 'float';
export const REDEEMED_ACCOUNT = 'redeemed';

export function customerAccount(customerId: string): string {
  return `customer:${customerId}`;
}

export function issuerAccount(party: string): string {
  return `issuer:${party}`;
}

export function mustStayNonNegative(account: string): boolean {
  // A lot's escrow holds its high bid: it can give back only what bids put in.
  return account === FLOAT_ACCOUNT || account.startsWith('customer:') || account.startsWith('escrow:');
}

/** Read and write access to balances; the vendor server keeps them in its state. */
export interface BalanceBook {
  get(account: string, token: string): number;
  set(account: string, token: string, units: number): void;
}

/** Postings above which checkBalanced and planBalances find a token or account they met before through a Map rather than a search. */
const SEARCH_POSTINGS_MAX = 16;

/** Checks that postings are integers, non-zero and sum to zero per token type. */
export function checkBalanced(postings: readonly Posting[]): void {
  if (postings.length === 0) fail('CORE_ERR_UNBALANCED', 'a transaction needs postings');
  for (const p of postings) {
    // The field's name is made only for units that fail the check.
    if (!Number.isSafeInteger(p.units)) checkSignedAmount(p.units, `posting ${p.account}/${p.token}`);
    if (p.units === 0) fail('CORE_ERR_UNBALANCED', 'a posting of zero units');
  }
  if (postings.length > SEARCH_POSTINGS_MAX) {
    const totals = new Map<string, number>();
    for (const p of postings) totals.set(p.token, add(totals.get(p.token) ?? 0, p.units));
    for (const [token, total] of totals) unbalanced(token, total);
    return;
  }
  // A few postings (a replay checks a million transactions): each token summed where it is
  // first named, by a search of the rest, rather than through a Map each.
  for (let i = 0; i < postings.length; i++) {
    const token = (postings[i] as Posting).token;
    let named = false;
    for (let j = 0; j < i && !named; j++) named = (postings[j] as Posting).token === token;
    if (named) continue;
    let total = 0;
    for (let j = i; j < postings.length; j++) if ((postings[j] as Posting).token === token) total = add(total, (postings[j] as Posting).units);
    unbalanced(token, total);
  }
}

function unbalanced(token: string, total: number): void {
  if (total !== 0) fail('CORE_ERR_UNBALANCED', `postings in ${token} sum to ${total}, not 0`);
}

/** The balance of one account in one token after a transaction. */
export interface PlannedBalance {
  account: string;
  token: string;
  units: number;
}

/**
 * The balances after the postings, one per account and token they name, in the order
 * they are first named, or a typed error naming the shortfall. Nothing is written:
 * callers apply the result only when the whole transaction is valid.
 */
export function planBalances(book: BalanceBook, postings: readonly Posting[]): PlannedBalance[] {
  checkBalanced(postings);
  // Room for as many balances as postings, cut to those named below: an empty array grown
  // by push() takes room for 17.
  const next: PlannedBalance[] = new Array<PlannedBalance>(postings.length);
  let named = 0;
  // A transaction names a few accounts, and a replay plans a million of them: searching
  // the few costs less than a key string and a Map each. A long list gets the Map.
  const byKey = postings.length > SEARCH_POSTINGS_MAX ? new Map<string, PlannedBalance>() : null;
  for (const p of postings) {
    let planned: PlannedBalance | undefined;
    const key = byKey === null ? '' : `${p.account}\u0000${p.token}`;
    if (byKey === null) {
      for (let i = 0; i < named; i++) {
        const b = next[i] as PlannedBalance;
        if (b.account === p.account && b.token === p.token) {
          planned = b;
          break;
        }
      }
    } else {
      planned = byKey.get(key);
    }
    if (planned !== undefined) {
      planned.units = add(planned.units, p.units);
      continue;
    }
    planned = { account: p.account, token: p.token, units: add(book.get(p.account, p.token), p.units) };
    next[named++] = planned;
    byKey?.set(key, planned);
  }
  // Cut only when postings named a balance twice: setting an array's length, even to what
  // it is, is a call into the runtime, and every event passes here.
  if (named < next.length) next.length = named;
  for (const { account, token, units } of next) {
    if (units >= 0 || !mustStayNonNegative(account)) continue;
    const message = account === FLOAT_ACCOUNT
      ? `the store float has not enough ${token} tokens: ${-units} short`
      : `not enough ${token} tokens: ${-units} short`;
    fail('CORE_ERR_INSUFFICIENT_TOKENS', message, {
      account,
      token,
      shortUnits: -units,
    });
  }
  return next;
}

/**
 * The balances after the postings keyed `account\u0000token`, or a typed error naming
 * the shortfall: `planBalances` as a Map.
 */
export function planPostings(book: BalanceBook, postings: readonly Posting[]): Map<string, number> {
  const next = new Map<string, number>();
  for (const b of planBalances(book, postings)) next.set(`${b.account}\u0000${b.token}`, b.units);
  return next;
}

/** Applies postings atomically: all of them, or (on a typed error) none. */
export function applyPostings(book: BalanceBook, postings: readonly Posting[]): void {
  for (const b of planBalances(book, postings)) book.set(b.account, b.token, b.units);
}

/** The postings that undo a transaction. */
export function reversePostings(postings: readonly Posting[]): Posting[] {
  return postings.map((p) => ({ account: p.account, token: p.token, units: -p.units }));
}

export function allotmentPostings(issuer: string, token: string, units: number): Posting[] {
  assert(Number.isSafeInteger(units) && units > 0, 'allotment units positive');
  return [
    { account: issuerAccount(issuer), token, units: -units },
    { account: FLOAT_ACCOUNT, token, units },
  ];
}

export function issuancePostings(customerId: string, token: string, units: number): Posting[] {
  assert(Number.isSafeInteger(units) && units > 0, 'issuance units positive');
  return [
    { account: FLOAT_ACCOUNT, token, units: -units },
    { account: customerAccount(customerId), token, units },
  ];
}

export function redemptionPostings(customerId: string, debits: Readonly<Record<string, number>>): Posting[] {
  const postings: Posting[] = [];
  for (const token of Object.keys(debits)) {
    const units = debits[token] as number;
    if (units === 0) continue;
    assert(Number.isSafeInteger(units) && units > 0, 'redemption units positive');
    postings.push({ account: customerAccount(customerId), token, units: -units });
    postings.push({ account: REDEEMED_ACCOUNT, token, units });
  }
  return postings;
}

/**
 * A balance book over a nested record, as kept in the vendor's state. Account and token
 * names come from outside, so the records are null-prototype objects and a lookup only
 * ever sees own entries.
 */
export class RecordBook implements BalanceBook {
  constructor(readonly balances: Record<string, Record<string, number>> = Object.create(null) as Record<string, Record<string, number>>) {}
  get(account: string, token: string): number {
    const row = Object.hasOwn(this.balances, account) ? this.balances[account] : undefined;
    return row !== undefined && Object.hasOwn(row, token) ? (row[token] ?? 0) : 0;
  }
  set(account: string, token: string, units: number): void {
    let row = Object.hasOwn(this.balances, account) ? this.balances[account] : undefined;
    if (row === undefined) {
      // A null prototype set on a literal keeps the row in V8's compact layout; made by
      // Object.create(null) it would be a hash table, several times larger, per account.
      row = Object.setPrototypeOf({}, null) as Record<string, number>;
      this.balances[account] = row;
    }
    if (units === 0) delete row[token];
    else row[token] = units;
  }
}
