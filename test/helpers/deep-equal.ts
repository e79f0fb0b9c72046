import * as chai from 'chai';
import { isDeepStrictEqual } from 'node:util';

/**
 * chai's deep equality (`deep.equal`, `eql`, `deep.include`, `deep.members`, ...) first
 * asks Node's `isDeepStrictEqual`, which is several times faster on large values (tens of
 * thousands of replayed events compared in one assertion), and only when that says
 * "different" asks chai's own comparison, which then decides and explains the failure.
 * Strict equality is the stricter of the two (same prototypes, -0 apart from +0), so
 * whatever it calls equal chai calls equal too, except for what only this helper's own
 * test compares: two distinct WeakMaps, WeakSets or Promises, and Sets or Maps whose
 * object members were added in different orders (which strict equality, like a Set,
 * does not mind).
 * Loaded through `.mocharc.json`.
 */
function install(instance: Pick<typeof chai, 'config' | 'util'>): void {
  const chaiEql = instance.util.eql;
  instance.config.deepEqual = (actual: unknown, expected: unknown): boolean => isDeepStrictEqual(actual, expected) || chaiEql(actual, expected);
}

install(chai);

/**
 * mocha loads this file, and most test files, with require(); a test file whose modules
 * await at their top level is loaded with import() and gets chai as an ES module of its
 * own, with its own config: that instance is given the same comparison, once per process.
 */
export const mochaHooks = async (): Promise<Record<string, never>> => {
  install(await import('chai'));
  return {};
};
