import { z } from 'zod';
import {
  assert,
  bodyHash,
  fail,
  isAcceptedAt,
  isExpired,
  SNAPSHOT_TYP,
  STATEMENT_TYP,
  tokenTypeSchema,
  ZERO_HASH,
  type FeeSchedule,
  type FlattenedJws,
  type SnapshotPayload,
  type TokenType,
} from '../core/index.ts';
import type { MallArchive } from './archive.ts';
import { allotmentPurchase } from './clearing.ts';
import { instrumentDirectory } from './instruments-state.ts';
import { ed25519Thumbprint, type MallConfig, type MallKeys } from './config.ts';
import { MALL_ACCOUNT, vendorAccount, type GapDecisionData, type NewMallEvent, type PartyKind, type PublicJwk } from './events.ts';
import { signJson } from './jws.ts';
import { mallStopHere } from './stop-at.ts';
import { openGap, type Observations } from './observations.ts';
import { allotmentIssue, feeScheduleSchema, gapDecide, keyAdd, keyRevoke, parseAdmin, partyAdd, publicJwkSchema, vendorRegister } from './schemas.ts';
import { buildStatement, checkRange, decidedGap, type StatementPayload } from './statements.ts';
import { positionsSum, type AllotmentRecord, type GapDecisionRecord, type KeyRecord, type MallState, type VendorRecord } from './store/index.ts';
import type { MallStore } from './store/store.ts';

export interface VendorView {
  id: string;
  name: string;
  registeredAt: string;
  keys: { kid: string; status: KeyRecord['status']; addedAt: string; retiredAt: string | null; revokedAt: string | null; revokedReason: string | null }[];
  lastBatchSeq: number;
  lastBatchAt: string | null;
  lastEventSeq: number;
  events: number;
  flaggedEvents: number;
  secondsSinceLastBatch: number | null;
  stale: boolean;
  gap: { expectedSeq: number; seenSeq: number; seenAt: string | null } | null;
  /** The admin's decision on the open gap, when there is one that covers it. */
  gapDecision: GapDecisionRecord | null;
  rejections: Record<string, number>;
  positionMinor: number;
  tokens: VendorRecord['tokens'];
}

export interface Cursor {
  lastSeq: number;
  lastBatchHash: string;
  lastEventSeq: number;
  lastEventHash: string;
  /** Set when the mall decided on a gap that the vendor must resend its batches from this seq. */
  resendFromSeq: number | null;
}

export interface SignedStatement {
  vendor: string;
  statement: StatementPayload;
  jws: FlattenedJws;
}

/**
 * The mall's registry and views: everything the admin API and the public read endpoints
 * do, apart from batch ingestion (ingest.ts). Each change is validated against the
 * store's state and committed synchronously after the checks; it resolves when durable.
 */
export class MallService {
  constructor(
    readonly store: MallStore,
    readonly config: MallConfig,
    readonly keys: MallKeys,
    readonly observations: Observations,
    private readonly clock: () => Date = () => new Date(),
    private readonly archive: MallArchive | null = null,
  ) {}

  private registryTail: Promise<unknown> = Promise.resolve();

  get state(): Readonly<MallState> {
    return this.store.state;
  }

  private now(): string {
    return this.clock().toISOString();
  }

  private vendor(id: string): VendorRecord {
    const v = this.state.vendors[id];
    if (v === undefined) fail('MALL_ERR_VENDOR_UNKNOWN', `no vendor ${id.slice(0, 40)} at this mall`, { vendor: id.slice(0, 40) });
    return v;
  }

  private async checkJwk(input: unknown): Promise<PublicJwk> {
    if (typeof input === 'object' && input !== null && 'd' in input) fail('MALL_ERR_VALIDATION', 'this is a private key: register the vendor\'s public key only');
    // Parsed under its field name, so a problem reads "jwk.kty: ...".
    const { jwk } = parseAdmin(z.strictObject({ jwk: publicJwkSchema }), { jwk: input });
    const kid = await ed25519Thumbprint(jwk.x);
    if (jwk.kid !== undefined && jwk.kid !== kid) fail('MALL_ERR_VALIDATION', `the key's kid ${jwk.kid.slice(0, 64)} is not its JWK thumbprint ${kid}`);
    return { kty: 'OKP', crv: 'Ed25519', x: jwk.x, kid, alg: 'EdDSA', use: 'sig' };
  }

