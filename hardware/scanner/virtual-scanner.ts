import { spawn, type ChildProcess } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import { access, lstat, mkdir, mkdtemp, open, rm, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * A barcode scanner simulated on a pseudo-terminal pair made by socat, for tests, the
 * demo and anyone without a device. The terminal opens `devicePath` exactly as it
 * would open `/dev/ttyACM0`, through the real serialport binding; the simulator
 * writes the bytes a scanner would send into the other end, `feedPath`.
 *
 * `unplug()` stops socat, so `devicePath` disappears and an open port sees the same
 * hang-up as a pulled USB cable; `replug()` brings both paths back.
 *
 * Without socat there is no virtual serial scanner: `create()` refuses with
 * `SocatMissingError`, and callers that only need some way to scan (the demo, a
 * terminal started with `--scanner sim`) check `socatAvailable()` first and fall back
 * to the cashier screen's keyboard-wedge input.
 */

/** Where the demo's virtual scanner lives, so `scan-cli` finds it without options. */
export const VIRTUAL_SCANNER_DIR_DEFAULT = join(tmpdir(), 'mallpos-scanner');
export const DEVICE_LINK = 'device';
export const FEED_LINK = 'feed';

export type LineEnding = 'CR' | 'LF' | 'CRLF';

export const LINE_ENDINGS: Readonly<Record<LineEnding, string>> = { CR: '\r', LF: '\n', CRLF: '\r\n' };

export interface VirtualScanOptions {
  /** Line ending the simulated scanner is configured with. Default CR, the factory setting of most. */
  ending?: LineEnding;
  /** AIM symbology identifier to send before the code, e.g. `]E0`. */
  aim?: string;
  /** Split the bytes into this many writes, as a slow UART would deliver them. */
  chunks?: number;
  /** Pause between those writes. */
  chunkDelayMs?: number;
  /** Sprinkle `NOISE_BYTES` into the line: before it, in the middle and before the ending. */
  noise?: boolean;
}

export interface VirtualScannerOptions {
  /** Directory for the two links; a fresh temporary directory when absent. */
  dir?: string;
  /** How long to wait for socat to create the links. */
  startTimeoutMs?: number;
}

/** What `noise: true` inserts: NUL, a byte from a wrong baud rate, and BEL. */
export const NOISE_BYTES = Uint8Array.from([0x00, 0xff, 0x07]);

const CHUNKS_MAX = 1024;
const START_TIMEOUT_MS_DEFAULT = 3000;
const LINK_POLL_MS = 10;

/**
 * socat runs under a small shell guard that holds our end of a pipe on its stdin.
 * When this process ends in any way, SIGKILL included, the pipe closes, the guard's
 * reader sees end of file and stops socat with SIGTERM, which lets socat remove its
 * links. The guard ignores the signals a terminal sends to the whole process group so
 * that it outlives us long enough to do that, and it exits when socat exits, so its
 * exit tells us socat is gone.
 */
const GUARD_SCRIPT = [
  'socat -d -d "$1" "$2" </dev/null &',
  'pid=$!',
  "trap '' INT TERM HUP",
  'echo "$pid"',
  // A background job's stdin is /dev/null unless redirected, hence the copy on fd 3.
  'exec 3<&0',
  '(read -r _ <&3 || :; kill "$pid" 2>/dev/null) >/dev/null 2>&1 &',
  'reader=$!',
  'exec 3<&-',
  'wait "$pid"',
  // When socat ends on its own the reader must not linger, only to signal a pid that
  // may by then belong to another process. It ignores TERM like its parent, hence -9.
  'kill -9 "$reader" 2>/dev/null',
].join('\n');

/** socat processes alive in this process, stopped on exit in case nobody called close(). */
const liveSocatPids = new Set<number>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const pid of liveSocatPids) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // Already gone.
      }
    }
  });
}

/** socat is not on the PATH, so no pseudo-terminal pair can be made. */
export class SocatMissingError extends Error {
  constructor() {
    super('socat is not installed (on Debian: apt-get install socat), so there is no virtual serial scanner');
    this.name = 'SocatMissingError';
  }
}

