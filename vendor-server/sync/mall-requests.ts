import { SignJWT } from 'jose';
import {
  ERRORS,
  INSTRUMENT_KINDS,
  MallposError,
  RESERVATION_PATTERN,
  sha256Hex,
  TOKEN_CODE_PATTERN,
  type CustomerDataView,
  type ErrorCode,
  type InstrumentReservation,
  type InstrumentReserveAnswer,
  type InstrumentStatus,
} from '../../core/index.ts';
import type { VendorKeys } from '../config.ts';
import { isCertificateError, keepAliveAgent, tlsRequest, type TlsResponse } from '../../platform/tls.ts';

/**
 * The store's client for the mall's vendor endpoints that answer at once: the mall wallet
 * (authorise, release, capture, balance) and another store's customer data. Every request
 * carries a short-lived JWT signed with the vendor key, as the snapshot request does; a
 * POST's JWT also carries `bh`, the sha256 hex of the raw body, so a token seen in transit
 * cannot be replayed with another body. The mall's refusals keep their code and message;
 * a mall that cannot be reached is VND_ERR_WALLET_OFFLINE for the wallet,
 * VND_ERR_MALL_LOT_OFFLINE for mall lots and VND_ERR_MALL_UNREACHABLE for the data
 * request, all at once (short timeouts).
 */
export interface MallRequestOptions {
  mallUrl: string;
  mallCaPem: string;
  vendorId: string;
  keys: VendorKeys;
  /** Bound on one request: a till waits on it with a customer in front of it. */
  requestTimeoutMs: number;
  /** Bound on the reachability probe (`/health`). */
  probeTimeoutMs: number;
}

export const MALL_REQUEST_DEFAULTS = { requestTimeoutMs: 3_000, probeTimeoutMs: 1_500 } as const;

/** Answers of the mall are small; anything larger is not an answer of the contract. */
export const MALL_ANSWER_BYTES_MAX = 64 * 1024;

export type WalletPurpose = 'sale' | 'exchange' | 'withdraw';

export interface MallAuthorisation {
  id: string;
  card: string;
  token: string;
  units: number;
  expiresAt: string;
}

export interface MallWallet {
  card: string;
  balances: Record<string, number>;
  held: Record<string, number>;
  asOf: string;
  /** Whether the wallet has a PIN, and is locked after wrong ones (balance answers only). */
  pinSet?: boolean;
  locked?: boolean;
}

type Unreachable = 'VND_ERR_WALLET_OFFLINE' | 'VND_ERR_MALL_UNREACHABLE' | 'VND_ERR_MALL_LOT_OFFLINE';

