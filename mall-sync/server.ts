import { randomBytes } from 'node:crypto';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { isMallposError, MallposError } from '../core/index.ts';
import { createLogger, type Logger } from '../platform/logger.ts';
import { closeServer, listen } from '../platform/http.ts';
import { databaseUrl, loadMallConfig, loadMallKeys, loadMallTls, mallPaths, type MallConfig, type MallKeys } from './config.ts';
import { createMallApi } from './http-api.ts';
import { BatchIngestor } from './ingest.ts';
import { DatabaseArchive, MallArchive } from './archive.ts';
import { DataDirLock } from '../platform/lock.ts';
import { MallMetrics } from './metrics.ts';
import { Observations } from './observations.ts';
import { MallService } from './service.ts';
import { CustomerDataService } from './customer-data.ts';
import { WalletService, type RegistryChange } from './wallet.ts';
import { InstrumentService, loadOrCreateInstrumentKey } from './instruments.ts';
import { MallLotService } from './lots.ts';
import { signJson } from './jws.ts';
import { EmbeddedMallStore, type PostgresMallStore } from './store/index.ts';
import { fileBatchBodies, postgresBatchBodies, ReceiptVerifier, type BatchBodyReader } from './receipt-verify.ts';

export interface StartMallOptions {
  dataDir: string;
  port?: number | undefined;
  host?: string | undefined;
  logger?: Logger | undefined;
  /** Collect Node process metrics too (default true; tests running several malls turn it off). */
  defaultMetrics?: boolean | undefined;
  /** The mall's clock (tests). */
  clock?: (() => Date) | undefined;
}

export interface RunningMall {
  /** https://host:port */
  url: string;
  port: number;
  /** The mall's certificate authority (PEM): what vendors and admin clients pin. */
  caPem: string;
  config: MallConfig;
  keys: MallKeys;
  store: EmbeddedMallStore | PostgresMallStore;
  service: MallService;
  ingestor: BatchIngestor;
  wallet: WalletService;
  customerData: CustomerDataService;
  instruments: InstrumentService;
  lots: MallLotService;
  metrics: MallMetrics;
  logger: Logger;
  /** A token the admin API accepts, valid while this process runs (local CLI commands use it). */
  controlToken: string;
  close(): Promise<void>;
}

/** A URL a local client can reach (a wildcard address is reached through loopback). */
function localUrl(host: string, port: number): string {
  const h = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  return `https://${h.includes(':') ? `[${h}]` : h}:${port}`;
}

/**
 * Starts the mall from its data directory: config and key, the data directory lock, the
 * store (checkpoint + journal replay), then HTTP. Any start-up problem is a typed
 * MALL_ERR_* error with a message a person can act on, and leaves nothing held.
 */
