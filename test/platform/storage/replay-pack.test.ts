import { expect } from 'chai';
import fc from 'fast-check';
import { EventPacker, EventUnpacker } from '../../../platform/storage/replay-pack.ts';

/** The strings written one after another in one buffer, and where each one is. */
function laidOut(strings: string[]): { buf: Buffer; at: [number, number][] } {
  const at: [number, number][] = [];
  let end = 1;
  for (const s of strings) {
    at.push([end, end + s.length]);
    end += s.length + 1;
  }
  const buf = Buffer.alloc(end, '"');
  for (let i = 0; i < strings.length; i++) buf.write(strings[i] as string, (at[i] as [number, number])[0], 'latin1');
  return { buf, at };
}

/** Packs the strings with sym(), and by their bytes with symAscii(): both chunks must be the same. */
function bothWays(strings: string[]): void {
  const bySym = new EventPacker();
  const byBytes = new EventPacker();
  const { buf, at } = laidOut(strings);
  for (let i = 0; i < strings.length; i++) {
    bySym.sym(strings[i] as string);
    const [start, end] = at[i] as [number, number];
    byBytes.symAscii(buf, start, end);
  }
  const chunk = byBytes.take();
  expect(chunk).to.deep.equal(bySym.take());
  const u = new EventUnpacker();
  u.load(chunk);
  for (const s of strings) expect(u.name()).to.equal(s);
}

describe('platform/storage: packing for the replay threads', () => {
  it('gives the bytes of an ASCII string the symbol sym() gives the string (property)', () => {
    const ascii = fc.stringMatching(/^[\x20-\x7e]{0,60}$/);
    fc.assert(
      fc.property(fc.array(ascii, { maxLength: 40 }), fc.array(fc.nat(), { maxLength: 80 }), (distinct, picks) => {
        // Each string met again and again, in any order.
        const strings = distinct.length === 0 ? [] : [...distinct, ...picks.map((i) => distinct[i % distinct.length] as string)];
        bothWays(strings);
      }),
      { numRuns: 300 },
    );
  });

  it('tells apart two names of one length whose bytes hash alike', () => {
    // FNV-1a, which finds a name's bytes, gives these two one hash.
    bothWays(['cust-0317786', 'cust-1056240', 'cust-1056240', 'cust-0317786']);
  });

  it('keeps every symbol through its table\'s growth: 30,000 names, each met three times', () => {
    const names = Array.from({ length: 30_000 }, (_, i) => (i % 2 === 0 ? `customer:cust-${i}` : `cust-${i}`));
    bothWays([...names, ...names.slice().reverse(), ...names]);
  });
});
