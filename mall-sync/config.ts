import { randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { fail, personName, sha256Hex } from '../core/index.ts';
import { createSigningKey, ed25519Thumbprint, loadJsonConfig, loadSigningKey, type SigningKey } from '../platform/key-files.ts';
import { writeFileDurable } from '../platform/storage/index.ts';
import { createTlsIdentity, loadTlsIdentity, type TlsIdentity } from '../platform/tls.ts';

export const DEFAULT_PORT = 8700;
export const DEFAULT_HOST = '127.0.0.1';
export const DEFAULT_DATA_DIR = './data/mall-sync';
/** Largest HTTP body of a batch POST; larger is MALL_ERR_TOO_LARGE. */
export const BATCH_BODY_BYTES_MAX = 8 * 1024 * 1024;

const hex64 = z.string().regex(/^[0-9a-f]{64}$/);

export const mallConfigSchema = z.strictObject({
  format: z.literal(1),
  name: personName,
  /** The currency of all clearing amounts; token types must be in it. */
  currency: z.string().regex(/^[A-Z]{3}$/),
  port: z.number().int().min(0).max(65535),
  host: z.string().min(1).max(255),
  /** sha256 of the admin credential; the credential itself is shown once by init. */
  adminTokenHash: hex64,
  segmentBytesMax: z.number().int().min(4096).max(1 << 30),
  checkpointEveryEvents: z.number().int().min(1),
  checkpointEveryMs: z.number().int().min(1000),
  batchBodyBytesMax: z.number().int().min(64 * 1024).max(64 * 1024 * 1024),
  /** A vendor without a batch for this long is reported as stale. */
  staleAfterHours: z.number().int().min(1).max(24 * 365),
  /** Extra host names and IP addresses the mall's TLS certificate lists (localhost and loopback always). */
  tlsNames: z.array(z.string().regex(/^[A-Za-z0-9.:-]{1,253}$/)).max(32).default([]),
  /** How long a wallet authorisation holds tokens before the mall releases it unused (claim 36). */
  walletAuthorisationTtlS: z.number().int().min(1).max(7 * 86_400).default(900),
  /**
   * Where the mall keeps its data: the embedded journal in the data directory (one
   * process), or a PostgreSQL database (several `mall-sync serve` processes may share it).
   * The database URL may instead come from MALLPOS_DATABASE_URL, so that a password need
   * not be written into the config.
   */
  store: z
    .discriminatedUnion('kind', [
      z.strictObject({ kind: z.literal('embedded') }),
      z.strictObject({ kind: z.literal('postgres'), databaseUrl: z.string().min(1).max(4096).optional(), poolMax: z.number().int().min(1).max(200).default(8) }),
    ])
    .default({ kind: 'embedded' }),
});

export type MallConfig = z.output<typeof mallConfigSchema>;

export function mallPaths(dataDir: string) {
  return {
    config: join(dataDir, 'config.json'),
    privateKey: join(dataDir, 'keys', 'mall-key.jwk.json'),
    tlsDir: join(dataDir, 'tls'),
    storeDir: join(dataDir, 'store'),
    observations: join(dataDir, 'store', 'state', 'observations.json'),
    archiveDir: join(dataDir, 'archive'),
    runDir: join(dataDir, 'run'),
    owner: join(dataDir, 'run', 'owner.json'),
    statementsDir: join(dataDir, 'statements'),
  };
}

export function defaultMallConfig(adminTokenHash: string): MallConfig {
  return {
    format: 1,
    name: 'Mall',
    currency: 'EUR',
    port: DEFAULT_PORT,
    host: DEFAULT_HOST,
    adminTokenHash,
    segmentBytesMax: 64 * 1024 * 1024,
    checkpointEveryEvents: 10_000,
    checkpointEveryMs: 10 * 60_000,
    batchBodyBytesMax: BATCH_BODY_BYTES_MAX,
    staleAfterHours: 24,
    tlsNames: [],
    walletAuthorisationTtlS: 900,
    store: { kind: 'embedded' },
  };
}

/** The PostgreSQL URL of a mall on PostgreSQL: MALLPOS_DATABASE_URL, else the config's. */
export function databaseUrl(config: MallConfig): string {
  if (config.store.kind !== 'postgres') throw new Error('assertion failed: a database URL belongs to a mall on PostgreSQL');
  const url = process.env['MALLPOS_DATABASE_URL'] ?? config.store.databaseUrl;
  if (url === undefined || url === '') fail('MALL_ERR_CONFIG', 'this mall keeps its data in PostgreSQL: set MALLPOS_DATABASE_URL or store.databaseUrl in its config.json');
  return url;
}

export function newAdminToken(): string {
  return `mma_${randomBytes(32).toString('base64url')}`;
}

/** Compares a presented secret with a stored sha256 hex, in constant time. */
export function matchesHash(secret: string, storedHex: string): boolean {
  const a = Buffer.from(sha256Hex(secret), 'hex');
  const b = Buffer.from(storedHex, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}

export async function isInitialised(dataDir: string): Promise<boolean> {
  return stat(mallPaths(dataDir).config).then(() => true, () => false);
}

export async function writeMallConfig(dataDir: string, config: MallConfig): Promise<void> {
  await mkdir(dataDir, { recursive: true });
  await writeFileDurable(mallPaths(dataDir).config, `${JSON.stringify(mallConfigSchema.parse(config), null, 2)}\n`);
}

export function loadMallConfig(dataDir: string): Promise<MallConfig> {
  return loadJsonConfig(mallPaths(dataDir).config, mallConfigSchema, 'MALL_ERR_CONFIG', `no mall in ${dataDir}: run "mall-sync init --data-dir ${dataDir}" first`);
}

export type MallKeys = SigningKey;
export { ed25519Thumbprint };

/** Creates the mall's Ed25519 key pair (EdDSA). */
export function createMallKeys(dataDir: string): Promise<MallKeys> {
  return createSigningKey(mallPaths(dataDir).privateKey, 'mall key', 'MALL_ERR_CONFIG');
}

export function loadMallKeys(dataDir: string): Promise<MallKeys> {
  return loadSigningKey(mallPaths(dataDir).privateKey, 'mall key', 'MALL_ERR_CONFIG');
}

/** The mall's certificate authority and server certificate, created by `init`. */
export function createMallTls(dataDir: string, config: MallConfig): Promise<TlsIdentity> {
  return createTlsIdentity(mallPaths(dataDir).tlsDir, `${config.name} mall authority`, mallTlsNames(config));
}

/** Loads the mall's TLS files, re-issuing the server certificate when the names changed. */
export function loadMallTls(dataDir: string, config: MallConfig): Promise<TlsIdentity & { reissued: boolean }> {
  return loadTlsIdentity(mallPaths(dataDir).tlsDir, mallTlsNames(config), 'MALL_ERR_CONFIG');
}

function mallTlsNames(config: MallConfig): string[] {
  const wildcard = config.host === '0.0.0.0' || config.host === '::';
  return wildcard ? config.tlsNames : [config.host, ...config.tlsNames];
}
