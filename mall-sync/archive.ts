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

  /** Signs and keeps a registry change as entry `seq` (written before the change is committed). */
  async registry(seq: number, event: NewMallEvent): Promise<void> {
    const entry: RegistryEntry = { v: 1, seq, at: event.at, type: event.type, data: event.data };
    const jws = await signJson(entry, this.mallKeys.privateKey, this.mallKeys.kid, REGISTRY_TYP);
    await this.write(this.paths.registryFile(seq), this.paths.registryDir, `${JSON.stringify(jws)}\n`);
  }

  /** Keeps a batch (the request body exactly as received) and the ack the mall signed for it. */
  async batch(vendor: string, seq: number, body: string | Buffer, ack: FlattenedJws): Promise<void> {
    const dir = this.paths.vendorDir(vendor);
    await this.write(this.paths.batchFile(vendor, seq), dir, body);
    await this.write(this.paths.ackFile(vendor, seq), dir, `${JSON.stringify(ack)}\n`);
  }

  /** Keeps a statement the mall signed, so an audit can check its figures. */
  async statement(vendor: string, from: string, to: string, issuedAt: string, jws: FlattenedJws): Promise<void> {
    const stamp = issuedAt.replace(/[^0-9]/g, '').slice(0, 17);
    await this.write(join(this.paths.statementsDir, `${vendor}_${from}_${to}_${stamp}.jws.json`), this.paths.statementsDir, `${JSON.stringify(jws)}\n`);
  }
}
