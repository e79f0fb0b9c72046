import { chmod, mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type JWK, type CryptoKey } from 'jose';
import { z } from 'zod';
import { entityId, fail, MallposError, personName } from '../core/index.ts';
import { writeFileDurable } from './storage/index.ts';

export const DEFAULT_PORT = 8600;
export const DEFAULT_HOST = '127.0.0.1';

export const configSchema = z.strictObject({
  format: z.literal(1),
  vendorId: entityId,
  storeName: personName,
  address: z.array(z.string().max(80)).max(4),
  currency: z.string().regex(/^[A-Z]{3}$/),
  port: z.number().int().min(0).max(65535),
  host: z.string().min(1).max(255),
  pairingCodeTtlMinutes: z.number().int().min(1).max(24 * 60),
  segmentBytesMax: z.number().int().min(4096).max(1 << 30),
  checkpointEveryEvents: z.number().int().min(1),
  checkpointEveryMs: z.number().int().min(1000),
  idempotencyKeysMax: z.number().int().min(1000),
  mall: z
    .strictObject({
      url: z.string().url(),
      /** The mall's public key, pinned; fetched once from the mall when left out. */
      jwk: z.record(z.string(), z.unknown()).optional(),
      snapshotMaxAgeHours: z.number().int().min(1).max(24 * 365).default(72),
      batchEventsMax: z.number().int().min(1).max(2000).default(500),
      batchAgeMs: z.number().int().min(0).max(3_600_000).default(1000),
    })
    .optional(),
});

export type VendorConfig = z.output<typeof configSchema>;

export function dataPaths(dataDir: string) {
  return {
    config: join(dataDir, 'config.json'),
    privateKey: join(dataDir, 'keys', 'vendor-key.jwk.json'),
    access: join(dataDir, 'access.json'),
    ledgerDir: join(dataDir, 'ledger'),
  };
}

export function defaultConfig(vendorId: string, storeName: string): VendorConfig {
  return {
    format: 1,
    vendorId,
    storeName,
    address: [],
    currency: 'EUR',
    port: DEFAULT_PORT,
    host: DEFAULT_HOST,
    pairingCodeTtlMinutes: 10,
    segmentBytesMax: 64 * 1024 * 1024,
    checkpointEveryEvents: 100_000,
    checkpointEveryMs: 10 * 60_000,
    idempotencyKeysMax: 1_000_000,
  };
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(() => true, () => false);
}

export async function isInitialised(dataDir: string): Promise<boolean> {
  return exists(dataPaths(dataDir).config);
}

export async function writeConfig(dataDir: string, config: VendorConfig): Promise<void> {
  await mkdir(dataDir, { recursive: true });
  await writeFileDurable(dataPaths(dataDir).config, `${JSON.stringify(configSchema.parse(config), null, 2)}\n`);
}

export async function loadConfig(dataDir: string): Promise<VendorConfig> {
  const path = dataPaths(dataDir).config;
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    fail('VND_ERR_CONFIG', `no vendor server in ${dataDir}: run "vendor-server init --data-dir ${dataDir}" first`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    fail('VND_ERR_CONFIG', `${path} is not valid JSON: ${(err as Error).message}`);
  }
  const parsed = configSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    fail('VND_ERR_CONFIG', `${path}: ${issue?.path.join('.') ?? ''} ${issue?.message ?? 'invalid'}`.trim());
  }
  return parsed.data;
}

export interface VendorKeys {
  kid: string;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  publicJwk: JWK;
}

/** Creates the vendor's Ed25519 key pair (EdDSA); the private JWK is readable by its owner only. */
export async function createKeys(dataDir: string): Promise<VendorKeys> {
  const { privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
  const jwk = await exportJWK(privateKey);
  const kid = await calculateJwkThumbprint({ kty: jwk.kty, crv: jwk.crv, x: jwk.x } as JWK);
  const path = dataPaths(dataDir).privateKey;
  await mkdir(join(dataDir, 'keys'), { recursive: true, mode: 0o700 });
  await writeFileDurable(path, `${JSON.stringify({ ...jwk, kid, alg: 'EdDSA', use: 'sig' }, null, 2)}\n`);
  await chmod(path, 0o600);
  return loadKeys(dataDir);
}

export async function loadKeys(dataDir: string): Promise<VendorKeys> {
  const path = dataPaths(dataDir).privateKey;
  let jwk: JWK;
  try {
    jwk = JSON.parse(await readFile(path, 'utf8')) as JWK;
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    fail('VND_ERR_CONFIG', missing ? `the vendor key ${path} is missing` : `the vendor key ${path} cannot be read: ${(err as Error).message}`);
  }
  if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || typeof jwk.d !== 'string' || typeof jwk.kid !== 'string') {
    fail('VND_ERR_CONFIG', `the vendor key ${path} is not an Ed25519 private key`);
  }
  try {
    const privateKey = (await importJWK(jwk, 'EdDSA')) as CryptoKey;
    const publicJwk: JWK = { kty: 'OKP', crv: 'Ed25519', x: jwk.x, kid: jwk.kid, alg: 'EdDSA', use: 'sig' };
    const publicKey = (await importJWK(publicJwk, 'EdDSA')) as CryptoKey;
    return { kid: jwk.kid, privateKey, publicKey, publicJwk };
  } catch (err) {
    if (err instanceof MallposError) throw err;
    return fail('VND_ERR_CONFIG', `the vendor key ${path} cannot be used: ${(err as Error).message}`);
  }
}
