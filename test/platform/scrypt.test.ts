import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { ROOT } from '../helpers/process.ts';

const run = promisify(execFile);

/**
 * Twenty tills signing in at once, in a fresh process: every key must be right, and the
 * process's peak resident memory (VmHWM, from /proc) must grow by less than what scrypt
 * on Node's four thread-pool threads leaves behind (one 16 MiB block per thread, kept by
 * glibc: about 65 MB).
 */
const SCRIPT = `
import { scryptSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { scryptQueued } from './platform/scrypt.ts';
const hwm = () => Number(/VmHWM:\\s+(\\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]) / 1024;
const options = { N: 1 << 14, r: 8, p: 1, maxmem: 64 << 20 };
const before = hwm();
const keys = await Promise.all(Array.from({ length: 20 }, (_, i) => scryptQueued('pin' + i, Buffer.from('salt' + i), 32, options)));
const grewMb = hwm() - before;
const right = keys.every((k, i) => k.equals(scryptSync('pin' + i, Buffer.from('salt' + i), 32, options)));
let refused = null;
await scryptQueued('x', Buffer.from('s'), 32, { ...options, maxmem: 1024 }).catch((err) => { refused = err.message; });
console.log(JSON.stringify({ grewMb, right, refused }));
`;

describe('platform/scrypt: one call at a time on a thread of its own', function () {
  this.timeout(120_000);

  it('gives every caller its right key, reports a failed call, and keeps the peak memory of a burst to one call', async () => {
    const { stdout } = await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', SCRIPT], { cwd: ROOT });
    const r = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as { grewMb: number; right: boolean; refused: string | null };
    expect(r.right).to.equal(true);
    expect(r.refused).to.be.a('string').and.include('scrypt failed');
    expect(r.grewMb).to.be.lessThan(45);
  });
});
