import { randomBytes, scryptSync } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import { CONFIRMED_MAX, CONFIRMED_TTL_MS, PIN_HASH_COST_MAX, PIN_HASH_COST_MIN, PinHasher } from '../../platform/pin-hash.ts';
import { scryptCalls } from '../../platform/scrypt.ts';
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

describe('platform/pin-hash: the cost a store sets', function () {
  this.timeout(60_000);

  it('hashes at the store\'s cost, verifies a hash of any cost a store may set, and computes nothing for another', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const pepperFile = join(dir, 'keys', 'pin-pepper.key');
      const cheap = await PinHasher.open(pepperFile, PIN_HASH_COST_MIN);
      const stored = await cheap.hash('4711');
      expect(stored).to.match(/^scrypt-hmac\$1024\$8\$1\$[0-9a-f]{32}\$[0-9a-f]{64}$/);
      // The setting changed either way: hashes made before still verify, so nobody is locked out.
      const dear = await PinHasher.open(pepperFile, PIN_HASH_COST_MAX);
      expect(await dear.verify('4711', stored)).to.equal(true);
      expect(await dear.verify('4712', stored)).to.equal(false);
      const defaultHash = await (await PinHasher.open(pepperFile)).hash('2468');
      expect(defaultHash.startsWith('scrypt-hmac$16384$')).to.equal(true);
      expect(await cheap.verify('2468', defaultHash)).to.equal(true);
      // A stored hash naming a cost no store may set is refused without computing anything:
      // it cannot make a check cost more than the most a store may set.
      const calls = scryptCalls();
      for (const n of ['65536', '1048576', '3000', '512', '0', '-1024', '1024.5', 'x']) {
        expect(await dear.verify('4711', stored.replace('$1024$', `$${n}$`)), n).to.equal(false);
      }
      expect(scryptCalls()).to.equal(calls);
      // Nor may a store set one.
      for (const n of [1000, 512, 65536, 2 ** 20, 0, Number.NaN]) {
        let thrown: unknown = null;
        await PinHasher.open(pepperFile, n).catch((err: unknown) => (thrown = err));
        expect(thrown, String(n)).to.be.instanceOf(RangeError);
      }
    } finally {
      await cleanup();
    }
  });
});

describe('platform/pin-hash: a PIN that verified is remembered for a while', function () {
  this.timeout(60_000);

  it('confirms the same PIN against the same hash again without a scrypt, and every other attempt with one', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const pins = await PinHasher.open(join(dir, 'keys', 'pin-pepper.key'));
      let clock = 1_000_000;
      pins.now = () => clock;
      const stored = await pins.hash('4711');
      const calls = scryptCalls();
      expect(await pins.verify('4711', stored)).to.equal(true);
      expect(scryptCalls() - calls, 'the first check runs scrypt').to.equal(1);
      expect(await pins.verify('4711', stored)).to.equal(true);
      expect(scryptCalls() - calls, 'the second is remembered').to.equal(1);
      // A guess is never remembered, not even right after the right PIN: each costs a scrypt.
      for (const guess of ['4712', '0000', '4711 ', '']) expect(await pins.verify(guess, stored)).to.equal(false);
      expect(scryptCalls() - calls).to.equal(5);
      // Another hash of the same PIN (the PIN set again) is checked afresh; so is the old
      // hash with another PIN, and the remembered one stays good for the right PIN only.
      const again = await pins.hash('4711');
      const before = scryptCalls();
      expect(await pins.verify('4711', again)).to.equal(true);
      expect(await pins.verify('9999', again)).to.equal(false);
      expect(scryptCalls() - before).to.equal(2);
      // Another store's pepper remembers nothing of this one's.
      const other = await PinHasher.open(join(dir, 'other', 'pepper.key'));
      expect(await other.verify('4711', stored)).to.equal(false);
      // Once the time is up the PIN is checked again.
      clock += CONFIRMED_TTL_MS;
      const late = scryptCalls();
      expect(await pins.verify('4711', stored)).to.equal(true);
      expect(scryptCalls() - late).to.equal(1);
    } finally {
      await cleanup();
    }
  });

  it('remembers a bounded number of PINs, forgetting the oldest first', async () => {
    expect(CONFIRMED_MAX).to.be.within(1, 100_000);
    const { dir, cleanup } = await tempDir();
    try {
      const pins = await PinHasher.open(join(dir, 'keys', 'pin-pepper.key'));
      pins.confirmedMax = 2;
      const stored = await Promise.all(['1111', '2222', '3333'].map((pin) => pins.hash(pin)));
      for (const [i, pin] of ['1111', '2222', '3333'].entries()) expect(await pins.verify(pin, stored[i] as string)).to.equal(true);
      const calls = scryptCalls();
      // The two newest are remembered; the oldest was forgotten and costs a scrypt again.
      expect(await pins.verify('3333', stored[2] as string)).to.equal(true);
      expect(await pins.verify('2222', stored[1] as string)).to.equal(true);
      expect(scryptCalls() - calls).to.equal(0);
      expect(await pins.verify('1111', stored[0] as string)).to.equal(true);
      expect(scryptCalls() - calls).to.equal(1);
    } finally {
      await cleanup();
    }
  });
});
