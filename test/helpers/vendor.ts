import { io, type Socket } from 'socket.io-client';
import type { Ack, ClientToServerEvents, ServerToClientEvents } from '../../core/index.ts';
import { dataPaths, loadConfig, writeConfig, type VendorConfig } from '../../vendor-server/config.ts';
import { initVendor, type InitOptions, type InitResult } from '../../vendor-server/init.ts';
import { LedgerService } from '../../vendor-server/ledger/service.ts';
import { openLedger, type OpenedLedger, type OpenLedgerOptions } from '../../vendor-server/ledger/store.ts';
import { createLogger } from '../../platform/logger.ts';
import { startVendorServer, type RunningVendorServer } from '../../vendor-server/server.ts';
import { fetchTls, http, trustAuthority, type HttpResult } from './http.ts';
import { tempDir } from './temp.ts';
import { TEST_PIN_HASH_COST } from './pin-cost.ts';

export type TerminalClient = Socket<ServerToClientEvents, ClientToServerEvents>;

export { tempDir };

export const silentLogger = () => createLogger({ level: 'silent' });

/**
 * A demo store made in `dir`, its ledger opened in this process and served by a ledger
 * service as the server's, from the store's config: for tests that write events without
 * a server. The caller closes `opened.journal`.
 */
export async function openDemoLedger(
  dir: string,
  opts: { init?: Partial<InitOptions>; ledger?: Partial<OpenLedgerOptions> } = {},
): Promise<{ config: VendorConfig; opened: OpenedLedger; ledger: LedgerService }> {
  await initVendor({ dataDir: dir, demo: true, pinHashCost: TEST_PIN_HASH_COST, ...opts.init });
  const config = await loadConfig(dir);
  const opened = await openLedger({ dataDir: dataPaths(dir).ledgerDir, vendorId: config.vendorId, keysMax: config.idempotencyKeysMax, ...opts.ledger });
  const ledger = new LedgerService(
    { vendorId: config.vendorId, name: config.storeName, address: config.address, currency: config.currency },
    opened.state, opened.journal, {}, undefined, config.idempotencyKeysMax,
  );
  return { config, opened, ledger };
}

export interface DemoStore {
  dir: string;
  init: InitResult;
  server: RunningVendorServer;
  operator: (method: string, path: string, body?: unknown, headers?: Record<string, string>) => Promise<HttpResult>;
  /** Pairs a terminal by its code over TLS that trusts the store's authority: `credential` is the access credential, `device` renews it. */
  pairTerminal: (name?: string) => Promise<{ terminalId: string; credential: string; device: string; expiresAt: string }>;
  connect: (credential: string) => Promise<TerminalClient>;
  /** Pairs a till, connects it and signs the demo cashier (ana) in: what money events need. */
  openTill: (name?: string) => Promise<{ terminalId: string; credential: string; socket: TerminalClient }>;
  restart: () => Promise<void>;
  close: () => Promise<void>;
}

/** Starts a vendor server on 127.0.0.1, port 0, and trusts its authority in the test helpers. */
export async function startTestVendor(dataDir: string, opts: Partial<Parameters<typeof startVendorServer>[0]> = {}): Promise<RunningVendorServer> {
  const server = await startVendorServer({ dataDir, port: 0, host: '127.0.0.1', logger: silentLogger(), defaultMetrics: false, ...opts });
  trustAuthority(server.url, server.caPem);
  return server;
}

/** Opens a terminal socket over TLS that trusts only the store's authority. */
export function terminalSocket(server: { url: string; caPem: string }, token?: string): TerminalClient {
  return io(server.url, { auth: token === undefined ? {} : { token }, ca: server.caPem, transports: ['websocket'], reconnection: false, forceNew: true });
}

/** A demo store on a fresh data directory, listening on 127.0.0.1 with an ephemeral port. */
export async function startDemoStore(opts: { accessTtlSeconds?: number; auctionClock?: () => Date; pinHashCost?: number } = {}): Promise<DemoStore> {
  const { dir, cleanup } = await tempDir('mallpos-vendor-');
  const init = await initVendor({ dataDir: dir, demo: true, mallFloat: false, pinHashCost: opts.pinHashCost ?? TEST_PIN_HASH_COST });
  if (opts.accessTtlSeconds !== undefined) await writeConfig(dir, { ...init.config, accessTtlSeconds: opts.accessTtlSeconds });
  const sockets: TerminalClient[] = [];
  const store: DemoStore = {
    dir,
    init,
    server: await startTestVendor(dir, opts.auctionClock === undefined ? {} : { auctionClock: opts.auctionClock }),
    operator(method, path, body, headers = {}) {
      return http(`${store.server.url}${path}`, method, body, { authorization: `Bearer ${init.operatorToken}`, ...headers });
    },
    async pairTerminal(name = 'Till 1') {
      const created = await store.operator('POST', '/api/terminals', { name });
      if (created.status !== 200) throw new Error(`create terminal: ${created.text}`);
      const res = await fetchTls(`${store.server.url}/pair`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ code: created.body.pairingCode }),
      });
      return (await res.json()) as { terminalId: string; credential: string; device: string; expiresAt: string };
    },
    async connect(credential) {
      const socket = terminalSocket(store.server, credential);
      sockets.push(socket);
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', () => resolve());
        socket.once('connect_error', (err) => reject(err));
      });
      return socket;
    },
    async openTill(name = 'Till 1') {
      const paired = await store.pairTerminal(name);
      const socket = await store.connect(paired.credential);
      expectOk(await call(socket, 'cashier:login', { staffId: 'ana', pin: '1234' }));
      return { terminalId: paired.terminalId, credential: paired.credential, socket };
    },
    async restart() {
      for (const s of sockets) s.disconnect();
      await store.server.close();
      store.server = await startTestVendor(dir);
    },
    async close() {
      for (const s of sockets) s.disconnect();
      await store.server.close();
      await cleanup();
    },
  };
  return store;
}

/** Emits an event and waits for its acknowledgement. */
export async function call<T>(socket: TerminalClient, event: keyof ClientToServerEvents, payload: unknown): Promise<Ack<T>> {
  const timed = socket.timeout(30_000);
  return (timed.emitWithAck as unknown as (e: string, p: unknown) => Promise<Ack<T>>).call(timed, event, payload);
}

export function expectOk<T>(ack: Ack<T>): T {
  if (!ack.ok) throw new Error(`expected ok, got ${ack.error.code}: ${ack.error.message}`);
  return ack.data;
}
