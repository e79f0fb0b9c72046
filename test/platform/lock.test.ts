import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import { DataDirLock, liveOwner } from '../../platform/lock.ts';
import { ROOT } from '../helpers/process.ts';
import { tempDir } from '../helpers/temp.ts';

async function refusal(p: Promise<unknown>): Promise<{ code?: string; message?: string }> {
  return p.then(
    () => {
      throw new Error('expected a refusal');
    },
    (err: unknown) => err as { code?: string; message?: string },
  );
}

describe('platform/lock: one process per data directory', function () {
  this.timeout(30_000);
  let dir: string;
  let cleanup: () => Promise<void>;

  beforeEach(async () => {
    ({ dir, cleanup } = await tempDir());
  });
  afterEach(async () => cleanup());

  it('refuses while another live process holds the directory and takes it over once that process is killed', async () => {
    const holder = spawn(process.execPath, ['--import', 'tsx', '-e', `
      const { DataDirLock } = await import('./platform/lock.ts');
      await DataDirLock.acquire(${JSON.stringify(dir)}, 'pos-terminal', 'POS_ERR_DATA_DIR_IN_USE');
      console.log('held');
      setInterval(() => {}, 1000);
    `], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve, reject) => {
        holder.stdout.on('data', (d: Buffer) => d.toString().includes('held') && resolve());
        holder.once('exit', (code) => reject(new Error(`holder exited with ${code}`)));
      });
      const err = await refusal(DataDirLock.acquire(dir, 'pos-terminal', 'POS_ERR_DATA_DIR_IN_USE'));
      expect(err.code).to.equal('POS_ERR_DATA_DIR_IN_USE');
      expect(err.message).to.include(`another pos-terminal process (pid ${holder.pid}`).and.include(dir);
      expect((await liveOwner(dir))?.pid).to.equal(holder.pid);
    } finally {
      await new Promise<void>((resolve) => {
        holder.once('exit', () => resolve());
        holder.kill('SIGKILL');
      });
    }
    expect(await liveOwner(dir)).to.equal(null);
    const lock = await DataDirLock.acquire(dir, 'pos-terminal', 'POS_ERR_DATA_DIR_IN_USE');
    await lock.release();
  });

  it('treats a recorded pid that is now another process (reused after a crash or reboot) as stale', async () => {
    const lock = await DataDirLock.acquire(dir, 'vendor-server', 'VND_ERR_DATA_DIR_IN_USE');
    const owner = join(dir, 'run', 'owner.json');
    const info = JSON.parse(await readFile(owner, 'utf8')) as { pid: number; pidStart: string | null };
    // Held by this process: refused, even though the pid is our own.
    expect((await refusal(DataDirLock.acquire(dir, 'vendor-server', 'VND_ERR_DATA_DIR_IN_USE'))).code).to.equal('VND_ERR_DATA_DIR_IN_USE');
    // Left by an earlier life of this very pid (a container restarts as pid 1 each time).
    await writeFile(owner, JSON.stringify({ ...info, controlToken: 'mmc_old' }));
    const again = await DataDirLock.acquire(dir, 'vendor-server', 'VND_ERR_DATA_DIR_IN_USE');
    // Another live pid (the parent of this process) whose start time is not the recorded one.
    await writeFile(owner, JSON.stringify({ ...info, pid: process.ppid, pidStart: '1', controlToken: 'mmc_old' }));
    if (info.pidStart !== null) {
      const third = await DataDirLock.acquire(dir, 'vendor-server', 'VND_ERR_DATA_DIR_IN_USE');
      await third.release();
    }
    await again.release();
    await lock.release();
  });

  it('does not take over an owner file that another process is still writing', async () => {
    const lock = await DataDirLock.acquire(dir, 'vendor-server', 'VND_ERR_DATA_DIR_IN_USE');
    await writeFile(join(dir, 'run', 'owner.json'), '');
    const err = await refusal(DataDirLock.acquire(dir, 'vendor-server', 'VND_ERR_DATA_DIR_IN_USE'));
    expect(err.code).to.equal('VND_ERR_DATA_DIR_IN_USE');
    expect(err.message).to.include('right now');
    await lock.release();
  });
});