export async function startMallServer(opts: StartMallOptions): Promise<RunningMall> {
  const config = await loadMallConfig(opts.dataDir);
  const keys = await loadMallKeys(opts.dataDir);
  const tls = await loadMallTls(opts.dataDir, config);
  const logger = opts.logger ?? createLogger({ name: 'mall-sync' });
  const paths = mallPaths(opts.dataDir);
  // The embedded journal has one writer: the process that holds the data directory. On
  // PostgreSQL any number of processes share the database (and read the same config).
  const lock = config.store.kind === 'embedded' ? await DataDirLock.acquire(opts.dataDir, 'mall-sync', 'MALL_ERR_STORE') : null;
  const controlToken = lock?.info.controlToken ?? randomBytes(32).toString('base64url');
  const metrics = new MallMetrics(opts.defaultMetrics ?? true);
  let store: EmbeddedMallStore | PostgresMallStore | null = null;
  try {
    let observations: Observations;
    let archive: MallArchive;
    let batchBodies: BatchBodyReader;
    if (config.store.kind === 'postgres') {
      const { PostgresMallStore } = await import('./store/postgres.ts');
      const pgStore = await PostgresMallStore.open({
        url: databaseUrl(config),
        poolMax: config.store.poolMax,
        checkpointEveryEvents: config.checkpointEveryEvents,
        onGroup: (g) => {
          metrics.lockWait.observe(g.lockWaitMs / 1000);
          metrics.lockHeld.observe(g.lockHeldMs / 1000);
          metrics.lockPhase.inc({ phase: 'catch-up' }, g.catchUpMs / 1000);
          metrics.lockPhase.inc({ phase: 'changes' }, g.changesMs / 1000);
          metrics.lockPhase.inc({ phase: 'writes' }, g.writesMs / 1000);
          metrics.lockPhase.inc({ phase: 'commit' }, g.commitMs / 1000);
          metrics.groupChanges.observe(g.changes);
          metrics.caughtUp.inc(g.caughtUp);
        },
      });
      store = pgStore;
      observations = await Observations.open(pgStore.observationSink());
      archive = new DatabaseArchive(pgStore, keys);
      batchBodies = postgresBatchBodies(pgStore.pool);
    } else {
      const embedded = await EmbeddedMallStore.open({
        dir: paths.storeDir,
        segmentBytesMax: config.segmentBytesMax,
        checkpointEveryEvents: config.checkpointEveryEvents,
        checkpointEveryMs: config.checkpointEveryMs,
        onFsync: (ms) => metrics.fsync.observe(ms / 1000),
        onFatal: (err) => {
          logger.fatal({ err }, 'mall journal write failed: stopping so that no unacknowledged state is served');
          process.exit(70);
        },
      });
      store = embedded;
      if (embedded.report.truncated !== null) {
        logger.warn({ torn: embedded.report.truncated }, 'an incomplete last journal line was dropped: it was never acknowledged');
      }
      observations = await Observations.open(paths.observations);
      archive = new MallArchive(paths.archiveDir, keys);
      batchBodies = fileBatchBodies(paths.archiveDir);
    }
    logger.info({ store: store.kind, seq: store.state.seq, checkpointSeq: store.report.checkpointSeq, replayed: store.report.replayed, ms: Math.round(store.report.recoveryMs) }, 'mall store recovered');

    const clock = opts.clock ?? (() => new Date());
    await archive.open(store.state);
    const service = new MallService(store, config, keys, observations, clock, archive);
    const ingestor = new BatchIngestor(
      store,
      keys,
      observations,
      archive,
      {
        onIngested: (vendor, events, flagged) => {
          metrics.batches.inc({ vendor });
          metrics.events.inc(events);
          metrics.flagged.inc(flagged);
        },
        onAlarm: (vendor, message) => {
          metrics.alarms.inc();
          logger.error({ vendor, alarm: message }, 'tamper alarm');
        },
      },
      clock,
    );
    const change: RegistryChange = (plan) => service.registryChange(plan);
    const wallet = new WalletService(store, change, config.walletAuthorisationTtlS, clock, (e) => {
      // Never the PIN: the card, the store that sent it and the counts.
      if (e.locked) {
        metrics.alarms.inc();
        logger.error({ card: e.card, vendor: e.vendor, failures: e.failures, stores: e.stores }, 'wallet locked after wrong PINs');
      } else {
        logger.warn({ card: e.card, vendor: e.vendor, failures: e.failures, stores: e.stores }, 'wrong wallet PIN');
      }
    });
    const customerData = new CustomerDataService(store, change, config.currency, clock);
    const instruments = new InstrumentService(store, change, await loadOrCreateInstrumentKey(opts.dataDir), clock);
    // Holds that expired while the mall was down are released before it answers anyone.
    const expired = await wallet.expire();
    if (expired > 0) logger.info({ expired }, 'wallet authorisations released after their time');
    // Mall lots whose close time passed while the mall was down close before it answers anyone.
    const lots = new MallLotService(store, change, wallet, (value, typ) => signJson(value, keys.privateKey, keys.kid, typ), clock);
    const closedLots = await lots.closeDue();
    if (closedLots > 0) logger.info({ closed: closedLots }, 'mall lots closed after their time');
    const startedAt = Date.now();
    const receipts = new ReceiptVerifier(store, batchBodies);
    const app = createMallApi({ config, service, ingestor, metrics, logger, controlToken, startedAt, wallet, customerData, receipts, instruments, lots });
    const http = createServer({ key: tls.keyPem, cert: tls.certPem, minVersion: 'TLSv1.2' }, app);
    // Slow clients must not hold sockets forever.
    http.requestTimeout = 60_000;
    http.headersTimeout = 20_000;
    const host = opts.host ?? config.host;
    await listen(http, opts.port ?? config.port, host, { inUse: 'MALL_ERR_PORT_IN_USE', badHost: 'MALL_ERR_CONFIG' });
    const port = (http.address() as AddressInfo).port;
    const url = localUrl(host, port);
    await lock?.setUrl(url);
    logger.info({ url, kid: keys.kid }, 'mall-sync listening');
    wallet.startTimer((err) => logger.error({ err }, 'wallet authorisation expiry failed'));
    lots.startTimer((err) => logger.error({ err }, 'mall lot close failed'));

    const opened = store;
    let closing: Promise<void> | null = null;
    const close = () => {
      closing ??= (async () => {
        await closeServer(http);
        await wallet.stop();
        await lots.stop();
        await opened.close();
        await lock?.release();
        logger.info('mall-sync stopped');
      })();
      return closing;
    };
    return { url, port, caPem: tls.caPem, config, keys, store: opened, service, ingestor, wallet, customerData, instruments, lots, metrics, logger, controlToken, close };
  } catch (err) {
    await store?.close().catch(() => undefined);
    await lock?.release();
    if (isMallposError(err)) throw err;
    throw new MallposError('MALL_ERR_STORE', `the mall cannot start: ${(err as Error).message}`);
  }
}
