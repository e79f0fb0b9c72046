/**
 * A test hook in the style of the store's and the till's: the mall process kills itself
 * with SIGKILL at a named point, so that a crash test can show what a restart makes of
 * that moment. Unset in production.
 *
 * - `wallet-authorise-archived`: a wallet hold is signed into the archive's registry
 *   history but not yet committed to the mall's store (it is being made durable);
 * - `wallet-authorise-durable`, `wallet-capture-durable`, `wallet-release-durable`: the
 *   change is durable, its answer not yet sent;
 * - `mall-lot-close-archived`: a mall lot's close is signed into the archive, not yet
 *   committed; `mall-lot-close-durable`: the close is durable (the timer's sweep not done).
 */
export const MALL_STOP_AT_ENV = 'MALLPOS_MALL_STOP_AT';
export type MallStopPoint = 'wallet-authorise-archived' | 'wallet-authorise-durable' | 'wallet-capture-durable' | 'wallet-release-durable' | 'mall-lot-close-archived' | 'mall-lot-close-durable';

export function mallStopHere(point: MallStopPoint): void {
  if (process.env[MALL_STOP_AT_ENV] === point) process.kill(process.pid, 'SIGKILL');
}