/** Whether an executable `socat` is on the PATH, as /bin/sh would find it. */
export async function socatAvailable(path = process.env['PATH'] ?? ''): Promise<boolean> {
  for (const dir of path.split(delimiter)) {
    if (dir === '') continue;
    try {
      await access(join(dir, 'socat'), fsConstants.X_OK);
      return true;
    } catch {
      // Not in this directory.
    }
  }
  return false;
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}

export function encodeScan(code: string, options: VirtualScanOptions = {}): Buffer {
  if (/[\r\n]/.test(code)) throw new TypeError('a code cannot contain CR or LF: it would end the line early');
  const ending = LINE_ENDINGS[options.ending ?? 'CR'];
  if (ending === undefined) throw new TypeError(`unknown line ending ${String(options.ending)}`);
  const text = Buffer.from(`${options.aim ?? ''}${code}`, 'latin1');
  if (options.noise !== true) return Buffer.concat([text, Buffer.from(ending, 'latin1')]);
  const middle = Math.floor(text.length / 2);
  return Buffer.concat([
    NOISE_BYTES.subarray(0, 1),
    text.subarray(0, middle),
    NOISE_BYTES.subarray(1, 2),
    text.subarray(middle),
    NOISE_BYTES.subarray(2, 3),
    Buffer.from(ending, 'latin1'),
  ]);
}

/** Splits `bytes` into `count` pieces as equal as possible; never an empty piece. */
export function splitChunks(bytes: Uint8Array, count: number): Uint8Array[] {
  const pieces = Math.max(1, Math.min(count, bytes.length));
  const chunks: Uint8Array[] = [];
  for (let i = 0; i < pieces; i += 1) {
    chunks.push(bytes.subarray(Math.floor((i * bytes.length) / pieces), Math.floor(((i + 1) * bytes.length) / pieces)));
  }
  return chunks;
}

export class VirtualScanner {
  readonly dir: string;
  /** What the terminal opens, as it would a real serial device. */
  readonly devicePath: string;
  /** Where the simulated scanner's bytes are written. */
  readonly feedPath: string;
  readonly #ownsDir: boolean;
  readonly #startTimeoutMs: number;
  #guard: ChildProcess | undefined;
  #socatPid: number | undefined;
  #feed: FileHandle | undefined;
  /** Writes are chained so that two scans never interleave their chunks. */
  #writing: Promise<void> = Promise.resolve();
  #closed = false;

  private constructor(dir: string, ownsDir: boolean, startTimeoutMs: number) {
    this.dir = dir;
    this.devicePath = join(dir, DEVICE_LINK);
    this.feedPath = join(dir, FEED_LINK);
    this.#ownsDir = ownsDir;
    this.#startTimeoutMs = startTimeoutMs;
  }

  /** Starts socat and resolves once both links exist; SocatMissingError when there is no socat. */
  static async create(options: VirtualScannerOptions = {}): Promise<VirtualScanner> {
    if (!(await socatAvailable())) throw new SocatMissingError();
    let dir = options.dir;
    const ownsDir = dir === undefined;
    if (dir === undefined) dir = await mkdtemp(join(tmpdir(), 'mallpos-vscan-'));
    else await mkdir(dir, { recursive: true });
    const scanner = new VirtualScanner(dir, ownsDir, options.startTimeoutMs ?? START_TIMEOUT_MS_DEFAULT);
    try {
      await scanner.#startSocat();
    } catch (error) {
      await scanner.close();
      throw error;
    }
    return scanner;
  }

  /** True while socat runs, that is between create()/replug() and unplug()/close(). */
  get plugged(): boolean {
    return this.#guard !== undefined;
  }

