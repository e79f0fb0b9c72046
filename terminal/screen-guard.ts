import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { isIP } from 'node:net';

/**
 * Who may use the cashier screen: only the page this terminal served, in a browser on
 * the till. Any other web page the kiosk browser opens is hostile, and browsers apply
 * no CORS to WebSockets, so every request is checked here:
 *
 * - Host names the terminal itself (`localhost` or an IP literal, with the screen's
 *   port). A page reached through another name that resolves here (DNS rebinding) is
 *   refused before it can read anything.
 * - Origin, when the browser sends one, is the screen's own origin; the WebSocket
 *   handshake must carry it. A page from another port of the same host is refused.
 * - Sec-Fetch-Site, when sent, says the request came from the screen itself or from the
 *   address bar, not from another site's link, frame, form or script tag.
 * - A per-launch secret: loading `/` sets it in an HttpOnly, SameSite=Strict cookie;
 *   every other request (the page's files, `/state`, the socket) must present it. No
 *   page can read it, and it changes at every start of the terminal.
 */
export interface ScreenGuard {
  /** Why this request is refused, or null when it may go on. */
  problem(headers: IncomingHttpHeaders, use: ScreenRequestUse): string | null;
  /** The Set-Cookie value that hands the secret to the page loading `/`. */
  cookie(): string;
}

/** `page`: loading `/` (gets the secret); `asset`: anything else over HTTP; `socket`: the socket.io handshake. */
export type ScreenRequestUse = 'page' | 'asset' | 'socket';

export const SCREEN_SECRET_BYTES = 32;

const FETCH_SITES_ALLOWED = new Set(['same-origin', 'none']);

export function createScreenGuard(port: number, secret = randomBytes(SCREEN_SECRET_BYTES).toString('base64url')): ScreenGuard {
  // Cookies are shared by every port of a host: the name carries the port so two
  // terminals on one machine do not overwrite each other's secret.
  const name = `mallpos_screen_${port}`;
  const expected = Buffer.from(secret);

  const hostProblem = (host: string | undefined): string | null => {
    if (host === undefined) return 'no Host header';
    const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+):(\d{1,5})$/.exec(host);
    if (m === null) return `Host ${JSON.stringify(host.slice(0, 80))} does not name this terminal's screen`;
    const name = (m[1] ?? '').replace(/^\[|\]$/g, '').toLowerCase();
    if (Number(m[2]) !== port) return `Host ${JSON.stringify(host.slice(0, 80))} names another port`;
    if (name !== 'localhost' && isIP(name) === 0) return `Host ${JSON.stringify(host.slice(0, 80))} is not this terminal (only localhost or an IP address)`;
    return null;
  };

  const secretPresented = (cookieHeader: string | undefined): boolean => {
    if (cookieHeader === undefined) return false;
    for (const part of cookieHeader.split(';')) {
      const eq = part.indexOf('=');
      if (eq < 0 || part.slice(0, eq).trim() !== name) continue;
      const given = Buffer.from(part.slice(eq + 1).trim());
      if (given.length === expected.length && timingSafeEqual(given, expected)) return true;
    }
    return false;
  };

  return {
    problem(headers, use) {
      const host = headers.host;
      const badHost = hostProblem(host);
      if (badHost !== null) return badHost;
      const origin = headers.origin;
      if (origin === undefined) {
        if (use === 'socket') return 'the socket handshake carries no Origin';
      } else if (origin.toLowerCase() !== `http://${(host ?? '').toLowerCase()}`) {
        return `Origin ${JSON.stringify(origin.slice(0, 80))} is not the cashier screen`;
      }
      const site = headers['sec-fetch-site'];
      if (typeof site === 'string' && !FETCH_SITES_ALLOWED.has(site)) return `a ${site} request is not the cashier screen`;
      if (use !== 'page' && !secretPresented(headers.cookie)) return 'the screen secret is missing or wrong: open the cashier screen again';
      return null;
    },
    cookie() {
      return `${name}=${secret}; Path=/; HttpOnly; SameSite=Strict`;
    },
  };
}
