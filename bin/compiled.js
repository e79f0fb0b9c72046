import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * Runs a compiled entry point from dist/. When it is not there (a checkout that skipped
 * `npm ci`, or dist/ deleted) the executable says so in one line instead of a stack.
 */
export async function runCompiled(program, entry) {
  const url = new URL(`../dist/${entry}`, import.meta.url);
  if (!existsSync(fileURLToPath(url))) {
    console.error(`${program}: dist/${entry} is missing; build it with "npm run build" (npm ci does it too)`);
    process.exit(1);
  }
  await import(url.href);
}
