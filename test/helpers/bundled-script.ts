import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
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
 */
export async function bundledScript(script: URL): Promise<URL> {
  const source = fileURLToPath(script);
  const dir = join(ROOT, '.tmp', 'bundled-scripts');
  mkdirSync(dir, { recursive: true });
  // One file per source and process: parallel test processes never write the same file.
  const outfile = join(dir, `${createHash('sha256').update(source).digest('hex').slice(0, 16)}-${process.pid}.mjs`);
  await build({ entryPoints: [source], outfile, bundle: true, platform: 'node', format: 'esm', target: 'node20', logLevel: 'error' });
  return pathToFileURL(outfile);
}
