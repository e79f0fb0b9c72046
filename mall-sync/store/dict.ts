/**
 * Maps of the mall's state are keyed by names that come from outside (vendor ids, token
 * codes, accounts, allotment ids). They are null-prototype objects: plain JSON in a
 * checkpoint, but a key such as `__proto__` or `constructor` is only ever an own
 * property, never the prototype or one of its methods.
 */
export type Dict<T> = Record<string, T>;

/** A new null-prototype map, with the own enumerable entries of `from` when given. */
export function dict<T>(from?: Readonly<Record<string, T>> | null): Dict<T> {
  const out = Object.create(null) as Dict<T>;
  if (from !== undefined && from !== null) {
    for (const k of Object.keys(from)) out[k] = from[k] as T;
  }
  return out;
}

/** Whether a map holds an own entry for `key` (works on null-prototype and plain objects alike). */
export function has(d: Readonly<Record<string, unknown>>, key: string): boolean {
  return Object.hasOwn(d, key);
}

/** The own entry for `key`, never something inherited. */
export function own<T>(d: Readonly<Record<string, T>>, key: string): T | undefined {
  return Object.hasOwn(d, key) ? d[key] : undefined;
}
