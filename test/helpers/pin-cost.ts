import { PIN_HASH_COST_MIN } from '../../platform/pin-hash.ts';

/**
 * The PIN hash cost of the stores the tests make: the lowest a store may set (scrypt
 * N=2^10, a few milliseconds a check rather than tens), as most tests sign cashiers in
 * again and again, after every restart of a server, and are not about what a PIN check
 * costs. The tests of PIN checking itself (platform/pin-hash, till security) and the
 * demo keep the default cost.
 */
export const TEST_PIN_HASH_COST = PIN_HASH_COST_MIN;
