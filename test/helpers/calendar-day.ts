/**
 * Many tests name the UTC day they run on: the day's statements at the mall, a store's
 * day totals, a reconciliation from today to today. The servers take the day from the
 * real clock, so a file whose events fall before midnight and whose questions come after
 * it would fail. A test file therefore does not start in the last DAY_END_MARGIN_MS of a
 * UTC day: it waits for the next day, which every test file (the longest takes well under
 * a minute here, a few under load) then finishes in. Outside those minutes nothing waits.
 * Loaded through `.mocharc.json`, before the file timings, which leave the wait out.
 */
export const DAY_END_MARGIN_MS = 5 * 60_000;
const DAY_MS = 24 * 60 * 60_000;
/** Past midnight by this much before a file starts: the servers' clocks and the test's agree on the day. */
const PAST_MIDNIGHT_MS = 1_000;

/** How long a test file starting at `now` (ms since the epoch) waits: 0 unless it is in the last `marginMs` of its UTC day. */
export function waitBeforeFile(now: number, marginMs = DAY_END_MARGIN_MS): number {
  const left = DAY_MS - (now % DAY_MS);
  return left <= marginMs ? left + PAST_MIDNIGHT_MS : 0;
}

export const mochaHooks = {
  async beforeAll(this: Mocha.Context): Promise<void> {
    const ms = waitBeforeFile(Date.now());
    if (ms === 0) return;
    this.timeout(ms + 60_000);
    await new Promise((resolve) => setTimeout(resolve, ms));
  },
};
