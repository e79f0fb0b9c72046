import { createHash } from 'node:crypto';
import { mkdir, open, readdir, readFile, stat } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { z } from 'zod';
import { fail } from '../core/index.ts';
import { DIR_MODE, FILE_MODE, fsyncDir, Journal, readCheckpoint, writeFileDurable } from '../platform/storage/index.ts';
import { configSchema, dataPaths, loadConfig, loadKeys } from './config.ts';
import { verifyClosures, type ClosuresReport } from './cashier-day/verify.ts';
import { ledgerPaths, verifyLedger, type VerifyReport } from './ledger/store.ts';

/**
 * Online backup and restore of a vendor server's data directory.
 *
 * A backup is taken while the server runs and sales go on, and is consistent at one
 * journal seq S: the checkpoint is read first (it never covers more than the durable
 * journal), then the small files (config, keys, access, sync cursor: each replaced
 * atomically, so each copy is one whole version), then the journal is listed and its
 * segments copied up to the end of seq S. Journal lines are append-only and never change
 * once complete, so copying their bytes needs no pause. `manifest.json` is written last
 * and names S, the chain hash at S and the sha256 of every file: a backup without it is
 * incomplete. The backup directory mirrors a data directory, owner-only throughout.
 */

export const MANIFEST = 'manifest.json';

const manifestSchema = z.strictObject({
  format: z.literal(1),
  vendorId: z.string(),
  createdAt: z.string(),
  seq: z.number().int().min(0),
  lastHash: z.string().regex(/^[0-9a-f]{64}$/),
  checkpointSeq: z.number().int().min(0),
  files: z.array(z.strictObject({ path: z.string().min(1), bytes: z.number().int().min(0), sha256: z.string().regex(/^[0-9a-f]{64}$/) })),
});
export type BackupManifest = z.output<typeof manifestSchema>;

export interface Progress {
  (doneBytes: number, totalBytes: number): void;
}

const COPY_CHUNK_BYTES = 1024 * 1024;

/** Paths never copied: the live owner's lock and temp files of writes in progress. */
function skipped(rel: string): boolean {
  const parts = rel.split(sep);
  const name = parts[parts.length - 1] ?? '';
  return parts[0] === 'run' || name.startsWith('.') || name === MANIFEST;
}

async function listFiles(root: string, dir = root): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    const rel = relative(root, path);
    if (skipped(rel)) continue;
    if (entry.isDirectory()) out.push(...(await listFiles(root, path)));
    else if (entry.isFile()) out.push(rel);
  }
  return out.sort();
}

async function ensureEmptyDir(dir: string, what: string): Promise<void> {
  const entries = await readdir(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    throw err;
  });
  if (entries !== null && entries.length > 0) fail('VND_ERR_CONFIG', `${what} ${dir} is not empty: choose a new or empty directory`);
  await mkdir(dir, { recursive: true, mode: DIR_MODE });
}

async function mkdirsFor(root: string, rel: string): Promise<void> {
  const dir = dirname(join(root, rel));
  const made = await mkdir(dir, { recursive: true, mode: DIR_MODE });
  if (made !== undefined) await fsyncDir(dirname(dir));
}

/**
 * Copies bytes [0, length) of `from` to a new owner-only file `to` (fsynced), and
 * returns their sha256. Fails when the source has fewer bytes than promised.
 */
async function copyPrefix(from: string, to: string, length: number, onBytes: (n: number) => void): Promise<string> {
  const hash = createHash('sha256');
  const src = await open(from, 'r');
  try {
    const dst = await open(to, 'wx', FILE_MODE);
    try {
      const buf = Buffer.allocUnsafe(Math.min(COPY_CHUNK_BYTES, Math.max(1, length)));
      let done = 0;
      while (done < length) {
        const { bytesRead } = await src.read(buf, 0, Math.min(buf.length, length - done), done);
        if (bytesRead === 0) fail('VND_ERR_STATE_CORRUPT', `${from} ended at byte ${done}, before the ${length} bytes the backup needs`);
        hash.update(buf.subarray(0, bytesRead));
        let written = 0;
        while (written < bytesRead) written += (await dst.write(buf, written, bytesRead - written, done + written)).bytesWritten;
        done += bytesRead;
        onBytes(bytesRead);
      }
      await dst.sync();
    } finally {
      await dst.close();
    }
  } finally {
    await src.close();
  }
  return hash.digest('hex');
}

async function writeCopy(root: string, rel: string, data: Buffer): Promise<{ path: string; bytes: number; sha256: string }> {
  await mkdirsFor(root, rel);
  const handle = await open(join(root, rel), 'wx', FILE_MODE);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  return { path: rel.split(sep).join('/'), bytes: data.length, sha256: createHash('sha256').update(data).digest('hex') };
}

