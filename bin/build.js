#!/usr/bin/env node
/**
 * Compiles the TypeScript sources to dist/ (tsc with tsconfig.build.json), copies the
 * files served as they are (the cashier screen) next to the code that serves them, and
 * bundles each program (esbuild) into one CommonJS script. The executables run those
 * scripts with V8's cache of their compiled code (bin/compiled.js), so that production
 * carries neither the tsx loader nor the cost of loading some 800 modules one by one, and
 * a process does not compile again what the last run of its command compiled: every
 * start, every CLI command and every audit pays that cost.
 *
 *   node bin/build.js             always build (npm run build, npm's prepare on npm ci)
 *   node bin/build.js --if-stale  build only when a source is newer than the last build
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { CODE_CACHE_DIR } from './compiled.js';

export const ROOT = fileURLToPath(new URL('../', import.meta.url));
export const DIST = join(ROOT, 'dist');

/** What tsc compiles: every folder tsconfig.build.json includes. */
const SOURCE_DIRS = ['core', 'platform', 'vendor-server', 'terminal', 'mall-sync', 'hardware', 'bin'];
const CONFIG_FILES = ['tsconfig.json', 'tsconfig.build.json', 'package-lock.json'];
/** Folders of files a browser loads as they are; copied without their TypeScript, if any. */
const ASSET_DIRS = ['terminal/screen'];
/**
 * The programs, each bundled from its compiled entry point into `<entry>.bundle.cjs` next
 * to it: the three executables, the demo, the vendor server's audit process and the
 * threads of its replay at start.
 */
export const BUNDLED = ['vendor-server/cli.js', 'terminal/cli.js', 'mall-sync/cli.js', 'bin/demo.js', 'vendor-server/ledger/audit-process.js', 'vendor-server/ledger/replay-thread.js'];
/** What a build must have made; a build missing any of them is not a build. */
const ENTRIES = BUNDLED.flatMap((entry) => [entry, bundleOf(entry)]);
/**
 * Left out of the bundles and loaded from node_modules at run time: native addons and
 * their loaders (found through the package's own directory), and optional packages that
 * are not installed.
 */
const EXTERNAL = ['@serialport/bindings-cpp', 'pg-native', 'better-sqlite3'];
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

/** The bundle of a compiled entry point: `dist/x/cli.js` -> `dist/x/cli.bundle.cjs`. */
export function bundleOf(entry) {
  return entry.replace(/\.js$/, '.bundle.cjs');
}

/**
 * A module's own location, wherever its code ends up. A bundle holds the code of many
 * files in one, but what that code finds relative to itself (the cashier screen's files,
 * the audit process's script, a package's data) is next to its original file, which
 * stays where it was: so `import.meta.url` in an ES module, and `__dirname` and
 * `__filename` in a CommonJS one, are given as that file's.
 *
 * Found at run time from the project's folder, which each bundle finds from its own
 * place (PROJECT_ROOT_VAR, set by withProjectRoot): a checkout moved or copied elsewhere
 * after its build runs its own files, never those of the folder it was built in.
 */
const ownLocation = {
  name: 'own-location',
  setup(b) {
    b.onLoad({ filter: /\.(c|m)?js$/ }, async (args) => {
      const text = await readFile(args.path, 'utf8');
      const file = `require("node:path").join(${PROJECT_ROOT_VAR}, ${JSON.stringify(fromRoot(args.path))})`;
      if (text.includes('import.meta')) {
        return { contents: text.replaceAll('import.meta.url', `require("node:url").pathToFileURL(${file}).href`), loader: 'js' };
      }
      if (text.includes('__dirname') || text.includes('__filename')) {
        const dir = `require("node:path").join(${PROJECT_ROOT_VAR}, ${JSON.stringify(fromRoot(dirname(args.path)))})`;
        return { contents: `var __dirname = ${dir}, __filename = ${file};\n${text}`, loader: 'js' };
      }
      return undefined;
    });
  },
};

/** The project's folder in a bundle: set from the bundle's own place as it starts. */
const PROJECT_ROOT_VAR = '__mallposRoot';

/** A path inside the project as the path from its folder, with forward slashes. */
function fromRoot(path) {
  return slashed(relative(ROOT, path));
}

function slashed(path) {
  return path.split(sep).join('/');
}

/**
 * The bundle's text, starting by finding the project's folder from the bundle's own
 * (`__dirname` of the script: the executables, a worker thread and a child process all
 * run it as a CommonJS script), after the "use strict" that must stay first.
 */
function withProjectRoot(text, bundlePath) {
  const up = slashed(relative(dirname(bundlePath), ROOT)) || '.';
  const declaration = `var ${PROJECT_ROOT_VAR}=require("node:path").join(__dirname,${JSON.stringify(up)});`;
  const strict = '"use strict";';
  return text.startsWith(strict) ? `${strict}${declaration}${text.slice(strict.length)}` : `${declaration}${text}`;
}