  private checkNewPartyId(id: string): void {
    if (id === MALL_ACCOUNT) fail('MALL_ERR_VALIDATION', '"mall" names the mall itself');
    if (this.state.vendors[id] !== undefined) fail('MALL_ERR_EXISTS', `${id} is already a vendor`, { id });
    if (this.state.parties[id] !== undefined) fail('MALL_ERR_EXISTS', `${id} is already a party`, { id });
  }

  // ---- registry --------------------------------------------------------------------

  /**
   * Every registry change goes through here, one at a time: `plan` checks the request
   * against the state and names the events; each is signed into the archive's registry
   * history, then committed. Batches never change what a plan checks, so the checks
   * still hold when the events are committed.
   */
  registryChange<T>(plan: () => { events: NewMallEvent[]; result: () => T }): Promise<T> {
    const run = async (): Promise<T> => {
      // Inside the store's exclusive section the state is current (other mall processes included) and stays so.
      const { changed, result } = await this.store.exclusive(async () => {
        const { events, result } = plan();
        if (events.length === 0) return { changed: false, result };
        const first = this.state.registrySeq + 1;
        for (const [i, e] of events.entries()) await this.archive?.registry(first + i, e);
        if (events.some((e) => e.type === 'wallet.authorised')) mallStopHere('wallet-authorise-archived');
        if (events.some((e) => e.type === 'mall-lot.closed')) mallStopHere('mall-lot-close-archived');
        assert(this.state.registrySeq === first - 1, 'registry changes run one at a time');
        const commits = events.map((e) => this.store.commit(e));
        await Promise.all(commits);
        return { changed: true, result };
      });
      if (!changed) await this.store.flushed();
      return result();
    };
    const next = this.registryTail.then(run, run);
    this.registryTail = next.catch(() => undefined);
    return next;
  }

  async registerVendor(body: unknown): Promise<VendorView> {
    const input = parseAdmin(vendorRegister, body);
    const jwk = await this.checkJwk(input.jwk);
    return this.registryChange(() => {
      const result = () => this.vendorView(input.id);
      const existing = this.state.vendors[input.id];
      if (existing !== undefined) {
        const k = this.state.keys[jwk.kid];
        if (existing.name === input.name && k !== undefined && k.vendor === input.id) return { events: [], result };
        fail('MALL_ERR_EXISTS', `vendor ${input.id} is already registered`, { vendor: input.id });
      }
      this.checkNewPartyId(input.id);
      if (this.state.keys[jwk.kid] !== undefined) fail('MALL_ERR_EXISTS', `key ${jwk.kid} is already registered for vendor ${this.state.keys[jwk.kid]?.vendor}`);
      const at = this.now();
      return {
        events: [
          { type: 'vendor.registered', at, data: { id: input.id, name: input.name } },
          { type: 'key.added', at, data: { vendor: input.id, kid: jwk.kid, jwk, retired: null } },
        ],
        result,
      };
    });
  }

  /**
   * Adds a key: the vendor's active key, if any, becomes retired. A retired key still
   * signs the batch the vendor may have in flight (the next seq), and nothing after it.
   */
  async addKey(vendorId: string, body: unknown): Promise<KeyRecord> {
    const input = parseAdmin(keyAdd, body);
    const jwk = await this.checkJwk(input.jwk);
    return this.registryChange(() => {
      const v = this.vendor(vendorId);
      const result = () => this.key(vendorId, jwk.kid);
      const known = this.state.keys[jwk.kid];
      if (known !== undefined) {
        if (known.vendor === vendorId && known.status === 'active') return { events: [], result };
        fail('MALL_ERR_EXISTS', `key ${jwk.kid} is already registered${known.vendor === vendorId ? ` (${known.status})` : ''}`);
      }
      const active = Object.values(this.state.keys).find((k) => k.vendor === vendorId && k.status === 'active');
      return {
        events: [{ type: 'key.added', at: this.now(), data: { vendor: vendorId, kid: jwk.kid, jwk, retired: active?.kid ?? null, retiredAtSeq: active === undefined ? null : v.lastSeq + 1 } }],
        result,
      };
    });
  }

  private key(vendorId: string, kid: string): KeyRecord {
    const k = this.state.keys[kid];
    if (k === undefined || k.vendor !== vendorId) fail('MALL_ERR_NOT_FOUND', `vendor ${vendorId} has no key ${kid.slice(0, 64)}`);
    return k;
  }

