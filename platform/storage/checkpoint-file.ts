import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { StateFileError } from './errors.ts';

/**
 * A sealed checkpoint: the state text with a header naming the journal seq it covers,
 * the journal's chain hash at that seq, and the sha256 of the exact state bytes.
 *
 *     {"checkpoint":{"format":1,"seq":N,"hash":"<64 hex>","sha256":"<64 hex>"},"state":<state JSON>}
 *
 * The file is plain JSON. The reader slices the state text at the header's end and
 * hashes those bytes, so a changed byte anywhere in the state is caught before anything
 * is parsed, and the seq and hash tie the state to one point of the journal's chain.
 */

export interface CheckpointHeader {
  seq: number;
  hash: string;
  sha256: string;
}

/** The header's longest form: its seq has at most 16 digits. */
const HEADER_BYTES_MAX = 256;
const CLOSE_BRACE = 0x7d;
const HEADER = /^\{"checkpoint":\{"format":1,"seq":(0|[1-9]\d{0,15}),"hash":"([0-9a-f]{64})","sha256":"([0-9a-f]{64})"\},"state":/;

export function stateDigest(stateText: string): string {
  return createHash('sha256').update(stateText, 'utf8').digest('hex');
}

export function sealCheckpoint(seq: number, hash: string, stateText: string): string {
  return `{"checkpoint":{"format":1,"seq":${seq},"hash":"${hash}","sha256":"${stateDigest(stateText)}"},"state":${stateText}}`;
}

/** Splits a sealed checkpoint and checks its content hash; throws StateFileError naming what is wrong. */
export function unsealCheckpoint(path: string, text: string): { header: CheckpointHeader; stateText: string } {
  const m = HEADER.exec(text);
  if (m === null || !text.endsWith('}')) {
    throw new StateFileError(path, 'it has no checkpoint header with a seq, chain hash and content hash (a checkpoint from an older version, or not a checkpoint)');
  }
  const header: CheckpointHeader = { seq: Number(m[1]), hash: m[2] as string, sha256: m[3] as string };
  const stateText = text.slice(m[0].length, -1);
  const actual = stateDigest(stateText);
  if (actual !== header.sha256) {
    throw new StateFileError(path, `its content was changed after it was written (the header says sha256 ${header.sha256}, the state hashes to ${actual})`);
  }
  return { header, stateText };
}

/**
 * Reads a sealed checkpoint; null when there is none yet. The content hash is taken over
 * the file's bytes, and the state text is decoded once from them: a large checkpoint is
 * held as bytes and as text only for that moment, never twice as text.
 */
export async function readCheckpoint(path: string): Promise<{ header: CheckpointHeader; stateText: string } | null> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new StateFileError(path, `read failed (${(err as Error).message})`, { cause: err });
  }
  // The header is ASCII and short; the rest is only hashed until it is known to be intact.
  const m = HEADER.exec(bytes.toString('latin1', 0, Math.min(bytes.length, HEADER_BYTES_MAX)));
  if (m === null || bytes[bytes.length - 1] !== CLOSE_BRACE) {
    throw new StateFileError(path, 'it has no checkpoint header with a seq, chain hash and content hash (a checkpoint from an older version, or not a checkpoint)');
  }
  const header: CheckpointHeader = { seq: Number(m[1]), hash: m[2] as string, sha256: m[3] as string };
  const state = bytes.subarray(m[0].length, bytes.length - 1);
  const actual = createHash('sha256').update(state).digest('hex');
  if (actual !== header.sha256) {
    throw new StateFileError(path, `its content was changed after it was written (the header says sha256 ${header.sha256}, the state hashes to ${actual})`);
  }
  return { header, stateText: state.toString('utf8') };
}
