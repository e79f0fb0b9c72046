import {
  add,
  assert,
  DEFAULT_INSTRUMENT_POLICY,
  sub,
  type InstrumentDirectory,
  type InstrumentKey,
  type InstrumentKind,
  type InstrumentPolicy,
  type InstrumentReservation,
  type InstrumentStatus,
} from '../core/index.ts';
import { dict, own, type Dict } from './store/dict.ts';
import type { KeyRecord } from './store/state.ts';

/**
 * The mall's side of bearer instruments (core/instruments.ts): the keys that may sign
 * them besides the vendors' own, the acceptance policy with its history, every instrument
 * the mall issued or has seen with what remains on it, and the stores' reservations.
 * Changed only by the mall events below, applied by `applyInstrumentEvent` and, for what
 * a batch did, `applyInstrumentBatch`, live and on replay alike (both backends).
 */

export interface InstrumentKeyAddedData {
  kid: string;
  issuer: string;
  kinds: InstrumentKind[];
  jwk: { kty: 'OKP'; crv: 'Ed25519'; x: string };
  validFrom: string;
}

export interface InstrumentKeyRecord extends InstrumentKeyAddedData {
  /** When the key was withdrawn: the directory no longer lists it, and everything it signed is refused. */
  withdrawnAt: string | null;
  reason: string | null;
}

/** An instrument as the mall first records it: from its verified compact form. */
export interface NewInstrumentRecord {
  code: string;
  issuer: string;
  serial: string;
  kind: InstrumentKind;
  token: string;
  faceUnits: number;
  issuedAt: string;
  expiresAt: string;
  compact: string;
}

/** Stores kept per instrument: the ones that sold or redeemed it. */
const STORES_KEPT_MAX = 16;

export interface InstrumentRecord extends NewInstrumentRecord {
  /** `unsold`: the mall issued it and no till sold it yet; `live`: sold or seen in use; `voided`. */
  state: 'unsold' | 'live' | 'voided';
  /** Value used up: the units honoured for a gift certificate; the whole face value once for a coupon. */
  redeemedUnits: number;
  /** Reservations made on it and not yet captured or released (lapsed ones included). */
  holds: string[];
  soldBy: string | null;
  soldSeq: number | null;
  voidedBy: string | null;
  voidedAt: string | null;
  /** The seq of the store's `instrument.voided` event, once its batch arrived. */
  voidSeq: number | null;
  doubleSpent: boolean;
  /** The stores that redeemed it, first first. */
  usedBy: string[];
}

export interface ReservationRecord {
  id: string;
  vendor: string;
  code: string;
  token: string;
  /** What the sale may take. */
  units: number;
  /** What the hold keeps from others: `units`, or the whole face value of a coupon. */
  holdUnits: number;
  createdAt: string;
  expiresAt: string;
  state: 'held' | 'captured' | 'released';
  eventSeq: number | null;
}

export interface InstrumentsIssuedData {
  key: string;
  bodyHash: string;
  instruments: NewInstrumentRecord[];
}

export interface InstrumentReservedData {
  id: string;
  vendor: string;
  code: string;
  token: string;
  units: number;
  holdUnits: number;
  expiresAt: string;
  /** The instrument, when this reservation is the first the mall sees of it. */
  record: NewInstrumentRecord | null;
  key: string;
  bodyHash: string;
  answer: unknown;
}

export interface InstrumentReleasedData {
  id: string;
  vendor: string;
  key: string;
  bodyHash: string;
  answer: unknown;
}

/** A void: by the mall operator (`by: "mall"`, no key) or by the store that sold it. */
export interface InstrumentVoidedAtMallData {
  code: string;
  by: string;
  reason: string;
  key: string | null;
  bodyHash: string | null;
  answer: unknown;
}

/** One use of an instrument by a sale of the batch, as judged. */
export interface InstrumentUseEffect {
  code: string;
  eventSeq: number;
  at: string;
  units: number;
  honouredUnits: number;
  excessUnits: number;
  /** What the use takes off the instrument's value (a coupon: all of it). */
  consumedUnits: number;
  /** A reservation of this store the use captures. */
  reservation: string | null;
  /** The face value counted against the store's offline daily limit (0 when online). */
  offlineMinor: number;
  lossBorneBy: 'issuer' | 'store' | null;
  /** The loss at face value, in minor units (0 without a double spend). */
  lossMinor: number;
}

