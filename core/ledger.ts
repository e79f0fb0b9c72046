import { assert, fail } from './errors.ts';
import { add, checkSignedAmount } from './money.ts';

/**
 * Accounts of a vendor's token ledger:
 *   `customer:<id>`   a customer's balance            (never negative)
 *   `float`           the vendor's unspent allotments  (never negative)
 *   `redeemed`        tokens taken in at checkout, reimbursed by their issuer later
 *   `issuer:<party>`  the source of allotted tokens (negative: what the party issued here)
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
  return account === FLOAT_ACCOUNT || account.startsWith('customer:');
}

/** Read and write access to balances; the vendor server keeps them in its state. */
export interface BalanceBook {
  get(account: string, token: string): number;
  set(account: string, token: string, units: number): void;
}

/** Checks that postings are integers, non-zero and sum to zero per token type. */
export function checkBalanced(postings: readonly Posting[]): void {
  if (postings.length === 0) fail('CORE_ERR_UNBALANCED', 'a transaction needs postings');
  const totals = new Map<string, number>();
  for (const p of postings) {
    checkSignedAmount(p.units, `posting ${p.account}/${p.token}`);
    if (p.units === 0) fail('CORE_ERR_UNBALANCED', 'a posting of zero units');
    totals.set(p.token, add(totals.get(p.token) ?? 0, p.units));
  }
  for (const [token, total] of totals) {
    if (total !== 0) fail('CORE_ERR_UNBALANCED', `postings in ${token} sum to ${total}, not 0`);
  }
}

/**
 * The balances after the postings, or a typed error naming the shortfall. Nothing is
 * written: callers apply the result only when the whole transaction is valid.
 */
export function planPostings(book: BalanceBook, postings: readonly Posting[]): Map<string, number> {
  checkBalanced(postings);
  const next = new Map<string, number>();
  for (const p of postings) {
    const k = `${p.account}\u0000${p.token}`;
    next.set(k, add(next.get(k) ?? book.get(p.account, p.token), p.units));
  }
  for (const [k, units] of next) {
    if (units >= 0) continue;
    const [account, token] = k.split('\u0000') as [string, string];
    if (mustStayNonNegative(account)) {
      const message = account === FLOAT_ACCOUNT
        ? `the store float has not enough ${token} tokens: ${-units} short`
        : `not enough ${token} tokens: ${-units} short`;
      fail('CORE_ERR_INSUFFICIENT_TOKENS', message, {
        account,
        token,
        shortUnits: -units,
      });
    }
  }
  return next;
}

/** Applies postings atomically: all of them, or (on a typed error) none. */
export function applyPostings(book: BalanceBook, postings: readonly Posting[]): void {
  const next = planPostings(book, postings);
  for (const [k, units] of next) {
    const [account, token] = k.split('\u0000') as [string, string];
    book.set(account, token, units);
  }
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
