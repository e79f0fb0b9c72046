import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { tempDir as makeTempDir } from '../../helpers/temp.ts';
import { join } from 'node:path';
import { JournalCorruptError } from '../../../platform/storage/index.ts';

export const tempDir = () => makeTempDir('mallpos-storage-');

export function sha256(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Segment files of a journal directory, in seq order. */
export async function segmentFiles(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((n) => /^journal-\d{16}\.jsonl$/.test(n)).sort();
}

/** Name and content hash of every file, to prove that a failed open changed nothing. */
export async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of (await readdir(dir)).sort()) out[name] = sha256(await readFile(join(dir, name)));
  return out;
}

export interface ParsedLine {
  /** Byte offset of the line within its segment. */
  offset: number;
  line: string;
  h: string;
  eventText: string;
}

/**
 * Splits a segment into lines with an independent parser (a regex over the text), so the
 * tests do not trust the journal's own reader to check the format it wrote.
 */
export function parseSegment(content: Buffer): ParsedLine[] {
  const out: ParsedLine[] = [];
  let offset = 0;
  while (offset < content.length) {
    const nl = content.indexOf(0x0a, offset);
    if (nl === -1) throw new Error('segment ends without a newline');
    const line = content.toString('utf8', offset, nl);
    const m = /^\{"h":"([0-9a-f]{64})","e":(.*)\}$/s.exec(line);
    if (m === null) throw new Error(`not a journal line at ${offset}: ${line.slice(0, 80)}`);
    out.push({ offset, line, h: m[1] as string, eventText: m[2] as string });
    offset = nl + 1;
  }
  return out;
}

/** Builds a well-formed line for an event text, as a forger who recomputes hashes would. */
export function lineFor(eventText: string): string {
  return `{"h":"${sha256(eventText)}","e":${eventText}}\n`;
}

export function saleFields(seq: number, extra: Record<string, unknown> = {}) {
  return {
    seq,
    type: 'sale',
    terminal: `T-${seq % 5}`,
    key: `T-${seq % 5}:${seq.toString(16).padStart(8, '0')}`,
    lines: [{ sku: `SKU-${seq % 97}`, qty: 1 + (seq % 3), unit: 1250 }],
    total: 1250 * (1 + (seq % 3)),
    note: 'café ☕',
    ...extra,
  };
}

/** The error a promise rejects with; fails the test when it resolves. */
export async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected the promise to reject');
}

/** Rewrites line `index` of segment `k` of the journal in `dir` with `edit`, returning how to undo it. */
export async function editLine(dir: string, k: number, index: number, edit: (line: string) => string): Promise<() => Promise<void>> {
  const path = join(dir, (await segmentFiles(dir))[k] as string);
  const original = await readFile(path);
  const target = parseSegment(original)[index];
  if (target === undefined) throw new Error(`segment ${k} has no line ${index}`);
  await writeFile(path, Buffer.concat([
    original.subarray(0, target.offset),
    Buffer.from(edit(`${target.line}\n`)),
    original.subarray(target.offset + Buffer.byteLength(target.line) + 1),
  ]));
  return () => writeFile(path, original);
}

/** Expects a replay on threads to have failed exactly as the sequential replay did. */
export function expectSameError(parallel: Error | null, sequential: Error | null): void {
  expect(sequential).to.be.instanceOf(JournalCorruptError);
  expect(parallel).to.be.instanceOf(JournalCorruptError);
  expect((parallel as Error).message).to.equal((sequential as Error).message);
  expect({ ...parallel }).to.deep.equal({ ...sequential });
}
