import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import express from 'express';
import type { JWK } from 'jose';
import { fail, type JournalEvent } from '../core/index.ts';
import { AccessStore } from './access.ts';
import { closeServer, listen } from '../platform/http.ts';
import { dataPaths, EXCHANGE_DEFAULTS, loadConfig, loadKeys, loadStoreTls, OFFLINE_DEFAULTS, type VendorConfig, type VendorKeys } from './config.ts';
import { LedgerService } from './ledger/service.ts';
import { IntegrityAudit, openLedger, type OpenedLedger } from './ledger/store.ts';
import { DataDirLock } from '../platform/lock.ts';
import { createLogger, type Logger } from '../platform/logger.ts';
import { VendorMetrics } from './metrics.ts';
import { createOperatorApi } from './operator-api.ts';
import { terminalAuthRouter } from './terminal-auth.ts';
import { TerminalGateway } from './terminal-socket.ts';
import { MallSync, SYNC_DEFAULTS } from './sync/mall-sync-client.ts';
import { CashierDayService } from './cashier-day/service.ts';
import { OfflineService } from './offline.ts';
import { MALL_REQUEST_DEFAULTS, MallRequests } from './sync/mall-requests.ts';
import { WalletService } from './economy/wallet.ts';
import { ExchangeService } from './economy/exchange.ts';
import type { XchgServices } from './economy/xchg-socket.ts';
import { paymentWebhookRouter } from './economy/webhooks.ts';
import { loyaltyEarner } from './economy/loyalty.ts';
import { AuctionService } from './auctions/service.ts';
import { boardRouter, registerBoard } from './auctions/board.ts';
import { InstrumentService } from './instruments/service.ts';

export interface StartOptions {
  dataDir: string;
  port?: number;
  host?: string;
  logger?: Logger;
  defaultMetrics?: boolean;
  /** The mall's URL, overriding the config's (tests, demo); its key and authority still come from the config. */
  mallUrl?: string;
  /** Sync tuning for tests. */
  syncOverrides?: Partial<typeof SYNC_DEFAULTS>;
  /** The clock that says when auction lots close (tests move it rather than wait). */
  auctionClock?: () => Date;
  /**
   * The integrity audit process's nice value; by default the lowest priority, so that a
   * store that sells gets the CPU first. A test that waits for the audit's verdict while
   * other work saturates the CPUs sets 0: at nice 19 the audit would wait for them.
   */
  auditNice?: number;
  /** Journals of at most this many events are audited in the server's process (default AUDIT_IN_PROCESS_MAX; 0: always its own process). */
  auditInProcessMax?: number;
}

export interface RunningVendorServer {
  /** https://host:port */
  url: string;
  port: number;
  /** The store's certificate authority (PEM): what terminals pin. */
  caPem: string;
  config: VendorConfig;
  keys: VendorKeys;
  ledger: LedgerService;
  cashierDay: CashierDayService;
  offline: OfflineService;
  /** Exchange, mall wallet and customer-data requests. */
  xchg: XchgServices;
  /** Gift certificates and coupons. */
  instruments: InstrumentService;
  access: AccessStore;
  gateway: TerminalGateway;
  opened: OpenedLedger;
  logger: Logger;
  sync: MallSync | null;
  /** The background check of the whole journal and the checkpoint started after start. */
  audit: IntegrityAudit;
  /** Auction lots: listing, bids, the durable close timer. */
  auctions: AuctionService;
  close(): Promise<void>;
}

/**
 * The mall this store syncs with, or null. No trust on first use: the mall's key and
 * certificate authority come from link-mall only, and the mall is reached over TLS.
 */
function pinnedMall(config: VendorConfig, urlOverride: string | undefined): { url: string; jwk: JWK; caPem: string } | null {
  const url = urlOverride ?? config.mall?.url;
  if (url === undefined) return null;
  const pinned = config.mall;
  if (pinned?.jwk === undefined || pinned.caPem === undefined) {
    fail('VND_ERR_CONFIG', 'this store does not know the mall\'s key and certificate: run "vendor-server link-mall" with the mall\'s key and certificate authority first');
  }
  if (!url.startsWith('https://')) fail('VND_ERR_CONFIG', `the mall is reached over TLS: ${url} is not an https:// address`);
  return { url: url.replace(/\/+$/, ''), jwk: pinned.jwk as JWK, caPem: pinned.caPem };
}

