#!/usr/bin/env -S node --max-semi-space-size=8 --optimize-for-size
// V8 flags live on the line above, not in a wrapper process, so that a signal sent to this pid (SIGKILL included) reaches the server itself.
// --optimize-for-size makes V8 grow its heap in smaller steps and collect sooner: on a store of 100,000 customers it lowers the peak resident memory by about a hundred megabytes.
import { runCompiled } from './compiled.js';

await runCompiled('vendor-server', 'vendor-server/cli.js');
