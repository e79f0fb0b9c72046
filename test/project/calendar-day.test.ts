import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { DAY_END_MARGIN_MS, waitBeforeFile } from '../helpers/calendar-day.ts';
import { ROOT } from '../helpers/process.ts';
import { tempDir } from '../helpers/temp.ts';

const at = (iso: string) => Date.parse(iso);
const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);

describe('test files do not start in the last minutes of a UTC day (test/helpers/calendar-day.ts)', () => {
  it('waits only in the last DAY_END_MARGIN_MS of the day, and then until just past midnight', () => {
    expect(DAY_END_MARGIN_MS).to.equal(5 * 60_000);
    for (const iso of ['2026-12-02T00:00:00.000Z', '2026-12-02T12:00:00.000Z', '2026-12-02T23:54:59.999Z', '2026-02-28T23:50:00.000Z']) {
      expect(waitBeforeFile(at(iso)), iso).to.equal(0);
    }
    expect(waitBeforeFile(at('2026-12-02T23:55:00.000Z'))).to.equal(5 * 60_000 + 1_000);
    expect(waitBeforeFile(at('2026-12-02T23:57:30.000Z'))).to.equal(150_000 + 1_000);
    expect(waitBeforeFile(at('2026-12-31T23:59:59.999Z'))).to.equal(1 + 1_000);
    expect(waitBeforeFile(at('2026-12-02T23:00:00.000Z'), 60 * 60_000)).to.equal(60 * 60_000 + 1_000);
  });

  it('a file that waits starts just after midnight, and one that does not has more than the margin left of its day', () => {
    const start = at('2026-12-02T23:40:00.000Z');
    for (let now = start; now < start + 30 * 60_000; now += 7_777) {
      const wait = waitBeforeFile(now);
      const begins = now + wait;
      const sinceMidnight = begins - Date.parse(`${day(begins)}T00:00:00.000Z`);
      if (wait > 0) expect(sinceMidnight, new Date(now).toISOString()).to.equal(1_000);
      else expect(24 * 60 * 60_000 - sinceMidnight, new Date(now).toISOString()).to.be.above(DAY_END_MARGIN_MS);
    }
  });

  it('holds a test file started two seconds before midnight until the next day (mocha with the hook, a shifted clock)', async () => {
    const { dir, cleanup } = await tempDir('mallpos-calendar-');
    try {
      // Date.now() of the child starts at 23:59:58 UTC; its timers run in real time.
      await writeFile(join(dir, 'clock.cjs'), `const real = Date.now; const shift = ${at('2026-12-02T23:59:58.000Z')} - real(); Date.now = () => real() + shift;\n`);
      await writeFile(join(dir, 'day.test.cjs'), `const assert = require('node:assert');\nit('runs on the next day', () => assert.strictEqual(new Date(Date.now()).toISOString().slice(0, 10), '2026-12-03'));\n`);
      const mocha = join(ROOT, 'node_modules', 'mocha', 'bin', 'mocha.js');
      const args = ['--import', 'tsx', mocha, '--no-config', '--require', join(dir, 'clock.cjs'), '--require', join(ROOT, 'test', 'helpers', 'calendar-day.ts'), join(dir, 'day.test.cjs')];
      const r = await promisify(execFile)(process.execPath, args, { cwd: ROOT }).catch((err: { stdout: string; stderr: string }) => err);
      expect(r.stdout + r.stderr).to.match(/1 passing/);
    } finally {
      await cleanup();
    }
  });

  it('is a root hook of every run, ahead of the file timings', async () => {
    const config = JSON.parse(await readFile(join(ROOT, '.mocharc.json'), 'utf8')) as { require: string[] };
    const mine = config.require.indexOf('test/helpers/calendar-day.ts');
    expect(mine).to.be.at.least(0);
    expect(mine).to.be.below(config.require.indexOf('test/helpers/file-times.ts'));
  });
});
