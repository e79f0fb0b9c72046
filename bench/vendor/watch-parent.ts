/**
 * A bench server must not outlive the bench: if the bench is killed outright it cannot
 * clean up, and the orphan would keep its port and files. An orphan is re-parented, so
 * a changed parent pid means the bench is gone.
 */
const PARENT_CHECK_MS = 1_000;

export function exitWithParent(): void {
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid !== parent) process.exit(1);
  }, PARENT_CHECK_MS);
  timer.unref();
}