export interface InstrumentBatchEffects {
  /** Instruments the mall sees first in this batch. */
  seen: NewInstrumentRecord[];
  sold: { code: string; eventSeq: number }[];
  uses: InstrumentUseEffect[];
  /** A reversed sale gives back what its uses consumed. */
  returns: { code: string; eventSeq: number; consumedUnits: number }[];
  voids: { code: string; eventSeq: number }[];
  alarms: { code: string; eventSeq: number; stores: string[]; message: string }[];
}

export interface InstrumentsState {
  /** Keys of the mall and of manufacturers (vendors sign their own with their registered keys). */
  keys: Record<string, InstrumentKeyRecord>;
  policy: InstrumentPolicy;
  /** Every policy with the time it came into force, oldest first: an offline use is judged by the one in force then. */
  policyHistory: { at: string; policy: InstrumentPolicy }[];
  records: Record<string, InstrumentRecord>;
  reservations: Record<string, ReservationRecord>;
  reservationSerial: number;
  /** Idempotency of the operator's issue requests: key -> body hash and the codes issued. */
  issueKeys: Record<string, { bodyHash: string; codes: string[] }>;
  /** Face value taken offline from instruments: vendor -> UTC day -> minor units. */
  offlineDaily: Record<string, Record<string, number>>;
  doubleSpends: number;
}

const BEFORE_RECORDS = '1970-01-01T00:00:00.000Z';

export function emptyInstrumentsState(): InstrumentsState {
  return {
    keys: dict(),
    policy: { ...DEFAULT_INSTRUMENT_POLICY },
    policyHistory: [{ at: BEFORE_RECORDS, policy: { ...DEFAULT_INSTRUMENT_POLICY } }],
    records: dict(),
    reservations: dict(),
    reservationSerial: 0,
    issueKeys: dict(),
    offlineDaily: dict(),
    doubleSpends: 0,
  };
}

/** A state read from a checkpoint: null-prototype maps, and an empty one for checkpoints from before instruments. */
export function reviveInstrumentsState(raw: InstrumentsState | undefined): InstrumentsState {
  if (raw === undefined) return emptyInstrumentsState();
  const offlineDaily: Dict<Dict<number>> = dict();
  for (const [v, days] of Object.entries(raw.offlineDaily ?? {})) offlineDaily[v] = dict(days);
  return { ...raw, keys: dict(raw.keys), records: dict(raw.records), reservations: dict(raw.reservations), issueKeys: dict(raw.issueKeys), offlineDaily };
}

/** The policy in force at a time: the last one set at or before it. */
export function policyAt(st: Readonly<InstrumentsState>, at: string): InstrumentPolicy {
  const ms = Date.parse(at);
  let found = st.policyHistory[0]?.policy ?? st.policy;
  for (const h of st.policyHistory) {
    if (Date.parse(h.at) <= ms) found = h.policy;
    else break;
  }
  return found;
}

/** Units held by reservations still in force at `atMs` (lapsed ones hold nothing). */
export function heldUnits(st: Readonly<InstrumentsState>, r: Readonly<InstrumentRecord>, atMs: number, except: string | null = null): number {
  let n = 0;
  for (const id of r.holds) {
    const h = own(st.reservations, id);
    if (h !== undefined && h.state === 'held' && id !== except && Date.parse(h.expiresAt) > atMs) n = add(n, h.holdUnits);
  }
  return n;
}

/** What remains to redeem on an instrument: its value less what was used and what others hold (never below 0). */
export function remainingUnits(st: Readonly<InstrumentsState>, r: Readonly<InstrumentRecord>, atMs: number, except: string | null = null): number {
  return Math.max(0, sub(sub(r.faceUnits, r.redeemedUnits), heldUnits(st, r, atMs, except)));
}

export function instrumentStatus(st: Readonly<InstrumentsState>, r: Readonly<InstrumentRecord>, now: Date): InstrumentStatus {
  const held = heldUnits(st, r, now.getTime());
  const remaining = remainingUnits(st, r, now.getTime());
  return {
    code: r.code,
    issuer: r.issuer,
    serial: r.serial,
    kind: r.kind,
    token: r.token,
    faceUnits: r.faceUnits,
    remainingUnits: r.state === 'voided' ? 0 : remaining,
    heldUnits: held,
    state: r.state === 'voided' ? 'voided' : r.redeemedUnits >= r.faceUnits ? 'spent' : r.state,
    expiresAt: r.expiresAt,
    soldBy: r.soldBy,
    doubleSpent: r.doubleSpent,
    compact: r.compact,
    asOf: now.toISOString(),
  };
}

