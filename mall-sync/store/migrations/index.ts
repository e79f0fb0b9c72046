import { sql as initial } from './0001-initial.ts';
import { sql as economy } from './0002-economy.ts';
import { sql as transfersWithoutEventTrigger } from './0003-transfers-without-event-trigger.ts';
import { sql as walFlush } from './0004-wal-flush.ts';
import { sql as instruments } from './0005-instruments.ts';
import { sql as lz4Bodies } from './0006-lz4-bodies.ts';
import { sql as batchBodiesAhead } from './0007-batch-bodies-ahead.ts';

/**
 * The PostgreSQL schema's migrations, in order. A migration is never edited once
 * released: a change is a new entry with the next version.
 */
export const MIGRATIONS: readonly { version: number; name: string; sql: string }[] = [
  { version: 1, name: 'initial', sql: initial },
  { version: 2, name: 'economy', sql: economy },
  { version: 3, name: 'transfers without event trigger', sql: transfersWithoutEventTrigger },
  { version: 4, name: 'wal flush', sql: walFlush },
  { version: 5, name: 'instruments', sql: instruments },
  { version: 6, name: 'lz4 bodies', sql: lz4Bodies },
  { version: 7, name: 'batch bodies ahead', sql: batchBodiesAhead },
];
