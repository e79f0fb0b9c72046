/* global io */
/** The page's link to the terminal program: states in, commands out. */
import { byTestId } from './dom.js';
import { applyState, showLocal, whenVersion } from './state.js';

const COMMAND_ACK_TIMEOUT_MS = 30_000;
// A command's outcome arrives as a state push right behind its ack.
const STATE_AFTER_ACK_WAIT_MS = 5_000;
// A page whose secret keeps being refused reloads at most this often.
const RELOAD_INTERVAL_MIN_MS = 10_000;
const RELOADED_AT = 'mallpos-screen-reloaded-at';

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
  socket.on('connect_error', () => void reloadIfSecretStale());
}

/**
 * The terminal draws a new secret at every start, so after a restart this page's cookie
 * is refused. When the terminal answers again and refuses this page, loading the page
 * again fetches the new secret; while it does not answer, socket.io keeps trying.
 */
async function reloadIfSecretStale() {
  let status;
  try {
    status = (await fetch('/state', { cache: 'no-store' })).status;
  } catch {
    return;
  }
  if (status !== 403) return;
  const last = Number(window.sessionStorage.getItem(RELOADED_AT) ?? 0);
  if (Date.now() - last < RELOAD_INTERVAL_MIN_MS) return;
  window.sessionStorage.setItem(RELOADED_AT, String(Date.now()));
  window.location.reload();
}

/** Commands sent and not yet answered, on the page's body as `data-commands` (a busy cursor, tests). */
let commands = 0;
function pending(change) {
  commands += change;
  document.body.dataset.commands = String(commands);
}

/**
 * Sends a command; the terminal pushes the resulting state, the ack only reports bad
 * commands. Resolves once the state the command left is drawn, so a caller can read
 * its outcome (the terminal's message) from `ui.state`.
 */
export function send(cmd) {
  pending(1);
  return new Promise((answered) => {
    // Counted until the caller has its outcome, not just the ack.
    const resolve = (ok) => {
      pending(-1);
      answered(ok);
    };
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
      if (typeof res.version === 'number') void whenVersion(res.version, STATE_AFTER_ACK_WAIT_MS).then(() => resolve(true));
      else resolve(true);
    });
  });
}
