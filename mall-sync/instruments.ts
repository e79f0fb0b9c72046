import { randomInt } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import {
  bodyHash,
  checkSpendable,
  ed25519PublicJwk,
  entityId,
  fail,
  instrumentCode,
  instrumentCodeSchema,
  instrumentIssueRequest,
  instrumentPolicySchema,
  instrumentReleaseRequest,
  instrumentReserveRequest,
  instrumentVoidRequest,
  isoDate,
  INSTRUMENT_LIFE_YEARS_MAX,
  keyId,
  mul,
  reservationId,
  text,
  type Instrument,
  type InstrumentKind,
  type InstrumentPolicy,
  type InstrumentReserveAnswer,
  type InstrumentStatus,
  type IssuedInstrument,
  type TokenType,
} from '../core/index.ts';
import { createSigningKey, ed25519Thumbprint, loadSigningKey, type SigningKey } from '../platform/key-files.ts';
import { signInstrument } from '../platform/instruments.ts';
import { mallPaths } from './config.ts';
import type { NewMallEvent } from './events.ts';
import { newRecordOf, verifyInstrumentSync } from './instruments-judge.ts';
import { instrumentDirectory, instrumentStatus, remainingUnits, reservationView, type InstrumentKeyRecord, type InstrumentRecord, type ReservationRecord } from './instruments-state.ts';
import { parseAdmin } from './schemas.ts';
import { own } from './store/dict.ts';
import type { MallState } from './store/state.ts';
import type { MallStore } from './store/store.ts';
import { storedAnswer, type RegistryChange } from './wallet.ts';

/**
 * Bearer instruments at the mall (core/instruments.ts, docs/PROTOCOL.md "Bearer
 * instruments"): the operator issues mall gift certificates signed with the mall's
 * instrument key, registers manufacturers' coupon keys and sets the acceptance policy;
 * stores reserve a redemption before an online sale, release it when the sale does not
 * happen, ask for an instrument's status and void a certificate they sold by mistake.
 *
 * Every change is a registry change (MallService.registryChange: one at a time, inside the
 * store's exclusive section, on PostgreSQL under the mall's write lock with the state
 * caught up first), signed into the registry history and answered once durable. A store's
 * request is idempotent by its key, as the wallet's are; the operator's issue by its key.
 */

/** How long a reservation holds an instrument's value for the sale that asked for it. */
export const RESERVATION_TTL_S = 24 * 3_600;
/** The mall's instrument key, beside its signing key. */
export function instrumentKeyPath(dataDir: string): string {
  return join(mallPaths(dataDir).privateKey, '..', 'instrument-key.jwk.json');
}

/** Loads the mall's instrument key, creating it the first time (malls made before instruments have none). */
export async function loadOrCreateInstrumentKey(dataDir: string): Promise<SigningKey> {
  const path = instrumentKeyPath(dataDir);
  const exists = await stat(path).then(() => true, () => false);
  return exists ? loadSigningKey(path, 'mall instrument key', 'MALL_ERR_CONFIG') : createSigningKey(path, 'mall instrument key', 'MALL_ERR_CONFIG');
}

/** Crockford's base32 without I, L, O, U: serials a person can read back and type. */
const SERIAL_ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const SERIAL_CHARS = 12;

function newSerial(): string {
  let s = '';
  for (let i = 0; i < SERIAL_CHARS; i++) s += SERIAL_ALPHABET[randomInt(SERIAL_ALPHABET.length)];
  return s;
}

/**
 * A key signed outside the mall may have signed coupons before the mall registered it:
 * it signs from `validFrom` (default: always), until it is withdrawn.
 */
export const instrumentKeyAddRequest = z.strictObject({
  issuer: entityId,
  jwk: ed25519PublicJwk,
  validFrom: isoDate.optional(),
});
const ALWAYS = '1970-01-01T00:00:00.000Z';
export const instrumentKeyWithdrawRequest = z.strictObject({ reason: text(1, 200).optional() });
export const mallVoidRequest = z.strictObject({ reason: text(1, 200) });

export interface IssueAnswer {
  instruments: IssuedInstrument[];
}

