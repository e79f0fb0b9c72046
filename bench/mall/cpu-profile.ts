import { readdir, readFile, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { ROOT } from './children.ts';

/**
 * Summarises a V8 .cpuprofile (written by `node --cpu-prof`) as self time per function
 * and per file, and as total time (self + callees) of the steps of an ingest, so the
 * bench can say where the mall's time goes without a viewer.
 */

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/**
 * The steps of an ingest worth a total: [function name, a piece of its file's path].
 * Async functions count each resumed piece under their own name, so their totals cover
 * all their synchronous work, wherever it resumed.
 */
const STEPS: [string, string][] = [
  ['jsonParser', 'body-parser'],
  ['ingest', 'mall-sync/ingest.ts'],
  ['safeParse', 'zod'],
  ['flattenedVerify', 'jose'],
  ['verifyBatchEvents', 'core/batch.ts'],
  ['sha256Hex', 'core/batch.ts'],
  ['ingestInOrder', 'mall-sync/ingest.ts'],
  ['judgeBatch', 'mall-sync/judge.ts'],
  ['redemptionClearing', 'mall-sync/clearing.ts'],
  ['signJson', 'mall-sync/jws.ts'],
  ['archive', 'mall-sync/ingest.ts'],
  ['writeFileDurable', 'durable-file.ts'],
  ['commit', 'mall-sync/store/embedded.ts'],
  ['append', 'storage/journal.ts'],
  ['applyMallEvent', 'mall-sync/store/state.ts'],
  ['verifyAhead', 'mall-sync/ingest.ts'],
  ['runGroup', 'mall-sync/store/postgres.ts'],
  ['catchUp', 'mall-sync/store/postgres.ts'],
  ['insertBatch', 'mall-sync/store/postgres.ts'],
  ['fresh', 'mall-sync/store/postgres.ts'],
  ['makeDurable', 'mall-sync/store/postgres.ts'],
  ['parseMessage', 'pg-protocol'],
  ['parseRow', 'pg/lib/result.js'],
  ['checkpoint', 'mall-sync/store/embedded.ts'],
  ['write', 'durable-file.ts'],
  ['(garbage collector)', ''],
];

function place(url: string): string {
  if (url === '') return '(native)';
  const path = url.startsWith('file://') ? new URL(url).pathname : url;
  return path.startsWith(ROOT) ? relative(ROOT, path) : path;
}

export interface Share {
  name: string;
  ms: number;
  share: number;
}

export interface ProfileSummary {
  totalMs: number;
  functions: Share[];
  files: Share[];
  inclusive: Share[];
}

/**
 * Self time of the samples taken from skipMs after the profile started on, leaving out
 * the idle samples (the event loop waiting for I/O or requests is not work).
 */
export function summarise(profile: CpuProfile, top: number, skipMs: number): ProfileSummary {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of profile.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const selfUs = new Map<number, number>();
  let at = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i] as number;
    const delta = profile.timeDeltas[i] ?? 0;
    at += delta;
    if (at < skipMs * 1000) continue;
    selfUs.set(id, (selfUs.get(id) ?? 0) + delta);
  }
  const fns = new Map<string, number>();
  const files = new Map<string, number>();
  const steps = new Map<string, number>();
  let total = 0;
  for (const [id, us] of selfUs) {
    const f = byId.get(id)?.callFrame;
    if (f === undefined || f.functionName === '(idle)' || f.functionName === '(program)') continue;
    total += us;
    const file = place(f.url);
    const name = `${f.functionName === '' ? '(anonymous)' : f.functionName} ${file}${f.url === '' ? '' : `:${f.lineNumber + 1}`}`;
    fns.set(name, (fns.get(name) ?? 0) + us);
    const bucket = file.includes('node_modules/') ? file.replace(/^.*node_modules\/((?:@[^/]+\/)?[^/]+).*$/, 'node_modules/$1') : file;
    files.set(bucket, (files.get(bucket) ?? 0) + us);
    // Each step once per stack, however deep it recurses.
    const seen = new Set<string>();
    for (let n: number | undefined = id; n !== undefined; n = parent.get(n)) {
      const frame = byId.get(n)?.callFrame;
      if (frame === undefined) break;
      for (const [fn, path] of STEPS) {
        const key = `${fn}${path === '' ? '' : ` (${path})`}`;
        // The mall children run the bundle (one file: matched by the function's name alone), the bench itself the sources.
        const inFile = frame.url.endsWith('.bundle.cjs') || frame.url.includes(path) || frame.url.includes(path.replace(/\.ts$/, '.js'));
        if (frame.functionName === fn && inFile && !seen.has(key)) {
          seen.add(key);
          steps.set(key, (steps.get(key) ?? 0) + us);
        }
      }
    }
  }
  const share = (name: string, us: number): Share => ({ name, ms: us / 1000, share: us / total });
  const rank = (m: Map<string, number>) => [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, top).map(([name, us]) => share(name, us));
  const inclusive = STEPS.map(([fn, path]) => `${fn}${path === '' ? '' : ` (${path})`}`)
    .filter((k) => steps.has(k))
    .map((k) => share(k, steps.get(k) as number));
  return { totalMs: total / 1000, functions: rank(fns), files: rank(files), inclusive };
}

/**
 * Reads the largest .cpuprofile in dir. A process started through tsx also profiles its
 * module-loader thread, which writes a small profile of its own next to the main one.
 */
export async function readProfile(dir: string): Promise<CpuProfile | null> {
  const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => n.endsWith('.cpuprofile'));
  let best: { name: string; size: number } | null = null;
  for (const name of names) {
    const { size } = await stat(join(dir, name));
    if (best === null || size > best.size) best = { name, size };
  }
  if (best === null) return null;
  return JSON.parse(await readFile(join(dir, best.name), 'utf8')) as CpuProfile;
}
