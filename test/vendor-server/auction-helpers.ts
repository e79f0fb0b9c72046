import { io, type Socket } from 'socket.io-client';
import type { Ack, JournalEvent } from '../../core/index.ts';
import { GENESIS_HASH } from '../../platform/storage/index.ts';
import { applyEvent, emptyState } from '../../vendor-server/ledger/state.ts';

/** The balances a replay of the exported journal gives, from nothing. */
export function replayBalances(events: JournalEvent[], vendorId: string): Record<string, Record<string, number>> {
  const state = emptyState(vendorId, GENESIS_HASH);
  for (const e of events) applyEvent(state, e, `h${e.seq}`);
  return state.balances;
}

/** A board socket: no credential, the `/board` namespace of the vendor server. */
export function boardSocket(server: { url: string; caPem: string }): Socket {
  return io(`${server.url}/board`, { ca: server.caPem, transports: ['websocket'], reconnection: false, forceNew: true });
}

export async function boardCall<T>(socket: Socket, event: string, payload: unknown): Promise<Ack<T>> {
  return (await socket.timeout(30_000).emitWithAck(event, payload)) as Ack<T>;
}