export class InstrumentService {
  constructor(
    private readonly store: MallStore,
    private readonly change: RegistryChange,
    private readonly instrumentKey: SigningKey,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  private get state(): Readonly<MallState> {
    return this.store.state;
  }

  private types(): Map<string, TokenType> {
    return new Map(Object.entries(this.state.tokenTypes));
  }

  private record(code: string): InstrumentRecord {
    const parsed = instrumentCodeSchema.safeParse(code);
    const r = parsed.success ? own(this.state.instruments.records, parsed.data) : undefined;
    if (r === undefined) fail('MALL_ERR_INSTRUMENT_UNKNOWN', `the mall has no record of ${String(code).slice(0, 64)}: it did not issue it and no store has sold or redeemed it yet`);
    return r;
  }

  /** Verifies a compact instrument now against the published directory. */
  private verify(compact: string): Instrument {
    return verifyInstrumentSync(compact, instrumentDirectory(this.state.instruments, this.state.keys), this.types(), this.clock());
  }

  // ---- the operator -------------------------------------------------------------------

  /**
   * Issues mall gift certificates: `count` of them, each worth `units` of a token the mall
   * issues, signed with the mall's instrument key (listed in the directory with the first
   * issue). Idempotent by key: the same key and body answer the same certificates.
   */
  async issue(body: unknown): Promise<IssueAnswer> {
    const input = parseAdmin(instrumentIssueRequest, body);
    const hash = bodyHash(input);
    const now = this.clock();
    const nowS = Math.floor(now.getTime() / 1000);
    const expiresS = Math.floor(Date.parse(input.expiresAt) / 1000);
    const prior = own(this.state.instruments.issueKeys, input.key);
    if (prior !== undefined && prior.bodyHash === hash) return this.answerFor(prior.codes);
    if (expiresS <= nowS) fail('MALL_ERR_VALIDATION', 'the certificates would expire before they are issued');
    if (expiresS - nowS > INSTRUMENT_LIFE_YEARS_MAX * 365 * 86_400) fail('MALL_ERR_VALIDATION', `a certificate is valid for at most ${INSTRUMENT_LIFE_YEARS_MAX} years`);
    const tt = own(this.state.tokenTypes, input.token);
    if (tt === undefined) fail('MALL_ERR_VALIDATION', `token type ${input.token} is not registered`);
    if (tt.issuer !== 'mall' || tt.kind === 'manufacturer') fail('MALL_ERR_VALIDATION', `the mall issues certificates only in its own tokens, and ${tt.code} is issued by ${tt.issuer}`);
    mul(input.units, tt.faceValueMinor);
    // Signed before the change (signing is asynchronous); the change checks again what it relies on.
    const signed: IssuedInstrument[] = [];
    for (let i = 0; i < input.count; i++) {
      const serial = newSerial();
      const compact = await signInstrument('gift', { i: 'mall', s: serial, t: tt.code, u: input.units, a: nowS, x: expiresS }, this.instrumentKey);
      signed.push({ code: instrumentCode('mall', serial), compact });
    }
    const at = now.toISOString();
    return this.change(() => {
      const again = own(this.state.instruments.issueKeys, input.key);
      if (again !== undefined) {
        if (again.bodyHash !== hash) fail('MALL_ERR_VALIDATION', `the key ${input.key} was already used for a different issue`, { key: input.key });
        return { events: [], result: () => this.answerFor(again.codes) };
      }
      const events: NewMallEvent[] = [];
      const kid = this.instrumentKey.kid;
      if (own(this.state.instruments.keys, kid) === undefined) {
        events.push({ type: 'instruments.key-added', at, data: { kid, issuer: 'mall', kinds: ['gift'], jwk: { kty: 'OKP', crv: 'Ed25519', x: this.instrumentKey.publicJwk.x }, validFrom: new Date(nowS * 1000).toISOString() } });
      } else if (own(this.state.instruments.keys, kid)?.withdrawnAt !== null) {
        fail('MALL_ERR_CONFIG', 'the mall\'s instrument key was withdrawn: give the mall a new instrument key file before issuing');
      }
      const records = signed.map((s) => {
        if (own(this.state.instruments.records, s.code) !== undefined) fail('MALL_ERR_EXISTS', `serial ${s.code} exists already: issue again`);
        const serial = s.code.split('-').at(-2) as string;
        return { code: s.code, issuer: 'mall', serial, kind: 'gift' as const, token: tt.code, faceUnits: input.units, issuedAt: new Date(nowS * 1000).toISOString(), expiresAt: new Date(expiresS * 1000).toISOString(), compact: s.compact };
      });
      events.push({ type: 'instruments.issued', at, data: { key: input.key, bodyHash: hash, instruments: records } });
      return { events, result: () => this.answerFor(records.map((r) => r.code)) };
    });
  }

  private answerFor(codes: readonly string[]): IssueAnswer {
    return { instruments: codes.map((code) => ({ code, compact: (own(this.state.instruments.records, code) as InstrumentRecord).compact })) };
  }

  /** Registers a manufacturer's coupon key (or another issuer's certificate key). */
  async addKey(body: unknown): Promise<InstrumentKeyRecord> {
    const input = parseAdmin(instrumentKeyAddRequest, body);
    const kid = await ed25519Thumbprint(input.jwk.x);
    if (input.jwk.kid !== undefined && input.jwk.kid !== kid) fail('MALL_ERR_VALIDATION', `the key's kid ${input.jwk.kid} is not its JWK thumbprint ${kid}`);
    return this.change(() => {
      const party = own(this.state.parties, input.issuer);
      if (party === undefined) fail('MALL_ERR_VALIDATION', `${input.issuer} is not a registered manufacturer or issuer: add it with "mall-sync party" first`);
      const kinds: InstrumentKind[] = party.kind === 'manufacturer' ? ['coupon'] : ['gift'];
      const result = () => own(this.state.instruments.keys, kid) as InstrumentKeyRecord;
      const known = own(this.state.instruments.keys, kid);
      if (known !== undefined) {
        if (known.issuer === input.issuer && known.withdrawnAt === null) return { events: [], result };
        fail('MALL_ERR_EXISTS', `key ${kid} is already registered${known.withdrawnAt === null ? ` for ${known.issuer}` : ' and was withdrawn'}`);
      }
      if (own(this.state.keys, kid) !== undefined || kid === this.instrumentKey.kid) fail('MALL_ERR_EXISTS', `key ${kid} is already a key of the mall or a vendor`);
      const at = this.clock().toISOString();
      const validFrom = input.validFrom === undefined ? ALWAYS : new Date(Date.parse(input.validFrom)).toISOString();
      return { events: [{ type: 'instruments.key-added', at, data: { kid, issuer: input.issuer, kinds, jwk: { kty: 'OKP', crv: 'Ed25519', x: input.jwk.x }, validFrom } }], result };
    });
  }

  /** Withdraws a key from the directory: every instrument it signed is refused from now on. */
  withdrawKey(kid: string, body: unknown): Promise<InstrumentKeyRecord> {
    const input = parseAdmin(instrumentKeyWithdrawRequest, body ?? {});
    if (!keyId.safeParse(kid).success) fail('MALL_ERR_NOT_FOUND', 'no such instrument key');
    return this.change(() => {
      const k = own(this.state.instruments.keys, kid);
      if (k === undefined) fail('MALL_ERR_NOT_FOUND', `no instrument key ${kid}`);
      const result = () => own(this.state.instruments.keys, kid) as InstrumentKeyRecord;
      if (k.withdrawnAt !== null) return { events: [], result };
      return { events: [{ type: 'instruments.key-withdrawn', at: this.clock().toISOString(), data: { kid, reason: input.reason ?? 'withdrawn by the mall' } }], result };
    });
  }

  keys(): InstrumentKeyRecord[] {
    return Object.values(this.state.instruments.keys).map((k) => structuredClone(k));
  }

  policy(): InstrumentPolicy {
    return { ...this.state.instruments.policy };
  }

  setPolicy(body: unknown): Promise<InstrumentPolicy> {
    const policy = parseAdmin(instrumentPolicySchema, body);
    return this.change(() => ({ events: [{ type: 'instruments.policy-set', at: this.clock().toISOString(), data: policy }], result: () => ({ ...policy }) }));
  }

  status(code: string): InstrumentStatus {
    return instrumentStatus(this.state.instruments, this.record(code), this.clock());
  }

  /** Instruments spent twice, newest first as the state keeps them. */
  doubleSpent(): InstrumentStatus[] {
    const now = this.clock();
    return Object.values(this.state.instruments.records)
      .filter((r) => r.doubleSpent)
      .map((r) => instrumentStatus(this.state.instruments, r, now));
  }

  /** The operator voids a certificate: unsold stock, or one nobody redeemed or holds. */
  voidByMall(code: string, body: unknown): Promise<InstrumentStatus> {
    const input = parseAdmin(mallVoidRequest, body);
    return this.change(() => {
      const r = this.record(code);
      const result = () => this.status(r.code);
      if (r.state === 'voided') return { events: [], result };
      this.checkVoidable(r);
      return { events: [{ type: 'instruments.voided', at: this.clock().toISOString(), data: { code: r.code, by: 'mall', reason: input.reason, key: null, bodyHash: null, answer: null } }], result };
    });
  }

  private checkVoidable(r: InstrumentRecord): void {
    if (r.kind !== 'gift') fail('MALL_ERR_INSTRUMENT_NOT_VOIDABLE', 'a coupon is withdrawn by withdrawing its manufacturer\'s key, not voided');
    const held = instrumentStatus(this.state.instruments, r, this.clock()).heldUnits;
    if (r.redeemedUnits > 0 || held > 0) fail('MALL_ERR_INSTRUMENT_NOT_VOIDABLE', `${r.code} was redeemed or is reserved in part: it can no longer be voided`, { code: r.code });
  }

  // ---- the stores ---------------------------------------------------------------------

  /**
   * Holds `units` of an instrument for a sale at `vendor`: verified against the published
   * directory, its token accepted here and not expired, not voided, enough remaining (a
   * coupon: unused). One round trip; the batch carrying the sale captures it.
   */
  async reserve(vendor: string, body: unknown): Promise<InstrumentReserveAnswer> {
    const input = parseAdmin(instrumentReserveRequest, body);
    const hash = bodyHash(input);
    await this.store.flushed();
    const stored = storedAnswer(this.state, vendor, input.key, hash);
    if (stored !== null) return stored as InstrumentReserveAnswer;
    const inst = this.verify(input.instrument);
    return this.change(() => {
      const again = storedAnswer(this.state, vendor, input.key, hash);
      if (again !== null) return { events: [], result: () => again as InstrumentReserveAnswer };
      const now = this.clock();
      checkSpendable(this.types().get(inst.token) as TokenType, vendor, now);
      const known = own(this.state.instruments.records, inst.code);
      const what = inst.kind === 'gift' ? 'gift certificate' : 'coupon';
      if (known?.state === 'voided') fail('MALL_ERR_INSTRUMENT_VOIDED', `${what} ${inst.code} was voided: it pays for nothing`, { code: inst.code });
      if (input.units > inst.units) fail('MALL_ERR_INSTRUMENT_INSUFFICIENT', `${what} ${inst.code} is worth ${inst.units} ${inst.token}, not ${input.units}`, { code: inst.code, remainingUnits: inst.units });
      const remaining = known === undefined ? inst.units : remainingUnits(this.state.instruments, known, now.getTime());
      const holdUnits = inst.kind === 'coupon' ? inst.units : input.units;
      if (inst.kind === 'coupon' ? remaining < inst.units : remaining === 0) fail('MALL_ERR_INSTRUMENT_SPENT', inst.kind === 'coupon' ? `coupon ${inst.code} was already used` : `nothing remains on gift certificate ${inst.code}`, { code: inst.code });
      if (remaining < holdUnits) fail('MALL_ERR_INSTRUMENT_INSUFFICIENT', `only ${remaining} ${inst.token} remain on ${inst.code}`, { code: inst.code, remainingUnits: remaining });
      const id = `ir-${String(this.state.instruments.reservationSerial + 1).padStart(6, '0')}`;
      const expiresAt = new Date(now.getTime() + RESERVATION_TTL_S * 1000).toISOString();
      const reservation: ReservationRecord = { id, vendor, code: inst.code, token: inst.token, units: input.units, holdUnits, createdAt: now.toISOString(), expiresAt, state: 'held', eventSeq: null };
      const base = known ?? { ...newRecordOf(inst), state: 'live' as const, redeemedUnits: 0, holds: [], soldBy: null, soldSeq: null, voidedBy: null, voidedAt: null, voidSeq: null, doubleSpent: false, usedBy: [] };
      const statusAfter = { ...instrumentStatus(this.state.instruments, base, now), remainingUnits: remaining - holdUnits };
      statusAfter.heldUnits += holdUnits;
      const answer: InstrumentReserveAnswer = { reservation: reservationView(reservation, now), instrument: statusAfter };
      return {
        events: [{ type: 'instruments.reserved', at: now.toISOString(), data: { id, vendor, code: inst.code, token: inst.token, units: input.units, holdUnits, expiresAt, record: known === undefined ? newRecordOf(inst) : null, key: input.key, bodyHash: hash, answer } }],
        result: () => answer,
      };
    });
  }

  /** Ends a reservation of `vendor` whose sale did not happen. */
  async release(vendor: string, id: string, body: unknown): Promise<InstrumentReserveAnswer> {
    const input = parseAdmin(instrumentReleaseRequest, body);
    const hash = bodyHash({ ...input, id });
    await this.store.flushed();
    const stored = storedAnswer(this.state, vendor, input.key, hash);
    if (stored !== null) return stored as InstrumentReserveAnswer;
    return this.change(() => {
      const again = storedAnswer(this.state, vendor, input.key, hash);
      if (again !== null) return { events: [], result: () => again as InstrumentReserveAnswer };
      const h = reservationId.safeParse(id).success ? own(this.state.instruments.reservations, id) : undefined;
      if (h === undefined || h.vendor !== vendor) fail('MALL_ERR_RESERVATION_UNKNOWN', `${vendor} made no reservation ${id.slice(0, 40)}`);
      if (h.state !== 'held') fail('MALL_ERR_RESERVATION_SPENT', `reservation ${id} was already ${h.state}`, { state: h.state });
      const now = this.clock();
      const r = own(this.state.instruments.records, h.code) as InstrumentRecord;
      const status = instrumentStatus(this.state.instruments, r, now);
      const lapsed = Date.parse(h.expiresAt) <= now.getTime();
      const freed = lapsed ? 0 : h.holdUnits;
      const answer: InstrumentReserveAnswer = {
        reservation: { ...reservationView(h, now), state: 'released' },
        instrument: { ...status, heldUnits: status.heldUnits - freed, remainingUnits: r.state === 'voided' ? 0 : remainingUnits(this.state.instruments, r, now.getTime(), h.id) },
      };
      return { events: [{ type: 'instruments.released', at: now.toISOString(), data: { id, vendor, key: input.key, bodyHash: hash, answer } }], result: () => answer };
    });
  }

  /** A store voids a certificate it sold by mistake: nothing redeemed or held on it. */
  async voidByStore(vendor: string, code: string, body: unknown): Promise<InstrumentStatus> {
    const input = parseAdmin(instrumentVoidRequest, body);
    const hash = bodyHash({ ...input, code });
    await this.store.flushed();
    const stored = storedAnswer(this.state, vendor, input.key, hash);
    if (stored !== null) return stored as InstrumentStatus;
    return this.change(() => {
      const again = storedAnswer(this.state, vendor, input.key, hash);
      if (again !== null) return { events: [], result: () => again as InstrumentStatus };
      const r = this.record(code);
      if (r.soldBy !== vendor) fail('MALL_ERR_INSTRUMENT_NOT_VOIDABLE', r.soldBy === null ? `the mall has not seen ${vendor} sell ${r.code}: send the batch with the sale first` : `${r.code} was sold by another store`, { code: r.code });
      if (r.state === 'voided') fail('MALL_ERR_INSTRUMENT_VOIDED', `${r.code} was already voided`, { code: r.code });
      this.checkVoidable(r);
      const now = this.clock();
      const answer: InstrumentStatus = { ...instrumentStatus(this.state.instruments, r, now), state: 'voided', remainingUnits: 0 };
      return { events: [{ type: 'instruments.voided', at: now.toISOString(), data: { code: r.code, by: vendor, reason: input.reason, key: input.key, bodyHash: hash, answer } }], result: () => answer };
    });
  }
}

