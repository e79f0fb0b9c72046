import { fail, isMallposError, sha256Hex } from '../core/index.ts';
import { migrate } from './store/postgres-migrate.ts';
import { createMallKeys, createMallTls, databaseUrl, defaultMallConfig, isInitialised, mallConfigSchema, newAdminToken, writeMallConfig, type MallConfig } from './config.ts';

export interface InitMallOptions {
  dataDir: string;
  name?: string | undefined;
  currency?: string | undefined;
  port?: number | undefined;
  host?: string | undefined;
  /** Extra host names and IP addresses for the mall's TLS certificate. */
  tlsNames?: string[] | undefined;
  /** Keep the mall's data in PostgreSQL (the schema is created now) instead of the embedded journal. */
  postgres?: { databaseUrl?: string | undefined; poolMax?: number | undefined } | undefined;
}

export interface InitMallResult {
  config: MallConfig;
  kid: string;
  /** The admin credential: shown once, stored only as its sha256. */
  adminToken: string;
  /** The mall's certificate authority (PEM): what vendors pin when they link. */
  caPem: string;
}

/** Creates a mall's data directory: the mall's Ed25519 key pair, an admin credential and a config. */
export async function initMall(opts: InitMallOptions): Promise<InitMallResult> {
  if (await isInitialised(opts.dataDir)) {
    fail('MALL_ERR_CONFIG', `${opts.dataDir} already holds a mall: choose another --data-dir`);
  }
  const adminToken = newAdminToken();
  const config = defaultMallConfig(sha256Hex(adminToken));
  if (opts.name !== undefined) config.name = opts.name;
  if (opts.currency !== undefined) config.currency = opts.currency;
  if (opts.port !== undefined) config.port = opts.port;
  if (opts.host !== undefined) config.host = opts.host;
  if (opts.tlsNames !== undefined) config.tlsNames = opts.tlsNames;
  if (opts.postgres !== undefined) {
    config.store = { kind: 'postgres', poolMax: opts.postgres.poolMax ?? 8, ...(opts.postgres.databaseUrl === undefined ? {} : { databaseUrl: opts.postgres.databaseUrl }) };
  }
  const checked = mallConfigSchema.safeParse(config);
  if (!checked.success) {
    const issue = checked.error.issues[0];
    fail('MALL_ERR_CONFIG', `${issue?.path.join('.') ?? 'config'}: ${issue?.message ?? 'not valid'}`);
  }
  if (checked.data.store.kind === 'postgres') await prepareDatabase(databaseUrl(checked.data));
  const keys = await createMallKeys(opts.dataDir);
  const caPem = await initMallTls(opts.dataDir, config);
  // The config is written last: a directory without it is not a half-made mall.
  await writeMallConfig(opts.dataDir, config);
  return { config, kid: keys.kid, adminToken, caPem };
}

/** Creates or upgrades the mall's schema in a PostgreSQL database, so that a wrong URL is found now. */
export async function prepareDatabase(url: string): Promise<void> {
  // The client is loaded only for a mall on PostgreSQL.
  const { default: pg } = await import('pg');
  const pool = new pg.Pool({ connectionString: url, max: 1, connectionTimeoutMillis: 10_000 });
  pool.on('error', () => undefined);
  try {
    await migrate(pool);
  } catch (err) {
    if (isMallposError(err)) throw err;
    fail('MALL_ERR_CONFIG', `the PostgreSQL database cannot be prepared: ${(err as Error).message}`);
  } finally {
    await pool.end();
  }
}

/** Creates the mall's certificate authority and a server certificate for its names. */
async function initMallTls(dataDir: string, config: MallConfig): Promise<string> {
  const tls = await createMallTls(dataDir, config);
  return tls.caPem;
}
