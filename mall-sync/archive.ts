import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { assert, type FlattenedJws } from '../core/index.ts';
import { writeFileDurable } from '../platform/storage/index.ts';
import type { MallKeys } from './config.ts';
import type { NewMallEvent } from './events.ts';
import { signJson } from './jws.ts';
import type { MallState } from './store/state.ts';

/**
 * The mall's archive: the evidence a third party needs to recompute every vendor's
 * position and every statement without the mall's database (`mall-sync audit`).
 *
 *   archive/mall-key.json                              {"kid","jwk"}: the mall's public key (pin it)
 *   archive/registry/registry-<seq>.jws.json           the registry history, one mall-signed entry per change
 *   archive/vendors/<vendor>/batch-<seq>.jws.json      each ingested batch exactly as the vendor sent it
 *   archive/vendors/<vendor>/ack-<seq>.jws.json        the mall's signed ack of that batch
 *   archive/statements/<vendor>_<from>_<to>_<issued>.jws.json   signed statements the mall issued
 *
 * Seqs are written with 10 digits. A registry entry is a JWS (typ mallpos-registry+jws)
 * whose payload is `{v, seq, at, type, data}`: `seq` counts registry changes from 1
 * without gaps, `type` and `data` are the mall journal event's. Every file is written
 * durably before the change it records is committed; a file a crash left ahead of the
 * journal is removed on the next start.
 */
export const REGISTRY_TYP = 'mallpos-registry+jws';

export interface RegistryEntry {
  v: 1;
  seq: number;
  at: string;
  type: NewMallEvent['type'];
  data: NewMallEvent['data'];
}

const pad = (n: number) => String(n).padStart(10, '0');

export function archivePaths(dir: string) {
  return {
    mallKey: join(dir, 'mall-key.json'),
    registryDir: join(dir, 'registry'),
    registryFile: (seq: number) => join(dir, 'registry', `registry-${pad(seq)}.jws.json`),
    vendorsDir: join(dir, 'vendors'),
    vendorDir: (vendor: string) => join(dir, 'vendors', vendor),
    batchFile: (vendor: string, seq: number) => join(dir, 'vendors', vendor, `batch-${pad(seq)}.jws.json`),
    ackFile: (vendor: string, seq: number) => join(dir, 'vendors', vendor, `ack-${pad(seq)}.jws.json`),
    statementsDir: join(dir, 'statements'),
  };
}

export class MallArchive {
  private readonly made = new Set<string>();
  readonly paths: ReturnType<typeof archivePaths>;

  constructor(
    readonly dir: string,
    private readonly mallKeys: MallKeys,
  ) {
    this.paths = archivePaths(dir);
  }

  private async write(file: string, dir: string, data: string | Buffer): Promise<void> {
    if (!this.made.has(dir)) {
      await mkdir(dir, { recursive: true });
      this.made.add(dir);
    }
    try {
      await writeFileDurable(file, data);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      // The directory went away under the mall: make it again, once.
      await mkdir(dir, { recursive: true });
      await writeFileDurable(file, data);
    }
  }

  /** On start: the mall's public key, and no file ahead of what the journal holds. */
  async open(state: Readonly<MallState>): Promise<void> {
    await this.write(this.paths.mallKey, this.dir, `${JSON.stringify({ kid: this.mallKeys.kid, jwk: this.mallKeys.publicJwk })}\n`);
    await this.pruneAhead(this.paths.registryDir, /^registry-(\d{10})\.jws\.json$/, state.registrySeq);
    for (const vendor of Object.keys(state.vendors)) {
      const v = state.vendors[vendor];
      assert(v !== undefined, `vendor ${vendor} listed`);
      await this.pruneAhead(this.paths.vendorDir(vendor), /^(?:batch|ack)-(\d{10})\.jws\.json$/, v.lastSeq);
    }
  }

  private async pruneAhead(dir: string, pattern: RegExp, last: number): Promise<void> {
    const names = await readdir(dir).catch(() => [] as string[]);
    for (const name of names) {
      const m = pattern.exec(name);
      if (m !== null && Number(m[1]) > last) await rm(join(dir, name), { force: true });
    }
  }

  /** The mall-signed registry entry `seq` for a change. */
  protected registryJws(seq: number, event: NewMallEvent): Promise<FlattenedJws> {
    const entry: RegistryEntry = { v: 1, seq, at: event.at, type: event.type, data: event.data };
    return signJson(entry, this.mallKeys.privateKey, this.mallKeys.kid, REGISTRY_TYP);
  }

  /** Signs and keeps a registry change as entry `seq` (written before the change is committed). */
  async registry(seq: number, event: NewMallEvent): Promise<void> {
    const jws = await this.registryJws(seq, event);
    await this.write(this.paths.registryFile(seq), this.paths.registryDir, `${JSON.stringify(jws)}\n`);
  }

