/**
 * The ceiling: the same socket.io server options and the same event, answered at once
 * with a constant ack and no work at all. What the bench's terminals reach against it
 * is the most any server behind this protocol could reach on this machine.
 *
 *   node --import tsx bench/vendor/ceiling-server.ts --tls-dir DIR
 *
 * Serves WSS like the vendor server (its own authority in DIR). Listens on 127.0.0.1 on
 * an ephemeral port and prints {"port":N}.
 */
import type { AddressInfo } from 'node:net';
import { Server } from 'socket.io';
import { SOCKET_PAYLOAD_BYTES_MAX } from '../../core/index.ts';
import { benchHttpsServer } from './tls-server.ts';
import { exitWithParent } from './watch-parent.ts';

const ACK = { ok: true, data: null } as const;

const http = await benchHttpsServer();
const io = new Server(http, { serveClient: false, maxHttpBufferSize: SOCKET_PAYLOAD_BYTES_MAX, pingInterval: 5_000, pingTimeout: 5_000, cors: { origin: false } });
io.on('connection', (socket) => {
  socket.on('sale:commit', (_payload: unknown, ack: unknown) => {
    if (typeof ack === 'function') ack(ACK);
  });
});

const stop = () => {
  io.close();
  process.exit(0);
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
exitWithParent();

http.listen(0, '127.0.0.1', () => {
  console.log(JSON.stringify({ port: (http.address() as AddressInfo).port }));
});
