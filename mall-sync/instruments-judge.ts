import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import {
  add,
  checkInstrumentClaims,
  fail,
  FLOAT_ACCOUNT,
  instrumentKeyFor,
  instrumentSoldDataSchema,
  instrumentUseSchema,
  instrumentVoidedDataSchema,
  INSTRUMENT_USES_MAX,
  INSTRUMENTS_ACCOUNT,
  isMallposError,
  mul,
  offlineLimitProblem,
  readInstrument,
  sub,
  type Instrument,
  type InstrumentDirectory,
  type TokenType,
} from '../core/index.ts';
import { partyAccount } from './clearing.ts';
import { netPostings, postsExactly } from './economy-judge.ts';
import { vendorAccount, type InstrumentUseRecord, type Transfer } from './events.ts';
import { instrumentDirectory, policyAt, type InstrumentBatchEffects, type InstrumentRecord, type InstrumentsState, type NewInstrumentRecord, type ReservationRecord } from './instruments-state.ts';
import { own } from './store/dict.ts';
import type { MallState } from './store/state.ts';

/**
 * Checks a compact instrument synchronously (node:crypto's Ed25519): the judge is
 * synchronous and must decide the same way when the audit replays it. The rules are
 * core's; only the signature check is here.
 */
const publicKeys = new Map<string, KeyObject>();
const PUBLIC_KEYS_CACHED_MAX = 1_000;

function publicKey(x: string): KeyObject {
  let key = publicKeys.get(x);
  if (key === undefined) {
    key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x }, format: 'jwk' });
    if (publicKeys.size >= PUBLIC_KEYS_CACHED_MAX) publicKeys.clear();
    publicKeys.set(x, key);
  }
  return key;
}

export function verifyInstrumentSync(compact: string, directory: Readonly<InstrumentDirectory>, tokenTypes: ReadonlyMap<string, TokenType>, now: Date): Instrument {
  const parts = readInstrument(compact);
  const key = instrumentKeyFor(directory, parts.kid);
  let ok = false;
  try {
    ok = verify(null, Buffer.from(parts.signingInput, 'ascii'), publicKey(key.jwk.x), parts.signature);
  } catch {
    ok = false;
  }
  if (!ok) fail('CORE_ERR_INSTRUMENT_SIGNATURE', `this ${parts.kind === 'gift' ? 'gift certificate' : 'coupon'} does not carry a valid signature: it was altered or forged`, { kid: key.kid });
  return checkInstrumentClaims(parts, compact, key, tokenTypes, now);
}

export function newRecordOf(inst: Instrument): NewInstrumentRecord {
  return { code: inst.code, issuer: inst.issuer, serial: inst.serial, kind: inst.kind, token: inst.token, faceUnits: inst.units, issuedAt: inst.issuedAt, expiresAt: inst.expiresAt, compact: inst.compact };
}

/** What the instruments of one sale come to. */
export interface SaleInstruments {
  /** Units paid by instruments, per token. */
  units: Map<string, number>;
  records: InstrumentUseRecord[];
  /** Double-spend charge-backs to add to the sale's clearing. */
  transfers: Transfer[];
}

type Flag = (reason: string) => never;

/**
 * The judge's view of instruments through one batch: the mall's state plus what earlier
 * events of the batch did. An event's changes are kept apart (`pending`) until the event
 * passes every check (`commit`); a flagged event changes nothing (`discard`).
 */
export class InstrumentCollector {
  private directoryCache: InstrumentDirectory | null = null;
  private typesCache: Map<string, TokenType> | null = null;
  private readonly records = new Map<string, InstrumentRecord>();
  private readonly reservations = new Map<string, ReservationRecord>();
  private offlineToday = new Map<string, number>();
  private pending: { records: Map<string, InstrumentRecord>; reservations: Map<string, ReservationRecord>; offline: Map<string, number>; effects: InstrumentBatchEffects } | null = null;
  private readonly effects: InstrumentBatchEffects = { seen: [], sold: [], uses: [], returns: [], voids: [], alarms: [] };

  constructor(
    private readonly state: Readonly<MallState>,
    private readonly vendor: string,
    /** When the batch arrived: reservations lapsed by then hold nothing. */
    private readonly arrivalMs: number,
  ) {}

