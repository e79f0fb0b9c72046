import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';

/**
 * Starts a worker thread on a script of ours. From the TypeScript sources, the thread
 * first registers the loader the process runs under (a thread does not inherit it); the
 * build runs its bundled script as it is. None of the process's Node options are passed:
 * a thread needs none, and some (--input-type, say) would stop it starting.
 */
export function startThread(script: URL): Worker {
  if (extname(fileURLToPath(script)) !== '.ts') return new Worker(script, { execArgv: [] });
  const loader = tsxEsmApi();
  const boot = `import(${JSON.stringify(loader)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(script.href)}); })`;
  return new Worker(boot, { eval: true, execArgv: [] });
}

/** The file URL of tsx's ESM API, found from its package's exports (the thread resolves nothing itself). */
function tsxEsmApi(): string {
  const pkg = createRequire(import.meta.url).resolve('tsx/package.json');
  const exports = (JSON.parse(readFileSync(pkg, 'utf8')) as { exports: Record<string, { import: { default: string } }> }).exports;
  const api = exports['./esm/api']?.import.default;
  if (api === undefined) throw new Error('tsx does not export ./esm/api');
  return pathToFileURL(join(dirname(pkg), api)).href;
}

/**
 * A script that runs in its own thread or process, next to the module at `from`: the
 * TypeScript source beside it, or the build's bundle of it (`name.bundle.cjs`).
 */
export function scriptBeside(from: string, name: string): URL {
  return new URL(extname(fileURLToPath(from)) === '.ts' ? `./${name}.ts` : `./${name}.bundle.cjs`, from);
}
