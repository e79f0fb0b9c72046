import { randomBytes } from 'node:crypto';
import { chmod, mkdir, open, readFile, unlink } from 'node:fs/promises';
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
  startedAt: string;
  url: string | null;
  controlToken: string;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
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
  return info !== null && alive(info.pid) ? info : null;
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
    const info: OwnerInfo = { pid: process.pid, startedAt: new Date().toISOString(), url: null, controlToken: `mmc_${randomBytes(32).toString('base64url')}` };
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
        return new DataDirLock(dataDir, info);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const owner = await readOwner(dataDir);
      if (owner !== null && alive(owner.pid)) {
        fail(code, `another ${program} process (pid ${owner.pid}${owner.url === null ? '' : `, ${owner.url}`}) is using ${dataDir}`, { pid: owner.pid });
      }
      // The owner is gone without cleaning up: its file is stale.
      await unlink(paths.owner).catch(() => undefined);
    }
    return fail(code, `cannot take ${dataDir}: ${paths.owner} keeps reappearing`);
  }

  async setUrl(url: string): Promise<void> {
    this.info.url = url;
    await writeFileDurable(ownerPaths(this.dataDir).owner, JSON.stringify(this.info));
    await chmod(ownerPaths(this.dataDir).owner, 0o600);
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    const current = await readOwner(this.dataDir);
    if (current?.controlToken === this.info.controlToken) await unlink(ownerPaths(this.dataDir).owner).catch(() => undefined);
  }
}