const AUTH_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isUnits(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** A token -> units record from the mall, as a null-prototype object of safe integers. */
function unitsRecord(v: unknown, what: string, code: Unreachable): Record<string, number> {
  if (v === undefined) return Object.create(null) as Record<string, number>;
  if (!isRecord(v)) throw new MallposError(code, `the mall's answer has no valid ${what}`);
  const out = Object.create(null) as Record<string, number>;
  for (const [token, units] of Object.entries(v)) {
    if (!TOKEN_CODE_PATTERN.test(token) || !isUnits(units)) throw new MallposError(code, `the mall's answer has no valid ${what}`);
    out[token] = units;
  }
  return out;
}

/**
 * The short-lived JWT a vendor shows the mall's vendor endpoints, signed with the vendor
 * key; for a body, its `bh` claim binds the token to exactly these bytes.
 */
export function vendorJwt(keys: VendorKeys, vendorId: string, expiresIn: string, raw?: string): Promise<string> {
  return new SignJWT(raw === undefined ? {} : { bh: sha256Hex(raw) })
    .setProtectedHeader({ alg: 'EdDSA', kid: keys.kid, typ: 'JWT' })
    .setSubject(vendorId)
    .setAudience('mallpos-mall')
    .setIssuedAt()
    .setExpirationTime(expiresIn)
    .sign(keys.privateKey);
}

export class MallRequests {
  /** The connections to the mall, kept open between requests: a wallet payment at the till waits for no TLS handshake. */
  private readonly agent = keepAliveAgent();

  constructor(private readonly opts: MallRequestOptions) {}

  /** Whether the mall answers its health check now (one short probe). */
  async reachable(): Promise<boolean> {
    try {
      const res = await tlsRequest(`${this.opts.mallUrl}/health`, { ca: this.opts.mallCaPem, timeoutMs: this.opts.probeTimeoutMs, bodyBytesMax: MALL_ANSWER_BYTES_MAX, agent: this.agent });
      return res.ok;
    } catch {
      return false;
    }
  }

  /** `pin` is the customer's wallet PIN, which the mall checks; it is sent, never kept. */
  async authorise(body: { key: string; card: string; token: string; units: number; purpose: WalletPurpose; pin?: string | undefined }): Promise<{ authorisation: MallAuthorisation; wallet: MallWallet }> {
    const res = await this.post(`/wallet/authorisations`, { key: body.key, card: body.card, token: body.token, units: body.units, purpose: body.purpose, ...(body.pin === undefined ? {} : { pin: body.pin }) }, 'VND_ERR_WALLET_OFFLINE');
    const a = isRecord(res) ? res['authorisation'] : undefined;
    if (!isRecord(a) || typeof a['id'] !== 'string' || !AUTH_ID.test(a['id']) || a['card'] !== body.card || a['token'] !== body.token || a['units'] !== body.units || typeof a['expiresAt'] !== 'string') {
      throw new MallposError('VND_ERR_WALLET_OFFLINE', 'the mall answered the wallet authorisation with something else than the authorisation asked for');
    }
    return {
      authorisation: { id: a['id'], card: body.card, token: body.token, units: body.units, expiresAt: a['expiresAt'] },
      wallet: this.wallet(isRecord(res) ? res['wallet'] : undefined, body.card),
    };
  }

  async release(id: string, key: string): Promise<void> {
    await this.post(`/wallet/authorisations/${encodeURIComponent(id)}/release`, { key }, 'VND_ERR_WALLET_OFFLINE');
  }

  async capture(id: string, key: string, eventSeq: number): Promise<void> {
    await this.post(`/wallet/authorisations/${encodeURIComponent(id)}/capture`, { key, eventSeq }, 'VND_ERR_WALLET_OFFLINE');
  }

  async balance(card: string): Promise<MallWallet> {
    const res = await this.request('GET', `/wallet/${encodeURIComponent(card)}`, undefined, 'VND_ERR_WALLET_OFFLINE');
    const w = this.wallet(res, card);
    if (isRecord(res) && typeof res['pinSet'] === 'boolean') w.pinSet = res['pinSet'];
    if (isRecord(res) && typeof res['locked'] === 'boolean') w.locked = res['locked'];
    return w;
  }

  /** Sets the card's wallet PIN at the mall (a first one, or a new one with `oldPin`). */
  async setPin(body: { key: string; card: string; pin: string; oldPin?: string | undefined }): Promise<{ card: string; pinSet: true }> {
    const res = await this.post('/wallet/pin', { key: body.key, card: body.card, pin: body.pin, ...(body.oldPin === undefined ? {} : { oldPin: body.oldPin }) }, 'VND_ERR_WALLET_OFFLINE');
    if (!isRecord(res) || res['card'] !== body.card || res['pinSet'] !== true) throw new MallposError('VND_ERR_WALLET_OFFLINE', 'the mall answered the wallet PIN request with something unexpected');
    return { card: body.card, pinSet: true };
  }

  async customerData(body: { key: string; card: string }): Promise<CustomerDataView> {
    const res = await this.post('/customer-data', body, 'VND_ERR_MALL_UNREACHABLE');
    const bad = () => new MallposError('VND_ERR_MALL_UNREACHABLE', 'the mall answered the customer data request with something unexpected');
    if (!isRecord(res) || !isRecord(res['home']) || !isRecord(res['summary'])) throw bad();
    const home = res['home'];
    const summary = res['summary'];
    const contact = isRecord(res['contact']) ? res['contact'] : {};
    const str = (v: unknown): string => {
      if (typeof v !== 'string' || v.length > 200) throw bad();
      return v;
    };
    const when = (v: unknown): string | null => (v === null || v === undefined ? null : str(v));
    const units = (v: unknown): number => {
      if (!isUnits(v)) throw bad();
      return v;
    };
    const view: CustomerDataView = {
      requestId: str(res['requestId']),
      card: str(res['card']),
      home: { vendorId: str(home['vendorId']), name: str(home['name']) },
      name: str(res['name']),
      contact: {
        ...(contact['email'] === undefined ? {} : { email: str(contact['email']) }),
        ...(contact['phone'] === undefined ? {} : { phone: str(contact['phone']) }),
      },
      summary: { sales: units(summary['sales']), spentMinor: units(summary['spentMinor']), currency: str(summary['currency']), firstAt: when(summary['firstAt']), lastAt: when(summary['lastAt']) },
      tollMinor: units(res['tollMinor']),
    };
    if (view.card !== body.card) throw bad();
    return view;
  }

  // ---- bearer instruments (docs/PROTOCOL.md "Bearer instruments") -----------------------------

  /** Holds `units` of an instrument for a sale of this store; idempotent by `key`. */
  async reserveInstrument(body: { key: string; instrument: string; units: number }, code: string): Promise<InstrumentReserveAnswer> {
    const res = await this.post('/instruments/reservations', { key: body.key, instrument: body.instrument, units: body.units }, 'VND_ERR_MALL_UNREACHABLE');
    const r = isRecord(res) ? res['reservation'] : undefined;
    const bad = () => new MallposError('VND_ERR_MALL_UNREACHABLE', 'the mall answered the reservation with something else than the reservation asked for');
    if (!isRecord(r) || typeof r['id'] !== 'string' || !RESERVATION_PATTERN.test(r['id']) || r['code'] !== code || r['units'] !== body.units || typeof r['token'] !== 'string' || typeof r['expiresAt'] !== 'string') throw bad();
    const reservation: InstrumentReservation = { id: r['id'], code, token: r['token'], units: body.units, state: 'held', expiresAt: r['expiresAt'] };
    return { reservation, instrument: this.instrumentStatusOf(isRecord(res) ? res['instrument'] : undefined, code) };
  }

  async releaseReservation(id: string, key: string): Promise<void> {
    await this.post(`/instruments/reservations/${encodeURIComponent(id)}/release`, { key }, 'VND_ERR_MALL_UNREACHABLE');
  }

  /** Asks the mall to void a certificate this store sold by mistake (nothing redeemed or held). */
  async voidInstrument(code: string, body: { key: string; reason: string }): Promise<InstrumentStatus> {
    return this.instrumentStatusOf(await this.post(`/instruments/${encodeURIComponent(code)}/void`, { key: body.key, reason: body.reason }, 'VND_ERR_MALL_UNREACHABLE'), code);
  }

  async instrumentStatus(code: string): Promise<InstrumentStatus> {
    return this.instrumentStatusOf(await this.request('GET', `/instruments/${encodeURIComponent(code)}`, undefined, 'VND_ERR_MALL_UNREACHABLE'), code);
  }

  /** What the mall says of an instrument, checked field by field: it must be the one asked about. */
  private instrumentStatusOf(v: unknown, code: string): InstrumentStatus {
    const bad = () => new MallposError('VND_ERR_MALL_UNREACHABLE', 'the mall answered with another instrument than the one asked about');
    if (!isRecord(v) || v['code'] !== code) throw bad();
    const str = (x: unknown, max = 200): string => {
      if (typeof x !== 'string' || x.length > max) throw bad();
      return x;
    };
    const units = (x: unknown): number => {
      if (!isUnits(x)) throw bad();
      return x;
    };
    const kind = v['kind'];
    const state = v['state'];
    if (typeof kind !== 'string' || !(INSTRUMENT_KINDS as readonly string[]).includes(kind)) throw bad();
    if (state !== 'unsold' && state !== 'live' && state !== 'spent' && state !== 'voided') throw bad();
    return {
      code,
      issuer: str(v['issuer'], 40),
      serial: str(v['serial'], 20),
      kind: kind as InstrumentStatus['kind'],
      token: str(v['token'], 20),
      faceUnits: units(v['faceUnits']),
      remainingUnits: units(v['remainingUnits']),
      heldUnits: units(v['heldUnits']),
      state,
      expiresAt: str(v['expiresAt'], 40),
      soldBy: v['soldBy'] === null || v['soldBy'] === undefined ? null : str(v['soldBy'], 40),
      doubleSpent: v['doubleSpent'] === true,
      compact: v['compact'] === null || v['compact'] === undefined ? null : str(v['compact'], 1024),
      asOf: str(v['asOf'], 40),
    };
  }

  // ---- mall-wide auction lots --------------------------------------------------------------

  /** The mall's lots, as the mall answered (checked by the caller, vendor-server/auctions/mall-lots.ts). */
  mallLots(): Promise<unknown> {
    return this.request('GET', '/lots', undefined, 'VND_ERR_MALL_LOT_OFFLINE');
  }

  /** One mall lot, with the receipt when this store's customer won it. */
  mallLot(lotId: string): Promise<unknown> {
    return this.request('GET', `/lots/${encodeURIComponent(lotId)}`, undefined, 'VND_ERR_MALL_LOT_OFFLINE');
  }

  /** Forwards a customer's bid on a mall lot; `pin` is the wallet PIN, sent, never kept. */
  mallLotBid(lotId: string, body: { key: string; card: string; units: number; pin?: string | undefined }): Promise<unknown> {
    return this.post(`/lots/${encodeURIComponent(lotId)}/bids`, { key: body.key, card: body.card, units: body.units, ...(body.pin === undefined ? {} : { pin: body.pin }) }, 'VND_ERR_MALL_LOT_OFFLINE');
  }

  private wallet(v: unknown, card: string): MallWallet {
    if (!isRecord(v) || v['card'] !== card || typeof v['asOf'] !== 'string') throw new MallposError('VND_ERR_WALLET_OFFLINE', 'the mall answered with another wallet than the one asked for');
    return { card, balances: unitsRecord(v['balances'], 'wallet balances', 'VND_ERR_WALLET_OFFLINE'), held: unitsRecord(v['held'], 'wallet holds', 'VND_ERR_WALLET_OFFLINE'), asOf: v['asOf'] };
  }

  private post(path: string, body: unknown, unreachable: Unreachable): Promise<unknown> {
    return this.request('POST', path, JSON.stringify(body), unreachable);
  }

  private async request(method: 'GET' | 'POST', path: string, raw: string | undefined, unreachable: Unreachable): Promise<unknown> {
    const headers: Record<string, string> = { authorization: `Bearer ${await vendorJwt(this.opts.keys, this.opts.vendorId, '2m', raw)}` };
    if (raw !== undefined) headers['content-type'] = 'application/json';
    let res: TlsResponse;
    try {
      res = await tlsRequest(`${this.opts.mallUrl}/v1/vendors/${this.opts.vendorId}${path}`, {
        method,
        headers,
        ...(raw === undefined ? {} : { body: raw }),
        ca: this.opts.mallCaPem,
        timeoutMs: this.opts.requestTimeoutMs,
        bodyBytesMax: MALL_ANSWER_BYTES_MAX,
        agent: this.agent,
      });
    } catch (err) {
      const why = isCertificateError(err) ? 'the mall does not present the certificate it was linked with' : 'the mall cannot be reached';
      throw new MallposError(unreachable, `${why}: ${(err as Error).message}`);
    }
    let body: unknown = null;
    try {
      body = res.json();
    } catch {
      body = null;
    }
    if (res.ok) return body;
    const error = isRecord(body) && isRecord(body['error']) ? body['error'] : null;
    const code = typeof error?.['code'] === 'string' ? error['code'] : null;
    const message = typeof error?.['message'] === 'string' ? error['message'].slice(0, 300) : `HTTP ${res.status}`;
    // The mall's own refusals (and the core's, such as an unknown token) reach the till as
    // the mall gave them; anything else, a mall that is down or failing (5xx) included,
    // means the mall cannot serve this request now, and the till offers another way.
    if (res.status < 500 && code !== null && Object.hasOwn(ERRORS, code) && (code.startsWith('MALL_ERR_') || code.startsWith('CORE_ERR_'))) {
      throw new MallposError(code as ErrorCode, message);
    }
    throw new MallposError(unreachable, `the mall could not answer: ${message}${code === null ? '' : ` [${code.slice(0, 60)}]`}`);
  }
}