  /**
   * Keeps a signed batch before the change that ingests it, where the archive can do so
   * outside that change (a shared database, where the change holds the mall's write lock).
   * Resolves to true when it did: batch() is then not called for it, the ack being kept
   * with the batch's own rows. The files of this archive are written with the change.
   */
  batchAhead(_vendor: string, _seq: number, _hash: string, _body: string | Buffer): Promise<boolean> {
    return Promise.resolve(false);
  }

  /** Keeps a batch (the request body exactly as received) and the ack the mall signed for it. */
  async batch(vendor: string, seq: number, body: string | Buffer, ack: FlattenedJws): Promise<void> {
    const dir = this.paths.vendorDir(vendor);
    // Both files are durable before the batch is committed; they are written side by side.
    await Promise.all([this.write(this.paths.batchFile(vendor, seq), dir, body), this.write(this.paths.ackFile(vendor, seq), dir, `${JSON.stringify(ack)}\n`)]);
  }

  /** Keeps a statement the mall signed, so an audit can check its figures. */
  async statement(vendor: string, from: string, to: string, issuedAt: string, jws: FlattenedJws): Promise<void> {
    const stamp = issuedAt.replace(/[^0-9]/g, '').slice(0, 17);
    await this.write(join(this.paths.statementsDir, `${vendor}_${from}_${to}_${stamp}.jws.json`), this.paths.statementsDir, `${JSON.stringify(jws)}\n`);
  }
}

/** A batch body as the bytes the database keeps. */
function bytes(body: string | Buffer): Buffer {
  return typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
}

/** A database the archive can write to: inside a change, the change's own transaction. */
export interface ArchiveDatabase {
  query(sql: string, params: unknown[]): Promise<unknown>;
  /** Stores the signed batch as the vendor sent it, in the transaction of the batch's own rows. */
  batchBody(vendor: string, seq: number, body: Buffer): Promise<void>;
  /** Stores the signed batch as the vendor sent it before its batch is committed, keyed by its hash; false when it could not. */
  batchBodyAhead(vendor: string, seq: number, hash: string, body: Buffer): Promise<boolean>;
  /** Every registry entry, batch with its ack, and statement, in the archive's layout order. */
  archiveRows(): AsyncIterable<{ kind: 'registry'; seq: number; jws: unknown } | { kind: 'batch'; vendor: string; seq: number; body: Buffer; ack: unknown } | { kind: 'statement'; vendor: string; from: string; to: string; issuedAt: string; jws: unknown }>;
}

/**
 * The archive of a mall on PostgreSQL: the same evidence in tables, written in the
 * transaction of the change it records (so nothing is ever ahead of the log), and
 * written out in the directory layout above by `mall-sync export-archive` for
 * `mall-sync audit`.
 */
export class DatabaseArchive extends MallArchive {
  constructor(
    private readonly db: ArchiveDatabase,
    mallKeys: MallKeys,
  ) {
    super('', mallKeys);
  }

  override open(): Promise<void> {
    return Promise.resolve();
  }

  override async registry(seq: number, event: NewMallEvent): Promise<void> {
    const jws = await this.registryJws(seq, event);
    await this.db.query('INSERT INTO mall_registry_archive (registry_seq, jws) VALUES ($1, $2)', [seq, JSON.stringify(jws)]);
  }

  override batchAhead(vendor: string, seq: number, hash: string, body: string | Buffer): Promise<boolean> {
    return this.db.batchBodyAhead(vendor, seq, hash, bytes(body));
  }

  override async batch(vendor: string, seq: number, body: string | Buffer): Promise<void> {
    // The ack is stored with the batch row (mall_batches.ack), the body in mall_batch_bodies.
    await this.db.batchBody(vendor, seq, bytes(body));
  }

  override async statement(vendor: string, from: string, to: string, issuedAt: string, jws: FlattenedJws): Promise<void> {
    await this.db.query('INSERT INTO mall_statements (vendor, from_day, to_day, issued_at, jws) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING', [vendor, from, to, issuedAt, JSON.stringify(jws)]);
  }
}

/** Writes a database archive out as an archive directory (what `mall-sync audit` reads). */
export async function exportArchive(db: ArchiveDatabase, mallKeys: MallKeys, dir: string): Promise<{ registry: number; batches: number; statements: number }> {
  const files = new MallArchive(dir, mallKeys);
  await files.open({ registrySeq: 0, vendors: {} } as unknown as MallState);
  const counts = { registry: 0, batches: 0, statements: 0 };
  for await (const row of db.archiveRows()) {
    if (row.kind === 'registry') {
      await writeFileDurable(files.paths.registryFile(row.seq), `${JSON.stringify(row.jws)}\n`).catch(async () => {
        await mkdir(files.paths.registryDir, { recursive: true });
        await writeFileDurable(files.paths.registryFile(row.seq), `${JSON.stringify(row.jws)}\n`);
      });
      counts.registry += 1;
    } else if (row.kind === 'batch') {
      await files.batch(row.vendor, row.seq, row.body, row.ack as FlattenedJws);
      counts.batches += 1;
    } else {
      await files.statement(row.vendor, row.from, row.to, row.issuedAt, row.jws as FlattenedJws);
      counts.statements += 1;
    }
  }
  return counts;
}