  private get st(): Readonly<InstrumentsState> {
    return this.state.instruments;
  }

  private directory(): InstrumentDirectory {
    this.directoryCache ??= instrumentDirectory(this.st, this.state.keys);
    return this.directoryCache;
  }

  private types(): Map<string, TokenType> {
    this.typesCache ??= new Map(Object.entries(this.state.tokenTypes));
    return this.typesCache;
  }

  private tokenType(code: string): TokenType {
    const tt = this.types().get(code);
    if (tt === undefined) throw new Error(`assertion failed: token type ${code} of a verified instrument is registered`);
    return tt;
  }

  /** Starts an event: its changes are made on demand, so an event without instruments costs nothing. */
  begin(): void {
    this.pending = null;
  }

  commit(): void {
    const p = this.pending;
    if (p === null) return;
    for (const [k, v] of p.records) this.records.set(k, v);
    for (const [k, v] of p.reservations) this.reservations.set(k, v);
    for (const [k, v] of p.offline) this.offlineToday.set(k, v);
    for (const key of Object.keys(p.effects) as (keyof InstrumentBatchEffects)[]) (this.effects[key] as unknown[]).push(...(p.effects[key] as unknown[]));
    this.pending = null;
  }

  discard(): void {
    this.pending = null;
  }

  private get p() {
    this.pending ??= { records: new Map(), reservations: new Map(), offline: new Map(), effects: { seen: [], sold: [], uses: [], returns: [], voids: [], alarms: [] } };
    return this.pending;
  }

  /** The instrument's record as this event sees it (a copy it may change), or undefined. */
  private record(code: string): InstrumentRecord | undefined {
    const mine = this.p.records.get(code);
    if (mine !== undefined) return mine;
    const base = this.records.get(code) ?? own(this.st.records, code);
    if (base === undefined) return undefined;
    const copy = structuredClone(base);
    this.p.records.set(code, copy);
    return copy;
  }

  private seen(inst: Instrument): InstrumentRecord {
    const n = newRecordOf(inst);
    const r: InstrumentRecord = { ...n, state: 'live', redeemedUnits: 0, holds: [], soldBy: null, soldSeq: null, voidedBy: null, voidedAt: null, voidSeq: null, doubleSpent: false, usedBy: [] };
    this.p.records.set(n.code, r);
    this.p.effects.seen.push(n);
    return r;
  }

  private reservation(id: string): ReservationRecord | undefined {
    const mine = this.p.reservations.get(id);
    if (mine !== undefined) return mine;
    const base = this.reservations.get(id) ?? own(this.st.reservations, id);
    if (base === undefined) return undefined;
    const copy = { ...base };
    this.p.reservations.set(id, copy);
    return copy;
  }

  /** What remains on the record as the batch sees it: its value less what was used and what reservations in force hold. */
  private remaining(r: InstrumentRecord): number {
    let held = 0;
    for (const id of r.holds) {
      const h = this.p.reservations.get(id) ?? this.reservations.get(id) ?? own(this.st.reservations, id);
      if (h !== undefined && h.state === 'held' && Date.parse(h.expiresAt) > this.arrivalMs) held = add(held, h.holdUnits);
    }
    return Math.max(0, sub(sub(r.faceUnits, r.redeemedUnits), held));
  }

  private verify(compact: string, when: Date, flag: Flag): Instrument {
    try {
      return verifyInstrumentSync(compact, this.directory(), this.types(), when);
    } catch (err) {
      if (isMallposError(err)) flag(`${err.message} (${err.code})`);
      throw err;
    }
  }

