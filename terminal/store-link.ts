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

/**
 * The terminal's connection to its store's vendor server. It reconnects by itself
 * (socket.io backoff, bounded delay) and says at once when the server is unreachable.
 * `request` never waits for a connection: it fails with LinkDownError while offline.
 */
export class StoreLink {
  private readonly socket: Socket<ServerToClientEvents, ClientToServerEvents>;
  private current: LinkStatus = { state: 'connecting', since: new Date().toISOString() };
  private readonly listeners = new Set<(s: LinkStatus) => void>();

  constructor(
    readonly url: string,
    credential: string,
    private readonly ackTimeoutMs = ACK_TIMEOUT_MS,
  ) {
    this.socket = io(url, {
      auth: { token: credential },
      transports: ['websocket'],
      reconnection: true,
      reconnectionDelay: 250,
      reconnectionDelayMax: 2_000,
      timeout: 3_000,
    });
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

  get connected(): boolean {
    return this.socket.connected;
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
