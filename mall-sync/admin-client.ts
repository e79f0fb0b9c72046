import { randomUUID } from 'node:crypto';
import { ERRORS, MallposError, type ErrorCode, type FeeSchedule, type InstrumentPolicy, type InstrumentStatus, type IssuedInstrument, type TokenType } from '../core/index.ts';
import type { InstrumentKeyRecord } from './instruments-state.ts';
import { createLogger } from '../platform/logger.ts';
import { readFile } from 'node:fs/promises';
import { loadMallConfig, mallPaths } from './config.ts';
import { keepAliveAgent, tlsPaths, tlsRequest, type TlsResponse } from '../platform/tls.ts';
import type { PartyKind, PublicJwk } from './events.ts';
import { liveOwner } from '../platform/lock.ts';
import type { Cursor, SignedStatement, VendorView } from './service.ts';
import type { AlarmRecord, AllotmentRecord, CustomerDataRequestRecord, GapDecisionRecord, KeyRecord } from './store/index.ts';
import type { DirectoryView, WalletCheck } from './directory.ts';
import type { FlaggedRecord } from './events.ts';
import type { WalletPinStatus } from './wallet.ts';
import type { MallLotDetail } from './lots.ts';

/**
 * A typed client of the mall's admin API (and its public read endpoints), for the CLI,
 * tests and tools. Errors come back as MallposError with the mall's code.
 */
export class MallAdminClient {
  /** The client's connections to the mall, kept open between its requests. */
  private readonly agent = keepAliveAgent();

  /** `caPem` is the mall's certificate authority: the only one this client trusts. */
  constructor(
    readonly url: string,
    private readonly token: string,
    private readonly caPem: string,
    private readonly timeoutMs = 30_000,
  ) {}

