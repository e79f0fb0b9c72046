import { execFile } from 'node:child_process';
import { copyFile, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { ROOT, runBin } from '../helpers/process.ts';
import { tempDir } from '../helpers/temp.ts';

const COMPILED = pathToFileURL(join(ROOT, 'bin', 'compiled.js')).href;
/** The V8 flags of the vendor server's #! line: a cache made under them is refused without them. */
const SERVER_FLAGS = ['--max-semi-space-size=16', '--heap-growing-percent=10'];

/**
 * A script of the kind the build makes: CommonJS, some functions, one line of output. Told
 * so, it puts a file in place while it runs, as another process writing a cache would.
 */
const script = (value: number) => `'use strict';
if (process.env.CC_PLANT) require('node:fs').copyFileSync(process.env.CC_PLANT, process.env.CC_PLANT_AT);
function twice(n) { return n * 2; }
const parts = [1, 2, 3].map((n) => twice(n) + ${value});
console.log('value=' + ${value} + ' ' + parts.join(','));
`;

/** Runs the script as the executables run theirs, in a process of its own; what it printed and the cache's fate. */
async function run(file: string, cacheDir: string, command: string, flags: string[] = [], more: NodeJS.ProcessEnv = {}): Promise<{ value: string; status: string }> {
  // The same code every time (node's -e is part of the flags a cache is kept by); what varies comes in the environment.
  const code = `import { runScript } from ${JSON.stringify(COMPILED)};
const { CC_FILE, CC_DIR, CC_COMMAND } = process.env;
console.log('status=' + runScript(CC_FILE, { cacheDir: CC_DIR, command: CC_COMMAND }));`;
  const env = { ...process.env, NODE_OPTIONS: '', CC_FILE: file, CC_DIR: cacheDir, CC_COMMAND: command, ...more };
  const { stdout } = await promisify(execFile)(process.execPath, [...flags, '--input-type=module', '-e', code], { env });
  return { value: /value=(.*)/.exec(stdout)?.[1] ?? '', status: /status=(\w+)/.exec(stdout)?.[1] ?? '' };
}

/** The cache files in a folder with the commands each says it holds. */
async function caches(cacheDir: string): Promise<{ name: string; commands: string[]; bytes: Buffer }[]> {
  const names = (await readdir(cacheDir).catch(() => [] as string[])).filter((n) => n.endsWith('.bin')).sort();
  return Promise.all(
    names.map(async (name) => {
      const bytes = await readFile(join(cacheDir, name));
      const header = bytes.toString('latin1').split('\n')[1] ?? '{}';
      return { name, commands: (JSON.parse(header) as { commands: string[] }).commands, bytes };
    }),
  );
}

describe('bin/compiled.js: the executables run their script with the code cache of earlier runs', function () {
  this.timeout(60_000);
  let dir = '';
  let cleanup = async () => {};
  let file = '';
  let cacheDir = '';
  beforeEach(async () => {
    ({ dir, cleanup } = await tempDir('mallpos-code-cache-'));
    file = join(dir, 'program.cjs');
    cacheDir = join(dir, 'cache');
    await writeFile(file, script(1));
  });
  afterEach(() => cleanup());

  it('records a cache at the first run of a command and uses it unchanged at the next', async () => {
    expect(await run(file, cacheDir, 'start')).to.deep.equal({ value: '1 3,5,7', status: 'none' });
    const [first, ...others] = await caches(cacheDir);
    expect(others).to.have.length(0);
    expect(first?.commands).to.deep.equal(['start']);
    expect(await run(file, cacheDir, 'start')).to.deep.equal({ value: '1 3,5,7', status: 'used' });
    const [again] = await caches(cacheDir);
    expect(again?.bytes.equals(first?.bytes ?? Buffer.alloc(0)), 'not written again').to.equal(true);
  });

  it('adds each new command to the cache once, a run without one as "-", and never a name outside the pattern', async () => {
    await run(file, cacheDir, 'start');
    expect(await run(file, cacheDir, 'verify')).to.include({ status: 'used' });
    expect((await caches(cacheDir))[0]?.commands).to.deep.equal(['start', 'verify']);
    await run(file, cacheDir, '');
    expect((await caches(cacheDir))[0]?.commands).to.deep.equal(['-', 'start', 'verify']);
    const before = (await caches(cacheDir))[0]?.bytes;
    for (const odd of ['../../etc/passwd', 'Start', 'a"b', 'x'.repeat(41)]) expect(await run(file, cacheDir, odd)).to.include({ status: 'used' });
    expect((await caches(cacheDir))[0]?.bytes.equals(before ?? Buffer.alloc(0))).to.equal(true);
  });

  it('does not replace a cache that another process wrote after it started; its next run adds its command', async () => {
    await run(file, cacheDir, 'start');
    const [theirs] = await caches(cacheDir);
    if (theirs === undefined) throw new Error('no cache was written');
    const planted = join(dir, 'theirs.bin');
    await rename(join(cacheDir, theirs.name), planted);
    // Starts with no cache; while it runs, the other process's cache appears.
    expect(await run(file, cacheDir, 'verify', [], { CC_PLANT: planted, CC_PLANT_AT: join(cacheDir, theirs.name) })).to.include({ status: 'none' });
    const [after] = await caches(cacheDir);
    expect(after?.bytes.equals(theirs.bytes), 'the other process\'s cache is kept as it was').to.equal(true);
    expect(await run(file, cacheDir, 'verify')).to.include({ status: 'used' });
    expect((await caches(cacheDir))[0]?.commands).to.deep.equal(['start', 'verify']);
  });

  it('never gives V8 the cache of another script of the same length: the changed script runs as written', async () => {
    await run(file, cacheDir, 'start');
    await writeFile(file, script(2));
    expect(script(2)).to.have.length(script(1).length);
    expect(await run(file, cacheDir, 'start')).to.deep.equal({ value: '2 4,6,8', status: 'none' });
    expect(await caches(cacheDir)).to.have.length(2);
  });

  it('never gives V8 a cache whose code was changed on disk, and writes a whole one again', async () => {
    await run(file, cacheDir, 'start');
    const [cache] = await caches(cacheDir);
    if (cache === undefined) throw new Error('no cache was written');
    const bytes = Buffer.from(cache.bytes);
    bytes[bytes.length - 9] = (bytes[bytes.length - 9] ?? 0) ^ 0x40;
    await writeFile(join(cacheDir, cache.name), bytes);
    expect(await run(file, cacheDir, 'start')).to.deep.equal({ value: '1 3,5,7', status: 'none' });
    expect(await run(file, cacheDir, 'start')).to.deep.equal({ value: '1 3,5,7', status: 'used' });
    for (const torn of [cache.bytes.subarray(0, 30), Buffer.from('mallpos-code-cache 1\n{"commands":\n')]) {
      await writeFile(join(cacheDir, cache.name), torn);
      expect(await run(file, cacheDir, 'start')).to.deep.equal({ value: '1 3,5,7', status: 'none' });
    }
  });

  it('keeps a cache per set of V8 flags, and runs as written when V8 refuses a cache made under others', async () => {
    await run(file, cacheDir, 'start');
    const plain = (await caches(cacheDir))[0]?.name ?? '';
    expect(await run(file, cacheDir, 'start', SERVER_FLAGS)).to.include({ status: 'none' });
    const flagged = (await caches(cacheDir)).find((c) => c.name !== plain)?.name ?? '';
    expect(flagged).to.not.equal('');
    expect(await run(file, cacheDir, 'start', SERVER_FLAGS)).to.include({ status: 'used' });
    // An intact file, but made under the other flags: V8 itself refuses it; the script still runs.
    await copyFile(join(cacheDir, flagged), join(cacheDir, plain));
    expect(await run(file, cacheDir, 'start')).to.deep.equal({ value: '1 3,5,7', status: 'refused' });
    expect(await run(file, cacheDir, 'start')).to.deep.equal({ value: '1 3,5,7', status: 'used' });
  });

  it('runs as written when the cache cannot be kept (its folder is a file)', async () => {
    await writeFile(cacheDir, 'not a folder');
    expect(await run(file, cacheDir, 'start')).to.deep.equal({ value: '1 3,5,7', status: 'none' });
    expect(await run(file, cacheDir, 'start')).to.deep.equal({ value: '1 3,5,7', status: 'none' });
  });

  it('an executable records the code cache of the command it ran next to dist/', async () => {
    // Another test's till may write the cache first; a run after that adds its own command.
    const held = async () => {
      const r = await runBin('bin/pos-terminal.js', ['--help']);
      expect(r.code, r.stderr).to.equal(0);
      const mine = (await caches(join(ROOT, 'dist', '.code-cache'))).filter((c) => c.name.startsWith('terminal-cli.bundle.cjs-'));
      return mine.some((c) => c.commands.includes('-'));
    };
    let recorded = false;
    for (let run = 0; run < 5 && !recorded; run++) recorded = await held();
    expect(recorded, 'a run of pos-terminal --help is recorded in its cache').to.equal(true);
  });
});
