import { readdir, readFile, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { ROOT } from './children.ts';

/**
 * Summarises a V8 .cpuprofile (written by `node --cpu-prof`) as self time per function
 * and per file, so the bench can say where a server's time goes without a viewer.
 */

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

function place(url: string): string {
  if (url === '') return '(native)';
  const path = url.startsWith('file://') ? new URL(url).pathname : url;
  return path.startsWith(ROOT) ? relative(ROOT, path) : path;
}

export interface ProfileSummary {
  totalMs: number;
  functions: { name: string; ms: number; share: number }[];
  files: { name: string; ms: number; share: number }[];
}

/**
 * Self time of the samples taken from skipMs after the profile started on, leaving out
 * the idle samples (the event loop waiting for I/O or requests is not work).
 */
export function summarise(profile: CpuProfile, top: number, skipMs: number): ProfileSummary {
  const byId = new Map<number, ProfileNode>();
  for (const n of profile.nodes) byId.set(n.id, n);
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
  let total = 0;
  for (const [id, us] of selfUs) {
    const f = byId.get(id)?.callFrame;
    if (f === undefined || f.functionName === '(idle)') continue;
    total += us;
    const file = place(f.url);
    const name = `${f.functionName === '' ? '(anonymous)' : f.functionName} ${file}${f.url === '' ? '' : `:${f.lineNumber + 1}`}`;
    fns.set(name, (fns.get(name) ?? 0) + us);
    const bucket = file.includes('node_modules/') ? file.replace(/^.*node_modules\/((?:@[^/]+\/)?[^/]+).*$/, 'node_modules/$1') : file;
    files.set(bucket, (files.get(bucket) ?? 0) + us);
  }
  const rank = (m: Map<string, number>) =>
    [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, top).map(([name, us]) => ({ name, ms: us / 1000, share: us / total }));
  return { totalMs: total / 1000, functions: rank(fns), files: rank(files) };
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
