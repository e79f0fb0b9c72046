import { hash as digest, randomInt } from 'node:crypto';
import {
  checkOfflineAcceptance,
  checkSpendable,
  customerAccount,
  fail,
  formatMinor,
  formatUnits,
  FLOAT_ACCOUNT,
  INSTRUMENT_USES_MAX,
  instrumentCode,
  INSTRUMENTS_ACCOUNT,
  instrumentValueMinor,
  isMallposError,
  makeSaleId,
  parseInstrumentCode,
  planPostings,
  policyDay,
  priceCart,
  REDEEMED_ACCOUNT,
  redemptionPostings,
  settleCash,
  type Instrument,
  type InstrumentDirectory,
  type InstrumentPolicy,
  type InstrumentSaleAck,
  type InstrumentVoidAck,
  type InstrumentUse,
  type InstrumentView,
  type NewEvent,
  type Posting,
  type PricedCart,
  type SaleAck,
  type SnapshotPayload,
  type TokenPayment,
  type TokenType,
} from '../../core/index.ts';
import { checkBuiltSale } from '../../core/sale-check.ts';
import { signInstrument, verifyInstrument } from '../../platform/instruments.ts';
import type { Logger } from '../../platform/logger.ts';
import type { Actor, LedgerService } from '../ledger/service.ts';
import { bookOf, customerBalances, dict, own, type InstrumentRecord } from '../ledger/state.ts';
import type { MallRequests } from '../sync/mall-requests.ts';
import type { MallSync } from '../sync/mall-sync-client.ts';

/**
 * Gift certificates and manufacturer coupons at the store (claims 6, 7, 9, 20, 21, 23).
 * An instrument is verified offline against the key directory of the store's cached mall
 * snapshot, then judged against the store's durable spent set (`LedgerState.instruments`,
 * rebuilt from the journal). Paying a sale with it:
 *
 *   online:  reserve the units at the mall (one round trip, idempotent by a key derived
 *            from the till's) -> journal the sale naming the reservation -> the batch
 *            carrying the sale captures it. A refusal after the reservation releases it.
 *   offline: (the mall cannot be reached) the mall's published policy decides: at most
 *            so much from one instrument, so much a day from all, and only with a young
 *            enough snapshot; the sale is journalled without a reservation and the mall
 *            learns of it from the batch.
 *
 * What remains on an instrument is the smaller of what the mall says (online) and what
 * this store saw last; an instrument never seen here and out of the mall's reach is worth
 * its face value, within the offline limits: that is the risk the policy bounds.
 */

/** The bearer of a sale paid only by instruments, as the sale validator names the payer of its debits. */
const BEARER = 'instrument-bearer';
/** A certificate this store signs for its own tokens is valid this long. */
export const STORE_CERTIFICATE_LIFE_DAYS = 365;
/** How many releases a process remembers, to refuse journalling a reservation it gave back. */
const RELEASED_REMEMBERED_MAX = 10_000;

/** A test hook: the process kills itself right after its reservations are held, before the journal. */
export const INSTRUMENT_STOP_AT_ENV = 'MALLPOS_VENDOR_STOP_AT';

export interface InstrumentTender {
  instrument: string;
  units?: number | undefined;
}

export interface SaleWithInstrumentsInput {
  key: string;
  lines: { code: string; qty: number }[];
  card: string | null;
  tenders: { token: string; units?: number | undefined; source?: 'card' | 'wallet' | undefined }[];
  cashTenderedMinor: number;
  instruments: InstrumentTender[];
}

/** One instrument of a sale, verified, with what this store may take from it now. */
interface Offered {
  instrument: Instrument;
  /** Units the tender asks, or undefined: as many as the cart can take. */
  asked: number | undefined;
  /** What may be taken: what remains (the store's and the mall's smaller), capped by the tender and the offline limit. */
  available: number;
  remaining: number;
}

/** The mall idempotency key of the `index`th reservation a till's sale makes: the same sale, the same hold. */
export function reservationKey(tillKey: string, index: number, units: number): string {
  return `ir.${index}.${units}.${digest('sha256', tillKey, 'hex')}`;
}

/** Whether a sale request offers gift certificates or coupons. */
export function paysWithInstruments(input: { instruments?: unknown[] | undefined }): boolean {
  return input.instruments !== undefined && input.instruments.length > 0;
}

/** How many of the mall's latest figures a process keeps as hints. */
const MALL_HINTS_MAX = 10_000;
/**
 * After the mall did not answer, inquiries and sales judge instruments offline for this
 * long without asking it again: a mall that is down costs one request timeout, not one
 * per scan with a customer waiting.
 */
export const MALL_RETRY_AFTER_MS_DEFAULT = 10_000;

export class InstrumentService {
  private readonly released = new Set<string>();
  /** How long the mall is left alone after it did not answer (MALL_RETRY_AFTER_MS_DEFAULT); tests set 0. */
  mallRetryAfterMs = MALL_RETRY_AFTER_MS_DEFAULT;
  /** When the mall last did not answer (a time in ms), or null once it answered since. */
  private mallFailedAtMs: number | null = null;
  /**
   * What the mall last said remains on an instrument (code -> units), from an inquiry or
   * a refused reservation: an upper bound on what a sale asks it for, so that a till does
   * not keep asking for more than the mall holds. A hint only: the spent set is the journal's.
   */
  private readonly mallHints = new Map<string, number>();

