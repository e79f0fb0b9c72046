import type { AddressInfo, Socket } from 'node:net';
import type { Ack, CatalogView, OfflineLimits, OfflineSaleAck, OfflineSaleRecord, ProductView, ServerStatus } from '../../core/index.ts';
import { doubleStatus, LostAnswers, startDoubleServer, writeDoubleCredential } from './store-double.ts';

/**
 * A stand-in for the store server's side of selling through an outage, for the
 * terminal's own tests: a TLS socket.io server that answers `catalog:get`,
 * `product:lookup`, `offline-sale:forward` (journalled once per key, price differences
 * against its catalog reported) and `offline:report`, pushes `catalog:changed`, and can
 * stop listening and come back on the same port, as a store server that went down.
 * The end-to-end test against the real store server is test/e2e/terminal-offline.test.ts.
 */
export interface OfflineStoreDouble {
  url: string;
  requests: { event: string; payload: Record<string, unknown> }[];
  /** Offline sales journalled, in order, each once. */
  journal(): OfflineSaleRecord[];
  reports(): { waiting: number; oldestAt: string | null; lastForwardedAt: string | null }[];
  setPrice(gtin: string, priceMinor: number): void;
  setLimits(limits: Partial<OfflineLimits>): void;
  /** The next forwards are refused with this code (the sale is not journalled). */
  refuseForwards(code: string | null): void;
  /** The next `times` answers to `event` are dropped (the request is still applied). */
  dropNextAnswer(event: string, times?: number): void;
  /** Stops listening and drops every connection: the store server is unreachable. */
  goDown(): Promise<void>;
  /** Listens again on the same port. */
  comeBack(): Promise<void>;
  pair(dataDir: string): Promise<void>;
  close(): Promise<void>;
}

export const PEN = '4006381333931';
export const MUESLI = '9001001000014';
const CREDENTIAL = 'offline-double-access-credential';

export async function startOfflineStoreDouble(limits: Partial<OfflineLimits> = {}): Promise<OfflineStoreDouble> {
  const { ca, https, io } = await startDoubleServer('offline double');
  const sockets = new Set<Socket>();
  https.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  const requests: OfflineStoreDouble['requests'] = [];
  const products = new Map<string, ProductView>([
    [PEN, { gtin: PEN, name: 'Stabilo pen, 4 colours', priceMinor: 450, currency: 'EUR', tokenPrices: { ACME: 90 } }],
    [MUESLI, { gtin: MUESLI, name: 'Muesli Classic 750 g', priceMinor: 399, currency: 'EUR', tokenPrices: { ACME: 80 } }],
  ]);
  let version = 1;
  let offlineLimits: OfflineLimits = { maxSales: 10, maxTotalMinor: 100_000, maxOutageS: 3600, catalogMaxAgeS: 3600, ...limits };
  const journal: OfflineSaleRecord[] = [];
  const acks = new Map<string, OfflineSaleAck>();
  const reports: ReturnType<OfflineStoreDouble['reports']> = [];
  const drops = new LostAnswers();
  let refusing: string | null = null;

  const status = (): ServerStatus => doubleStatus(journal.length);
  const catalog = (): CatalogView => ({ version, at: new Date().toISOString(), currency: 'EUR', products: [...products.values()], offlineLimits });

  io.use((socket, next) => {
    const token = (socket.handshake.auth as { token?: unknown }).token;
    if (token === CREDENTIAL) next();
    else next(Object.assign(new Error('unauthenticated'), { data: { code: 'VND_ERR_UNAUTHENTICATED', message: 'unknown terminal' } }));
  });

  io.on('connection', (socket) => {
    socket.emit('server:status', status());
    const handle = (event: string, work: (p: Record<string, unknown>) => Ack<unknown>) => {
      socket.on(event as never, ((payload: Record<string, unknown>, ack: (a: Ack<unknown>) => void) => {
        requests.push({ event, payload });
        const answer = work(payload);
        if (!drops.take(event)) ack(answer);
      }) as never);
    };
    handle('catalog:get', () => ({ ok: true, data: catalog() }));
    handle('product:lookup', (p) => {
      const product = products.get(String(p['code']));
      return product === undefined ? { ok: false, error: { code: 'VND_ERR_PRODUCT_UNKNOWN', message: 'no such product' } } : { ok: true, data: product };
    });
    handle('shift:current', () => ({ ok: true, data: null }));
    handle('offline-sale:forward', (p) => {
      const record = p as unknown as OfflineSaleRecord;
      const earlier = acks.get(record.key);
      if (earlier !== undefined) return { ok: true, data: { ...earlier, repeated: true } };
      if (refusing !== null) return { ok: false, error: { code: refusing, message: 'the store refuses this offline sale' } };
      journal.push(record);
      const ack: OfflineSaleAck = {
        offlineId: record.offlineId,
        saleId: `S${String(journal.length).padStart(10, '0')}`,
        seq: journal.length,
        receivedAt: new Date().toISOString(),
        repeated: false,
        priceDifferences: record.lines
          .filter((l) => products.get(l.code)?.priceMinor !== l.unitPriceMinor)
          .map((l) => ({ code: l.code, tillUnitMinor: l.unitPriceMinor, serverUnitMinor: products.get(l.code)?.priceMinor ?? null })),
      };
      acks.set(record.key, ack);
      return { ok: true, data: ack };
    });
    handle('offline:report', (p) => {
      reports.push(p as never);
      return { ok: true, data: null };
    });
  });

  await new Promise<void>((resolve) => https.listen(0, '127.0.0.1', resolve));
  const port = (https.address() as AddressInfo).port;
  const url = `https://127.0.0.1:${port}`;
  return {
    url,
    requests,
    journal: () => [...journal],
    reports: () => [...reports],
    setPrice(gtin, priceMinor) {
      const p = products.get(gtin);
      if (p === undefined) throw new Error(`no product ${gtin}`);
      products.set(gtin, { ...p, priceMinor });
      version += 1;
      io.emit('catalog:changed', { version });
    },
    setLimits(l) {
      offlineLimits = { ...offlineLimits, ...l };
    },
    refuseForwards(code) {
      refusing = code;
    },
    dropNextAnswer: (event, times = 1) => drops.lose(event, times),
    async goDown() {
      io.disconnectSockets(true);
      await new Promise<void>((resolve) => {
        https.close(() => resolve());
        for (const s of sockets) s.destroy();
      });
    },
    async comeBack() {
      await new Promise<void>((resolve) => https.listen(port, '127.0.0.1', resolve));
    },
    pair: (dataDir) => writeDoubleCredential(dataDir, { url, caPem: ca.certPem, terminalId: 't-offline', name: 'Till 7', device: 'offline-double-device-credential', credential: CREDENTIAL }),
    async close() {
      io.disconnectSockets(true);
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => io.close(() => resolve()));
    },
  };
}
