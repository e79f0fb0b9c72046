import { readdir, readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Scan, Scanner, ScannerStatus, ScannerWarning } from '../../../hardware/scanner/scanner.ts';

/** Everything a scanner reports, in order, for assertions. */
export class Recorder {
  readonly scans: Scan[] = [];
  readonly statuses: ScannerStatus[] = [];
  readonly warnings: ScannerWarning[] = [];

  constructor(scanner: Scanner) {
    scanner.onScan((s) => this.scans.push(s));
    scanner.onStatus((s) => this.statuses.push(s));
    scanner.onWarning((w) => this.warnings.push(w));
  }

  get codes(): string[] {
    return this.scans.map((s) => s.code);
  }
}

/**
 * Polls until `check` returns something other than undefined or false. Device events
 * arrive asynchronously through the kernel and socat, so a fixed sleep would be either
 * slow or flaky. The deadline is generous: it bounds a hang, not how fast a busy machine is.
 */
export async function until<T>(
  what: string,
  check: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
}

/** Pids of live processes whose command line mentions `needle` (Linux /proc). */
export async function processesMentioning(needle: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(needle)) pids.push(Number(entry));
  }
  return pids;
}
