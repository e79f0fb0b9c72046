import { scrypt, type ScryptOptions } from 'node:crypto';

/**
 * scrypt, one call at a time for the whole process. Each call takes 128 * N * r bytes
 * (16 MiB at the costs used here) outside the JavaScript heap, and Node runs up to four at
 * once on its thread pool: twenty tills signing in together would raise the process's
 * peak memory by 64 MiB for a moment that stays in its high-water mark. One at a time
 * keeps that to one call's worth; a call takes a few tens of milliseconds, so a queue
 * of sign-ins still clears within a second or two.
 */
let tail: Promise<unknown> = Promise.resolve();

export function scryptQueued(password: Buffer | string, salt: Buffer, keyBytes: number, options: ScryptOptions): Promise<Buffer> {
  const run = () =>
    new Promise<Buffer>((resolve, reject) => {
      scrypt(password, salt, keyBytes, options, (err, key) => (err === null ? resolve(key) : reject(err)));
    });
  const result = tail.then(run, run);
  tail = result.catch(() => undefined);
  return result;
}
