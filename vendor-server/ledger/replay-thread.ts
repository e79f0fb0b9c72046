import { serveReplayThread } from '../../platform/storage/replay-threads.ts';
import { stateEventCodec } from './replay-codec.ts';

/**
 * A thread of the ledger's replay at start (platform/storage/replay-threads.ts): reads,
 * checks and parses its share of the journal and packs the events with the ledger's codec.
 */
void serveReplayThread(stateEventCodec);