/**
 * Starts a vendor server from its data directory: config, keys, access store, then the
 * ledger (checkpoint + journal replay), then HTTP and socket.io. Any problem is a typed
 * error with a message a person can act on.
 */
export async function startVendorServer(opts: StartOptions): Promise<RunningVendorServer> {
  const config = await loadConfig(opts.dataDir);
  // One writer per data directory for the process's whole life: the journal allows one.
  const lock = await DataDirLock.acquire(opts.dataDir, 'vendor-server', 'VND_ERR_DATA_DIR_IN_USE');
  try {
    return await startLocked(opts, config, lock);
  } catch (err) {
    await lock.release();
    throw err;
  }
}

async function startLocked(opts: StartOptions, config: VendorConfig, lock: DataDirLock): Promise<RunningVendorServer> {
  const logger = opts.logger ?? createLogger();
  const keys = await loadKeys(opts.dataDir);
  const mall = pinnedMall(config, opts.mallUrl);
  const tls = await loadStoreTls(opts.dataDir, config);
  if (tls.reissued) logger.info({ names: tls.names }, 'TLS server certificate issued for the configured names');
  const access = await AccessStore.open(dataPaths(opts.dataDir).access, config.pinHashCost);
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
  if (opened.replayThreads.fallback !== null) {
    logger.warn({ why: opened.replayThreads.fallback }, 'the replay went on without its threads, from where they stopped');
  }
  logger.info({ seq: state.seq, checkpointSeq: opened.checkpointSeq, replayed: opened.replayed, replayThreads: opened.replayThreads.started, ms: Math.round(opened.recoveryMs) }, 'ledger recovered');

  // Tills are told of a catalog change once the socket server exists.
  const catalogPush: { to: ((version: number) => void) | null } = { to: null };
  // Lot changes go to the auctions once they are durable (pushes, the close timer).
  const lotHook: { to: ((event: JournalEvent) => void) | null } = { to: null };
  const ledger = new LedgerService(
    { vendorId: config.vendorId, name: config.storeName, address: config.address, currency: config.currency },
    state,
    journal,
    {
      onCommitted: (event, ms) => {
        metrics.committed(event.type, ms);
        if (event.type === 'product.upserted') catalogPush.to?.(event.seq);
        lotHook.to?.(event);
        opened.checkpoints.maybe().catch((err: unknown) => logger.error({ err }, 'checkpoint failed'));
      },
    },
    undefined,
    config.idempotencyKeysMax,
  );
  ledger.customerPinAboveMinor = config.customerPinAboveMinor ?? null;
  if (config.loyalty !== undefined) ledger.loyalty = loyaltyEarner(config.loyalty, () => ledger.state, logger);
  const cashierDay = new CashierDayService(ledger, keys, { shiftsRequired: config.shifts?.required ?? false, utcOffsetMinutes: config.businessDay?.utcOffsetMinutes ?? 0, zPerTerminal: config.zReports?.perTerminal ?? false });
  opened.checkpoints.startTimer();
  const offline = new OfflineService(ledger, config.offline ?? OFFLINE_DEFAULTS, logger, metrics, { staffKnown: (id) => access.findStaff(id) !== undefined });
  offline.start();

  let sync: MallSync | null = null;
  if (mall !== null) {
    sync = await MallSync.open(
      dataPaths(opts.dataDir).ledgerDir,
      {
        ...SYNC_DEFAULTS,
        mallUrl: mall.url,
        mallJwk: mall.jwk,
        mallCaPem: mall.caPem,
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

  const exchangeConfig = config.exchange ?? EXCHANGE_DEFAULTS;
  const mallRequests =
    mall === null
      ? null
      : new MallRequests({ mallUrl: mall.url, mallCaPem: mall.caPem, vendorId: config.vendorId, keys, requestTimeoutMs: exchangeConfig.mallRequestTimeoutMs, probeTimeoutMs: MALL_REQUEST_DEFAULTS.probeTimeoutMs });
  const wallet = new WalletService(ledger, () => mallRequests, () => sync, exchangeConfig, logger);
  const xchg: XchgServices = {
    wallet,
    exchange: new ExchangeService(ledger, () => sync, wallet, exchangeConfig, config.businessDay?.utcOffsetMinutes ?? 0),
    mall: () => mallRequests,
  };

  const audit = new IntegrityAudit(opened, {
    vendorId: config.vendorId,
    ledgerDir: dataPaths(opts.dataDir).ledgerDir,
    ...(opts.auditNice === undefined ? {} : { nice: opts.auditNice }),
    ...(opts.auditInProcessMax === undefined ? {} : { inProcessMax: opts.auditInProcessMax }),
    onOk: (r, ms) => logger.info({ throughSeq: r.lastSeq, checkpointSeq: r.checkpointSeq, ms: Math.round(ms) }, 'ledger integrity confirmed: journal chain and checkpoint'),
    onDamage: (detail) => {
      metrics.ledgerIntact.set(0);
      metrics.ledgerDamage.inc();
      logger.error({ detail }, 'ledger integrity alarm: the data on disk is damaged; shipping to the mall is stopped; restore from a backup');
      sync?.halt(detail);
    },
  });

  const auctions = new AuctionService(ledger, logger, opts.auctionClock);
  lotHook.to = (event) => auctions.committed(event);

  const startedAt = Date.now();
  let gateway: TerminalGateway | null = null;
  const app = createOperatorApi({
    config,
    ledger,
    cashierDay,
    offline,
    access,
    keys,
    logger,
    metrics,
    startedAt,
    sync: () => sync,
    integrity: () => audit.status,
    auctions,
    gateway: () => {
      if (gateway === null) throw new Error('assertion failed: gateway started');
      return gateway;
    },
  });
  // Pairing and credential renewal first; everything else is the operator API.
  const root = express();
  root.disable('x-powered-by');
  root.use(terminalAuthRouter({ config, keys, access, logger, caPem: tls.caPem }));
  // Online purchases: signed by the payment provider, read as raw bytes before any JSON parser.
  root.use(paymentWebhookRouter({ dataDir: opts.dataDir, ledger, logger, metrics }));
  // The bid board page: read-only to anyone, like /health.
  root.use(boardRouter());
  root.use(app);
  const http = createServer({ key: tls.keyPem, cert: tls.certPem, minVersion: 'TLSv1.2' }, root);
  const instruments = new InstrumentService(ledger, () => mallRequests, () => sync, logger);
  gateway = new TerminalGateway(http, { ledger, access, keys, logger, metrics, sync: () => sync, cashierDay, offline, xchg, auctions, instruments });
  const io = gateway.io;
  const board = registerBoard(io, { ledger, access, auctions, logger, metrics });
  auctions.subscribe((lots) => {
    io.emit('lots:update', lots);
    board.emit('lots:update', lots);
  });
  catalogPush.to = (version) => io.emit('catalog:changed', { version });
  gateway.startStatusBroadcast();
  gateway.startMallLotsWatch();

  const host = opts.host ?? config.host;
  try {
    await listen(http, opts.port ?? config.port, host, { inUse: 'VND_ERR_PORT_IN_USE', badHost: 'VND_ERR_CONFIG' });
  } catch (err) {
    await journal.close();
    throw err;
  }
  const port = (http.address() as AddressInfo).port;
  const local = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  const url = `https://${local.includes(':') ? `[${local}]` : local}:${port}`;
  logger.info({ url, vendorId: config.vendorId }, 'vendor server listening');
  await lock.setUrl(url);
  audit.start();
  // Lots whose close passed while the server was down close now; then the timer runs.
  auctions.start();

  let closing: Promise<void> | null = null;
  const close = () => {
    closing ??= (async () => {
      ledger.stopAccepting();
      auctions.stop();
      audit.stop();
      offline.stop();
      await sync?.stop();
      await gateway.close();
      await closeServer(http);
      await journal.flushed();
      await opened.checkpoints.close();
      await journal.close();
      // An audit in this process ends by itself in milliseconds; a process of its own was killed.
      await audit.done();
      await lock.release();
      logger.info('vendor server stopped');
    })();
    return closing;
  };

  return { url, port, caPem: tls.caPem, config, keys, ledger, cashierDay, offline, xchg, instruments, access, gateway, opened, logger, sync, audit, auctions, close };
}