  /** Sends one code the way a scanner configured with these options would. */
  async scan(code: string, options: VirtualScanOptions = {}): Promise<void> {
    const chunks = options.chunks ?? 1;
    if (!Number.isSafeInteger(chunks) || chunks < 1 || chunks > CHUNKS_MAX) {
      throw new RangeError(`chunks must be an integer from 1 to ${CHUNKS_MAX}`);
    }
    const pieces = splitChunks(encodeScan(code, options), chunks);
    await this.#enqueue(async () => {
      for (const [i, piece] of pieces.entries()) {
        if (i > 0 && options.chunkDelayMs !== undefined && options.chunkDelayMs > 0) await sleep(options.chunkDelayMs);
        await this.#write(piece);
      }
    });
  }

  /** Sends bytes as they are, for noise, over-long lines and other misbehaviour. */
  writeRaw(bytes: Uint8Array | string): Promise<void> {
    const buffer = typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes;
    return this.#enqueue(() => this.#write(buffer));
  }

  /** Stops socat: `devicePath` disappears and an open port is hung up. */
  async unplug(): Promise<void> {
    await this.#writing.catch(() => undefined);
    await this.#stopSocat();
  }

  /** Starts socat again with the same link paths. */
  async replug(): Promise<void> {
    if (this.#closed) throw new Error('virtual scanner is closed');
    if (this.#guard !== undefined) return;
    await this.#startSocat();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#writing.catch(() => undefined);
    await this.#stopSocat();
    if (this.#ownsDir) await rm(this.dir, { recursive: true, force: true });
  }

  #enqueue(task: () => Promise<void>): Promise<void> {
    const run = this.#writing.catch(() => undefined).then(task);
    this.#writing = run;
    return run;
  }

  async #write(bytes: Uint8Array): Promise<void> {
    if (this.#guard === undefined) throw new Error('virtual scanner is unplugged');
    // O_NOCTTY so that opening the pty never makes it this process's controlling terminal.
    this.#feed ??= await open(this.feedPath, fsConstants.O_WRONLY | fsConstants.O_NOCTTY);
    let offset = 0;
    while (offset < bytes.length) {
      const { bytesWritten } = await this.#feed.write(bytes, offset);
      offset += bytesWritten;
    }
  }

  async #startSocat(): Promise<void> {
    installExitHook();
    const address = (path: string): string => `pty,raw,echo=0,link=${path}`;
    const guard = spawn('/bin/sh', ['-c', GUARD_SCRIPT, 'virtual-scanner', address(this.devicePath), address(this.feedPath)], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.#guard = guard;
    let stderr = '';
    guard.stderr?.setEncoding('utf8');
    guard.stderr?.on('data', (text: string) => {
      // socat logs a few lines at start and at exit; keep the tail for error messages.
      stderr = (stderr + text).slice(-4000);
    });
    let exited = false;
    guard.once('exit', () => {
      exited = true;
      if (this.#socatPid !== undefined) liveSocatPids.delete(this.#socatPid);
      if (this.#guard === guard) this.#guard = undefined;
    });
    const pid = await new Promise<number>((resolve, reject) => {
      let out = '';
      guard.stdout?.setEncoding('utf8');
      guard.stdout?.on('data', (text: string) => {
        out += text;
        const line = out.split('\n')[0];
        if (out.includes('\n') && line !== undefined) resolve(Number(line));
      });
      guard.once('error', reject);
      guard.once('exit', () => reject(new Error(`socat guard exited early: ${stderr.trim()}`)));
    });
    this.#socatPid = pid;
    liveSocatPids.add(pid);
    const deadline = Date.now() + this.#startTimeoutMs;
    while (!((await exists(this.devicePath)) && (await exists(this.feedPath)))) {
      if (exited) {
        throw new Error(`socat exited before creating its links (is socat installed?): ${stderr.trim()}`);
      }
      if (Date.now() > deadline) {
        await this.#stopSocat();
        throw new Error(`socat did not create ${this.devicePath} and ${this.feedPath} within ${this.#startTimeoutMs} ms`);
      }
      await sleep(LINK_POLL_MS);
    }
  }

  async #stopSocat(): Promise<void> {
    const feed = this.#feed;
    this.#feed = undefined;
    await feed?.close().catch(() => undefined);
    const guard = this.#guard;
    if (guard !== undefined) {
      const exited = new Promise<void>((resolve) => {
        if (guard.exitCode !== null || guard.signalCode !== null) resolve();
        else guard.once('exit', () => resolve());
      });
      // Closing the guard's stdin is its signal to stop socat and wait for it.
      guard.stdin?.end();
      await exited;
      this.#guard = undefined;
    }
    if (this.#socatPid !== undefined) liveSocatPids.delete(this.#socatPid);
    this.#socatPid = undefined;
    // socat removes its links on SIGTERM; a SIGKILLed one from an earlier run would not.
    await rm(this.devicePath, { force: true });
    await rm(this.feedPath, { force: true });
  }
}
