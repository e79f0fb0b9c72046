import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AccessStore } from './access.ts';
import { listen } from '../platform/http.ts';
import { dataPaths, loadConfig, loadKeys, type VendorConfig, type VendorKeys } from './config.ts';
import { LedgerService } from './ledger/service.ts';
import { openLedger, type OpenedLedger } from './ledger/store.ts';
import { createLogger, type Logger } from '../platform/logger.ts';
import { VendorMetrics } from './metrics.ts';
import { createOperatorApi } from './operator-api.ts';
import { TerminalGateway } from './terminal-socket.ts';
import { MallSync, SYNC_DEFAULTS } from './sync/mall-sync-client.ts';

export interface StartOptions {
  dataDir: string;
  port?: number;
  host?: string;
  logger?: Logger;
  defaultMetrics?: boolean;
  /** The mall's URL, overriding the config's (tests, demo). */
  mallUrl?: string;
  /** Sync tuning for tests. */
  syncOverrides?: Partial<typeof SYNC_DEFAULTS>;
}

export interface RunningVendorServer {
  url: string;
  port: number;
  config: VendorConfig;
  keys: VendorKeys;
  ledger: LedgerService;
  access: AccessStore;
  gateway: TerminalGateway;
  opened: OpenedLedger;
  logger: Logger;
  sync: MallSync | null;
  close(): Promise<void>;
}

/**
 * Starts a vendor server from its data directory: config, keys, access store, then the
 * ledger (checkpoint + journal replay), then HTTP and socket.io. Any problem is a typed
 * error with a message a person can act on.
 */
export async function startVendorServer(opts: StartOptions): Promise<RunningVendorServer> {
  const config = await loadConfig(opts.dataDir);
  const logger = opts.logger ?? createLogger();
  const keys = await loadKeys(opts.dataDir);
  const access = await AccessStore.open(dataPaths(opts.dataDir).access);
  const metrics = new VendorMetrics(opts.defaultMetrics ?? true);

  const opened = await openLedger({
      dataDir: dataPaths(opts.dataDir).ledgerDir,
      vendorId: config.vendorId,
      segmentBytesMax: config.segmentBytesMax,
      keysMax: config.idempotencyKeysMax,
      checkpoint: { everyEvents: config.checkpointEveryEvents, everyMs: config.checkpointEveryMs },
      onFsync: (ms, lines) => {
        metrics.fsync.observe(ms / 1000);
        metrics.fsyncLines.observe(lines);
      },
      onFatal: (err) => {
        logger.fatal({ err }, 'journal write failed: stopping so that no unacknowledged state is served');
        process.exit(70);
      },
    });
  const { journal, state } = opened;
  if (opened.report.truncated !== undefined && opened.report.truncated !== null) {
    logger.warn({ torn: opened.report.truncated }, 'an incomplete last journal line was dropped: it was never acknowledged');
  }
  logger.info({ seq: state.seq, checkpointSeq: opened.checkpointSeq, replayed: opened.replayed, ms: Math.round(opened.recoveryMs) }, 'ledger recovered');

  const ledger = new LedgerService(
    { vendorId: config.vendorId, name: config.storeName, address: config.address, currency: config.currency },
    state,
    journal,
    {
      onCommitted: (event, ms) => {
        metrics.events.inc({ type: event.type });
        metrics.commitLatency.observe(ms / 1000);
        if (event.type === 'sale') metrics.sales.inc();
        if (event.type === 'reversal') metrics.refunds.inc();
        opened.checkpoints.maybe().catch((err: unknown) => logger.error({ err }, 'checkpoint failed'));
      },
    },
    undefined,
    config.idempotencyKeysMax,
  );
  ledger.customerPinAboveMinor = config.customerPinAboveMinor ?? null;
  opened.checkpoints.startTimer();

  const mallUrl = opts.mallUrl ?? config.mall?.url;
  let sync: MallSync | null = null;
  if (mallUrl !== undefined) {
    sync = await MallSync.open(
      dataPaths(opts.dataDir).ledgerDir,
      {
        ...SYNC_DEFAULTS,
        mallUrl: mallUrl.replace(/\/+$/, ''),
        mallJwk: config.mall?.jwk as never,
        ...(config.mall === undefined ? {} : { batchEventsMax: config.mall.batchEventsMax, batchAgeMs: config.mall.batchAgeMs, snapshotMaxAgeHours: config.mall.snapshotMaxAgeHours }),
        ...opts.syncOverrides,
      },
      ledger,
      keys,
      logger,
    );
    const s = sync;
    ledger.tokenGate = (token) => s.checkRegistryFresh(token);
    sync.start();
  }

  const startedAt = Date.now();
  let gateway: TerminalGateway | null = null;
  const app = createOperatorApi({
    config,
    ledger,
    access,
    keys,
    logger,
    metrics,
    startedAt,
    sync: () => sync,
    gateway: () => {
      if (gateway === null) throw new Error('assertion failed: gateway started');
      return gateway;
    },
  });
  const http = createServer(app);
  gateway = new TerminalGateway(http, { ledger, access, keys, logger, metrics, sync: () => sync });
  gateway.startStatusBroadcast();

  const host = opts.host ?? config.host;
  try {
    await listen(http, opts.port ?? config.port, host, { inUse: 'VND_ERR_PORT_IN_USE', badHost: 'VND_ERR_CONFIG' });
  } catch (err) {
    await journal.close();
    throw err;
  }
  const port = (http.address() as AddressInfo).port;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  logger.info({ url, vendorId: config.vendorId }, 'vendor server listening');

  let closing: Promise<void> | null = null;
  const close = () => {
    closing ??= (async () => {
      ledger.stopAccepting();
      await sync?.stop();
      await gateway.close();
      await new Promise<void>((resolve) => http.close(() => resolve()));
      await journal.flushed();
      await opened.checkpoints.close();
      await journal.close();
      logger.info('vendor server stopped');
    })();
    return closing;
  };

  return { url, port, config, keys, ledger, access, gateway, opened, logger, sync, close };
}