export function reservationView(r: Readonly<ReservationRecord>, now: Date): InstrumentReservation {
  const lapsed = r.state === 'held' && Date.parse(r.expiresAt) <= now.getTime();
  return { id: r.id, code: r.code, token: r.token, units: r.units, state: lapsed ? 'lapsed' : r.state, expiresAt: r.expiresAt };
}

/**
 * The key directory published in the snapshot: the mall's and manufacturers' keys not
 * withdrawn, and every vendor's key not revoked (a vendor signs gift certificates in its
 * own tokens with the key it signs its batches with; a retired key's certificates stay
 * valid, and it signs none after it was retired).
 */
export function instrumentDirectory(st: Readonly<InstrumentsState>, vendorKeys: Readonly<Record<string, KeyRecord>>): InstrumentDirectory {
  const keys: InstrumentKey[] = [];
  for (const k of Object.values(st.keys)) {
    if (k.withdrawnAt !== null) continue;
    keys.push({ kid: k.kid, issuer: k.issuer, kinds: [...k.kinds], jwk: { kty: 'OKP', crv: 'Ed25519', x: k.jwk.x }, validFrom: k.validFrom, validTo: null });
  }
  for (const k of Object.values(vendorKeys)) {
    if (k.status === 'revoked') continue;
    keys.push({ kid: k.kid, issuer: k.vendor, kinds: ['gift'], jwk: { kty: 'OKP', crv: 'Ed25519', x: k.jwk.x }, validFrom: k.addedAt, validTo: k.retiredAt });
  }
  keys.sort((a, b) => a.kid.localeCompare(b.kid));
  return { keys, policy: { ...st.policy } };
}

function addRecord(st: InstrumentsState, n: NewInstrumentRecord, state: InstrumentRecord['state']): InstrumentRecord {
  assert(own(st.records, n.code) === undefined, `instrument ${n.code} recorded once`);
  const r: InstrumentRecord = { ...n, state, redeemedUnits: 0, holds: [], soldBy: null, soldSeq: null, voidedBy: null, voidedAt: null, voidSeq: null, doubleSpent: false, usedBy: [] };
  st.records[n.code] = r;
  return r;
}

function record(st: InstrumentsState, code: string): InstrumentRecord {
  const r = own(st.records, code);
  assert(r !== undefined, `instrument ${code} is recorded`);
  return r;
}

function closeHold(st: InstrumentsState, h: ReservationRecord, how: 'captured' | 'released', eventSeq: number | null): void {
  assert(h.state === 'held', `reservation ${h.id} is held before it is ${how}`);
  const r = record(st, h.code);
  r.holds = r.holds.filter((id) => id !== h.id);
  h.state = how;
  h.eventSeq = eventSeq;
}

/** `<vendor> <key>`: the idempotency slot of a vendor's request. */
function slot(vendor: string, key: string): string {
  return `${vendor} ${key}`;
}

type RequestKeys = Record<string, { bodyHash: string; answer: unknown }>;

export type InstrumentRegistryEvent =
  | { type: 'instruments.key-added'; at: string; data: InstrumentKeyAddedData }
  | { type: 'instruments.key-withdrawn'; at: string; data: { kid: string; reason: string } }
  | { type: 'instruments.policy-set'; at: string; data: InstrumentPolicy }
  | { type: 'instruments.issued'; at: string; data: InstrumentsIssuedData }
  | { type: 'instruments.reserved'; at: string; data: InstrumentReservedData }
  | { type: 'instruments.released'; at: string; data: InstrumentReleasedData }
  | { type: 'instruments.voided'; at: string; data: InstrumentVoidedAtMallData };

