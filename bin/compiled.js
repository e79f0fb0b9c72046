import { hash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire, Module } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';

/** Where the executables keep V8's code caches of their scripts; the build empties it. */
export const CODE_CACHE_DIR = fileURLToPath(new URL('../dist/.code-cache/', import.meta.url));

/**
 * How long a process that is still running (a server) waits before it writes the code
 * cache of its command; a process that ends sooner writes it as it exits.
 */
const SAVE_AFTER_MS = 2000;
/** The first line of a cache file. */
const MAGIC = 'mallpos-code-cache 1';
/** Commands recorded in one cache file at most. */
const MAX_COMMANDS = 64;
/** A command as a cache file holds it: its name, or '-' for a run without one (--help, say). */
const RECORD = /^(?:-|[a-z][a-z0-9-]{0,39})$/;
const isRecord = (c) => typeof c === 'string' && RECORD.test(c);
/** What a cache records of a command: its record, or null for a name outside the pattern. */
const recordOf = (command) => (command === '' ? '-' : isRecord(command) ? command : null);

const sha256 = (data) => hash('sha256', data, 'hex');

/**
 * Runs a compiled program from dist/. When it is not there (a checkout that skipped
 * `npm ci`, or dist/ deleted) the executable says so in one line instead of a stack.
 */
export function runCompiled(program, entry) {
  const file = fileURLToPath(new URL(`../dist/${entry}`, import.meta.url));
  if (!existsSync(file)) {
    console.error(`${program}: dist/${entry} is missing; build it with "npm run build" (npm ci does it too)`);
    process.exit(1);
  }
  runScript(file, { cacheDir: CODE_CACHE_DIR, command: commandOf(process.argv) });
}

/** The command a process runs: its first argument that is not an option ('' for none). */
function commandOf(argv) {
  return argv.slice(2).find((a) => !a.startsWith('-')) ?? '';
}

/**
 * The code cache of a script as this process would load it: V8 accepts a cache only from
 * the same V8 and the same flags, and the file is named by those and by the script's
 * text, so a changed script never meets the cache of another.
 */
function cachePath(cacheDir, file, source) {
  const key = sha256([sha256(source), process.version, process.arch, ...process.execArgv, process.env['NODE_OPTIONS'] ?? ''].join('\0'));
  const name = file.replace(/^.*[\\/]dist[\\/]/, '').replace(/[^A-Za-z0-9.-]+/g, '-');
  return join(cacheDir, `${name}-${key.slice(0, 24)}.bin`);
}

/**
 * A cache file's code, its hash and the commands whose runs it holds, or null when it is
 * missing, torn or changed: V8 checks that a cache is of its version, flags and a script
 * of the same length, not its content, so the file carries the SHA-256 of its code, and
 * code that does not match it is never given to V8.
 */
function readCache(path) {
  let bytes;
  try {
    bytes = readFileSync(path);
  } catch {
    return null;
  }
  const first = bytes.indexOf(10);
  const second = first < 0 ? -1 : bytes.indexOf(10, first + 1);
  if (second < 0 || bytes.subarray(0, first).toString() !== MAGIC) return null;
  let header;
  try {
    header = JSON.parse(bytes.subarray(first + 1, second).toString());
  } catch {
    return null;
  }
  const data = bytes.subarray(second + 1);
  if (typeof header?.sha256 !== 'string' || !Array.isArray(header.commands) || header.sha256 !== sha256(data)) return null;
  return { data, sha256: header.sha256, commands: header.commands.filter(isRecord) };
}

/**
 * Runs a CommonJS script (a bundle of the build) as the main module's code, with V8's
 * cache of the code compiled for it by earlier runs of the same command, and records a
 * cache when there was none, V8 refused it, or it did not hold this command: once the
 * process has run for SAVE_AFTER_MS, or as it exits if sooner. A cache holds what every
 * command recorded in it had compiled, so a few runs of each command fill it. A process
 * does not replace a cache another wrote since it started: it did not load that one's
 * code, and its next run adds to it instead.
 *
 * A cache that cannot be read or written only makes that start slower. Returns what
 * happened to the cache: 'used', 'refused' (by V8) or 'none' (missing or not intact).
 */
export function runScript(file, { cacheDir, command }) {
  const source = readFileSync(file, 'utf8');
  const path = cachePath(cacheDir, file, source);
  const cache = readCache(path);
  const script = new vm.Script(Module.wrap(source), {
    filename: file,
    ...(cache === null ? {} : { cachedData: cache.data }),
    // import() of a module the bundle could not include goes to Node's own loader.
    importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER,
  });
  const status = cache === null ? 'none' : script.cachedDataRejected === true ? 'refused' : 'used';
  const commands = status === 'used' ? cache.commands : [];
  const record = recordOf(command);
  if (status !== 'used' || (record !== null && !commands.includes(record) && commands.length < MAX_COMMANDS)) {
    let saved = false;
    const save = () => {
      if (saved) return;
      saved = true;
      try {
        if ((readCache(path)?.sha256 ?? null) !== (cache?.sha256 ?? null)) return;
        const data = script.createCachedData();
        const header = JSON.stringify({ commands: [...new Set([...commands, ...(record === null ? [] : [record])])].sort(), sha256: sha256(data) });
        mkdirSync(cacheDir, { recursive: true });
        const tmp = `${path}.${process.pid}.tmp`;
        writeFileSync(tmp, Buffer.concat([Buffer.from(`${MAGIC}\n${header}\n`), data]));
        renameSync(tmp, path);
      } catch {
        // A read-only install or a full disk: the next start compiles again.
      }
    };
    process.once('exit', save);
    setTimeout(save, SAVE_AFTER_MS).unref();
  }
  const main = new Module(file, null);
  main.filename = file;
  script.runInThisContext()(main.exports, createRequire(file), main, file, dirname(file));
  return status;
}
