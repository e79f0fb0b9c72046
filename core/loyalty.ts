import type { LoyaltyProgram } from './economy.ts';
import { add, mul } from './money.ts';

/**
 * Loyalty earning (claims 5, 19), as a pure rule both the store and anyone checking it
 * can apply to a sale:
 *  - per-amount: `units` for every whole `everyMinor` of the sale paid in cash (the cash
 *    due, not what was tendered: change is not spending);
 *  - per-product: `units` per item (quantity) of a listed GTIN;
 *  - per-category: `units` per item of a product in the category;
 * the rules add up, and the sum is capped at `capPerSale`. GTINs compare as 14 digits,
 * so a UPC-A listed with 12 digits matches its EAN-13 form.
 */
export interface LoyaltySale {
  lines: readonly { gtin: string; qty: number; category?: string | undefined }[];
  cashPaidMinor: number;
}

function gtin14(gtin: string): string {
  return gtin.padStart(14, '0');
}

/**
 * A rule's GTINs as a set of 14-digit forms, made once per rule: a programme may list
 * thousands, and every sale with a card asks. Keyed by the rule's own list, so a new
 * programme (a config reload) gets its own set.
 */
const listedSets = new WeakMap<readonly string[], ReadonlySet<string>>();

function listed(gtins: readonly string[]): ReadonlySet<string> {
  let set = listedSets.get(gtins);
  if (set === undefined) {
    set = new Set(gtins.map(gtin14));
    listedSets.set(gtins, set);
  }
  return set;
}

export function loyaltyUnits(program: LoyaltyProgram, sale: LoyaltySale): number {
  let total = 0;
  for (const rule of program.rules) {
    switch (rule.kind) {
      case 'per-amount':
        // More steps than the cap cannot count (each earns at least one unit): bounded before multiplying.
        total = add(total, mul(Math.min(Math.floor(sale.cashPaidMinor / rule.everyMinor), program.capPerSale), rule.units));
        break;
      case 'per-product': {
        const gtins = listed(rule.gtins);
        for (const line of sale.lines) if (gtins.has(gtin14(line.gtin))) total = add(total, mul(line.qty, rule.units));
        break;
      }
      case 'per-category':
        for (const line of sale.lines) if (line.category === rule.category) total = add(total, mul(line.qty, rule.units));
        break;
    }
    // Past the cap nothing more can count: stop before a large cart overflows anything.
    if (total >= program.capPerSale) return program.capPerSale;
  }
  return total;
}
