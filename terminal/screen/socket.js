/* global io */
/** The page's link to the terminal program: states in, commands out. */
import { byTestId } from './dom.js';
import { applyState, showLocal } from './state.js';

const COMMAND_ACK_TIMEOUT_MS = 30_000;

let socket = null;

/** Connects to the terminal; socket.io reconnects by itself and the terminal pushes its state again. */
export function connect() {
  socket = io({ transports: ['websocket'], reconnectionDelayMax: 1_000 });
  socket.on('connect', () => {
    byTestId('screen-link').hidden = true;
  });
  socket.on('disconnect', () => {
    byTestId('screen-link').hidden = false;
  });
  socket.on('state', applyState);
}

/** Sends a command; the terminal pushes the resulting state, the ack only reports bad commands. */
export function send(cmd) {
  return new Promise((resolve) => {
    socket.timeout(COMMAND_ACK_TIMEOUT_MS).emit('command', cmd, (err, res) => {
      if (err) {
        if (cmd.type !== 'complete') showLocal('error', 'the terminal program did not answer: try again');
        resolve(false);
        return;
      }
      if (!res.ok) {
        showLocal('error', res.error?.message ?? 'the terminal refused this');
        resolve(false);
        return;
      }
      resolve(true);
    });
  });
}
