import { fail } from '../core/index.ts';
import { CARD_PATTERN } from './economy-judge.ts';
import { own } from './store/dict.ts';
import { positionsSum, type DirectoryEntry, type MallState } from './store/state.ts';
import { walletView } from './wallet.ts';

/**
 * Admin reads of the customer directory and the wallet: a card's entry (home store,
 * customer id there, consent, where else it is registered, its wallet), and the check
 * reconcile runs: positions sum to zero, and for each token the wallets hold exactly what
 * the stores' `mall-wallet` postings say moved in and out.
 */
export interface DirectoryView extends DirectoryEntry {
  wallet: { balances: Record<string, number>; held: Record<string, number> };
}

export function directoryEntry(state: Readonly<MallState>, card: string): DirectoryView {
  const entry = CARD_PATTERN.test(card) ? own(state.customers, card) : undefined;
  if (entry === undefined) fail('MALL_ERR_CUSTOMER_UNKNOWN', `no member store has registered card ${card.slice(0, 64)}`);
  const { balances, held } = walletView(state, card, '');
  return { ...structuredClone(entry), wallet: { balances, held } };
}

export interface WalletCheck {
  ok: boolean;
  positionsSumMinor: number;
  /** Per token: units in all wallets (with those mall lots sold from them), and the sum over stores of their `mall-wallet` postings. */
  tokens: { token: string; walletsUnits: number; storePostingsUnits: number }[];
  problems: string[];
}

export function walletCheck(state: Readonly<MallState>): WalletCheck {
  const wallets = new Map<string, number>();
  for (const byToken of Object.values(state.wallets)) for (const [t, n] of Object.entries(byToken)) wallets.set(t, (wallets.get(t) ?? 0) + n);
  // Units a mall lot sold left the wallets at the mall, not through a store: they count as still accounted for.
  for (const [t, n] of Object.entries(state.mallLots.soldUnits)) wallets.set(t, (wallets.get(t) ?? 0) + n);
  const postings = new Map<string, number>();
  for (const v of Object.values(state.vendors)) for (const [t, n] of Object.entries(v.walletPostings)) postings.set(t, (postings.get(t) ?? 0) + n);
  const tokens = [...new Set([...wallets.keys(), ...postings.keys()])].sort().map((token) => ({ token, walletsUnits: wallets.get(token) ?? 0, storePostingsUnits: postings.get(token) ?? 0 }));
  const problems: string[] = [];
  const sum = positionsSum(state);
  if (sum !== 0) problems.push(`CLEARING: the positions sum to ${sum}, not 0`);
  for (const t of tokens) {
    if (t.walletsUnits !== t.storePostingsUnits) {
      problems.push(`WALLET ${t.token}: the wallets hold ${t.walletsUnits}, the stores' mall-wallet postings say ${t.storePostingsUnits}. Remedy: look at the flagged wallet events and wallet alarms of the stores`);
    }
  }
  return { ok: problems.length === 0, positionsSumMinor: sum, tokens, problems };
}
