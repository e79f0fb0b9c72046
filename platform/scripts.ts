import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * A script that runs in its own thread or process, next to the module at `from`: the
 * TypeScript source beside it under tsx, or from dist/ the build's bundle of it
 * (`name.bundle.cjs`, bin/build.js).
 */
export function scriptBeside(from: string, name: string): URL {
  return new URL(extname(fileURLToPath(from)) === '.ts' ? `./${name}.ts` : `./${name}.bundle.cjs`, from);
}
