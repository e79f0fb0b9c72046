import { io, type Socket } from 'socket.io-client';
import {
  ACK_TIMEOUT_MS,
  MallposError,
  type Ack,
  type ClientToServerEvents,
  type ServerStatus,
  type ServerToClientEvents,
  type WireError,
} from '../core/index.ts';
import { renewAccessCredential, RenewRefused, type LinkCredentials } from './credential.ts';
import type { LotView, MallLotView } from '../core/auctions.ts';

export type LinkState = 'connecting' | 'connected' | 'offline' | 'revoked' | 'unauthorised';

export interface LinkStatus {
  state: LinkState;
  since: string;
  detail?: string;
  server?: ServerStatus;
}

/** A request that could not get an answer: the outcome is unknown (for money: retry with the same key). */
export class LinkDownError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LinkDownError';
  }
}

/** A typed refusal from the store server. */
export class RemoteError extends Error {
  constructor(readonly wire: WireError) {
    super(wire.message);
    this.name = 'RemoteError';
  }
}

type EventName = keyof ClientToServerEvents;

/** Renew an access credential once this share of its lifetime has passed. */
const RENEW_AT_SHARE = 2 / 3;
/** After a failed renewal, try again this soon (it is still valid for a while). */
const RENEW_RETRY_MS = 2_000;

/**
 * The terminal's connection to its store's vendor server, over TLS that trusts only the
 * store's certificate authority pinned at pairing. It reconnects by itself (socket.io
 * backoff, bounded delay) and says at once when the server is unreachable. `request`
 * never waits for a connection: it fails with LinkDownError while offline.
 *
 * The access credential is short-lived: the link renews it with the device credential
 * (HTTPS) before it expires, presents the new one on the open socket, and fetches a
 * fresh one before any reconnect that would present an expired one.
 */
export class StoreLink {
  private readonly socket: Socket<ServerToClientEvents, ClientToServerEvents>;
  private current: LinkStatus = { state: 'connecting', since: new Date().toISOString() };
  private readonly listeners = new Set<(s: LinkStatus) => void>();
  private access: { credential: string; obtainedAtMs: number; expiresAtMs: number };
  private renewTimer: NodeJS.Timeout | null = null;
  private renewing: Promise<void> | null = null;
  private closed = false;

  constructor(
    readonly url: string,
    private readonly creds: LinkCredentials,
    private readonly ackTimeoutMs = ACK_TIMEOUT_MS,
  ) {
    this.access = { credential: creds.credential, obtainedAtMs: Date.now(), expiresAtMs: Date.parse(creds.expiresAt) };
    this.socket = io(url, {
      // Called before every (re)connect: never present a credential about to expire.
      auth: (cb) => {
        this.freshCredential().then(
          (token) => cb({ token }),
          () => cb({ token: this.access.credential }),
        );
      },
      ca: creds.caPem,
      rejectUnauthorized: true,
      transports: ['websocket'],
      reconnection: true,
      reconnectionDelay: 250,
      reconnectionDelayMax: 2_000,
      timeout: 3_000,
    });
    this.socket.on('connect', () => this.scheduleRenewal());
    this.socket.on('connect', () => this.set({ state: 'connected' }));
    this.socket.on('disconnect', (reason) => {
      if (this.current.state === 'revoked') return;
      this.set({ state: 'offline', detail: `the store server is unreachable (${reason})` });
      // A server-side disconnect does not reconnect by itself in socket.io.
      if (reason === 'io server disconnect') setTimeout(() => this.socket.connect(), 1_000).unref();
    });
    this.socket.on('connect_error', (err: Error & { data?: WireError }) => {
      const code = err.data?.code;
      if (code === 'VND_ERR_TERMINAL_REVOKED') {
        this.set({ state: 'revoked', detail: 'this terminal has been revoked by the store: pair it again' });
        this.socket.disconnect();
      } else if (code === 'VND_ERR_UNAUTHENTICATED') {
        this.set({ state: 'unauthorised', detail: `${err.data?.message ?? 'not paired'}: pair the terminal again` });
        this.socket.disconnect();
      } else if (code === 'VND_ERR_CREDENTIAL_EXPIRED') {
        // A refusal by the server does not reconnect by itself; the next attempt renews first.
        this.access.expiresAtMs = 0;
        this.set({ state: 'offline', detail: 'renewing the access credential' });
        setTimeout(() => {
          if (!this.closed && this.current.state === 'offline') this.socket.connect();
        }, RENEW_RETRY_MS).unref();
      } else {
        this.set({ state: 'offline', detail: 'the store server is unreachable' });
      }
    });
    this.socket.on('server:status', (server) => this.set({ ...this.current, server }));
    this.socket.on('terminal:revoked', (info) => {
      this.set({ state: 'revoked', detail: info.message });
      this.socket.disconnect();
    });
  }

  status(): LinkStatus {
    return this.current;
  }

  /** The access credential's expiry (ms since the epoch), for status and tests. */
  get accessExpiresAtMs(): number {
    return this.access.expiresAtMs;
  }

  private renewDueMs(): number {
    const { obtainedAtMs, expiresAtMs } = this.access;
    return obtainedAtMs + (expiresAtMs - obtainedAtMs) * RENEW_AT_SHARE;
  }

  /** The current access credential, renewed first when it is due. */
  private async freshCredential(): Promise<string> {
    if (Date.now() >= this.renewDueMs()) await this.renew();
    return this.access.credential;
  }

