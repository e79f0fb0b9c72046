import { Command, InvalidArgumentError, Option } from 'commander';
import { constants as fsConstants } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { encodeScan, FEED_LINK, VIRTUAL_SCANNER_DIR_DEFAULT, type LineEnding } from './virtual-scanner.ts';

/**
 * `scan <code...>`: types codes into a running virtual scanner, as a cashier would
 * scan them, by writing to its feed end. The demo's virtual scanner lives in
 * `VIRTUAL_SCANNER_DIR_DEFAULT`, so `npm run scan -- 4006381333931` needs no options.
 */

export const FEED_PATH_ENV = 'MALLPOS_SCANNER_FEED';
export const FEED_PATH_DEFAULT = join(VIRTUAL_SCANNER_DIR_DEFAULT, FEED_LINK);
/** Longer than the scanner's 200 ms duplicate window, so `scan A A` is two items. */
export const GAP_MS_DEFAULT = 300;
const CODE_BYTES_MAX = 128;

export interface SendScansOptions {
  device: string;
  ending?: LineEnding;
  aim?: string;
  gapMs?: number;
}

export async function sendScans(codes: readonly string[], options: SendScansOptions): Promise<void> {
  for (const code of codes) {
    if (!/^[\x20-\x7e]+$/.test(code) || code.length > CODE_BYTES_MAX) {
      throw new InvalidArgumentError(`"${code}" is not a code: use 1 to ${CODE_BYTES_MAX} printable ASCII characters`);
    }
  }
  if (options.aim !== undefined && !/^\][A-Za-z][0-9A-Z]$/.test(options.aim)) {
    throw new InvalidArgumentError(`"${options.aim}" is not an AIM identifier such as ]E0`);
  }
  // Refuse anything but a character device: opening a mistyped path to a regular file
  // would write codes into it instead of failing.
  const info = await stat(options.device).catch(() => undefined);
  if (info === undefined) {
    throw new Error(`no virtual scanner at ${options.device}: start the demo or a VirtualScanner first, or pass --device`);
  }
  if (!info.isCharacterDevice()) throw new Error(`${options.device} is not a terminal device`);
  const feed = await open(options.device, fsConstants.O_WRONLY | fsConstants.O_NOCTTY);
  try {
    for (const [i, code] of codes.entries()) {
      if (i > 0) await sleep(options.gapMs ?? GAP_MS_DEFAULT);
      const encodeOptions = options.aim === undefined ? { ending: options.ending } : { ending: options.ending, aim: options.aim };
      await feed.write(encodeScan(code, encodeOptions));
    }
  } finally {
    await feed.close();
  }
}

function parseGapMs(value: string): number {
  const gapMs = Number(value);
  if (!Number.isSafeInteger(gapMs) || gapMs < 0 || gapMs > 60_000) {
    throw new InvalidArgumentError('expected whole milliseconds from 0 to 60000');
  }
  return gapMs;
}

export function scanCommand(): Command {
  return new Command('scan')
    .description('send barcodes to a running virtual scanner, as if scanned')
    .argument('<code...>', 'codes to send, in order')
    .option('-d, --device <path>', `feed end of the virtual scanner (env ${FEED_PATH_ENV})`, process.env[FEED_PATH_ENV] ?? FEED_PATH_DEFAULT)
    .addOption(new Option('-e, --ending <ending>', 'line ending the scanner sends').choices(['CR', 'LF', 'CRLF']).default('CR'))
    .option('--aim <id>', 'AIM symbology identifier to send before each code, e.g. ]E0')
    .option('--gap-ms <ms>', 'pause between codes', parseGapMs, GAP_MS_DEFAULT)
    .action(async (codes: string[], opts: { device: string; ending: LineEnding; aim?: string; gapMs: number }) => {
      await sendScans(codes, opts);
    });
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    await scanCommand().parseAsync(process.argv);
  } catch (error) {
    console.error(`scan: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  }
}
