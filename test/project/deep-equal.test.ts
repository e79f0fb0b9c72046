import { expect } from 'chai';

/**
 * The tests' deep equality (test/helpers/deep-equal.ts, loaded for every test) asks
 * Node's strict comparison first: it must still tell unequal values apart, and still
 * call equal what chai alone called equal.
 */
describe('project: deep equality in the tests', () => {
  it('still fails on any difference, however deep', () => {
    const big = () => Array.from({ length: 2_000 }, (_, i) => ({ seq: i, lines: [{ code: `c${i}`, qty: 1 }], postings: [{ account: 'float', units: i }] }));
    const other = big();
    (other[1_999] as { postings: { units: number }[] }).postings[0] = { account: 'float', units: -1 } as never;
    expect(() => expect(big()).to.deep.equal(other)).to.throw(/expected/);
    expect(big()).not.to.deep.equal(other);
    expect(() => expect({ a: [1, 2, { b: 'x' }] }).to.deep.equal({ a: [1, 2, { b: 'y' }] })).to.throw();
    expect(() => expect([1, 2]).to.eql([1, 2, 3])).to.throw();
    expect(() => expect({ a: 0 }).to.deep.equal({ a: -0 })).to.throw();
    expect(() => expect([{ a: 1 }]).to.deep.include({ a: 2 })).to.throw();
  });

  it('calls equal what chai calls equal, the strict comparison aside', () => {
    const big = () => Array.from({ length: 2_000 }, (_, i) => ({ seq: i, hash: `h${i}`, nested: { n: [i, i + 1] } }));
    expect(big()).to.deep.equal(big());
    // Strict comparison tells these apart (the prototypes differ); chai does not, and decides.
    expect(Object.assign(Object.create(null) as object, { a: 1 })).to.deep.equal({ a: 1 });
    expect(() => expect({ a: 1 }).not.to.deep.equal({ a: 1 })).to.throw();
    expect([{ a: 1 }, { b: 2 }]).to.deep.include({ b: 2 });
  });

  it('is the comparison of every test file, loaded with require() or with import()', async () => {
    // Two distinct WeakMaps: equal to the strict comparison, which cannot look inside
    // them, and unequal to chai's own. Each passes only where the helper is installed.
    expect(new WeakMap()).to.deep.equal(new WeakMap());
    // chai as a file loaded with import() sees it (a file that awaits at its top level).
    const imported = await import('chai');
    imported.expect(new WeakMap()).to.deep.equal(new WeakMap());
    imported.expect(() => imported.expect([{ a: 1 }]).to.deep.equal([{ a: 2 }])).to.throw(/expected/);
  });
});
