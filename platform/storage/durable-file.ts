import { open, readFile, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Adapter } from 'lowdb';
import { StateFileError } from './errors.ts';

/**
 * Makes the directory entries of `dir` durable. A created or renamed file only survives
 * a power cut once its directory has been synced too.
 */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Data files are readable by their owner only, from the moment they exist. */
export const FILE_MODE = 0o600;
/** Data directories are private to their owner. */
export const DIR_MODE = 0o700;

let tempCounter = 0;

/**
 * Replaces `path` with `data` so that after a crash at any instant the file holds either
 * the old or the new content, never a mix: the data goes to a temp file in the same
 * directory (rename is only atomic within one file system), is synced, is renamed over
 * the target, and the directory is synced so the rename itself survives. The file is
 * created with `mode` (owner-only by default), never widened and narrowed later.
 */
export async function writeFileDurable(path: string, data: string | Buffer, mode = FILE_MODE): Promise<void> {
  const dir = dirname(path);
  tempCounter += 1;
  const temp = join(dir, `.${basename(path)}.tmp-${process.pid}-${tempCounter}`);
  let renamed = false;
  try {
    // The mode is set at creation, so the data is never readable by others, not even briefly.
    const handle = await open(temp, 'wx', mode);
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, path);
    renamed = true;
    await fsyncDir(dir);
  } finally {
    if (!renamed) {
      // The temp file is garbage once the write failed; the original error is what matters.
      await unlink(temp).catch(() => undefined);
    }
  }
}

interface PendingWrite {
  text: string;
  done: Promise<void>;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * A lowdb adapter that stores JSON durably (see `writeFileDurable`).
 *
 * Writes are serialised: two overlapping renames could otherwise land the older content
 * last. While one write is in flight, later writes coalesce into a single next write of
 * the newest data, because only the last state matters for a checkpoint.
 */
export class DurableJSONFile<T> implements Adapter<T> {
  readonly path: string;
  private inFlight: Promise<void> | null = null;
  private next: PendingWrite | null = null;

  constructor(path: string) {
    this.path = path;
  }

  /** Returns null when the file does not exist; throws StateFileError when it cannot be used. */
  async read(): Promise<T | null> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw new StateFileError(this.path, `read failed (${(err as Error).message})`, { cause: err });
    }
    try {
      return JSON.parse(text) as T;
    } catch (err) {
      throw new StateFileError(this.path, `not valid JSON (${(err as Error).message})`, { cause: err });
    }
  }

  /** Resolves once `data`, or a newer state written after it, is durable on disk. */
  write(data: T): Promise<void> {
    // Serialising now captures the state as it is at the call, not when the write runs.
    const text = JSON.stringify(data);
    if (this.inFlight === null) {
      this.inFlight = this.run(text);
      return this.inFlight;
    }
    if (this.next !== null) {
      this.next.text = text;
      return this.next.done;
    }
    let resolve!: () => void;
    let reject!: (err: unknown) => void;
    const done = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    this.next = { text, done, resolve, reject };
    return done;
  }

  private async run(text: string): Promise<void> {
    try {
      await writeFileDurable(this.path, text);
    } finally {
      const next = this.next;
      this.next = null;
      if (next === null) {
        this.inFlight = null;
      } else {
        this.inFlight = next.done;
        this.run(next.text).then(next.resolve, next.reject);
      }
    }
  }
}
