import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmod, mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type CryptoKey, type JWK } from 'jose';
import { z } from 'zod';
import { fail, MallposError, personName } from '../core/index.ts';
import { writeFileDurable } from '../vendor-server/storage/index.ts';
import type { PublicJwk } from './events.ts';

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
});

export type MallConfig = z.output<typeof mallConfigSchema>;

export function mallPaths(dataDir: string) {
  return {
    config: join(dataDir, 'config.json'),
    privateKey: join(dataDir, 'keys', 'mall-key.jwk.json'),
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
  };
}

export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

export function newAdminToken(): string {
  return `mma_${randomBytes(32).toString('base64url')}`;
}

/** Compares a presented secret with a stored sha256 hex, in constant time. */
export function matchesHash(secret: string, storedHex: string): boolean {
  const a = Buffer.from(sha256(secret), 'hex');
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

export async function loadMallConfig(dataDir: string): Promise<MallConfig> {
  const path = mallPaths(dataDir).config;
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    fail('MALL_ERR_CONFIG', `no mall in ${dataDir}: run "mall-sync init --data-dir ${dataDir}" first`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    fail('MALL_ERR_CONFIG', `${path} is not valid JSON: ${(err as Error).message}`);
  }
  const parsed = mallConfigSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    fail('MALL_ERR_CONFIG', `${path}: ${issue?.path.join('.') ?? ''} ${issue?.message ?? 'invalid'}`.trim());
  }
  return parsed.data;
}

export interface MallKeys {
  kid: string;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  publicJwk: PublicJwk;
}

/** The RFC 7638 thumbprint of an Ed25519 public key: the kid both sides use. */
export function ed25519Thumbprint(x: string): Promise<string> {
  return calculateJwkThumbprint({ kty: 'OKP', crv: 'Ed25519', x } as JWK);
}

/** Creates the mall's Ed25519 key pair (EdDSA); the private JWK is readable by its owner only. */
export async function createMallKeys(dataDir: string): Promise<MallKeys> {
  const { privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
  const jwk = await exportJWK(privateKey);
  const kid = await ed25519Thumbprint(jwk.x as string);
  const path = mallPaths(dataDir).privateKey;
  await mkdir(join(dataDir, 'keys'), { recursive: true, mode: 0o700 });
  await writeFileDurable(path, `${JSON.stringify({ ...jwk, kid, alg: 'EdDSA', use: 'sig' }, null, 2)}\n`);
  await chmod(path, 0o600);
  return loadMallKeys(dataDir);
}

export async function loadMallKeys(dataDir: string): Promise<MallKeys> {
  const path = mallPaths(dataDir).privateKey;
  let jwk: JWK;
  try {
    jwk = JSON.parse(await readFile(path, 'utf8')) as JWK;
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    fail('MALL_ERR_CONFIG', missing ? `the mall key ${path} is missing` : `the mall key ${path} cannot be read: ${(err as Error).message}`);
  }
  if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || typeof jwk.d !== 'string' || typeof jwk.x !== 'string' || typeof jwk.kid !== 'string') {
    fail('MALL_ERR_CONFIG', `the mall key ${path} is not an Ed25519 private key`);
  }
  try {
    const privateKey = (await importJWK(jwk, 'EdDSA')) as CryptoKey;
    const publicJwk: PublicJwk = { kty: 'OKP', crv: 'Ed25519', x: jwk.x, kid: jwk.kid, alg: 'EdDSA', use: 'sig' };
    const publicKey = (await importJWK(publicJwk as unknown as JWK, 'EdDSA')) as CryptoKey;
    return { kid: jwk.kid, privateKey, publicKey, publicJwk };
  } catch (err) {
    if (err instanceof MallposError) throw err;
    return fail('MALL_ERR_CONFIG', `the mall key ${path} cannot be used: ${(err as Error).message}`);
  }
}
