import { FLOAT_ACCOUNT, type LoyaltyProgram, type PricedLine } from '../../core/index.ts';
import { loyaltyUnits } from '../../core/loyalty.ts';
import type { Logger } from '../../platform/logger.ts';
import type { LedgerState } from '../ledger/state.ts';
import { own } from '../ledger/state.ts';

/**
 * The store's loyalty programme applied to a sale with a customer card (claims 5, 19):
 * the units `core/loyalty.ts` gives for the sale's lines (with the products' categories
 * from the catalog) and the cash it was paid with, posted from the float to the customer
 * inside the sale's own event. When the float holds fewer of the loyalty token than the
 * rule gives, the sale still completes and earns what the float holds (possibly none):
 * the sale's `earned` says what was credited, and the server logs the shortfall so the
 * operator tops up the float. A token type the store does not know earns nothing.
 */
export type LoyaltyEarner = (sale: { lines: readonly PricedLine[]; cashDueMinor: number }) => { token: string; units: number } | null;

export function loyaltyEarner(program: LoyaltyProgram, state: () => LedgerState, logger: Logger): LoyaltyEarner {
  return (sale) => {
    const s = state();
    const lines = sale.lines.map((l) => ({ gtin: l.gtin, qty: l.qty, category: own(s.products, l.gtin)?.category }));
    const units = loyaltyUnits(program, { lines, cashPaidMinor: sale.cashDueMinor });
    if (units === 0) return null;
    if (own(s.tokenTypes, program.token) === undefined) {
      logger.warn({ token: program.token }, 'loyalty token type unknown to this store: the sale earns nothing');
      return null;
    }
    const held = own(own(s.balances, FLOAT_ACCOUNT) ?? {}, program.token) ?? 0;
    if (held < units) logger.warn({ token: program.token, units, held }, 'loyalty float short: the sale earns what the float holds');
    const earned = Math.min(units, held);
    return earned === 0 ? null : { token: program.token, units: earned };
  };
}
