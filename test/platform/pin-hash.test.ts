import { randomBytes, scryptSync } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import { PinHasher } from '../../platform/pin-hash.ts';
import { tempDir } from '../helpers/temp.ts';

describe('platform/pin-hash: stored PIN hashes keyed with a pepper', function () {
  this.timeout(60_000);

  it('verifies only the right PIN with the right pepper, keeps the pepper owner-only, and reads the older form', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const pepperFile = join(dir, 'keys', 'pin-pepper.key');
      const pins = await PinHasher.open(pepperFile);
      expect((await stat(pepperFile)).mode & 0o777).to.equal(0o600);
      expect((await stat(join(dir, 'keys'))).mode & 0o777).to.equal(0o700);
      const stored = await pins.hash('4711');
      expect(stored).to.match(/^scrypt-hmac\$16384\$8\$1\$[0-9a-f]{32}\$[0-9a-f]{64}$/);
      expect(await pins.verify('4711', stored)).to.equal(true);
      expect(await pins.verify('4712', stored)).to.equal(false);
      // The same pepper after a restart; another store's pepper verifies nothing, even the right PIN:
      // the readable access file alone is not enough to test guesses.
      expect(await (await PinHasher.open(pepperFile)).verify('4711', stored)).to.equal(true);
      expect(await (await PinHasher.open(join(dir, 'other', 'pepper.key'))).verify('4711', stored)).to.equal(false);
      // A stored hash cannot lower its own cost.
      expect(await pins.verify('4711', stored.replace('$16384$', '$2$'))).to.equal(false);
      // Hashes written before the pepper still verify.
      const salt = randomBytes(16);
      const old = `scrypt$${salt.toString('hex')}$${scryptSync('1234', salt, 32).toString('hex')}`;
      expect(await pins.verify('1234', old)).to.equal(true);
      expect(await pins.verify('1235', old)).to.equal(false);
      expect(await pins.verify('1234', 'garbage')).to.equal(false);
    } finally {
      await cleanup();
    }
  });
});
