import { fail } from '../../core/index.ts';
import type { CashierDayState } from './state.ts';

/**
 * A Z closes its day for good: no event may be dated before the last closure (a clock
 * set back would otherwise slip an event into a closed day).
 */
export function checkOpenPeriod(cd: CashierDayState, at: string): void {
  if (cd.z !== null && at < cd.z.at) {
    fail('VND_ERR_PERIOD_CLOSED', `this event would be dated ${at}, before Z ${cd.z.number} closed the day ${cd.z.period} at ${cd.z.at}: check the store server's clock`, { zNumber: cd.z.number, closedAt: cd.z.at });
  }
}
