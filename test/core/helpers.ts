import { expect } from 'chai';
import { ERRORS, MallposError, type ErrorCode } from '../../core/errors.ts';

/** Runs `fn`, asserts it throws a MallposError with `code` (and the catalogue's status), and returns it. */
export function expectCode(fn: () => unknown, code: ErrorCode): MallposError {
  let thrown: unknown = undefined;
  let returned: unknown = undefined;
  try {
    returned = fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown, `expected ${code} to be thrown, but it returned ${JSON.stringify(returned)}`).to.be.instanceOf(MallposError);
  const e = thrown as MallposError;
  expect(e.code, e.message).to.equal(code);
  expect(e.status).to.equal(ERRORS[code].status);
  expect(e.message).to.be.a('string').with.length.above(0);
  return e;
}

/** The MallposError code thrown by `fn`, or null when it returns; any other exception is rethrown. */
export function codeOf(fn: () => unknown): ErrorCode | null {
  try {
    fn();
    return null;
  } catch (err) {
    if (err instanceof MallposError) return err.code;
    throw err;
  }
}

/** Round half away from zero of a*b/c, written independently of core/money.ts: quotient and remainder. */
export function refMulDivRound(a: bigint, b: bigint, c: bigint): bigint {
  if (c <= 0n) throw new Error('reference needs c > 0');
  const n = a * b;
  const sign = n < 0n ? -1n : 1n;
  const abs = n * sign;
  const q = abs / c;
  const r = abs % c;
  return sign * (2n * r >= c ? q + 1n : q);
}
