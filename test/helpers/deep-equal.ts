import * as chai from 'chai';
import { isDeepStrictEqual } from 'node:util';

/**
 * chai's deep equality (`deep.equal`, `eql`, `deep.include`, `deep.members`, ...) first
 * asks Node's `isDeepStrictEqual`, which is several times faster on large values (tens of
 * thousands of replayed events compared in one assertion), and only when that says
 * "different" asks chai's own comparison, which then decides and explains the failure.
 * Strict equality is the stricter of the two (same prototypes, -0 apart from +0), so
 * whatever it calls equal chai calls equal too, except for what no test here compares:
 * two distinct WeakMaps, WeakSets or Promises, and Sets or Maps whose object members
 * were added in different orders (which strict equality, like a Set, does not mind).
 * Loaded through `.mocharc.json`.
 */
const chaiEql = chai.util.eql;
chai.config.deepEqual = (actual: unknown, expected: unknown): boolean => isDeepStrictEqual(actual, expected) || chaiEql(actual, expected);