  /**
   * Judges the instruments that paid a sale: each verified with the key directory at the
   * sale's time, captured under this store's reservation, or taken offline: honoured up to
   * what remained when the batch arrived, the excess a double spend whose loss the policy
   * in force at the sale's time assigns (within it the issuer bears it, beyond it the store).
   */
  judgeSale(raw: unknown, eventSeq: number, when: Date, at: string, flag: Flag): SaleInstruments {
    if (!Array.isArray(raw) || raw.length === 0 || raw.length > INSTRUMENT_USES_MAX) flag(`a sale names 1 to ${INSTRUMENT_USES_MAX} instruments`);
    const out: SaleInstruments = { units: new Map(), records: [], transfers: [] };
    for (const [i, item] of raw.entries()) {
      const parsed = instrumentUseSchema.safeParse(item);
      if (!parsed.success) flag(`instrument ${i + 1} of the sale is malformed at ${parsed.error.issues[0]?.path.join('.') ?? '?'}`);
      const u = parsed.data;
      const inst = this.verify(u.instrument, when, flag);
      if (inst.code !== u.code || inst.kind !== u.kind || inst.token !== u.token) flag(`instrument ${u.code} is not the ${inst.kind} ${inst.code} in ${inst.token} its signed form says`);
      if (u.units > inst.units) flag(`the sale takes ${u.units} ${u.token} from ${inst.code}, which is worth ${inst.units}`);
      const r = this.record(inst.code) ?? this.seen(inst);
      const tt = this.tokenType(inst.token);
      const consumedFor = (honoured: number) => (inst.kind === 'coupon' ? (honoured > 0 ? r.faceUnits : 0) : honoured);
      let honoured: number;
      let online = false;
      const h = u.reservation === null ? undefined : this.reservation(u.reservation);
      if (u.reservation !== null) {
        if (h === undefined || h.vendor !== this.vendor || h.code !== inst.code) flag(`reservation ${u.reservation} is not one ${this.vendor} made for ${inst.code}`);
        if (h.state === 'captured') flag(`reservation ${h.id} was already used by event ${h.eventSeq ?? '?'}`);
        if (h.units !== u.units) flag(`reservation ${h.id} is for ${h.units} ${h.token}, the sale takes ${u.units}`);
        // A reservation in force is captured as promised; a lapsed one is closed too, but the sale is judged as taken offline.
        online = h.state === 'held' && Date.parse(h.expiresAt) > this.arrivalMs;
      }
      const captures = h !== undefined && h.state === 'held';
      if (captures) {
        h.state = 'captured';
        h.eventSeq = eventSeq;
        r.holds = r.holds.filter((id) => id !== h.id);
      }
      let problem: string | null = null;
      let offlineMinor = 0;
      const valueMinor = mul(u.units, tt.faceValueMinor);
      if (online && h !== undefined) {
        // The mall said yes: it honours what it promised, whatever happened since.
        const left = Math.max(0, sub(r.faceUnits, r.redeemedUnits));
        honoured = inst.kind === 'coupon' ? (r.redeemedUnits === 0 ? u.units : 0) : Math.min(u.units, left);
      } else {
        const left = r.state === 'voided' ? 0 : this.remaining(r);
        honoured = inst.kind === 'coupon' ? (left >= r.faceUnits ? u.units : 0) : Math.min(u.units, left);
        const day = at.slice(0, 10);
        const before = this.p.offline.get(day) ?? this.offlineToday.get(day) ?? own(own(this.st.offlineDaily, this.vendor) ?? {}, day) ?? 0;
        problem = offlineLimitProblem(policyAt(this.st, at), { valueMinor, takenTodayMinor: before, snapshotIssuedAt: u.snapshotIssuedAt, at });
        offlineMinor = valueMinor;
        this.p.offline.set(day, add(before, valueMinor));
      }
      const excess = sub(u.units, honoured);
      const consumed = consumedFor(honoured);
      r.redeemedUnits = add(r.redeemedUnits, consumed);
      if (r.state === 'unsold') r.state = 'live';
      let lossBorneBy: InstrumentUseRecord['lossBorneBy'] = null;
      const lossMinor = mul(excess, tt.faceValueMinor);
      if (excess > 0) {
        lossBorneBy = online || problem === null ? 'issuer' : 'store';
        r.doubleSpent = true;
        const stores = [...new Set([...r.usedBy, this.vendor])];
        const who = lossBorneBy === 'issuer'
          ? `the issuer ${inst.issuer} bears the loss of ${lossMinor} (${online ? 'the mall had reserved it' : 'within the offline policy'})`
          : `${this.vendor} bears the loss of ${lossMinor} (beyond the offline policy: ${problem ?? ''})`;
        const why = r.state === 'voided' ? 'which was voided' : `when ${sub(u.units, excess)} remained`;
        this.p.effects.alarms.push({
          code: inst.code,
          eventSeq,
          stores,
          message: `instrument ${inst.code} was spent twice: ${this.vendor} took ${u.units} ${inst.token} in event ${eventSeq} ${why}; redeemed at ${stores.join(', ')}; ${who}`,
        });
        if (lossBorneBy === 'store') {
          const isVendor = (id: string) => own(this.state.vendors, id) !== undefined;
          const issuer = partyAccount(inst.issuer, isVendor);
          const store = vendorAccount(this.vendor);
          if (issuer !== store) out.transfers.push({ kind: 'double-spend', from: store, to: issuer, amountMinor: lossMinor, token: inst.token, units: excess });
        }
      }
      if (!r.usedBy.includes(this.vendor)) r.usedBy.push(this.vendor);
      this.p.effects.uses.push({
        code: inst.code,
        eventSeq,
        at,
        units: u.units,
        honouredUnits: honoured,
        excessUnits: excess,
        consumedUnits: consumed,
        reservation: captures ? (u.reservation as string) : null,
        offlineMinor,
        lossBorneBy,
        lossMinor: excess > 0 ? lossMinor : 0,
      });
      out.units.set(inst.token, add(out.units.get(inst.token) ?? 0, u.units));
      out.records.push({ code: inst.code, token: inst.token, units: u.units, honouredUnits: honoured, excessUnits: excess, consumedUnits: consumed, reservation: u.reservation, lossBorneBy });
    }
    return out;
  }

