#!/usr/bin/env node
/**
 * Compiles the TypeScript sources to dist/ (tsc with tsconfig.build.json) and copies the
 * files served as they are (the cashier screen) next to the code that serves them. The
 * executables run dist/, so that production does not carry the tsx loader.
 *
 *   node bin/build.js             always build (npm run build, npm's prepare on npm ci)
 *   node bin/build.js --if-stale  build only when a source is newer than the last build
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const ROOT = fileURLToPath(new URL('../', import.meta.url));
export const DIST = join(ROOT, 'dist');

/** What tsc compiles: every folder tsconfig.build.json includes. */
const SOURCE_DIRS = ['core', 'platform', 'vendor-server', 'terminal', 'mall-sync', 'hardware', 'bin'];
const CONFIG_FILES = ['tsconfig.json', 'tsconfig.build.json', 'package-lock.json'];
/** Folders of files a browser loads as they are; copied without their TypeScript, if any. */
const ASSET_DIRS = ['terminal/screen'];
/** The compiled entry points; a build missing any of them is not a build. */
const ENTRIES = ['vendor-server/cli.js', 'terminal/cli.js', 'mall-sync/cli.js', 'bin/demo.js'];
/** Written last, so that its time says when a complete build finished. */
const STAMP = join(DIST, '.built');
const BUILD_INFO = join(DIST, '.tsbuildinfo');

/** The newest modification time among the sources, their folders (a deleted file changes its folder) and the configs. */
function newestSourceMs() {
  let newest = 0;
  const visit = (path) => {
    let st;
    try {
      st = statSync(path);
    } catch {
      return;
    }
    newest = Math.max(newest, st.mtimeMs);
    if (!st.isDirectory()) return;
    for (const name of readdirSync(path)) visit(join(path, name));
  };
  for (const dir of SOURCE_DIRS) visit(join(ROOT, dir));
  for (const file of CONFIG_FILES) visit(join(ROOT, file));
  return newest;
}

/** Why dist/ needs building, or null when it is complete and newer than every source. */
export function staleReason() {
  if (!existsSync(STAMP)) return 'dist/ has not been built';
  for (const entry of ENTRIES) if (!existsSync(join(DIST, entry))) return `dist/${entry} is missing`;
  if (newestSourceMs() > statSync(STAMP).mtimeMs) return 'a source is newer than dist/';
  return null;
}

/** Builds dist/; throws an Error with a one-line message when tsc fails or is not installed. */
export function build() {
  let tsc;
  try {
    tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  } catch {
    throw new Error('TypeScript is not installed: run "npm ci" (with dev dependencies) to build dist/');
  }
  // An incomplete dist/ must not be trusted by tsc's incremental state either.
  if (!existsSync(STAMP)) rmSync(BUILD_INFO, { force: true });
  rmSync(STAMP, { force: true });
  const r = spawnSync(process.execPath, [tsc, '-p', join(ROOT, 'tsconfig.build.json')], { cwd: ROOT, stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`tsc failed (${r.error?.message ?? `exit ${r.status ?? r.signal}`}); see its messages above`);
  for (const dir of ASSET_DIRS) {
    const to = join(DIST, dir);
    rmSync(to, { recursive: true, force: true });
    mkdirSync(to, { recursive: true });
    cpSync(join(ROOT, dir), to, { recursive: true, filter: (src) => !src.endsWith('.ts') });
  }
  writeFileSync(STAMP, `${new Date().toISOString()}\n`);
}

/** Builds dist/ when it is missing or older than a source; says why on stderr first. */
export function buildIfStale(program = 'mallpos') {
  const reason = staleReason();
  if (reason === null) return false;
  console.error(`${program}: ${reason}; compiling it (tsc) ...`);
  build();
  return true;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    if (process.argv.includes('--if-stale')) buildIfStale();
    else build();
  } catch (err) {
    console.error(`build: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  }
}
