#!/usr/bin/env -S node --max-semi-space-size=8
// V8 flags live on the line above, not in a wrapper process, so that a signal sent to this pid (SIGKILL included) reaches the server itself.
import { runCompiled } from './compiled.js';

runCompiled('pos-terminal', 'terminal/cli.bundle.cjs');