  async request<T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<T> {
    let res: TlsResponse;
    try {
      res = await tlsRequest(`${this.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${this.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        ca: this.caPem,
        timeoutMs: this.timeoutMs,
        agent: this.agent,
      });
    } catch (err) {
      throw new MallposError('MALL_ERR_INTERNAL', `the mall at ${this.url} is unreachable: ${(err as Error).message}`);
    }
    const text = res.text;
    let json: unknown = null;
    try {
      json = JSON.parse(text);
    } catch {
      json = null;
    }
    if (!res.ok) {
      const e = (json as { error?: { code?: string; message?: string; details?: Record<string, unknown> } } | null)?.error;
      const code = (e?.code !== undefined && e.code in ERRORS ? e.code : 'MALL_ERR_INTERNAL') as ErrorCode;
      throw new MallposError(code, e?.message ?? `HTTP ${res.status}`, e?.details);
    }
    return json as T;
  }

  vendors(): Promise<VendorView[]> {
    return this.request('GET', '/admin/vendors');
  }

  vendor(id: string): Promise<VendorView> {
    return this.request('GET', `/admin/vendors/${encodeURIComponent(id)}`);
  }

  registerVendor(input: { id: string; name: string; jwk: Record<string, unknown> }): Promise<VendorView> {
    return this.request('POST', '/admin/vendors', input);
  }

  /** Adds a key; the vendor's active key becomes retired (it still verifies batches). */
  addKey(vendor: string, jwk: Record<string, unknown>): Promise<KeyRecord> {
    return this.request('POST', `/admin/vendors/${encodeURIComponent(vendor)}/keys`, { jwk });
  }

  retireKey(vendor: string, kid: string): Promise<KeyRecord> {
    return this.request('POST', `/admin/vendors/${encodeURIComponent(vendor)}/keys/${encodeURIComponent(kid)}/retire`, {});
  }

  revokeKey(vendor: string, kid: string, reason?: string): Promise<KeyRecord> {
    return this.request('POST', `/admin/vendors/${encodeURIComponent(vendor)}/keys/${encodeURIComponent(kid)}/revoke`, reason === undefined ? {} : { reason });
  }

  tokenTypes(): Promise<TokenType[]> {
    return this.request('GET', '/admin/token-types');
  }

  upsertTokenType(tt: TokenType): Promise<TokenType> {
    const { code, ...rest } = tt;
    return this.request('PUT', `/admin/token-types/${encodeURIComponent(code)}`, rest);
  }

  fees(): Promise<FeeSchedule> {
    return this.request('GET', '/admin/fees');
  }

  setFees(fees: FeeSchedule): Promise<FeeSchedule> {
    return this.request('PUT', '/admin/fees', fees);
  }

  addParty(input: { id: string; name: string; kind: PartyKind }): Promise<{ id: string; name: string; kind: PartyKind }> {
    return this.request('POST', '/admin/parties', input);
  }

  /** Issues an allotment; `key` makes retries safe (the same key and body return the same allotment). */
  allot(input: { vendor: string; token: string; units: number; reference: string }, key = `allot-${randomUUID()}`): Promise<AllotmentRecord> {
    return this.request('POST', '/admin/allotments', input, { 'idempotency-key': key });
  }

  allotments(vendor?: string): Promise<AllotmentRecord[]> {
    return this.request('GET', `/admin/allotments${vendor === undefined ? '' : `?vendor=${encodeURIComponent(vendor)}`}`);
  }

  positions(): Promise<{ currency: string; positions: Record<string, number>; sumMinor: number }> {
    return this.request('GET', '/admin/positions');
  }

  alarms(): Promise<AlarmRecord[]> {
    return this.request('GET', '/admin/alarms');
  }

  flagged(vendor?: string): Promise<FlaggedRecord[]> {
    return this.request('GET', `/admin/flagged${vendor === undefined ? '' : `?vendor=${encodeURIComponent(vendor)}`}`);
  }

  customer(card: string): Promise<DirectoryView> {
    return this.request('GET', `/admin/customers/${encodeURIComponent(card)}`);
  }

  walletCheck(): Promise<WalletCheck> {
    return this.request('GET', '/admin/wallet-check');
  }

  /** A card's wallet PIN status: set or not, wrong PINs since the last right one (by store), locked since when. */
  walletPin(card: string): Promise<WalletPinStatus> {
    return this.request('GET', `/admin/wallets/${encodeURIComponent(card)}/pin`);
  }

  /** Lifts a card's wallet lock after wrong PINs. */
  walletUnlock(card: string): Promise<WalletPinStatus> {
    return this.request('POST', `/admin/wallets/${encodeURIComponent(card)}/unlock`, {});
  }

  customerDataRequests(): Promise<CustomerDataRequestRecord[]> {
    return this.request('GET', '/admin/customer-data-requests');
  }

  async statements(from: string, to: string): Promise<SignedStatement[]> {
    const body = await this.request<{ statements: SignedStatement[] }>('GET', `/admin/statements?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`);
    return body.statements;
  }

  cursor(vendor: string): Promise<Cursor> {
    return this.request('GET', `/admin/vendors/${encodeURIComponent(vendor)}/cursor`);
  }

  /** Records a decision on a vendor's open gap: wait, or resend from a seq. */
  decideGap(vendor: string, input: { decision: 'wait' | 'resend'; resendFromSeq?: number; note?: string }): Promise<GapDecisionRecord> {
    return this.request('POST', `/admin/vendors/${encodeURIComponent(vendor)}/gap-decision`, input);
  }

  mallKey(): Promise<{ kid: string; jwk: PublicJwk }> {
    return this.request('GET', '/v1/mall-key');
  }

  // ---- mall-wide lots ---------------------------------------------------------------

  /** Lists a lot in mall tokens; the same key and body answer the same lot. */
  createLot(input: Record<string, unknown>): Promise<MallLotDetail> {
    return this.request('POST', '/admin/lots', input);
  }

  lots(): Promise<MallLotDetail[]> {
    return this.request('GET', '/admin/lots');
  }

  lot(id: string): Promise<MallLotDetail> {
    return this.request('GET', `/admin/lots/${encodeURIComponent(id)}`);
  }

  cancelLot(id: string, reason: string): Promise<MallLotDetail> {
    return this.request('POST', `/admin/lots/${encodeURIComponent(id)}/cancel`, { reason });
  }

  // ---- bearer instruments ----------------------------------------------------------

  /** Issues mall gift certificates (idempotent by `key`). */
  issueInstruments(input: { key: string; token: string; units: number; expiresAt: string; count?: number }): Promise<{ instruments: IssuedInstrument[] }> {
    return this.request('POST', '/admin/instruments', { kind: 'gift', ...input });
  }

  instrument(code: string): Promise<InstrumentStatus> {
    return this.request('GET', `/admin/instruments/${encodeURIComponent(code)}`);
  }

  doubleSpentInstruments(): Promise<InstrumentStatus[]> {
    return this.request('GET', '/admin/instruments/double-spent');
  }

  voidInstrument(code: string, reason: string): Promise<InstrumentStatus> {
    return this.request('POST', `/admin/instruments/${encodeURIComponent(code)}/void`, { reason });
  }

  instrumentPolicy(): Promise<InstrumentPolicy> {
    return this.request('GET', '/admin/instrument-policy');
  }

  setInstrumentPolicy(policy: InstrumentPolicy): Promise<InstrumentPolicy> {
    return this.request('PUT', '/admin/instrument-policy', policy);
  }

  instrumentKeys(): Promise<InstrumentKeyRecord[]> {
    return this.request('GET', '/admin/instrument-keys');
  }

  /** Registers a manufacturer's coupon key (or another issuer's certificate key). */
  addInstrumentKey(issuer: string, jwk: Record<string, unknown>): Promise<InstrumentKeyRecord> {
    return this.request('POST', '/admin/instrument-keys', { issuer, jwk });
  }

  withdrawInstrumentKey(kid: string, reason?: string): Promise<InstrumentKeyRecord> {
    return this.request('POST', `/admin/instrument-keys/${encodeURIComponent(kid)}/withdraw`, reason === undefined ? {} : { reason });
  }
}

/**
 * Runs `fn` with an admin client for the mall in `dataDir`: the running mall-sync that
 * owns the directory when there is one (through its local control token), or else a
 * mall started in this process on a loopback ephemeral port for the duration.
 */
export async function withMallAdmin<T>(dataDir: string, fn: (client: MallAdminClient) => Promise<T>): Promise<T> {
  await loadMallConfig(dataDir);
  const owner = await liveOwner(dataDir);
  if (owner !== null) {
    if (owner.url === null) throw new MallposError('MALL_ERR_STORE', `the mall-sync process (pid ${owner.pid}) using ${dataDir} is still starting: try again in a moment`);
    const caPem = await readFile(tlsPaths(mallPaths(dataDir).tlsDir).caCert, 'utf8');
    return fn(new MallAdminClient(owner.url, owner.controlToken, caPem));
  }
  // The server is loaded only when no mall runs: a command to a running one needs only HTTPS.
  const { startMallServer } = await import('./server.ts');
  const mall = await startMallServer({ dataDir, port: 0, host: '127.0.0.1', logger: createLogger({ level: 'silent', name: 'mall-sync' }), defaultMetrics: false });
  try {
    return await fn(new MallAdminClient(mall.url, mall.controlToken, mall.caPem));
  } finally {
    await mall.close();
  }
}