/**
 * zod's error messages in every language it speaks: the processes answer in English only
 * (zod's default, which its schemas import directly), and the other locales' text, about
 * a ninth of each bundle, would be read and compiled at every start. `z.locales` is left
 * with English alone.
 */
const englishOnly = {
  name: 'english-only',
  setup(b) {
    b.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) => {
      if (!/[\\/]zod[\\/]v4[\\/](classic|core)$/.test(args.resolveDir)) return undefined;
      return { path: join(args.resolveDir, '..', 'locales', 'index.js'), namespace: 'english-only' };
    });
    b.onLoad({ filter: /.*/, namespace: 'english-only' }, (args) => ({
      contents: `export { default as en } from ${JSON.stringify(join(dirname(args.path), 'en.js'))};`,
      resolveDir: dirname(args.path),
      loader: 'js',
    }));
  },
};

/**
 * The tables of single- and double-byte character sets in express's copy of iconv-lite
 * (about a sixth of each bundle), which it uses only to decode request bodies: the
 * servers read JSON bodies, which body-parser accepts in UTF-8, -16 or -32 alone and
 * refuses in any other charset before decoding, and those codecs are iconv-lite's own
 * and stay. node-thermal-printer's own copy, which encodes receipts, keeps its tables.
 */
const unicodeBodiesOnly = {
  name: 'unicode-bodies-only',
  setup(b) {
    const expressCopy = join(ROOT, 'node_modules', 'iconv-lite', 'encodings');
    b.onResolve({ filter: /^\.\/(sbcs-data|sbcs-data-generated|dbcs-data)$/ }, (args) => {
      if (args.resolveDir !== expressCopy) return undefined;
      return { path: args.path, namespace: 'unicode-bodies-only' };
    });
    b.onLoad({ filter: /.*/, namespace: 'unicode-bodies-only' }, () => ({ contents: 'module.exports = {};', loader: 'js' }));
  },
};

/**
 * mime-db, the table of media types, is installed three times (express's copy and an older
 * one each for socket.io and engine.io). Every bundled copy is the newest one, which
 * knows every type the older ones know.
 */
const oneMimeDb = {
  name: 'one-mime-db',
  setup(b) {
    const newest = createRequire(join(ROOT, 'package.json')).resolve('mime-db');
    b.onResolve({ filter: /^mime-db$/ }, () => ({ path: newest }));
  },
};

/**
 * Bundles every program of BUNDLED from its compiled files in dist/, each into one
 * CommonJS script: V8 keeps a cache of the code it compiled only for scripts, not for ES
 * modules (Node 20), and the executables load their script with that cache. Code a
 * command imports only when it runs (a server, the certificate library) is in the script
 * but neither run nor compiled until then.
 */
async function bundle() {
  let esbuild;
  try {
    esbuild = await import('esbuild');
  } catch {
    throw new Error('esbuild is not installed: run "npm ci" (with dev dependencies) to build dist/');
  }
  const result = await esbuild.build({
    write: false,
    entryPoints: Object.fromEntries(BUNDLED.map((entry) => [bundleOf(entry).replace(/\.cjs$/, ''), join(DIST, entry)])),
    outdir: DIST,
    outExtension: { '.js': '.cjs' },
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    external: EXTERNAL,
    // Smaller text to read and parse at every start; names are kept, so stacks still say where.
    minifyWhitespace: true,
    minifySyntax: true,
    legalComments: 'none',
    logLevel: 'error',
    plugins: [englishOnly, unicodeBodiesOnly, oneMimeDb, ownLocation],
  });
  // Each file is written beside its place and renamed into it, so that a program starting
  // during a rebuild reads a whole file. The code caches of the scripts replaced go with them.
  for (const file of result.outputFiles) {
    mkdirSync(dirname(file.path), { recursive: true });
    writeFileSync(`${file.path}.${process.pid}.tmp`, withProjectRoot(file.text, file.path));
    renameSync(`${file.path}.${process.pid}.tmp`, file.path);
  }
  rmSync(CODE_CACHE_DIR, { recursive: true, force: true });
}

/** Builds dist/; throws an Error with a one-line message when tsc, esbuild or the bundling fails or is not installed. */
export async function build() {
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
  try {
    await bundle();
  } catch (err) {
    throw new Error(`bundling failed: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
  }
  writeFileSync(STAMP, `${new Date().toISOString()}\n`);
}

/** Builds dist/ when it is missing or older than a source; says why on stderr first. */
export async function buildIfStale(program = 'mallpos') {
  const reason = staleReason();
  if (reason === null) return false;
  console.error(`${program}: ${reason}; compiling it (tsc, esbuild) ...`);
  await build();
  return true;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    if (process.argv.includes('--if-stale')) await buildIfStale();
    else await build();
  } catch (err) {
    console.error(`build: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  }
}