  constructor(
    private readonly ledger: LedgerService,
    private readonly mall: () => MallRequests | null,
    private readonly sync: () => MallSync | null,
    private readonly logger: Logger,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  // ---- the snapshot ---------------------------------------------------------------------------

  private snapshot(): SnapshotPayload & { instruments: InstrumentDirectory } {
    const snap = this.sync()?.cachedSnapshot() ?? null;
    if (snap === null || snap.instruments === undefined) {
      fail('VND_ERR_INSTRUMENT_DIRECTORY', 'the store has no key directory from the mall yet: gift certificates and coupons cannot be checked now; nothing was charged');
    }
    return snap as SnapshotPayload & { instruments: InstrumentDirectory };
  }

  private tokenTypes(snap: SnapshotPayload): Map<string, TokenType> {
    return new Map(snap.tokenTypes.map((t) => [t.code, t]));
  }

  /** Verifies a compact instrument offline, against the cached key directory; every refusal is typed and changes nothing. */
  async verify(compact: string): Promise<Instrument> {
    const snap = this.snapshot();
    const now = this.clock();
    const instrument = await verifyInstrument(compact, snap.instruments, this.tokenTypes(snap), now);
    const tt = this.ledger.tokenTypes.get(instrument.token) ?? this.tokenTypes(snap).get(instrument.token);
    if (tt === undefined) fail('CORE_ERR_TOKEN_UNKNOWN', `unknown token type ${instrument.token}`);
    checkSpendable(tt, this.ledger.store.vendorId, now);
    return instrument;
  }

  private hint(code: string, units: number): void {
    this.mallHints.delete(code);
    this.mallHints.set(code, units);
    if (this.mallHints.size > MALL_HINTS_MAX) this.mallHints.delete(this.mallHints.keys().next().value as string);
  }

  private record(code: string): InstrumentRecord | undefined {
    return own(this.ledger.state.instruments, code);
  }

  /** What this store's spent set says remains (the face value for one never seen here); refuses one it saw spent or voided. */
  private remainingHere(instrument: Instrument): number {
    const r = this.record(instrument.code);
    if (r === undefined) return instrument.units;
    const what = instrument.kind === 'gift' ? 'gift certificate' : 'coupon';
    if (r.voided) fail('VND_ERR_INSTRUMENT_SPENT', `this ${what} (${instrument.code}) was voided`, { code: instrument.code, remainingUnits: 0 });
    if (r.remainingUnits <= 0) {
      fail('VND_ERR_INSTRUMENT_SPENT', instrument.kind === 'coupon' ? `this coupon (${instrument.code}) was already used` : `nothing remains on this gift certificate (${instrument.code})`, { code: instrument.code, remainingUnits: 0 });
    }
    return Math.min(r.remainingUnits, instrument.units);
  }

  private requests(): MallRequests | null {
    return this.mall();
  }

  /** The mall to ask during an inquiry or a sale, or null while it is taken as down after it did not answer. */
  private mallToAsk(): MallRequests | null {
    return this.mallFailedAtMs !== null && Date.now() < this.mallFailedAtMs + this.mallRetryAfterMs ? null : this.mall();
  }

  /** Notes how the mall answered: not at all (VND_ERR_MALL_UNREACHABLE) starts the pause, anything else ends it. */
  private noteMall(err: unknown): void {
    this.mallFailedAtMs = isMallposError(err) && err.code === 'VND_ERR_MALL_UNREACHABLE' ? Date.now() : null;
  }

  private policy(): InstrumentPolicy {
    return this.snapshot().instruments.policy;
  }

  /** The most one sale may take offline from an instrument of this token, in units. */
  private offlineMaxUnits(token: string): number {
    const tt = this.ledger.tokenTypes.get(token);
    if (tt === undefined || tt.faceValueMinor === 0) return 0;
    return Math.floor(this.policy().offlineInstrumentMaxMinor / tt.faceValueMinor);
  }

  // ---- balance inquiry -----------------------------------------------------------------------

  /**
   * An instrument as the till shows it: verified offline first (a forged one is refused
   * without asking anyone), then what remains: the mall's figure when it answers, else
   * this store's. A short code alone is resolved to the compact form (the mall's copy, or
   * this store's record) and that is verified: a code proves nothing by itself.
   */
  async inquire(req: { instrument: string } | { code: string }): Promise<InstrumentView> {
    let compact: string;
    let mallStatus: Awaited<ReturnType<MallRequests['instrumentStatus']>> | null = null;
    let reached = false;
    if ('code' in req) {
      const { code } = parseInstrumentCode(req.code);
      this.snapshot();
      const local = this.record(code);
      const mall = this.mallToAsk();
      if (mall !== null) {
        try {
          mallStatus = await mall.instrumentStatus(code);
          reached = true;
          this.noteMall(null);
        } catch (err) {
          this.noteMall(err);
          if (!isMallposError(err) || err.code !== 'VND_ERR_MALL_UNREACHABLE') throw err;
        }
      }
      const found = mallStatus?.compact ?? local?.compact ?? null;
      if (found === null) {
        fail('MALL_ERR_INSTRUMENT_UNKNOWN', reached ? `the mall has no signed copy of ${code}: scan its QR code` : `the mall cannot be reached and this store has not seen ${code}: scan its QR code`, { code });
      }
      compact = found;
    } else {
      compact = req.instrument;
    }
    const instrument = await this.verify(compact);
    if (!reached) {
      const mall = this.mallToAsk();
      if (mall !== null) {
        try {
          mallStatus = await mall.instrumentStatus(instrument.code);
          reached = true;
          this.noteMall(null);
        } catch (err) {
          this.noteMall(err);
          // The mall not knowing a certificate it did not issue (a store's, not yet in a batch) is no refusal.
          if (!isMallposError(err) || (err.code !== 'VND_ERR_MALL_UNREACHABLE' && err.code !== 'MALL_ERR_INSTRUMENT_UNKNOWN')) throw err;
          reached = err.code === 'MALL_ERR_INSTRUMENT_UNKNOWN';
        }
      }
    }
    const local = this.record(instrument.code);
    let remaining = local === undefined ? instrument.units : local.voided ? 0 : Math.min(local.remainingUnits, instrument.units);
    let source: InstrumentView['source'] = local === undefined ? 'face' : 'store';
    let state: InstrumentView['state'] = local === undefined ? 'unknown' : local.voided ? 'voided' : remaining === 0 ? 'spent' : 'live';
    if (mallStatus !== null) {
      remaining = mallStatus.state === 'voided' ? 0 : Math.min(remaining, mallStatus.remainingUnits);
      this.hint(instrument.code, remaining);
      source = 'mall';
      state = mallStatus.state === 'live' && remaining === 0 ? 'spent' : mallStatus.state;
    }
    const tt = this.ledger.tokenTypes.get(instrument.token);
    return {
      code: instrument.code,
      kind: instrument.kind,
      issuer: instrument.issuer,
      token: instrument.token,
      tokenName: tt?.name ?? instrument.token,
      faceUnits: instrument.units,
      remainingUnits: remaining,
      remainingMinor: tt === undefined ? 0 : instrumentValueMinor(tt, remaining),
      currency: tt?.currency ?? this.ledger.store.currency,
      expiresAt: instrument.expiresAt,
      source,
      state,
      instrument: instrument.compact,
      offlineMaxUnits: reached ? null : this.offlineMaxUnits(instrument.token),
    };
  }

  // ---- paying a sale ---------------------------------------------------------------------------

  /** Verifies the sale's instruments and what may be taken from each now. */
  private async offered(input: { instruments: InstrumentTender[]; tenders: SaleWithInstrumentsInput['tenders'] }): Promise<Offered[]> {
    if (input.instruments.length > INSTRUMENT_USES_MAX) fail('CORE_ERR_VALIDATION', `a sale takes at most ${INSTRUMENT_USES_MAX} gift certificates and coupons`);
    if (input.tenders.some((t) => t.source === 'wallet')) fail('CORE_ERR_VALIDATION', 'tokens from the mall wallet and gift certificates or coupons are paid in separate sales');
    const out: Offered[] = [];
    for (const t of input.instruments) {
      const instrument = await this.verify(t.instrument);
      if (out.some((o) => o.instrument.code === instrument.code)) fail('CORE_ERR_VALIDATION', `${instrument.code} is offered twice`);
      if (input.tenders.some((c) => c.token === instrument.token)) {
        fail('CORE_ERR_VALIDATION', `${instrument.code} pays in ${instrument.token}: take the card's ${instrument.token} tokens in another sale`, { token: instrument.token });
      }
      if (t.units === 0) fail('CORE_ERR_AMOUNT', `take at least one ${instrument.token} from ${instrument.code}`);
      out.push({ instrument, asked: t.units, available: 0, remaining: instrument.units });
    }
    return out;
  }

  /** Sets what remains and what may be taken, from the spent set (and the mall's figure when given). */
  private judge(offered: Offered[], mallRemaining: (number | null)[] | null, offline: boolean): void {
    for (const [i, o] of offered.entries()) {
      let remaining = this.remainingHere(o.instrument);
      // A hint of nothing left is not used: the mall's reservation then refuses with its own reason.
      const hinted = offline ? null : (this.mallHints.get(o.instrument.code) ?? null);
      const fromMall = mallRemaining?.[i] ?? (hinted !== null && hinted > 0 ? hinted : null);
      if (fromMall !== null) remaining = Math.min(remaining, fromMall);
      o.remaining = remaining;
      let available = remaining;
      if (offline) available = Math.min(available, this.offlineMaxUnits(o.instrument.token));
      if (o.asked !== undefined) {
        if (o.asked > remaining) {
          fail('VND_ERR_INSTRUMENT_INSUFFICIENT', `${formatUnits(remaining, o.instrument.token)} remain on ${o.instrument.code}, not ${formatUnits(o.asked, o.instrument.token)}`, { code: o.instrument.code, remainingUnits: remaining });
        }
        // Asked beyond the offline limit: the check at the journal says so in the policy's words.
        available = offline ? o.asked : Math.min(available, o.asked);
      }
      o.available = available;
    }
  }

  /**
   * Prices the cart with the instruments as tenders ahead of the card's: the instruments
   * of one token make one tender, their units what they may give together, and the units
   * the cart takes are split over them in the order scanned. `fixed` gives each
   * instrument's units exactly (those reserved at the mall).
   */
  private priceWith(
    input: Pick<SaleWithInstrumentsInput, 'lines' | 'tenders'>,
    balances: Record<string, number> | null,
    offered: Offered[],
    fixed: number[] | null,
  ): { priced: PricedCart; takes: number[] } {
    const lines = input.lines.map((l) => ({ product: this.ledger.product(l.code), qty: l.qty }));
    if (this.ledger.tokenGate !== null) for (const t of input.tenders) this.ledger.tokenGate(t.token);
    if (input.tenders.length > 0 && balances === null) fail('CORE_ERR_TENDER_WITHOUT_CUSTOMER');
    const usable = dict<number>();
    if (balances !== null) for (const token of Object.keys(balances)) usable[token] = balances[token] as number;
    const tokens: string[] = [];
    for (const o of offered) if (!tokens.includes(o.instrument.token)) tokens.push(o.instrument.token);
    const tenders: { token: string; units?: number }[] = [];
    for (const token of tokens) {
      const mine = offered.map((o, i) => ({ o, i })).filter(({ o }) => o.instrument.token === token);
      let total = 0;
      for (const { o, i } of mine) total += fixed === null ? o.available : (fixed[i] as number);
      usable[token] = total;
      const exact = fixed !== null || mine.every(({ o }) => o.asked !== undefined);
      tenders.push(exact ? { token, units: total } : { token });
    }
    for (const t of input.tenders) tenders.push(t.units === undefined ? { token: t.token } : { token: t.token, units: t.units });
    const priced = priceCart({
      vendorId: this.ledger.store.vendorId,
      currency: this.ledger.store.currency,
      now: this.clock(),
      lines,
      tokenTypes: this.ledger.tokenTypes,
      tenders,
      balances: usable,
    });
    const takes = offered.map(() => 0);
    for (const token of tokens) {
      let left = priced.debits[token] ?? 0;
      for (const [i, o] of offered.entries()) {
        if (o.instrument.token !== token) continue;
        const take = Math.min(left, fixed === null ? o.available : (fixed[i] as number));
        takes[i] = take;
        left -= take;
      }
    }
    for (const [i, o] of offered.entries()) {
      if (takes[i] === 0) fail('CORE_ERR_PRODUCT_NOT_ELIGIBLE', `nothing left in this cart can be paid with ${o.instrument.code}: take it off the sale`, { code: o.instrument.code, token: o.instrument.token });
    }
    return { priced, takes };
  }

  /** `cart:price` with instruments: as the sale would be priced now, from what this store knows. */
  async price(input: { lines: { code: string; qty: number }[]; card: string | null; tenders: SaleWithInstrumentsInput['tenders']; instruments: InstrumentTender[] }): Promise<PricedCart> {
    const offered = await this.offered(input);
    const customerId = input.card === null ? null : this.ledger.customerIdByCard(input.card);
    this.judge(offered, null, false);
    return this.priceWith(input, customerId === null ? null : customerBalances(this.ledger.state, customerId), offered, null).priced;
  }

  /**
   * A sale paid in part by gift certificates or coupons. Everything that can be refused
   * without the mall is refused first; then the units are reserved at the mall (or, when
   * it cannot be reached, judged by the offline policy) and the sale journalled.
   */
  async commitSale(actor: Actor, input: SaleWithInstrumentsInput, opts: { tokenValueLimitMinor?: number | null; precondition?: () => void } = {}): Promise<SaleAck> {
    const customerId = input.card === null ? null : this.ledger.customerIdByCard(input.card);
    const body = {
      lines: input.lines.map((l) => ({ code: l.code, qty: l.qty })),
      card: input.card,
      tenders: input.tenders.map((t) => ({ token: t.token, ...(t.units === undefined ? {} : { units: t.units }) })),
      cash: input.cashTenderedMinor,
      instruments: input.instruments.map((t) => ({ instrument: t.instrument, ...(t.units === undefined ? {} : { units: t.units }) })),
    };
    const journal = (offered: Offered[], fixed: number[], reservations: (string | null)[], mallRemaining: (number | null)[]) =>
      this.ledger.commitRequest(
        actor,
        input.key,
        body,
        (base) => this.build(base, input, customerId, offered, fixed, reservations, mallRemaining, opts),
        (seq) => seq,
      );
    if (this.ledger.knowsKey(input.key)) return this.ack(await journal([], [], [], []));

    const offered = await this.offered(input);
    const mall = this.mallToAsk();
    // Refused here, before anything is held: what the store's own record and the cart allow.
    this.judge(offered, null, false);
    const balances = () => (customerId === null ? null : customerBalances(this.ledger.state, customerId));
    let { takes } = this.priceWith(input, balances(), offered, null);

    if (mall !== null) {
      const held: { id: string; key: string }[] = [];
      const mallRemaining: (number | null)[] = [];
      let unreachable = false;
      try {
        for (const [i, o] of offered.entries()) {
          const key = reservationKey(input.key, i, takes[i] as number);
          let answer;
          try {
            answer = await mall.reserveInstrument({ key, instrument: o.instrument.compact, units: takes[i] as number }, o.instrument.code);
            this.noteMall(null);
          } catch (err) {
            this.noteMall(err);
            // A certificate a store signed is known to the mall only once the batch that
            // sold it arrives: until then the mall cannot hold it, and the sale is judged as
            // one made offline (within the policy). The mall's own unknown to it is refused.
            if (isMallposError(err) && (err.code === 'VND_ERR_MALL_UNREACHABLE' || (err.code === 'MALL_ERR_INSTRUMENT_UNKNOWN' && o.instrument.issuer !== 'mall'))) {
              unreachable = true;
              break;
            }
            // Less remains at the mall than this store knew (spent at another store): learn
            // what, so that the cashier's next try asks for what there is.
            if (isMallposError(err) && (err.code === 'MALL_ERR_INSTRUMENT_INSUFFICIENT' || err.code === 'MALL_ERR_INSTRUMENT_SPENT')) {
              const status = await mall.instrumentStatus(o.instrument.code).catch(() => null);
              if (status !== null) this.hint(o.instrument.code, status.remainingUnits);
            }
            throw err;
          }
          if (this.released.has(answer.reservation.id)) fail('MALL_ERR_RESERVATION_SPENT', 'this sale was refused and its reservation released: start it again');
          held.push({ id: answer.reservation.id, key });
          mallRemaining.push(o.instrument.kind === 'coupon' ? 0 : answer.instrument.remainingUnits);
        }
      } catch (err) {
        await this.releaseAll(held);
        throw err;
      }
      if (!unreachable) {
        stopHere('instrument-reserved');
        try {
          const seq = await journal(offered, takes, held.map((h) => h.id), mallRemaining);
          this.sync()?.pushSoon();
          return await this.ack(seq);
        } catch (err) {
          if (!this.ledger.state.keys.has(input.key)) await this.releaseAll(held);
          throw err;
        }
      }
      // The mall stopped answering part way: what it held is given back, and the sale is judged offline.
      await this.releaseAll(held);
    }

    // Offline: what may be taken is capped by the policy, and checked at the journal with nothing in between.
    this.judge(offered, null, true);
    ({ takes } = this.priceWith(input, balances(), offered, null));
    const seq = await journal(offered, takes, offered.map(() => null), offered.map(() => null));
    this.sync()?.pushSoon();
    return this.ack(seq);
  }

  /**
   * The sale event, built from the state as it is right before the append: the spent set
   * is read again here, so two tills spending one instrument are judged one after the
   * other, never both against the same remaining value.
   */
  private build(
    base: Parameters<Parameters<LedgerService['commitRequest']>[3]>[0],
    input: SaleWithInstrumentsInput,
    customerId: string | null,
    offered: Offered[],
    fixed: number[],
    reservations: (string | null)[],
    mallRemaining: (number | null)[],
    opts: { tokenValueLimitMinor?: number | null; precondition?: () => void },
  ): NewEvent {
    const snap = this.snapshot();
    const balances = customerId === null ? null : customerBalances(this.ledger.state, customerId);
    for (const [i, o] of offered.entries()) {
      const remaining = this.remainingHere(o.instrument);
      if ((fixed[i] as number) > remaining) {
        fail('VND_ERR_INSTRUMENT_INSUFFICIENT', `${formatUnits(remaining, o.instrument.token)} remain on ${o.instrument.code} as this store saw it last`, { code: o.instrument.code, remainingUnits: remaining });
      }
      o.remaining = Math.min(remaining, mallRemaining[i] === null || mallRemaining[i] === undefined ? remaining : (mallRemaining[i] as number) + (fixed[i] as number));
    }
    const { priced, takes } = this.priceWith(input, balances, offered, fixed);
    for (const [i, o] of offered.entries()) {
      if (takes[i] !== fixed[i]) fail('CORE_ERR_TENDER_EXCESS', `${o.instrument.code} can pay ${takes[i] ?? 0} ${o.instrument.token} here, not ${fixed[i] ?? 0}`, { code: o.instrument.code });
    }
    const { changeMinor } = settleCash(priced.cashDueMinor, input.cashTenderedMinor, (m) => formatMinor(m, this.ledger.store.currency));
    // Card debits only: what instruments pay needs no customer PIN, the bearer holds them.
    const cardDebits = dict<number>();
    for (const token of Object.keys(priced.debits)) if (!offered.some((o) => o.instrument.token === token)) cardDebits[token] = priced.debits[token] as number;
    this.ledger.checkTokenValueLimit(cardDebits, opts.tokenValueLimitMinor ?? null);
    opts.precondition?.();

    // Offline takes are judged by the policy in force, against the day's offline total so far.
    let takenToday = own(this.ledger.state.instrumentsOfflineDay, policyDay(base.at)) ?? 0;
    const uses: InstrumentUse[] = [];
    for (const [i, o] of offered.entries()) {
      const units = fixed[i] as number;
      const tt = this.ledger.tokenTypes.get(o.instrument.token) ?? fail('CORE_ERR_TOKEN_UNKNOWN', `unknown token type ${o.instrument.token}`);
      const reservation = reservations[i] ?? null;
      if (reservation === null) {
        const valueMinor = instrumentValueMinor(tt, units);
        checkOfflineAcceptance(snap.instruments.policy, { valueMinor, takenTodayMinor: takenToday, snapshotIssuedAt: snap.issuedAt, at: base.at });
        takenToday += valueMinor;
      }
      uses.push({
        instrument: o.instrument.compact,
        code: o.instrument.code,
        kind: o.instrument.kind,
        token: o.instrument.token,
        units,
        reservation,
        // A coupon is used once, whatever part of its value the sale took.
        remainingAfter: o.instrument.kind === 'coupon' ? 0 : o.remaining - units,
        snapshotIssuedAt: snap.issuedAt,
      });
    }

    const postings: Posting[] = customerId === null ? [] : redemptionPostings(customerId, cardDebits);
    for (const u of uses) postings.push({ account: INSTRUMENTS_ACCOUNT, token: u.token, units: -u.units }, { account: REDEEMED_ACCOUNT, token: u.token, units: u.units });
    if (balances !== null) for (const token of Object.keys(cardDebits)) balances[token] = (balances[token] ?? 0) - (cardDebits[token] as number);
    const data = {
      saleId: makeSaleId(base.seq),
      customer: customerId,
      currency: priced.currency,
      lines: priced.lines,
      allocations: priced.allocations,
      debits: priced.debits,
      totalMinor: priced.totalMinor,
      cash: { dueMinor: priced.cashDueMinor, tenderedMinor: input.cashTenderedMinor, changeMinor },
      balancesAfter: balances,
      instruments: uses,
    };
    // The sale's one validator knows only a payer's debits: the instruments' postings are
    // read as the payer's (the customer, or the bearer of a sale without one).
    const payer = customerAccount(customerId ?? BEARER);
    const { instruments: _uses, ...core } = data;
    checkBuiltSale(
      postings.map((p) => (p.account === INSTRUMENTS_ACCOUNT ? { ...p, account: payer } : p)),
      { ...core, customer: customerId ?? BEARER },
    );
    return { ...base, type: 'sale', postings, data } as NewEvent;
  }

  private async releaseAll(held: { id: string; key: string }[]): Promise<void> {
    const mall = this.requests();
    if (mall === null) return;
    await Promise.all(
      held.map(async (h) => {
        this.released.add(h.id);
        if (this.released.size > RELEASED_REMEMBERED_MAX) this.released.delete(this.released.values().next().value as string);
        await mall.releaseReservation(h.id, `${h.key}.release`).catch((err: unknown) => {
          this.logger.warn({ reservation: h.id, err: (err as Error).message }, 'instrument reservation not released: the mall lets it lapse');
        });
      }),
    );
  }

  private async ack(seq: number): Promise<SaleAck> {
    const event = await this.ledger.readEvent(seq);
    if (event.type !== 'sale') fail('VND_ERR_IDEMPOTENCY_CONFLICT', 'this request key was already used for a different request');
    return this.ledger.saleAck(seq);
  }

  // ---- selling a certificate ---------------------------------------------------------------------

  /** A fresh serial for a certificate this store signs: random, so that one cannot be guessed from another. */
  newSerial(): string {
    const alphabet = '0123456789ABCDEFGHJKLMNPQRSTUVWXYZ';
    let s = '';
    for (let i = 0; i < 12; i++) s += alphabet[randomInt(alphabet.length)];
    return s;
  }

  /**
   * `instrument:sell`: a gift certificate for this store's own tokens, signed with the
   * store's key (which the mall's key directory lists for gift certificates, so any store
   * verifies it), sold for cash or card at face value. The certificate is signed before
   * the journal, and the journalled event holds it: a retry of the same key answers the
   * same certificate, never a second one. Postings: float -> instruments.
   */
  async sell(
    actor: Actor,
    req: { key: string; token?: string | undefined; units?: number | undefined; instrument?: string | undefined; payment: { method: 'cash'; tenderedMinor: number } | { method: 'card'; approvalRef: string } },
    signing: { kid: string; privateKey: CryptoKey },
    precondition: () => void,
  ): Promise<InstrumentSaleAck> {
    const body = req.instrument === undefined ? { op: 'instrument.sell', token: req.token, units: req.units, payment: req.payment } : { op: 'instrument.sell', instrument: req.instrument, payment: req.payment };
    if (this.ledger.knowsKey(req.key)) return this.ledger.commitRequest(actor, req.key, body, () => fail('VND_ERR_INTERNAL', 'a known key is answered, never built'), (seq) => this.saleAckOf(seq));
    const { tt, units, compact, code } = req.instrument === undefined ? await this.signNew(req.token, req.units, signing) : await this.fromStock(req.instrument);
    if (req.payment.method === 'card' && own(this.ledger.state.cardPayments, req.payment.approvalRef) !== undefined) {
      fail('VND_ERR_PAYMENT_REUSED', `card approval ${req.payment.approvalRef} already paid for another purchase`, { approvalRef: req.payment.approvalRef });
    }
    return this.ledger.commitRequest(
      actor,
      req.key,
      body,
      (base) => {
        const priceMinor = instrumentValueMinor(tt, units);
        let payment: TokenPayment;
        if (req.payment.method === 'cash') {
          const { changeMinor } = settleCash(priceMinor, req.payment.tenderedMinor, (m) => formatMinor(m, tt.currency));
          payment = { method: 'cash', tenderedMinor: req.payment.tenderedMinor, changeMinor };
        } else {
          // Another request may have used the approval while this one was signed or checked.
          if (own(this.ledger.state.cardPayments, req.payment.approvalRef) !== undefined) fail('VND_ERR_PAYMENT_REUSED', `card approval ${req.payment.approvalRef} already paid for another purchase`, { approvalRef: req.payment.approvalRef });
          payment = { method: 'card', approvalRef: req.payment.approvalRef };
        }
        if (this.record(code) !== undefined) fail('VND_ERR_INSTRUMENT_NOT_FOR_SALE', `${code} was sold or used at this store already`, { code });
        precondition();
        const postings: Posting[] = [
          { account: FLOAT_ACCOUNT, token: tt.code, units: -units },
          { account: INSTRUMENTS_ACCOUNT, token: tt.code, units: units },
        ];
        // The float must hold the tokens the certificate is worth: checked before the append.
        planPostings(bookOf(this.ledger.state), postings);
        return { ...base, type: 'instrument.sold', postings, data: { instrument: compact, code, token: tt.code, units: units, priceMinor, currency: tt.currency, payment } } as NewEvent;
      },
      (seq) => this.saleAckOf(seq),
    );
  }

  /** A new certificate of this store's own tokens, signed with its key (which the mall lists). */
  private async signNew(token: string | undefined, units: number | undefined, signing: { kid: string; privateKey: CryptoKey }): Promise<{ tt: TokenType; units: number; compact: string; code: string }> {
    if (token === undefined || units === undefined) fail('CORE_ERR_VALIDATION', 'name the token and units of the certificate, or scan one from stock');
    const vendor = this.ledger.store.vendorId;
    const tt = this.ledger.tokenTypes.get(token) ?? fail('CORE_ERR_TOKEN_UNKNOWN', `unknown token type ${token.slice(0, 20)}`);
    if (tt.issuer !== vendor || tt.kind === 'manufacturer') fail('VND_ERR_INSTRUMENT_NOT_FOR_SALE', `this store signs gift certificates for its own tokens only, and ${tt.code} tokens are issued by ${tt.issuer}`, { token: tt.code });
    checkSpendable(tt, vendor, this.clock());
    const key = this.snapshot().instruments.keys.find((k) => k.kid === signing.kid && k.issuer === vendor && k.kinds.includes('gift'));
    if (key === undefined) fail('VND_ERR_INSTRUMENT_NOT_FOR_SALE', 'the mall\'s key directory does not list this store\'s key for gift certificates yet: other stores could not check one', { kid: signing.kid });
    if (units < 1) fail('CORE_ERR_AMOUNT', 'a gift certificate is worth at least one token');
    const nowS = Math.floor(this.clock().getTime() / 1000);
    const claims = { i: vendor, s: this.newSerial(), t: tt.code, u: units, a: nowS, x: nowS + STORE_CERTIFICATE_LIFE_DAYS * 86_400 };
    return { tt, units, compact: await signInstrument('gift', claims, signing), code: instrumentCode(vendor, claims.s) };
  }

  /**
   * A pre-printed certificate of another issuer (the mall's stock), checked and sold as it
   * is: only while the mall can say nobody sold or used it yet. The store's float gives
   * the tokens it is worth.
   */
  private async fromStock(compact: string): Promise<{ tt: TokenType; units: number; compact: string; code: string }> {
    const instrument = await this.verify(compact);
    if (instrument.kind !== 'gift') fail('VND_ERR_INSTRUMENT_NOT_FOR_SALE', `${instrument.code} is a coupon: coupons are not sold`, { code: instrument.code });
    if (this.record(instrument.code) !== undefined) fail('VND_ERR_INSTRUMENT_NOT_FOR_SALE', `${instrument.code} was sold or used at this store already`, { code: instrument.code });
    const mall = this.requests() ?? fail('VND_ERR_MALL_UNREACHABLE', 'this store is not linked to a mall: certificates from stock are sold only while the mall can say they are unsold');
    const status = await mall.instrumentStatus(instrument.code);
    if (status.state !== 'unsold') fail('VND_ERR_INSTRUMENT_NOT_FOR_SALE', `${instrument.code} is not unsold stock at the mall (${status.state})`, { code: instrument.code, state: status.state });
    const tt = this.ledger.tokenTypes.get(instrument.token) ?? fail('CORE_ERR_TOKEN_UNKNOWN', `unknown token type ${instrument.token}`);
    return { tt, units: instrument.units, compact: instrument.compact, code: instrument.code };
  }

  /**
   * `instrument:void`: a certificate this store sold by mistake, never used, taken back
   * with a supervisor's agreement. The mall agrees first (its void endpoint: nobody
   * redeemed or holds it anywhere); then `instrument.voided` puts its units back into the
   * float and hands the price back (in cash when it was paid in cash). A certificate sold
   * moments ago reaches the mall with its batch first: the store pushes it and waits.
   */
  async void(actor: Actor, req: { key: string; code: string; reason: string; supervisorId: string }, precondition: () => void): Promise<InstrumentVoidAck> {
    const { code } = parseInstrumentCode(req.code);
    const body = { op: 'instrument.void', code, reason: req.reason, supervisor: req.supervisorId };
    const answer = (seq: number) => this.voidAckOf(seq);
    if (this.ledger.knowsKey(req.key)) return this.ledger.commitRequest(actor, req.key, body, () => fail('VND_ERR_INTERNAL', 'a known key is answered, never built'), answer);
    const sold = this.voidable(code);
    const mall = this.requests() ?? fail('VND_ERR_MALL_UNREACHABLE', 'this store is not linked to a mall: a certificate is voided only with the mall\'s agreement');
    const mallKey = `iv.${digest('sha256', req.key, 'hex')}`;
    try {
      await mall.voidInstrument(code, { key: mallKey, reason: req.reason });
    } catch (err) {
      const sync = this.sync();
      if (!isMallposError(err) || err.code !== 'MALL_ERR_INSTRUMENT_UNKNOWN' || sync === null) throw err;
      sync.pushSoon();
      await waitFor(() => sync.ackedEventSeq >= sold.seq, VOID_PUSH_WAIT_MS);
      await mall.voidInstrument(code, { key: mallKey, reason: req.reason });
    }
    return this.ledger.commitRequest(
      actor,
      req.key,
      body,
      (base) => {
        const s = this.voidable(code);
        precondition();
        const d = s.data;
        const postings: Posting[] = [
          { account: INSTRUMENTS_ACCOUNT, token: d.token, units: -d.units },
          { account: FLOAT_ACCOUNT, token: d.token, units: d.units },
        ];
        const cashRefundMinor = d.payment.method === 'cash' ? d.priceMinor : 0;
        return { ...base, type: 'instrument.voided', postings, data: { code, token: d.token, units: d.units, soldSeq: s.seq, reason: req.reason, supervisor: req.supervisorId, cashRefundMinor } } as NewEvent;
      },
      answer,
    );
  }

  /** The sale of a certificate this store may void: sold here, never used, not voided. Synchronous, for the journal's check too. */
  private voidable(code: string): { seq: number; data: { token: string; units: number; priceMinor: number; payment: TokenPayment } } {
    const r = this.record(code);
    if (r === undefined || r.soldSeq === null) fail('VND_ERR_INSTRUMENT_NOT_VOIDABLE', `${code} was not sold by this store`, { code });
    if (r.voided) fail('VND_ERR_INSTRUMENT_NOT_VOIDABLE', `${code} was voided already`, { code });
    if (r.redeemedUnits > 0) fail('VND_ERR_INSTRUMENT_NOT_VOIDABLE', `${code} was used here: ${formatUnits(r.redeemedUnits, r.token)} taken`, { code });
    const sold = this.soldEvents.get(code);
    if (sold === undefined || sold.seq !== r.soldSeq) fail('VND_ERR_INSTRUMENT_NOT_VOIDABLE', `read ${code}'s sale first`, { code });
    return sold;
  }

  /** The sales of certificates read from the journal for a void (bounded by what is voided). */
  private readonly soldEvents = new Map<string, { seq: number; data: { token: string; units: number; priceMinor: number; payment: TokenPayment } }>();

  /** Reads a certificate's sale from the journal before a void is judged. */
  async loadSale(code: string): Promise<void> {
    const { code: c } = parseInstrumentCode(code);
    const r = this.record(c);
    if (r === undefined || r.soldSeq === null || this.soldEvents.get(c)?.seq === r.soldSeq) return;
    const event = await this.ledger.readEvent(r.soldSeq);
    if (event.type !== 'instrument.sold') return;
    this.soldEvents.set(c, { seq: event.seq, data: { token: event.data.token, units: event.data.units, priceMinor: event.data.priceMinor, payment: event.data.payment } });
    if (this.soldEvents.size > RELEASED_REMEMBERED_MAX) this.soldEvents.delete(this.soldEvents.keys().next().value as string);
  }

  private async voidAckOf(seq: number): Promise<InstrumentVoidAck> {
    const event = await this.ledger.readEvent(seq);
    if (event.type !== 'instrument.voided') fail('VND_ERR_IDEMPOTENCY_CONFLICT', 'this request key was already used for a different request');
    const d = event.data;
    return { seq: event.seq, at: event.at, code: d.code, token: d.token, units: d.units, cashRefundMinor: d.cashRefundMinor, currency: this.ledger.store.currency };
  }

  private async saleAckOf(seq: number): Promise<InstrumentSaleAck> {
    const event = await this.ledger.readEvent(seq);
    if (event.type !== 'instrument.sold') fail('VND_ERR_IDEMPOTENCY_CONFLICT', 'this request key was already used for a different request');
    const d = event.data;
    const payload = JSON.parse(Buffer.from(d.instrument.split('.')[1] ?? '', 'base64url').toString('utf8')) as { x: number };
    return { seq: event.seq, at: event.at, code: d.code, instrument: d.instrument, token: d.token, units: d.units, priceMinor: d.priceMinor, currency: d.currency, expiresAt: new Date(payload.x * 1000).toISOString(), payment: d.payment };
  }
}

/** How long a void waits for the batch that sold the certificate to reach the mall. */
const VOID_PUSH_WAIT_MS = 5_000;

async function waitFor(done: () => boolean, boundMs: number): Promise<void> {
  const end = Date.now() + boundMs;
  while (!done() && Date.now() < end) await new Promise((r) => setTimeout(r, 25));
}

/** The store's time for a crash test to stop at (see vendor-server/economy/wallet.ts). */
function stopHere(point: 'instrument-reserved'): void {
  if (process.env[INSTRUMENT_STOP_AT_ENV] === point) process.kill(process.pid, 'SIGKILL');
}