  /** One renewal at a time; a definite refusal (revoked, paired again) ends the link, anything else is retried. */
  private renew(): Promise<void> {
    this.renewing ??= renewAccessCredential(this.url, this.creds, this.ackTimeoutMs)
      .then((fresh) => {
        this.access = { credential: fresh.credential, obtainedAtMs: Date.now(), expiresAtMs: fresh.expiresAtMs };
      })
      .catch((err: unknown) => {
        if (err instanceof RenewRefused && err.code === 'VND_ERR_TERMINAL_REVOKED') {
          this.set({ state: 'revoked', detail: 'this terminal has been revoked by the store: pair it again' });
          this.socket.disconnect();
        } else if (err instanceof RenewRefused && err.code === 'VND_ERR_UNAUTHENTICATED') {
          this.set({ state: 'unauthorised', detail: `${err.message}: pair the terminal again` });
          this.socket.disconnect();
        }
        throw err;
      })
      .finally(() => {
        this.renewing = null;
      });
    return this.renewing;
  }

  /** While connected, renews before expiry and hands the new credential to the open socket. */
  private scheduleRenewal(): void {
    if (this.renewTimer !== null) clearTimeout(this.renewTimer);
    if (this.closed) return;
    const waitMs = Math.max(0, this.renewDueMs() - Date.now());
    this.renewTimer = setTimeout(() => {
      this.renewTimer = null;
      if (!this.socket.connected) return;
      this.renew()
        .then(() => this.request<{ expiresAt: string }>('credential:renew', { credential: this.access.credential }))
        .then(
          () => this.scheduleRenewal(),
          () => {
            if (this.closed || !this.socket.connected) return;
            this.renewTimer = setTimeout(() => this.scheduleRenewal(), RENEW_RETRY_MS);
            this.renewTimer.unref();
          },
        );
    }, Math.min(waitMs, 2 ** 31 - 1));
    this.renewTimer.unref();
  }

  get connected(): boolean {
    return this.socket.connected;
  }

  /** The store's catalog changed (a push); the callback decides whether to fetch it. */
  onCatalogChanged(cb: (info: { version: number }) => void): () => void {
    const handler = (info: { version: number }) => {
      if (typeof info?.version === 'number' && Number.isSafeInteger(info.version)) cb(info);
    };
    this.socket.on('catalog:changed', handler);
    return () => this.socket.off('catalog:changed', handler);
  }

  /** Lots changed at the store (auctions): the store pushes their views once the changes are durable. */
  onLotUpdate(cb: (lot: LotView) => void): () => void {
    const handler = (lots: LotView[]) => {
      if (!Array.isArray(lots)) return;
      for (const lot of lots) if (typeof lot?.lotId === 'string' && typeof lot.status === 'string') cb(lot);
    };
    this.socket.on('lots:update', handler);
    return () => this.socket.off('lots:update', handler);
  }

  /** The mall's lots, pushed by the store when they changed. */
  onMallLotsUpdate(cb: (lots: MallLotView[]) => void): () => void {
    const handler = (lots: MallLotView[]) => {
      if (!Array.isArray(lots)) return;
      cb(lots.filter((lot) => typeof lot?.lotId === 'string' && typeof lot.status === 'string'));
    };
    this.socket.on('mall-lots:update', handler);
    return () => this.socket.off('mall-lots:update', handler);
  }

  onStatus(cb: (s: LinkStatus) => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  private set(next: { state: LinkState; detail?: string | undefined; server?: ServerStatus | undefined }): void {
    const changed = next.state !== this.current.state;
    const server = next.server ?? this.current.server;
    this.current = {
      state: next.state,
      since: changed ? new Date().toISOString() : this.current.since,
      ...(next.detail === undefined ? {} : { detail: next.detail }),
      ...(server === undefined ? {} : { server }),
    };
    for (const cb of this.listeners) cb(this.current);
  }

  /** Waits until connected, or until the timeout. */
  waitConnected(timeoutMs: number): Promise<boolean> {
    if (this.socket.connected) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.socket.off('connect', onConnect);
        resolve(ok);
      };
      const onConnect = () => done(true);
      const timer = setTimeout(() => done(false), timeoutMs);
      this.socket.on('connect', onConnect);
    });
  }

  /**
   * Sends one request and returns its data. A typed refusal throws RemoteError; no
   * answer (offline, timeout, disconnect) throws LinkDownError.
   */
  async request<T>(event: EventName, payload: unknown, timeoutMs = this.ackTimeoutMs): Promise<T> {
    if (!this.socket.connected) throw new LinkDownError(this.current.detail ?? 'the store server is unreachable');
    let ack: Ack<T>;
    try {
      const timed = this.socket.timeout(timeoutMs);
      ack = await (timed.emitWithAck as unknown as (e: string, p: unknown) => Promise<Ack<T>>).call(timed, event, payload);
    } catch {
      throw new LinkDownError('the store server did not answer in time');
    }
    if (!ack.ok) throw new RemoteError(ack.error);
    return ack.data;
  }

  close(): void {
    this.closed = true;
    if (this.renewTimer !== null) clearTimeout(this.renewTimer);
    this.socket.disconnect();
    this.listeners.clear();
  }
}

export function wireOf(err: unknown): WireError {
  if (err instanceof RemoteError) return err.wire;
  if (err instanceof MallposError) return err.toWire();
  if (err instanceof LinkDownError) return { code: 'POS_ERR_OFFLINE', message: 'the store server is unreachable: the cart is kept, nothing was charged' };
  return { code: 'POS_ERR_COMMAND', message: (err as Error).message ?? String(err) };
}
