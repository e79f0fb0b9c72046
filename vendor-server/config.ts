import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { entityId, personName, UTC_OFFSET_MINUTES_MAX } from '../core/index.ts';
import { loyaltyProgramSchema } from '../core/economy-requests.ts';
import { createSigningKey, loadJsonConfig, loadSigningKey, type SigningKey } from '../platform/key-files.ts';
import { isPinHashCost, PIN_HASH_COST_RANGE } from '../platform/pin-hash.ts';
import { writeFileDurable } from '../platform/storage/index.ts';
import { createTlsIdentity, loadTlsIdentity, type TlsIdentity } from '../platform/tls.ts';

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
  /** Extra host names and IP addresses the store's TLS certificate lists (localhost and loopback always). */
  tlsNames: z.array(z.string().regex(/^[A-Za-z0-9.:-]{1,253}$/)).max(32).default([]),
  /** Lifetime of a terminal's access credential; the terminal renews it with its device credential. */
  accessTtlSeconds: z.number().int().min(1).max(24 * 3600).default(900),
  segmentBytesMax: z.number().int().min(4096).max(1 << 30),
  checkpointEveryEvents: z.number().int().min(1),
  checkpointEveryMs: z.number().int().min(1000),
  idempotencyKeysMax: z.number().int().min(1000),
  /** scrypt's N for the staff and customer PINs set from now on (absent: 2^14; README: PINs). */
  pinHashCost: z.number().int().refine(isPinHashCost, { message: PIN_HASH_COST_RANGE }).optional(),
  /** Token payments worth more than this (minor units) need the PIN of a customer who set one. */
  customerPinAboveMinor: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
  /** Whether a sale, refund or no-sale needs an open shift on its till (off when absent). */
  shifts: z.strictObject({ required: z.boolean() }).optional(),
  /** Business days are calendar days at this fixed offset from UTC, in minutes east (UTC when absent). */
  businessDay: z.strictObject({ utcOffsetMinutes: z.number().int().min(-UTC_OFFSET_MINUTES_MAX).max(UTC_OFFSET_MINUTES_MAX) }).optional(),
  /** Whether each till closes its own day with its own chain of Z reports (store-wide when absent). */
  zReports: z.strictObject({ perTerminal: z.boolean() }).optional(),
  /** The store's loyalty programme: tokens of `token` earned from the float by sales to a customer card (absent: none). */
  loyalty: loyaltyProgramSchema.optional(),
  /** Selling through an outage of this server: the limits tills keep to, and the forwarding alarm. */
  offline: z
    .strictObject({
      maxSales: z.number().int().min(0).max(1_000_000).default(500),
      maxTotalMinor: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).default(500_000),
      maxOutageS: z.number().int().min(0).max(30 * 24 * 3600).default(8 * 3600),
      catalogMaxAgeS: z.number().int().min(1).max(365 * 24 * 3600).default(24 * 3600),
      forwardAlarmAfterS: z.number().int().min(1).max(30 * 24 * 3600).default(600),
    })
    .optional(),
  /** Exchanges between issuers and the mall wallet (README: Exchange and the mall wallet). */
  exchange: z
    .strictObject({
      /** What one customer may exchange per day while the mall is unreachable, in minor units of the tokens given up at face value. */
      offlineCustomerDayMinor: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).default(5_000),
      /** Bound on one wallet or customer-data request to the mall. */
      mallRequestTimeoutMs: z.number().int().min(100).max(60_000).default(3_000),
      /** How long a move into the wallet waits for its batch to reach the mall before answering with the wallet as it is. */
      walletPushWaitMs: z.number().int().min(0).max(60_000).default(3_000),
    })
    .optional(),
  mall: z
    .strictObject({
      url: z.string().url(),
      /** The mall's public key, pinned at link time. */
      jwk: z.record(z.string(), z.unknown()).optional(),
      /** The mall's TLS certificate authority (PEM), pinned at link time. */
      caPem: z.string().max(16 * 1024).optional(),
      snapshotMaxAgeHours: z.number().int().min(1).max(24 * 365).default(72),
      batchEventsMax: z.number().int().min(1).max(2000).default(500),
      batchAgeMs: z.number().int().min(0).max(3_600_000).default(1000),
    })
    .optional(),
});

export type VendorConfig = z.output<typeof configSchema>;
export type OfflineConfig = NonNullable<VendorConfig['offline']>;

/** The offline limits when the config has no `offline` section (README: Selling while the store server is down). */
export const OFFLINE_DEFAULTS: OfflineConfig = {
  maxSales: 500,
  maxTotalMinor: 500_000,
  maxOutageS: 8 * 3600,
  catalogMaxAgeS: 24 * 3600,
  forwardAlarmAfterS: 600,
};

export type ExchangeConfig = NonNullable<VendorConfig['exchange']>;

/** The exchange limits when the config has no `exchange` section (README: Exchange and the mall wallet). */
export const EXCHANGE_DEFAULTS: ExchangeConfig = {
  offlineCustomerDayMinor: 5_000,
  mallRequestTimeoutMs: 3_000,
  walletPushWaitMs: 3_000,
};

export function dataPaths(dataDir: string) {
  return {
    config: join(dataDir, 'config.json'),
    privateKey: join(dataDir, 'keys', 'vendor-key.jwk.json'),
    access: join(dataDir, 'access.json'),
    tlsDir: join(dataDir, 'tls'),
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
    tlsNames: [],
    accessTtlSeconds: 900,
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
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  await writeFileDurable(dataPaths(dataDir).config, `${JSON.stringify(configSchema.parse(config), null, 2)}\n`);
}

export function loadConfig(dataDir: string): Promise<VendorConfig> {
  return loadJsonConfig(dataPaths(dataDir).config, configSchema, 'VND_ERR_CONFIG', `no vendor server in ${dataDir}: run "vendor-server init --data-dir ${dataDir}" first`);
}

export type VendorKeys = SigningKey;

/** Creates the vendor's Ed25519 key pair (EdDSA). */
export function createKeys(dataDir: string): Promise<VendorKeys> {
  return createSigningKey(dataPaths(dataDir).privateKey, 'vendor key', 'VND_ERR_CONFIG');
}

export function loadKeys(dataDir: string): Promise<VendorKeys> {
  return loadSigningKey(dataPaths(dataDir).privateKey, 'vendor key', 'VND_ERR_CONFIG');
}

/** The store's certificate authority and server certificate, created by `init`. */
export function createStoreTls(dataDir: string, config: VendorConfig): Promise<TlsIdentity> {
  return createTlsIdentity(dataPaths(dataDir).tlsDir, `${config.storeName} (${config.vendorId}) store authority`, storeTlsNames(config));
}

/** Loads the store's TLS files, re-issuing the server certificate when the names changed. */
export function loadStoreTls(dataDir: string, config: VendorConfig): Promise<TlsIdentity & { reissued: boolean }> {
  return loadTlsIdentity(dataPaths(dataDir).tlsDir, storeTlsNames(config), 'VND_ERR_CONFIG');
}

/** The listen address is a name clients use too, unless it is a wildcard. */
function storeTlsNames(config: VendorConfig): string[] {
  const wildcard = config.host === '0.0.0.0' || config.host === '::';
  return wildcard ? config.tlsNames : [config.host, ...config.tlsNames];
}