  /** Retires a key: it signs the batch the vendor may have in flight (the next seq), and nothing after it. */
  retireKey(vendorId: string, kid: string): Promise<KeyRecord> {
    return this.registryChange(() => {
      const v = this.vendor(vendorId);
      const k = this.key(vendorId, kid);
      const result = () => this.key(vendorId, kid);
      if (k.status !== 'active') return { events: [], result };
      return { events: [{ type: 'key.retired', at: this.now(), data: { vendor: vendorId, kid, retiredAtSeq: v.lastSeq + 1 } }], result };
    });
  }

  /** Revokes a key: batches signed with it never verify again, whenever they were made. */
  revokeKey(vendorId: string, kid: string, body: unknown): Promise<KeyRecord> {
    const input = parseAdmin(keyRevoke, body ?? {});
    return this.registryChange(() => {
      this.vendor(vendorId);
      const k = this.key(vendorId, kid);
      const result = () => this.key(vendorId, kid);
      if (k.status === 'revoked') return { events: [], result };
      return { events: [{ type: 'key.revoked', at: this.now(), data: { vendor: vendorId, kid, reason: input.reason ?? 'revoked by the mall' } }], result };
    });
  }

  upsertTokenType(code: string, body: unknown): Promise<TokenType> {
    const tt = parseAdmin(tokenTypeSchema, { ...(typeof body === 'object' && body !== null ? body : {}), code }) as TokenType;
    return this.registryChange(() => {
      if (tt.currency !== this.config.currency) fail('MALL_ERR_VALIDATION', `token types here are in ${this.config.currency}, not ${tt.currency}`);
      const issuerIsVendor = this.state.vendors[tt.issuer] !== undefined;
      const party = this.state.parties[tt.issuer];
      if (tt.issuer !== MALL_ACCOUNT && !issuerIsVendor && party === undefined) {
        fail('MALL_ERR_VALIDATION', `the issuer ${tt.issuer} is neither the mall, a vendor nor a registered party`);
      }
      if (tt.kind === 'mall' && tt.issuer !== MALL_ACCOUNT) fail('MALL_ERR_VALIDATION', 'mall tokens are issued by the mall');
      if (tt.kind === 'vendor' && !issuerIsVendor) fail('MALL_ERR_VALIDATION', 'vendor tokens are issued by a registered vendor');
      if (tt.kind === 'manufacturer') {
        if (party?.kind !== 'manufacturer') fail('MALL_ERR_VALIDATION', 'manufacturer tokens are issued by a registered manufacturer');
        if ((tt.products ?? []).length === 0) fail('MALL_ERR_VALIDATION', 'manufacturer tokens need the list of products they buy');
      }
      if (tt.acceptedBy !== '*') {
        const unknown = tt.acceptedBy.filter((id) => this.state.vendors[id] === undefined);
        if (unknown.length > 0) fail('MALL_ERR_VALIDATION', `the acceptance list names vendors the mall does not know: ${unknown.slice(0, 5).join(', ')}`);
      }
      return { events: [{ type: 'token-type.upserted', at: this.now(), data: tt }], result: () => tt };
    });
  }

  setFees(body: unknown): Promise<FeeSchedule> {
    const fees = parseAdmin(feeScheduleSchema, body) as FeeSchedule;
    return this.registryChange(() => ({ events: [{ type: 'fees.set', at: this.now(), data: fees }], result: () => fees }));
  }

  addParty(body: unknown): Promise<{ id: string; name: string; kind: PartyKind }> {
    const input = parseAdmin(partyAdd, body);
    return this.registryChange(() => {
      const existing = this.state.parties[input.id];
      if (existing !== undefined && existing.name === input.name && existing.kind === input.kind) return { events: [], result: () => input };
      this.checkNewPartyId(input.id);
      return { events: [{ type: 'party.added', at: this.now(), data: input }], result: () => input };
    });
  }

