import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ROOT } from './process.ts';

/**
 * How long each test file took when it last ran, so that the parallel run
 * (test/run-unit.ts) starts the slowest files first: a long file started last would
 * keep one worker busy after the others have run out of files. One small file per test
 * file in a git-ignored folder, so that parallel workers never write the same file.
 */
export const TIMES_DIR = join(ROOT, '.tmp', 'test-times');

let started = 0;
let startedCpu = 0;
let startedOwn = 0;

/**
 * Fields 14-17 of /proc/self/stat (counted from after the command's name): utime, stime,
 * cutime, cstime, in clock ticks (100 a second). Each file's record keeps the CPU with
 * the children and without, so that a file whose cost is in the processes it starts can
 * be told from one whose cost is its own.
 */
const WITH_CHILDREN = [11, 12, 13, 14];
const OWN = [11, 12];

/**
 * CPU milliseconds of this process and, with WITH_CHILDREN, of its children that have
 * ended (the servers and CLIs a test starts), from /proc on Linux; elsewhere this
 * process's own.
 */
function cpuMs(fieldsOf: number[]): number {
  try {
    const fields = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]?.split(' ') ?? [];
    return fieldsOf.reduce((sum, i) => sum + Number(fields[i]), 0) * 10;
  } catch {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  }
}

/**
 * Root hooks (loaded through `.mocharc.json`): in parallel mode they run around each
 * file, in a serial run around the whole run, which covers one file only when the run
 * has one; only then is a time recorded.
 */
export const mochaHooks = {
  beforeAll(): void {
    started = performance.now();
    startedCpu = cpuMs(WITH_CHILDREN);
    startedOwn = cpuMs(OWN);
  },
  afterAll(this: Mocha.Context): void {
    const files = new Set((this.test?.parent?.suites ?? []).map((s) => s.file).filter((f) => f !== undefined));
    if (files.size !== 1) return;
    const file = relative(ROOT, [...files][0] as string);
    const ms = Math.round(performance.now() - started);
    const cpu = Math.round(cpuMs(WITH_CHILDREN) - startedCpu);
    const own = Math.round(cpuMs(OWN) - startedOwn);
    try {
      mkdirSync(TIMES_DIR, { recursive: true });
      const path = join(TIMES_DIR, `${createHash('sha256').update(file).digest('hex').slice(0, 16)}.json`);
      writeFileSync(`${path}.${process.pid}`, JSON.stringify({ file, ms, cpuMs: cpu, ownCpuMs: own }));
      renameSync(`${path}.${process.pid}`, path);
    } catch {
      // Only an ordering hint: a read-only checkout runs in the fallback order.
    }
  },
};

/** The last recorded time of each test file (by path relative to the project). */
export function recordedTimes(): Map<string, number> {
  const times = new Map<string, number>();
  let names: string[] = [];
  try {
    names = readdirSync(TIMES_DIR).filter((n) => n.endsWith('.json'));
  } catch {
    return times;
  }
  for (const name of names) {
    try {
      const { file, ms } = JSON.parse(readFileSync(join(TIMES_DIR, name), 'utf8')) as { file: unknown; ms: unknown };
      if (typeof file === 'string' && typeof ms === 'number') times.set(file, ms);
    } catch {
      // A torn or foreign file: ignored.
    }
  }
  return times;
}

/**
 * What makes a test file slow, as its source shows it: child processes started and
 * killed, databases, browsers, large counts. Only ranks files that have no recorded time.
 */
const COSTLY = /spawn|runCli|runBin|runMallCli|SIGKILL|killHard|startCluster|freshDatabase|forEachStore|launchBrowser|ROUNDS|\d_000\b/g;

function estimatedCost(file: string): number {
  return readFileSync(join(ROOT, file), 'utf8').match(COSTLY)?.length ?? 0;
}

/**
 * The files, slowest first: by their recorded time; a file without one (new, or a fresh
 * checkout) goes ahead of those, ranked by its estimated cost and then its size, since a
 * new file is as likely as any to be slow and its time is known after this run.
 */
export function slowestFirst(files: string[]): string[] {
  const times = recordedTimes();
  const unknown = files
    .filter((f) => !times.has(f))
    .map((f) => ({ f, cost: estimatedCost(f), size: statSync(join(ROOT, f)).size }))
    .sort((a, b) => b.cost - a.cost || b.size - a.size || a.f.localeCompare(b.f))
    .map((x) => x.f);
  const known = files.filter((f) => times.has(f)).sort((a, b) => (times.get(b) as number) - (times.get(a) as number) || a.localeCompare(b));
  return [...unknown, ...known];
}
