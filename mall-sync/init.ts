import { fail, sha256Hex } from '../core/index.ts';
import { createMallKeys, createMallTls, defaultMallConfig, isInitialised, mallConfigSchema, newAdminToken, writeMallConfig, type MallConfig } from './config.ts';

export interface InitMallOptions {
  dataDir: string;
  name?: string | undefined;
  currency?: string | undefined;
  port?: number | undefined;
  host?: string | undefined;
  /** Extra host names and IP addresses for the mall's TLS certificate. */
  tlsNames?: string[] | undefined;
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
  const checked = mallConfigSchema.safeParse(config);
  if (!checked.success) {
    const issue = checked.error.issues[0];
    fail('MALL_ERR_CONFIG', `${issue?.path.join('.') ?? 'config'}: ${issue?.message ?? 'not valid'}`);
  }
  const keys = await createMallKeys(opts.dataDir);
  const caPem = await initMallTls(opts.dataDir, config);
  // The config is written last: a directory without it is not a half-made mall.
  await writeMallConfig(opts.dataDir, config);
  return { config, kid: keys.kid, adminToken, caPem };
}

/** Creates the mall's certificate authority and a server certificate for its names. */
async function initMallTls(dataDir: string, config: MallConfig): Promise<string> {
  const tls = await createMallTls(dataDir, config);
  return tls.caPem;
}
