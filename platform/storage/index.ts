export { GENESIS_HASH, Journal, segmentName } from './journal.ts';
export type { AppendResult, JournalOptions, JournalRecord, OpenReport, TornTail } from './journal.ts';
export { DurableJSONFile, fsyncDir, writeFileDurable } from './durable-file.ts';
export { JournalBacklogError, JournalCorruptError, StateFileError } from './errors.ts';
export type { JournalCorruptDetails, JournalCorruptReason } from './errors.ts';
export { asciiJson, Checkpointer } from './checkpointer.ts';
export type { CheckpointPolicy, CheckpointSource } from './checkpointer.ts';