/** Applies one of the instrument events of the mall's registry history. */
export function applyInstrumentEvent(st: InstrumentsState, requestKeys: RequestKeys, e: InstrumentRegistryEvent): void {
  switch (e.type) {
    case 'instruments.key-added':
      assert(own(st.keys, e.data.kid) === undefined, `instrument key ${e.data.kid} added once`);
      st.keys[e.data.kid] = { ...e.data, withdrawnAt: null, reason: null };
      break;
    case 'instruments.key-withdrawn': {
      const k = own(st.keys, e.data.kid);
      assert(k !== undefined && k.withdrawnAt === null, `instrument key ${e.data.kid} listed before it is withdrawn`);
      k.withdrawnAt = e.at;
      k.reason = e.data.reason;
      break;
    }
    case 'instruments.policy-set':
      st.policy = { ...e.data };
      st.policyHistory.push({ at: e.at, policy: { ...e.data } });
      break;
    case 'instruments.issued':
      assert(own(st.issueKeys, e.data.key) === undefined, `issue key ${e.data.key} used once`);
      for (const n of e.data.instruments) addRecord(st, n, 'unsold');
      st.issueKeys[e.data.key] = { bodyHash: e.data.bodyHash, codes: e.data.instruments.map((n) => n.code) };
      break;
    case 'instruments.reserved': {
      const d = e.data;
      assert(own(st.reservations, d.id) === undefined, `reservation ${d.id} made once`);
      const r = d.record === null ? record(st, d.code) : addRecord(st, d.record, 'live');
      assert(r.state !== 'voided', `instrument ${d.code} is not voided when reserved`);
      st.reservationSerial += 1;
      st.reservations[d.id] = { id: d.id, vendor: d.vendor, code: d.code, token: d.token, units: d.units, holdUnits: d.holdUnits, createdAt: e.at, expiresAt: d.expiresAt, state: 'held', eventSeq: null };
      r.holds.push(d.id);
      requestKeys[slot(d.vendor, d.key)] = { bodyHash: d.bodyHash, answer: d.answer };
      break;
    }
    case 'instruments.released': {
      const h = own(st.reservations, e.data.id);
      assert(h !== undefined && h.vendor === e.data.vendor, `reservation ${e.data.id} of ${e.data.vendor} exists`);
      closeHold(st, h, 'released', null);
      requestKeys[slot(e.data.vendor, e.data.key)] = { bodyHash: e.data.bodyHash, answer: e.data.answer };
      break;
    }
    case 'instruments.voided': {
      const r = record(st, e.data.code);
      assert(r.state !== 'voided', `instrument ${e.data.code} voided once`);
      r.state = 'voided';
      r.voidedBy = e.data.by;
      r.voidedAt = e.at;
      if (e.data.key !== null && e.data.bodyHash !== null) requestKeys[slot(e.data.by, e.data.key)] = { bodyHash: e.data.bodyHash, answer: e.data.answer };
      break;
    }
  }
}

/** Applies what a batch of `vendor` did to instruments; `alarm` records each double-spend alarm. */
export function applyInstrumentBatch(st: InstrumentsState, vendor: string, effects: InstrumentBatchEffects, alarm: (a: InstrumentBatchEffects['alarms'][number]) => void): void {
  for (const n of effects.seen) addRecord(st, n, 'live');
  for (const s of effects.sold) {
    const r = record(st, s.code);
    assert(r.soldBy === null, `instrument ${s.code} sold once`);
    if (r.state === 'unsold') r.state = 'live';
    r.soldBy = vendor;
    r.soldSeq = s.eventSeq;
  }
  for (const u of effects.uses) {
    const r = record(st, u.code);
    if (u.reservation !== null) {
      const h = own(st.reservations, u.reservation);
      assert(h !== undefined && h.vendor === vendor && h.code === u.code, `reservation ${u.reservation} of ${vendor} for ${u.code}`);
      closeHold(st, h, 'captured', u.eventSeq);
    }
    if (r.state === 'unsold') r.state = 'live';
    r.redeemedUnits = add(r.redeemedUnits, u.consumedUnits);
    if (u.excessUnits > 0) {
      r.doubleSpent = true;
      st.doubleSpends += 1;
    }
    if (!r.usedBy.includes(vendor) && r.usedBy.length < STORES_KEPT_MAX) r.usedBy.push(vendor);
    if (u.offlineMinor > 0) {
      const days = own(st.offlineDaily, vendor) ?? (st.offlineDaily[vendor] = dict());
      const day = u.at.slice(0, 10);
      days[day] = add(own(days, day) ?? 0, u.offlineMinor);
    }
  }
  for (const b of effects.returns) {
    const r = record(st, b.code);
    r.redeemedUnits = sub(r.redeemedUnits, b.consumedUnits);
    assert(r.redeemedUnits >= 0, `instrument ${b.code} gives back no more than was used`);
  }
  for (const v of effects.voids) {
    const r = record(st, v.code);
    assert(r.state === 'voided' && r.voidedBy === vendor && r.voidSeq === null, `instrument ${v.code} voided at the mall by ${vendor} before its void event`);
    r.voidSeq = v.eventSeq;
  }
  for (const a of effects.alarms) alarm(a);
}
