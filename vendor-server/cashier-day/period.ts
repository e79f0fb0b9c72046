import { fail } from '../../core/index.ts';
import { terminalScope, type CashierDayState, type ClosureHead } from './state.ts';

/**
 * A Z closes its day for good: no event may be dated before the last closure of the
 * store, or of its till where Z reports are made per till (a clock set back would
 * otherwise slip an event into a closed day).
 */
export function checkOpenPeriod(cd: CashierDayState, at: string, terminalId: string | null): void {
  const store = cd.store.z;
  if (store !== null && at < store.at) refusePeriod(at, store, 'of the store');
  const till = terminalId === null ? null : (terminalScope(cd, terminalId)?.z ?? null);
  if (till !== null && at < till.at) refusePeriod(at, till, `of till ${terminalId ?? ''}`);
}

/** Apart from checkOpenPeriod, which every event passes, so that it makes no closure. */
function refusePeriod(at: string, z: ClosureHead, whose: string): never {
  return fail('VND_ERR_PERIOD_CLOSED', `this event would be dated ${at}, before Z ${z.number} ${whose} closed the day ${z.period} at ${z.at}: check the store server's clock`, { zNumber: z.number, closedAt: z.at });
}
