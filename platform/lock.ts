import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { fail, type ErrorCode } from '../core/index.ts';
import { fsyncDir, writeFileDurable } from './storage/index.ts';

/**
 * One process owns a data directory at a time (the journal allows one writer).
 * The owner holds `run/owner.json`, created exclusively, naming its pid, its URL once it
 * listens, and a control token. The file is readable by its owner only: a CLI command on
 * the same machine and account (reconcile, vendor add, allot) that finds a live owner
 * talks to it over its admin API with that token instead of opening the store itself.
 * An owner file whose pid is gone (a crash, SIGKILL) is stale and is taken over.
 */
export interface OwnerInfo {
  pid: number;
  /** The kernel's start time of that pid (Linux /proc), so a reused pid is not taken for the owner. */
  pidStart?: string | null;
  startedAt: string;
  url: string | null;
  controlToken: string;
}

/** Control tokens of the locks this process holds, to tell its own lock from a stale one left by an earlier life of its pid. */
const heldHere = new Set<string>();

/** Field 22 of /proc/<pid>/stat (start time in clock ticks since boot), or null where there is no /proc. */
async function pidStartTime(pid: number): Promise<string | null> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses; fields after it are plain.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19] ?? null;
  } catch {
    return null;
  }
}

/**
 * Whether the process named in an owner file still runs. A pid can be reused after a
 * crash or a reboot (in a container the server is often pid 1 every time), so our own
 * pid owns the file only if this process holds that lock now, and another pid whose
 * start time differs from the recorded one is not the owner.
 */
async function alive(info: OwnerInfo): Promise<boolean> {
  if (info.pid === process.pid) return heldHere.has(info.controlToken);
  try {
    process.kill(info.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  if (typeof info.pidStart !== 'string') return true;
  const now = await pidStartTime(info.pid);
  return now === null || now === info.pidStart;
}

// An owner file that cannot be read yet is someone's lock being written, not a stale one, for this long.
const OWNER_WRITE_GRACE_MS = 5000;

async function youngerThan(path: string, ms: number): Promise<boolean> {
  try {
    return Date.now() - (await stat(path)).mtimeMs < ms;
  } catch {
    return false;
  }
}

function ownerPaths(dataDir: string): { runDir: string; owner: string } {
  const runDir = join(dataDir, 'run');
  return { runDir, owner: join(runDir, 'owner.json') };
}

export async function readOwner(dataDir: string): Promise<OwnerInfo | null> {
  try {
    const info = JSON.parse(await readFile(ownerPaths(dataDir).owner, 'utf8')) as OwnerInfo;
    return Number.isSafeInteger(info.pid) && typeof info.controlToken === 'string' ? info : null;
  } catch {
    return null;
  }
}

/** The live process that owns the directory, if any. */
export async function liveOwner(dataDir: string): Promise<OwnerInfo | null> {
  const info = await readOwner(dataDir);
  return info !== null && (await alive(info)) ? info : null;
}

export class DataDirLock {
  private released = false;

  private constructor(
    readonly dataDir: string,
    readonly info: OwnerInfo,
  ) {}

  /**
   * Takes the directory, or fails with `code` naming the live owner. `program` names
   * the kind of process in that message ("another mall-sync process ...").
   */
  static async acquire(dataDir: string, program: string, code: ErrorCode): Promise<DataDirLock> {
    const paths = ownerPaths(dataDir);
    await mkdir(paths.runDir, { recursive: true, mode: 0o700 });
    const info: OwnerInfo = { pid: process.pid, pidStart: await pidStartTime(process.pid), startedAt: new Date().toISOString(), url: null, controlToken: `mmc_${randomBytes(32).toString('base64url')}` };
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const handle = await open(paths.owner, 'wx', 0o600);
        try {
          await handle.writeFile(JSON.stringify(info));
          await handle.sync();
        } finally {
          await handle.close();
        }
        await fsyncDir(paths.runDir);
        heldHere.add(info.controlToken);
        return new DataDirLock(dataDir, info);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const owner = await readOwner(dataDir);
      if (owner !== null && (await alive(owner))) {
        fail(code, `another ${program} process (pid ${owner.pid}${owner.url === null ? '' : `, ${owner.url}`}) is using ${dataDir}`, { pid: owner.pid });
      }
      if (owner === null && (await youngerThan(paths.owner, OWNER_WRITE_GRACE_MS))) {
        // Another process created the file a moment ago and is still writing it.
        fail(code, `another ${program} process is taking ${dataDir} right now`);
      }
      // The owner is gone without cleaning up: its file is stale.
      await unlink(paths.owner).catch(() => undefined);
    }
    return fail(code, `cannot take ${dataDir}: ${paths.owner} keeps reappearing`);
  }

  async setUrl(url: string): Promise<void> {
    this.info.url = url;
    await writeFileDurable(ownerPaths(this.dataDir).owner, JSON.stringify(this.info));
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    heldHere.delete(this.info.controlToken);
    const current = await readOwner(this.dataDir);
    if (current?.controlToken === this.info.controlToken) await unlink(ownerPaths(this.dataDir).owner).catch(() => undefined);
  }
}
