/**
 * A bench server must not outlive the bench: if the bench is killed outright it cannot
 * clean up, and the orphan would keep its port and files. An orphan is re-parented, so
 * a changed parent pid means the bench is gone.
 *
 * Imported by the ceiling server, and preloaded into the mall child
 * (`node --import tsx --import ./bench/mall/exit-with-parent.ts bin/mall-sync.js serve`):
 * run as the preload, it starts watching on import.
 */
const PARENT_CHECK_MS = 1_000;

let watching = false;

export function exitWithParent(): void {
  if (watching) return;
  watching = true;
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid !== parent) process.exit(1);
  }, PARENT_CHECK_MS);
  timer.unref();
}

if (process.env['MALLPOS_BENCH_WATCH_PARENT'] === '1') exitWithParent();