  /** A reversed sale gives back to each instrument what the sale's uses consumed. */
  giveBack(uses: readonly InstrumentUseRecord[], eventSeq: number): void {
    for (const u of uses) {
      if (u.consumedUnits === 0) continue;
      const r = this.record(u.code);
      if (r === undefined) throw new Error(`assertion failed: instrument ${u.code} of a cleared sale is recorded`);
      r.redeemedUnits = sub(r.redeemedUnits, u.consumedUnits);
      this.p.effects.returns.push({ code: u.code, eventSeq, consumedUnits: u.consumedUnits });
    }
  }

  /**
   * A gift certificate sold at a till: the mall's from stock (never sold before), or one
   * the store signed for its own tokens. Postings: float -> instruments. Returns its token
   * and units.
   */
  judgeSold(data: unknown, postings: readonly { account: string; token: string; units: number }[], eventSeq: number, when: Date, flag: Flag): { token: string; units: number; issuer: string } {
    const parsed = instrumentSoldDataSchema.safeParse(data);
    if (!parsed.success) flag(`the certificate sale is malformed at ${parsed.error.issues[0]?.path.join('.') ?? '?'}`);
    const d = parsed.data;
    const inst = this.verify(d.instrument, when, flag);
    if (inst.kind !== 'gift') flag('only gift certificates are sold');
    if (inst.code !== d.code || inst.token !== d.token || inst.units !== d.units) flag(`the sale names ${d.code} for ${d.units} ${d.token}, its signed form ${inst.code} for ${inst.units} ${inst.token}`);
    if (inst.issuer !== 'mall' && inst.issuer !== this.vendor) flag(`${this.vendor} may sell only the mall's certificates and its own, not ${inst.issuer}'s`);
    const tt = this.tokenType(inst.token);
    if (d.currency !== tt.currency || d.priceMinor !== mul(inst.units, tt.faceValueMinor)) flag(`${inst.units} ${inst.token} at face value cost ${mul(inst.units, tt.faceValueMinor)} ${tt.currency}, not ${d.priceMinor} ${d.currency}`);
    if (d.payment.method === 'cash' && d.payment.tenderedMinor - d.payment.changeMinor !== d.priceMinor) flag('the cash tendered less the change is not the price of the certificate');
    if (!postsExactly(netPostings(postings), [[FLOAT_ACCOUNT, inst.token, 0 - inst.units], [INSTRUMENTS_ACCOUNT, inst.token, inst.units]])) flag(`the postings do not move ${inst.units} ${inst.token} from the float into ${INSTRUMENTS_ACCOUNT}`);
    let r = this.record(inst.code);
    if (r === undefined) {
      if (inst.issuer === 'mall') flag(`the mall never issued certificate ${inst.code}`);
      r = this.seen(inst);
    }
    if (r.soldBy !== null) flag(`certificate ${inst.code} was already sold by ${r.soldBy}`);
    if (r.state === 'voided' && r.voidedBy !== this.vendor) flag(`certificate ${inst.code} was voided`);
    if (r.state === 'unsold') r.state = 'live';
    r.soldBy = this.vendor;
    r.soldSeq = eventSeq;
    this.p.effects.sold.push({ code: inst.code, eventSeq });
    return { token: inst.token, units: inst.units, issuer: inst.issuer };
  }