  /**
   * Issues an allotment of tokens to a vendor (claim 27). Mall tokens are bought at face
   * value: the vendor owes the mall units x face value (claims 4, 28). Idempotent by key:
   * the same key and body return the original allotment; another body is MALL_ERR_EXISTS.
   */
  allot(key: string, body: unknown): Promise<AllotmentRecord> {
    const input = parseAdmin(allotmentIssue, body);
    const hash = bodyHash(input);
    return this.registryChange(() => {
      const earlierId = this.state.allotmentKeys[key];
      if (earlierId !== undefined) {
        const earlier = this.state.allotments[earlierId] as AllotmentRecord;
        if (earlier.bodyHash !== hash) fail('MALL_ERR_EXISTS', 'this Idempotency-Key was already used for a different allotment', { allotment: earlierId });
        return { events: [], result: () => earlier };
      }
      this.vendor(input.vendor);
      const tt = this.state.tokenTypes[input.token];
      if (tt === undefined) fail('MALL_ERR_VALIDATION', `token type ${input.token} is not registered`);
      if (!isAcceptedAt(tt, input.vendor)) fail('MALL_ERR_VALIDATION', `${tt.code} tokens are not accepted at ${input.vendor}`);
      if (isExpired(tt, this.clock())) fail('MALL_ERR_VALIDATION', `${tt.code} tokens have expired`);
      if (tt.issuer === input.vendor) fail('MALL_ERR_VALIDATION', `${input.vendor} issues ${tt.code} tokens itself: it needs no allotment`);
      const { purchaseMinor, transfers } = allotmentPurchase(input.vendor, tt, input.units);
      const id = `alt-${String(this.state.allotmentSerial + 1).padStart(6, '0')}`;
      return {
        events: [
          {
            type: 'allotment.issued',
            at: this.now(),
            data: { id, vendor: input.vendor, token: tt.code, units: input.units, reference: input.reference, faceValueMinor: tt.faceValueMinor, purchaseMinor, transfers, key, bodyHash: hash },
          },
        ],
        result: () => this.state.allotments[id] as AllotmentRecord,
      };
    });
  }

  /**
   * Records an admin's decision on an open gap in a vendor's batches: `wait` for the
   * missing batches, or `resend` (the vendor must send its batches again from
   * `resendFromSeq`, by default the next one the mall expects). The decision is a signed
   * registry entry; reconcile reports the gap as decided while no batch beyond the one
   * decided on is seen.
   */
  async decideGap(vendorId: string, body: unknown): Promise<GapDecisionRecord> {
    const input = parseAdmin(gapDecide, body);
    // Another mall process may have seen the batch ahead.
    await this.observations.refresh();
    return this.registryChange(() => {
      const v = this.vendor(vendorId);
      const gap = openGap(this.observations.of(vendorId), v.lastSeq + 1);
      if (gap === null) fail('MALL_ERR_VALIDATION', `${vendorId} has no open gap to decide on`);
      const resendFromSeq = input.decision === 'resend' ? (input.resendFromSeq ?? gap.expectedSeq) : null;
      if (input.decision === 'wait' && input.resendFromSeq !== undefined) fail('MALL_ERR_VALIDATION', 'resendFromSeq belongs to a resend decision');
      if (resendFromSeq !== null && resendFromSeq > gap.expectedSeq) fail('MALL_ERR_VALIDATION', `a resend starts at or before batch ${gap.expectedSeq}, the next the mall expects`);
      const data: GapDecisionData = { vendor: vendorId, decision: input.decision, expectedSeq: gap.expectedSeq, seenSeq: gap.seenSeq, resendFromSeq, note: input.note ?? '' };
      return { events: [{ type: 'gap.decided', at: this.now(), data }], result: () => this.vendor(vendorId).gapDecision as GapDecisionRecord };
    });
  }

  // ---- views -----------------------------------------------------------------------

  vendorView(id: string): VendorView {
    const v = this.vendor(id);
    const obs = this.observations.of(id);
    const now = this.clock().getTime();
    const seconds = v.lastBatchAt === null ? null : Math.max(0, Math.round((now - Date.parse(v.lastBatchAt)) / 1000));
    return {
      id: v.id,
      name: v.name,
      registeredAt: v.registeredAt,
      keys: Object.values(this.state.keys)
        .filter((k) => k.vendor === id)
        .map((k) => ({ kid: k.kid, status: k.status, addedAt: k.addedAt, retiredAt: k.retiredAt, revokedAt: k.revokedAt, revokedReason: k.revokedReason })),
      lastBatchSeq: v.lastSeq,
      lastBatchAt: v.lastBatchAt,
      lastEventSeq: v.lastEventSeq,
      events: v.events,
      flaggedEvents: v.flaggedEvents,
      secondsSinceLastBatch: seconds,
      stale: seconds === null || seconds > this.config.staleAfterHours * 3600,
      gap: openGap(obs, v.lastSeq + 1),
      gapDecision: decidedGap(openGap(obs, v.lastSeq + 1), v.gapDecision),
      rejections: { ...(obs?.rejections ?? {}) },
      positionMinor: this.state.positions[vendorAccount(id)] ?? 0,
      tokens: structuredClone(v.tokens),
    };
  }

