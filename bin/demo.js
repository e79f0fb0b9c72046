#!/usr/bin/env -S node --max-semi-space-size=8
// `npm start`: compiles dist/ first when it is missing or older than a source, then runs the demo from it.
import { buildIfStale } from './build.js';
import { runCompiled } from './compiled.js';

try {
  await buildIfStale('mallpos demo');
} catch (err) {
  console.error(`mallpos demo: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
runCompiled('mallpos demo', 'bin/demo.bundle.cjs');
