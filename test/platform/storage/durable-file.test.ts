import { expect } from 'chai';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Low } from 'lowdb';
import { DurableJSONFile, fsyncDir, StateFileError, writeFileDurable } from '../../../platform/storage/index.ts';
import { rejection, tempDir } from './helpers.ts';

interface State {
  seq: number;
  accounts: Record<string, number>;
}

describe('platform/storage/durable-file', () => {
  let dir: string;
  let cleanup: () => Promise<void>;

  beforeEach(async () => {
    ({ dir, cleanup } = await tempDir());
  });

  afterEach(async () => {
    await cleanup();
  });

  describe('writeFileDurable', () => {
    it('replaces the file content and leaves no temp file', async () => {
      const path = join(dir, 'config.json');
      await writeFileDurable(path, 'first');
      await writeFileDurable(path, Buffer.from('second ☕'));
      expect(await readFile(path, 'utf8')).to.equal('second ☕');
      expect(await readdir(dir)).to.deep.equal(['config.json']);
    });

    it('removes its temp file when the rename fails, and keeps the target as it was', async () => {
      // A non-empty directory at the target path makes the rename fail.
      const path = join(dir, 'state.json');
      await mkdir(path);
      await writeFile(join(path, 'keep'), 'x');
      const err = await rejection(writeFileDurable(path, '{}'));
      expect((err as NodeJS.ErrnoException).code).to.be.oneOf(['EISDIR', 'ENOTEMPTY', 'EEXIST']);
      expect(await readdir(dir)).to.deep.equal(['state.json']);
      expect(await readdir(path)).to.deep.equal(['keep']);
    });

    it('fails when the directory does not exist', async () => {
      const err = await rejection(writeFileDurable(join(dir, 'missing', 'x.json'), '{}'));
      expect((err as NodeJS.ErrnoException).code).to.equal('ENOENT');
    });
  });

  describe('fsyncDir', () => {
    it('syncs an existing directory and fails on a missing one', async () => {
      await fsyncDir(dir);
      expect((await rejection(fsyncDir(join(dir, 'nope'))) as NodeJS.ErrnoException).code).to.equal('ENOENT');
    });
  });

  describe('DurableJSONFile', () => {
    it('round-trips data through lowdb', async () => {
      const path = join(dir, 'checkpoint.json');
      const db = new Low<State>(new DurableJSONFile<State>(path), { seq: 0, accounts: {} });
      await db.read();
      expect(db.data).to.deep.equal({ seq: 0, accounts: {} });
      db.data.seq = 42;
      db.data.accounts['customer:C-1'] = 1500;
      await db.write();

      const again = new Low<State>(new DurableJSONFile<State>(path), { seq: 0, accounts: {} });
      await again.read();
      expect(again.data).to.deep.equal({ seq: 42, accounts: { 'customer:C-1': 1500 } });
      expect(await readdir(dir)).to.deep.equal(['checkpoint.json']);
    });

    it('reads null for a missing file', async () => {
      expect(await new DurableJSONFile<State>(join(dir, 'none.json')).read()).to.equal(null);
    });

    it('throws StateFileError naming the file for corrupt JSON', async () => {
      const path = join(dir, 'broken.json');
      await writeFile(path, '{"seq": 4, "accounts": {');
      const err = await rejection(new DurableJSONFile<State>(path).read());
      expect(err).to.be.instanceOf(StateFileError);
      expect(err).to.include({ code: 'VND_ERR_STATE_CORRUPT', file: path });
      expect(err.message).to.include(path);
    });

    it('throws StateFileError when the path cannot be read as a file', async () => {
      const path = join(dir, 'a-directory.json');
      await mkdir(path);
      const err = await rejection(new DurableJSONFile<State>(path).read());
      expect(err).to.be.instanceOf(StateFileError);
      expect(err).to.include({ file: path });
    });

    it('serialises overlapping writes so the newest state lands last', async () => {
      const path = join(dir, 'checkpoint.json');
      const file = new DurableJSONFile<State>(path);
      const writes = Array.from({ length: 25 }, (_, i) => file.write({ seq: i, accounts: { a: i } }));
      await Promise.all(writes);
      expect(await file.read()).to.deep.equal({ seq: 24, accounts: { a: 24 } });
      expect(await readdir(dir)).to.deep.equal(['checkpoint.json']);
    });

    it('captures the state at the call, not when the write runs', async () => {
      const path = join(dir, 'checkpoint.json');
      const file = new DurableJSONFile<State>(path);
      const state: State = { seq: 1, accounts: {} };
      const first = file.write(state);
      state.seq = 2;
      await first;
      expect((await file.read())?.seq).to.equal(1);
    });
  });
});
