import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Set by the run's global setup (test/helpers/run-dir.ts): a directory of this test run,
 * the same for mocha's main process and its parallel workers. What the whole run shares
 * (the PostgreSQL cluster, the browser) is announced there.
 */
export const RUN_DIR_ENV = 'MALLPOS_TEST_RUN_DIR';

/** The file in the run directory that announces the shared `name` once it is up. */
export function announcement(runDir: string, name: string): string {
  return join(runDir, `${name}.json`);
}

/**
 * Something one process of the run starts and every process uses. The first process that
 * asks for `name` claims it (an atomic mkdir), runs `start` and writes what it returns
 * (how to reach it) to the run directory; the others wait for that, up to `deadlineMs`.
 * A failed start is announced too, so that nobody waits for it. `started` says whether
 * this process was the one.
 */
export async function sharedInRun<T>(runDir: string, name: string, start: () => Promise<T>, deadlineMs: number): Promise<{ announced: T; started: boolean }> {
  const ready = announcement(runDir, name);
  const failed = join(runDir, `${name}.error`);
  try {
    mkdirSync(join(runDir, `${name}.claim`));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    const deadline = Date.now() + deadlineMs;
    for (;;) {
      if (existsSync(failed)) throw new Error(`the run's shared ${name} did not start: ${readFileSync(failed, 'utf8')}`);
      if (existsSync(ready)) return { announced: JSON.parse(readFileSync(ready, 'utf8')) as T, started: false };
      if (Date.now() > deadline) throw new Error(`timed out after ${deadlineMs} ms waiting for the run's shared ${name} in ${runDir}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  try {
    const announced = await start();
    writeFileSync(`${ready}.tmp`, JSON.stringify(announced));
    renameSync(`${ready}.tmp`, ready);
    return { announced, started: true };
  } catch (err) {
    writeFileSync(failed, String((err as Error).stack ?? err));
    throw err;
  }
}
