import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import { ROOT } from './process.ts';

/**
 * A TypeScript script for a thread or a child process, bundled into one JavaScript file
 * under `.tmp/`, as the build bundles the programs' own. Started on the `.ts` file, a
 * thread or process first loads tsx and compiles each module it imports, which costs
 * several times what its work costs in a test that starts dozens of them; the bundle
 * starts at once. Tests that start few threads keep the `.ts` script, so that path stays
 * tested too.
 *
 * The file is named by the hash of what it holds: parallel test processes that bundle
 * the same script write the same file (each through a rename of its own), and the folder
 * grows only when a source changes. A process bundles each script once.
 */
export function bundledScript(script: URL): Promise<URL> {
  let bundled = bundles.get(script.href);
  if (bundled === undefined) {
    bundled = bundle(script);
    bundles.set(script.href, bundled);
    // A failed bundling is tried again by the next caller.
    bundled.catch(() => bundles.delete(script.href));
  }
  return bundled;
}

const bundles = new Map<string, Promise<URL>>();

async function bundle(script: URL): Promise<URL> {
  const { outputFiles } = await build({ entryPoints: [fileURLToPath(script)], write: false, bundle: true, platform: 'node', format: 'esm', target: 'node20', logLevel: 'error' });
  const code = outputFiles[0]?.contents;
  if (code === undefined) throw new Error(`esbuild made nothing of ${script.href}`);
  const dir = join(ROOT, '.tmp', 'bundled-scripts');
  const path = join(dir, `${createHash('sha256').update(code).digest('hex').slice(0, 16)}.mjs`);
  if (!existsSync(path)) {
    mkdirSync(dir, { recursive: true });
    writeFileSync(`${path}.${process.pid}`, code);
    renameSync(`${path}.${process.pid}`, path);
  }
  return pathToFileURL(path);
}
