import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stopSharedPostgres } from './postgres.ts';
import { RUN_DIR_ENV } from './run-shared.ts';

/**
 * Loaded by mocha before any test (`.mocharc.json`). The global setup runs once, in
 * mocha's main process, before the parallel workers are started, so they inherit the
 * run directory through the environment: what the whole run shares (the PostgreSQL
 * cluster, the browser) is announced there; the cluster is stopped here when the run ends.
 */
let runDir: string | null = null;

export function mochaGlobalSetup(): void {
  runDir = mkdtempSync(join(tmpdir(), 'mallpos-run-'));
  process.env[RUN_DIR_ENV] = runDir;
  const dir = runDir;
  // A run that ends without the teardown (an interrupt, a crash) still takes its cluster with it.
  process.once('exit', () => {
    stopSharedPostgres(dir, true);
    rmSync(dir, { recursive: true, force: true });
  });
}

export function mochaGlobalTeardown(): void {
  if (runDir === null) return;
  stopSharedPostgres(runDir);
  rmSync(runDir, { recursive: true, force: true });
}