/** Makes every directory of a copied tree durable, deepest first. */
async function syncTree(root: string, rels: string[]): Promise<void> {
  const dirs = new Set<string>([root]);
  for (const rel of rels) for (let d = dirname(join(root, rel)); d.startsWith(root) && d !== root; d = dirname(d)) dirs.add(d);
  for (const d of [...dirs].sort((a, b) => b.length - a.length)) await fsyncDir(d);
}

/** Takes a consistent online backup of the data directory `dataDir` into the new or empty directory `to`. */
export async function backupStore(dataDir: string, to: string, progress?: Progress): Promise<BackupManifest> {
  const config = await loadConfig(dataDir);
  await ensureEmptyDir(to, 'the backup directory');
  const ledger = ledgerPaths(dataPaths(dataDir).ledgerDir);
  const checkpointRel = relative(dataDir, ledger.checkpointFile);
  const journalRel = relative(dataDir, ledger.journalDir);

  // 1. The checkpoint, before the journal is listed (see above).
  const files: BackupManifest['files'] = [];
  const checkpointBytes = await readFile(ledger.checkpointFile).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    throw err;
  });
  let checkpointSeq = 0;
  if (checkpointBytes !== null) {
    files.push(await writeCopy(to, checkpointRel, checkpointBytes));
    checkpointSeq = (await readCheckpoint(join(to, checkpointRel)))?.header.seq ?? 0;
  }

  // 2. Every other small file: config, keys, access, sync cursor, cached snapshot and ack log.
  for (const rel of await listFiles(dataDir)) {
    if (rel === checkpointRel || rel.startsWith(journalRel + sep) || rel.startsWith(relative(dataDir, ledger.stateDir) + sep)) continue;
    let data = await readFile(join(dataDir, rel));
    // Append-only logs (the mall's acks) may be caught mid-append: keep their complete lines.
    if (rel.endsWith('.jsonl')) data = data.subarray(0, data.lastIndexOf(0x0a) + 1);
    files.push(await writeCopy(to, rel, data));
  }

  // 3. The journal up to seq S: what a read-only open finds complete now.
  const { journal, report } = await Journal.open({ dir: ledger.journalDir, readOnly: true });
  let seq: number;
  let lastHash: string;
  let journalBytes: number;
  try {
    seq = journal.lastSeq;
    lastHash = journal.lastHash;
    // Complete lines only: a read-only open stops before a torn tail.
    journalBytes = journal.bytes;
    if (seq < checkpointSeq) fail('VND_ERR_JOURNAL_CORRUPT', `the journal ends at seq ${seq} but the checkpoint covers seq ${checkpointSeq}`);
  } finally {
    await journal.close();
  }
  const segments = (await readdir(ledger.journalDir)).filter((n) => /^journal-\d{16}\.jsonl$/.test(n)).sort();
  const lengths = new Map<string, number>();
  // Segments before the last one at the open are closed and no longer change.
  let closedBytes = 0;
  for (const name of segments.slice(0, report.segments - 1)) {
    const size = (await stat(join(ledger.journalDir, name))).size;
    lengths.set(name, size);
    closedBytes += size;
  }
  const tailName = segments[report.segments - 1];
  // The last segment is copied only up to the end of seq S, whatever was appended since.
  if (tailName !== undefined) lengths.set(tailName, journalBytes - closedBytes);
  const total = [...lengths.values()].reduce((a, b) => a + b, 0);
  let done = 0;
  progress?.(0, total);
  for (const [name, length] of lengths) {
    const rel = join(journalRel, name);
    await mkdirsFor(to, rel);
    const sha256 = await copyPrefix(join(ledger.journalDir, name), join(to, rel), length, (n) => {
      done += n;
      progress?.(done, total);
    });
    files.push({ path: rel.split(sep).join('/'), bytes: length, sha256 });
  }

  const manifest: BackupManifest = { format: 1, vendorId: config.vendorId, createdAt: new Date().toISOString(), seq, lastHash, checkpointSeq, files };
  await syncTree(to, files.map((f) => f.path));
  // Last, so that a backup interrupted at any point has no manifest and is seen as incomplete.
  await writeFileDurable(join(to, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
  // The backup must agree with itself before it is called done.
  await verifyBackup(to);
  return manifest;
}

async function readManifest(dir: string): Promise<BackupManifest> {
  let text: string;
  try {
    text = await readFile(join(dir, MANIFEST), 'utf8');
  } catch {
    return fail('VND_ERR_STATE_CORRUPT', `${dir} has no ${MANIFEST}: it is not a backup, or the backup did not finish`);
  }
  let json: unknown = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = null;
  }
  const parsed = manifestSchema.safeParse(json);
  if (!parsed.success) fail('VND_ERR_STATE_CORRUPT', `${join(dir, MANIFEST)} is not a backup manifest`);
  for (const f of parsed.data.files) {
    if (f.path.split('/').some((p) => p === '..' || p === '' || p === '.') || f.path.startsWith('/')) fail('VND_ERR_STATE_CORRUPT', `the manifest names a path outside the backup: ${f.path}`);
  }
  return parsed.data;
}