  vendors(): VendorView[] {
    return Object.keys(this.state.vendors).sort().map((id) => this.vendorView(id));
  }

  positions(): { currency: string; positions: Record<string, number>; sumMinor: number } {
    const sumMinor = positionsSum(this.state);
    if (sumMinor !== 0) throw new Error(`assertion failed: clearing positions sum to ${sumMinor}, not 0`);
    const sorted = Object.fromEntries(Object.entries(this.state.positions).sort(([a], [b]) => a.localeCompare(b)));
    return { currency: this.config.currency, positions: sorted, sumMinor };
  }

  cursor(vendorId: string): Cursor {
    const v = this.vendor(vendorId);
    const decision = decidedGap(openGap(this.observations.of(vendorId), v.lastSeq + 1), v.gapDecision);
    return {
      lastSeq: v.lastSeq,
      lastBatchHash: v.lastSeq === 0 ? ZERO_HASH : v.lastBatchHash,
      lastEventSeq: v.lastEventSeq,
      lastEventHash: v.lastEventHash,
      resendFromSeq: decision?.decision === 'resend' ? decision.resendFromSeq : null,
    };
  }

  snapshotPayload(vendorId: string): SnapshotPayload {
    this.vendor(vendorId);
    const byVendor = new Map<string, KeyRecord[]>();
    for (const k of Object.values(this.state.keys)) byVendor.set(k.vendor, [...(byVendor.get(k.vendor) ?? []), k]);
    return {
      v: 1,
      vendor: vendorId,
      issuedAt: this.now(),
      mall: { kid: this.keys.kid, jwk: { ...this.keys.publicJwk } },
      tokenTypes: Object.values(this.state.tokenTypes).sort((a, b) => a.code.localeCompare(b.code)),
      fees: structuredClone(this.state.fees),
      vendors: Object.values(this.state.vendors)
        .sort((a, b) => a.id.localeCompare(b.id))
        .map((v) => ({
          id: v.id,
          name: v.name,
          keys: (byVendor.get(v.id) ?? []).map((k) => ({ kid: k.kid, jwk: { ...k.jwk }, status: k.status, revokedAt: k.revokedAt })),
        })),
      // Allotments the vendor has not yet shown in a batch: once one has, it is in its float.
      allotments: Object.values(this.state.allotments)
        .filter((a) => a.vendor === vendorId && a.used === null)
        .map((a) => ({ id: a.id, vendor: a.vendor, token: a.token, units: a.units, issuedAt: a.issuedAt, reference: a.reference })),
      // Who may sign gift certificates and coupons, and what a store may accept offline.
      instruments: instrumentDirectory(this.state.instruments, this.state.keys),
    };
  }

  signedSnapshot(vendorId: string): Promise<FlattenedJws> {
    return signJson(this.snapshotPayload(vendorId), this.keys.privateKey, this.keys.kid, SNAPSHOT_TYP);
  }

  statement(vendorId: string, from: unknown, to: unknown): StatementPayload {
    const range = checkRange(from, to);
    return buildStatement(
      { state: this.state, observation: this.observations.of(vendorId), currency: this.config.currency, staleAfterHours: this.config.staleAfterHours, now: this.clock() },
      vendorId,
      range.from,
      range.to,
    );
  }

  async signedStatement(vendorId: string, from: unknown, to: unknown): Promise<SignedStatement> {
    const statement = this.statement(vendorId, from, to);
    return { vendor: vendorId, statement, jws: await signJson(statement, this.keys.privateKey, this.keys.kid, STATEMENT_TYP) };
  }

  /** Every vendor's signed statement for the range (what reconcile writes). */
  async statements(from: unknown, to: unknown): Promise<SignedStatement[]> {
    checkRange(from, to);
    const out: SignedStatement[] = [];
    for (const id of Object.keys(this.state.vendors).sort()) {
      const s = await this.signedStatement(id, from, to);
      // What reconcile hands out is kept, so that an audit can check its figures.
      await this.archive?.statement(id, s.statement.from, s.statement.to, s.statement.issuedAt, s.jws);
      out.push(s);
    }
    return out;
  }
}
