import { io, type Socket } from 'socket.io-client';
import type { Ack, ClientToServerEvents, ServerToClientEvents } from '../../core/index.ts';
import { initVendor, type InitResult } from '../../vendor-server/init.ts';
import { createLogger } from '../../platform/logger.ts';
import { startVendorServer, type RunningVendorServer } from '../../vendor-server/server.ts';
import { http, type HttpResult } from './http.ts';
import { tempDir } from './temp.ts';

export type TerminalClient = Socket<ServerToClientEvents, ClientToServerEvents>;

export { tempDir };

export const silentLogger = () => createLogger({ level: 'silent' });

export interface DemoStore {
  dir: string;
  init: InitResult;
  server: RunningVendorServer;
  operator: (method: string, path: string, body?: unknown, headers?: Record<string, string>) => Promise<HttpResult>;
  pairTerminal: (name?: string) => Promise<{ terminalId: string; credential: string }>;
  connect: (credential: string) => Promise<TerminalClient>;
  restart: () => Promise<void>;
  close: () => Promise<void>;
}

/** A demo store on a fresh data directory, listening on 127.0.0.1 with an ephemeral port. */
export async function startDemoStore(): Promise<DemoStore> {
  const { dir, cleanup } = await tempDir('mallpos-vendor-');
  const init = await initVendor({ dataDir: dir, demo: true, mallFloat: false });
  const sockets: TerminalClient[] = [];
  const store: DemoStore = {
    dir,
    init,
    server: await startVendorServer({ dataDir: dir, port: 0, host: '127.0.0.1', logger: silentLogger(), defaultMetrics: false }),
    operator(method, path, body, headers = {}) {
      return http(`${store.server.url}${path}`, method, body, { authorization: `Bearer ${init.operatorToken}`, ...headers });
    },
    async pairTerminal(name = 'Till 1') {
      const created = await store.operator('POST', '/api/terminals', { name });
      if (created.status !== 200) throw new Error(`create terminal: ${created.text}`);
      const res = await fetch(`${store.server.url}/pair`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ code: created.body.pairingCode }),
      });
      const paired = (await res.json()) as { terminalId: string; credential: string };
      return paired;
    },
    async connect(credential) {
      const socket: TerminalClient = io(store.server.url, { auth: { token: credential }, transports: ['websocket'], reconnection: false, forceNew: true });
      sockets.push(socket);
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', () => resolve());
        socket.once('connect_error', (err) => reject(err));
      });
      return socket;
    },
    async restart() {
      for (const s of sockets) s.disconnect();
      await store.server.close();
      store.server = await startVendorServer({ dataDir: dir, port: 0, host: '127.0.0.1', logger: silentLogger(), defaultMetrics: false });
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