async function fileSha256(path: string): Promise<{ bytes: number; sha256: string }> {
  const data = await readFile(path);
  return { bytes: data.length, sha256: createHash('sha256').update(data).digest('hex') };
}

/** Checks every Z report and period closure against the journal, read-only (a live store or a backup). */
async function verifyLedgerClosures(dataDir: string, toSeq: number): Promise<ClosuresReport> {
  const keys = await loadKeys(dataDir);
  const journal = (await Journal.open({ dir: ledgerPaths(dataPaths(dataDir).ledgerDir).journalDir, readOnly: true })).journal;
  try {
    return await verifyClosures(journal, toSeq, keys.publicJwk);
  } finally {
    await journal.close();
  }
}

/** Checks a store's data directory in place, read-only: the ledger, then every closure against it. */
export async function verifyStore(dataDir: string): Promise<VerifyReport & { closures: ClosuresReport }> {
  const config = await loadConfig(dataDir);
  const report = await verifyLedger({ dataDir: dataPaths(dataDir).ledgerDir, vendorId: config.vendorId, keysMax: config.idempotencyKeysMax });
  return { ...report, closures: await verifyLedgerClosures(dataDir, report.lastSeq) };
}

/**
 * Checks a backup: every file against the manifest's size and sha256, no file the
 * manifest does not name, then the ledger in it (seal, chain, checkpoint against a
 * replay), which must end exactly at the manifest's seq and chain hash.
 */
export async function verifyBackup(dir: string): Promise<VerifyReport & { backupSeq: number; closures: ClosuresReport }> {
  const manifest = await readManifest(dir);
  const named = new Set(manifest.files.map((f) => f.path));
  for (const f of manifest.files) {
    const actual = await fileSha256(join(dir, ...f.path.split('/'))).catch(() => null);
    if (actual === null) fail('VND_ERR_STATE_CORRUPT', `the backup is missing ${f.path}`);
    if (actual.bytes !== f.bytes || actual.sha256 !== f.sha256) {
      fail('VND_ERR_STATE_CORRUPT', `${f.path} in the backup changed: ${actual.bytes} bytes with sha256 ${actual.sha256}, the manifest says ${f.bytes} bytes with sha256 ${f.sha256}`);
    }
  }
  for (const rel of await listFiles(dir)) {
    if (!named.has(rel.split(sep).join('/'))) fail('VND_ERR_STATE_CORRUPT', `the backup holds ${rel}, which its manifest does not name`);
  }
  const config = configSchema.parse(JSON.parse(await readFile(dataPaths(dir).config, 'utf8')));
  if (config.vendorId !== manifest.vendorId) fail('VND_ERR_STATE_CORRUPT', `the backup's config is for vendor ${config.vendorId}, its manifest for ${manifest.vendorId}`);
  const report = await verifyLedger({ dataDir: dataPaths(dir).ledgerDir, vendorId: manifest.vendorId, keysMax: config.idempotencyKeysMax });
  if (report.lastSeq !== manifest.seq || report.lastHash !== manifest.lastHash || report.tornTail !== null) {
    fail('VND_ERR_STATE_CORRUPT', `the backup's journal ends at seq ${report.lastSeq} (${report.lastHash}), its manifest says seq ${manifest.seq} (${manifest.lastHash})`);
  }
  return { ...report, backupSeq: manifest.seq, closures: await verifyLedgerClosures(dir, report.lastSeq) };
}

/**
 * Restores a verified backup into a new or empty data directory, owner-only and fsynced.
 * The restored store holds the events up to the backup's seq; anything after it exists
 * only where it was made (the old store, and the mall for events it received).
 */
export async function restoreStore(from: string, dataDir: string, progress?: Progress): Promise<BackupManifest> {
  await verifyBackup(from);
  const manifest = await readManifest(from);
  await ensureEmptyDir(dataDir, 'the data directory');
  const total = manifest.files.reduce((a, f) => a + f.bytes, 0);
  let done = 0;
  progress?.(0, total);
  for (const f of manifest.files) {
    const rel = join(...f.path.split('/'));
    await mkdirsFor(dataDir, rel);
    const sha256 = await copyPrefix(join(from, rel), join(dataDir, rel), f.bytes, (n) => {
      done += n;
      progress?.(done, total);
    });
    if (sha256 !== f.sha256) fail('VND_ERR_STATE_CORRUPT', `${f.path} changed while it was restored`);
  }
  await syncTree(dataDir, manifest.files.map((f) => f.path));
  return manifest;
}