  /** The store takes back a certificate it sold, after the mall agreed to void it. Postings: instruments -> float. */
  judgeVoided(data: unknown, postings: readonly { account: string; token: string; units: number }[], eventSeq: number, flag: Flag): { token: string; units: number } {
    const parsed = instrumentVoidedDataSchema.safeParse(data);
    if (!parsed.success) flag(`the certificate void is malformed at ${parsed.error.issues[0]?.path.join('.') ?? '?'}`);
    const d = parsed.data;
    const r = this.record(d.code);
    if (r === undefined || r.soldBy !== this.vendor || r.soldSeq !== d.soldSeq) flag(`${this.vendor} did not sell certificate ${d.code} in event ${d.soldSeq}`);
    if (r.state !== 'voided' || r.voidedBy !== this.vendor) flag(`the mall did not void certificate ${d.code} for ${this.vendor}: ask it first`);
    if (r.voidSeq !== null) flag(`certificate ${d.code} was already taken back in event ${r.voidSeq}`);
    if (d.token !== r.token || d.units !== r.faceUnits) flag(`certificate ${d.code} is for ${r.faceUnits} ${r.token}`);
    if (!postsExactly(netPostings(postings), [[INSTRUMENTS_ACCOUNT, r.token, 0 - r.faceUnits], [FLOAT_ACCOUNT, r.token, r.faceUnits]])) flag(`the postings do not move ${r.faceUnits} ${r.token} from ${INSTRUMENTS_ACCOUNT} back into the float`);
    r.voidSeq = eventSeq;
    this.p.effects.voids.push({ code: d.code, eventSeq });
    return { token: r.token, units: r.faceUnits };
  }

  result(): InstrumentBatchEffects | undefined {
    const e = this.effects;
    const any = e.seen.length + e.sold.length + e.uses.length + e.returns.length + e.voids.length + e.alarms.length > 0;
    return any ? e : undefined;
  }
}

/**
 * Moves a sale's `instruments` postings onto the payer for core's sale check, as the wallet's
 * are: per token exactly the units the instruments paid, nothing else. Returns the problem
 * as a sentence.
 */
export function foldInstrumentPostings(
  postings: readonly { account: string; token: string; units: number }[],
  units: ReadonlyMap<string, number>,
  payerAccount: string,
): { postings: { account: string; token: string; units: number }[] } | { problem: string } {
  const net = netPostings(postings);
  for (const [token, n] of units) {
    const k = `${INSTRUMENTS_ACCOUNT}\u0000${token}`;
    if (net.get(k) !== 0 - n) return { problem: `the sale's ${INSTRUMENTS_ACCOUNT} postings in ${token} are not the ${n} its instruments pay` };
    net.delete(k);
    const c = `${payerAccount}\u0000${token}`;
    const v = add(net.get(c) ?? 0, 0 - n);
    if (v === 0) net.delete(c);
    else net.set(c, v);
  }
  const out: { account: string; token: string; units: number }[] = [];
  for (const [k, n] of net) {
    const [account, token] = k.split('\u0000') as [string, string];
    if (account === INSTRUMENTS_ACCOUNT) return { problem: `the sale posts to ${INSTRUMENTS_ACCOUNT} in ${token} without an instrument` };
    out.push({ account, token, units: n });
  }
  return { postings: out };
}
