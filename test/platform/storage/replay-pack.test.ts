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
  it('reads back every string of a chunk, with numbers between, whether the chunk is all ASCII or not (property)', () => {
    const ascii = fc.string({ unit: fc.integer({ min: 0, max: 0x7f }).map((c) => String.fromCharCode(c)), maxLength: 70 });
    const item = fc.oneof(
      fc.record({ ascii }),
      { weight: 1, arbitrary: fc.record({ any: fc.string({ unit: 'binary', maxLength: 30 }) }) },
      fc.record({ num: fc.integer() }),
    );
    fc.assert(
      fc.property(fc.array(item, { maxLength: 60 }), fc.array(fc.array(item, { maxLength: 20 }), { maxLength: 3 }), (first, later) => {
        const p = new EventPacker();
        const u = new EventUnpacker();
        // Chunk after chunk through one unpacker, as a replay reads them.
        for (const items of [first, ...later]) {
          for (const it of items) {
            if ('num' in it) p.num(it.num);
            else if ('any' in it) p.str(it.any);
            else {
              // The bytes of an ASCII string, as a thread packs them from a line.
              const buf = Buffer.from(`"${it.ascii}"`, 'latin1');
              p.ascii(buf, 1, buf.length - 1);
            }
          }
          u.load(p.take());
          for (const it of items) {
            if ('num' in it) expect(u.num()).to.equal(it.num);
            else expect(u.str()).to.equal('any' in it ? it.any : it.ascii);
          }
        }
      }),
      { numRuns: 400 },
    );
  });

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

  it('copies a JSON string of printable ASCII from its bytes as ascii() does, and no other string (property)', () => {
    // Any text after a quote: a string JSON.parse reads, one with escapes, control or
    // non-ASCII characters, or one that does not close before the end it is given.
    const text = fc.string({ unit: fc.oneof(fc.constantFrom('"', '\\', '\n', '\u007f', 'é', '\u0000'), fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c))), maxLength: 40 });
    fc.assert(
      fc.property(text, fc.nat(45), (body, cut) => {
        const buf = Buffer.from(`x"${body}`, 'utf8');
        const end = Math.min(buf.length, 2 + cut);
        const p = new EventPacker();
        p.num(7);
        const next = p.asciiString(buf, 1, end);
        const close = buf.indexOf(0x22, 2);
        const plain = close !== -1 && close < end && /^[\x20-\x7e]*$/.test(body.slice(0, close - 2)) && !body.slice(0, close - 2).includes('\\');
        if (!plain) {
          expect(next).to.equal(-1);
          expect(p.take()).to.deep.equal({ nums: new Float64Array([7]), bytes: new Uint8Array(0), symbols: [], texts: [] });
          return;
        }
        expect(next).to.equal(close + 1);
        const u = new EventUnpacker();
        u.load(p.take());
        expect(u.num()).to.equal(7);
        expect(u.str()).to.equal(JSON.parse(buf.toString('latin1', 1, close + 1)));
      }),
      { numRuns: 500 },
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
