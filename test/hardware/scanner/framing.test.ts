import { expect } from 'chai';
import fc from 'fast-check';
import { ScanFramer, symbologyName, type ScanFrame } from '../../../hardware/scanner/framing.ts';

const bytes = (text: string): Buffer => Buffer.from(text, 'latin1');

function pushAll(framer: ScanFramer, chunks: readonly (string | Uint8Array)[]): ScanFrame[] {
  return chunks.flatMap((chunk) => framer.push(typeof chunk === 'string' ? bytes(chunk) : chunk));
}

function codesOf(frames: readonly ScanFrame[]): string[] {
  return frames.flatMap((frame) => (frame.kind === 'code' ? [frame.code] : []));
}

describe('ScanFramer', () => {
  describe('line endings', () => {
    for (const [name, ending] of [['CR', '\r'], ['LF', '\n'], ['CRLF', '\r\n']] as const) {
      it(`frames a code ended by ${name}`, () => {
        const framer = new ScanFramer();
        expect(framer.push(bytes(`4006381333931${ending}`))).to.deep.equal([{ kind: 'code', code: '4006381333931' }]);
        expect(framer.pendingBytes).to.equal(0);
        expect(framer.stats.emptyLines).to.equal(0);
      });
    }

    it('treats a CR ending one chunk and an LF starting the next as one terminator', () => {
      const framer = new ScanFramer();
      expect(framer.push(bytes('123\r'))).to.deep.equal([{ kind: 'code', code: '123' }]);
      expect(framer.push(bytes('\n456\r'))).to.deep.equal([{ kind: 'code', code: '456' }]);
      expect(framer.push(bytes('\n'))).to.deep.equal([]);
      expect(framer.stats).to.include({ codes: 2, emptyLines: 0 });
    });

    it('keeps codes apart whatever mix of endings a stream uses', () => {
      const framer = new ScanFramer();
      const frames = framer.push(bytes('A\rB\nC\r\nD\n\rE\r'));
      expect(codesOf(frames)).to.deep.equal(['A', 'B', 'C', 'D', 'E']);
      // LF then CR is two terminators, the second ending an empty line.
      expect(framer.stats.emptyLines).to.equal(1);
    });

    it('ignores empty lines of every kind', () => {
      const framer = new ScanFramer();
      expect(framer.push(bytes('\r\n\r\n\n\n\r\r'))).to.deep.equal([]);
      expect(framer.push(bytes('\r'))).to.deep.equal([]);
      expect(framer.stats.codes).to.equal(0);
      expect(framer.stats.emptyLines).to.equal(7);
    });

    it('frames a code split at every point, ending included', () => {
      const frame = bytes(']E04006381333931\r\n');
      for (let split = 0; split <= frame.length; split += 1) {
        const framer = new ScanFramer();
        const frames = pushAll(framer, [frame.subarray(0, split), frame.subarray(split)]);
        expect(frames, `split at ${split}`).to.deep.equal([
          { kind: 'code', code: '4006381333931', symbology: { id: ']E0', name: 'EAN-13' } },
        ]);
        expect(framer.stats.emptyLines, `split at ${split}`).to.equal(0);
      }
    });

    it('frames a code fed one byte at a time, frames coming out only on the terminator', () => {
      const framer = new ScanFramer();
      const frame = bytes('96385074\r');
      for (const [i, byte] of [...frame].entries()) {
        const frames = framer.push(Uint8Array.of(byte));
        if (i < frame.length - 1) {
          expect(frames).to.deep.equal([]);
          expect(framer.pendingBytes).to.equal(i + 1);
        } else {
          expect(frames).to.deep.equal([{ kind: 'code', code: '96385074' }]);
        }
      }
    });

    it('frames many codes in one chunk in order', () => {
      const framer = new ScanFramer();
      expect(codesOf(framer.push(bytes('1\r2\r3\r4\r5\r')))).to.deep.equal(['1', '2', '3', '4', '5']);
    });
  });

  describe('AIM symbology identifiers', () => {
    const cases: [string, string][] = [
      [']E0', 'EAN-13'],
      [']E4', 'EAN-8'],
      [']E3', 'EAN-13 with add-on'],
      [']A0', 'Code 39'],
      [']C0', 'Code 128'],
      [']C1', 'GS1-128'],
      [']Q1', 'QR Code'],
      [']Q3', 'GS1 QR Code'],
      [']d1', 'Data Matrix'],
      [']d2', 'GS1 DataMatrix'],
      [']e0', 'GS1 DataBar'],
      [']I1', 'ITF'],
      [']zC', 'Aztec'],
      [']Y0', 'unknown'],
    ];
    for (const [id, name] of cases) {
      it(`strips ${id} and names it ${name}`, () => {
        const framer = new ScanFramer();
        expect(framer.push(bytes(`${id}12345\r`))).to.deep.equal([{ kind: 'code', code: '12345', symbology: { id, name } }]);
      });
    }

    it('leaves a code alone when its start only looks a little like an identifier', () => {
      const framer = new ScanFramer();
      const frames = framer.push(bytes(']1A23\r]E\r]Ea9\r]\r'));
      expect(frames).to.deep.equal([
        { kind: 'code', code: ']1A23' },
        { kind: 'code', code: ']E' },
        { kind: 'code', code: ']Ea9' },
        { kind: 'code', code: ']' },
      ]);
    });

    it('yields no code for a line that is only an identifier', () => {
      const framer = new ScanFramer();
      expect(framer.push(bytes(']E0\r\n'))).to.deep.equal([]);
      expect(framer.stats.emptyLines).to.equal(1);
    });

    it('keeps GS1 field separators inside a code but not a leading one', () => {
      const framer = new ScanFramer();
      const frames = framer.push(bytes(']C1\x1d0104006381333931\x1d10ABC\r'));
      expect(frames).to.deep.equal([
        { kind: 'noise', bytes: 1 },
        { kind: 'code', code: '0104006381333931\x1d10ABC', symbology: { id: ']C1', name: 'GS1-128' } },
      ]);
      expect(framer.stats.noiseBytes).to.equal(1);
    });

    it('names identifiers the same way outside the framer', () => {
      expect(symbologyName(']E0')).to.equal('EAN-13');
      expect(symbologyName(']C7')).to.equal('Code 128');
    });
  });

  describe('noise', () => {
    it('drops and counts control and non-ASCII bytes, then frames the code', () => {
      const framer = new ScanFramer();
      const frames = framer.push(Uint8Array.from([0x00, 0x31, 0x32, 0xff, 0x33, 0x07, 0x1b, 0x7f, 0x0d]));
      expect(frames).to.deep.equal([
        { kind: 'noise', bytes: 5 },
        { kind: 'code', code: '123' },
      ]);
      expect(framer.stats.noiseBytes).to.equal(5);
    });

    it('drops noise inside an AIM identifier without losing the identifier', () => {
      const framer = new ScanFramer();
      const frames = framer.push(bytes(']\x00E\xfe0123\r'));
      expect(codesOf(frames)).to.deep.equal(['123']);
      expect(frames[1]).to.deep.include({ symbology: { id: ']E0', name: 'EAN-13' } });
    });

    it('reports noise on a line that holds nothing else, and no code', () => {
      const framer = new ScanFramer();
      expect(framer.push(Uint8Array.from([0x80, 0x81, 0x0a]))).to.deep.equal([{ kind: 'noise', bytes: 2 }]);
      expect(framer.stats).to.include({ codes: 0, noiseBytes: 2, emptyLines: 1 });
    });

    it('does not let noise between CR and LF join two lines', () => {
      const framer = new ScanFramer();
      const frames = framer.push(bytes('12\r\x00\n34\n'));
      expect(codesOf(frames)).to.deep.equal(['12', '34']);
    });
  });

  describe('over-long lines', () => {
    it('accepts a line of exactly lineBytesMax bytes', () => {
      const framer = new ScanFramer({ lineBytesMax: 8 });
      expect(framer.push(bytes('12345678\r'))).to.deep.equal([{ kind: 'code', code: '12345678' }]);
    });

    it('discards a line one byte over the limit with a warning, then frames the next code', () => {
      const framer = new ScanFramer({ lineBytesMax: 8 });
      expect(framer.push(bytes('123456789\r'))).to.deep.equal([{ kind: 'overlong', bytes: 9 }]);
      expect(framer.push(bytes('42\r'))).to.deep.equal([{ kind: 'code', code: '42' }]);
      expect(framer.stats.overlongLines).to.equal(1);
    });

    it('counts the AIM identifier against the limit', () => {
      const framer = new ScanFramer({ lineBytesMax: 8 });
      expect(framer.push(bytes(']E012345\r'))).to.deep.equal([{ kind: 'code', code: '12345', symbology: { id: ']E0', name: 'EAN-13' } }]);
      expect(framer.push(bytes(']E0123456\r'))).to.deep.equal([{ kind: 'overlong', bytes: 9 }]);
    });

    it('survives a megabyte without a terminator in bounded memory, then recovers', () => {
      const framer = new ScanFramer();
      const block = Buffer.alloc(64 * 1024, 0x41);
      for (let i = 0; i < 16; i += 1) expect(framer.push(block)).to.deep.equal([]);
      expect(framer.pendingBytes).to.equal(16 * block.length);
      expect(framer.push(bytes('A\r\n4006381333931\r\n'))).to.deep.equal([
        { kind: 'overlong', bytes: 16 * block.length + 1 },
        { kind: 'code', code: '4006381333931' },
      ]);
    });

    it('rejects a limit that is not a positive integer', () => {
      expect(() => new ScanFramer({ lineBytesMax: 0 })).to.throw(RangeError);
      expect(() => new ScanFramer({ lineBytesMax: 1.5 })).to.throw(RangeError);
    });
  });

  describe('flush', () => {
    it('discards a line without a terminator so it cannot join the next code', () => {
      const framer = new ScanFramer();
      expect(framer.push(bytes('123'))).to.deep.equal([]);
      expect(framer.flush()).to.deep.equal([{ kind: 'unterminated', bytes: 3 }]);
      expect(framer.push(bytes('456\r'))).to.deep.equal([{ kind: 'code', code: '456' }]);
      expect(framer.stats.unterminatedLines).to.equal(1);
    });

    it('forgets a CR so that an LF after the flush ends a new line', () => {
      const framer = new ScanFramer();
      framer.push(bytes('1\r'));
      expect(framer.flush()).to.deep.equal([]);
      expect(framer.push(bytes('\n'))).to.deep.equal([]);
      expect(framer.stats.emptyLines).to.equal(1);
    });

    it('yields nothing between lines', () => {
      expect(new ScanFramer().flush()).to.deep.equal([]);
    });
  });

  describe('property', () => {
    const printable = fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c));
    const noiseByte = fc
      .integer({ min: 0x00, max: 0xff })
      .filter((b) => (b < 0x20 || b > 0x7e) && b !== 0x0d && b !== 0x0a && b !== 0x1d);
    const aimPattern = /^\][A-Za-z][0-9A-Z]/;
    const scanArb = fc
      .record({
        aim: fc.option(fc.constantFrom(']E0', ']E4', ']A0', ']C1', ']Q1', ']d2'), { nil: undefined }),
        code: fc.string({ unit: printable, minLength: 1, maxLength: 40 }),
        ending: fc.constantFrom('\r', '\n', '\r\n'),
      })
      // Without an identifier of its own, a code that starts like one would lose it.
      .filter(({ aim, code }) => aim !== undefined || !aimPattern.test(code));

    it('yields exactly the codes sent, whatever the endings, split points and noise', () => {
      fc.assert(
        fc.property(
          fc.array(scanArb, { maxLength: 20 }),
          fc.array(fc.nat(), { maxLength: 30 }),
          fc.array(fc.tuple(fc.nat(), noiseByte), { maxLength: 10 }),
          (scans, splitSeeds, noise) => {
            const clean = [...bytes(scans.map((s) => `${s.aim ?? ''}${s.code}${s.ending}`).join(''))];
            const stream = [...clean];
            // Noise goes before the last byte at the latest, so that it belongs to a line
            // that ends; inserting from the back keeps earlier positions valid.
            const insertions = clean.length === 0 ? [] : noise.map(([seed, byte]) => [seed % clean.length, byte] as const).sort((a, b) => b[0] - a[0]);
            for (const [at, byte] of insertions) stream.splice(at, 0, byte);
            const cuts = [...new Set(splitSeeds.map((seed) => seed % (stream.length + 1)))].sort((a, b) => a - b);
            const framer = new ScanFramer();
            const frames: ScanFrame[] = [];
            let from = 0;
            for (const cut of [...cuts, stream.length]) {
              frames.push(...framer.push(Uint8Array.from(stream.slice(from, cut))));
              from = cut;
            }
            const codes = frames.flatMap((f) => (f.kind === 'code' ? [{ code: f.code, id: f.symbology?.id }] : []));
            expect(codes).to.deep.equal(scans.map((s) => ({ code: s.code, id: s.aim })));
            expect(framer.stats.noiseBytes).to.equal(insertions.length);
            expect(framer.pendingBytes).to.equal(0);
          },
        ),
        { numRuns: 500 },
      );
    });
  });
});
