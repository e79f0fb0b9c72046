#!/usr/bin/env node
import { register } from 'tsx/esm/api';

register();
await import('../vendor-server/cli.ts');
