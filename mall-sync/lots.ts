import { z } from 'zod';
import { bodyHash, type FlattenedJws, fail, idempotencyKey, isMallposError, maskCard, MallposError, pinCode, text, tokenCode } from '../core/index.ts';
import { checkBid, LOT_DURATION_MS_MAX, MALL_LOT_ID_PATTERN, makeMallLotId, minimumBid, SNIPE_EXTEND_S_DEFAULT, SNIPE_S_MAX, SNIPE_WINDOW_S_DEFAULT, MALL_LOT_RECEIPT_TYP, type LotState, type MallLotBidAnswer, type MallLotReceipt, type MallLotView } from '../core/auctions.ts';
import { cardSchema, posInt } from './economy-judge.ts';
import type { NewMallEvent } from './events.ts';
import type { MallLotBidder, MallLotRecord, MallLotSpec } from './lots-state.ts';
import { parseAdmin } from './schemas.ts';
import { mallStopHere } from './stop-at.ts';
import { own } from './store/dict.ts';
import { heldUnits, walletUnits, type MallState } from './store/state.ts';
import type { MallStore } from './store/store.ts';
import { storedAnswer, walletView, type RegistryChange, type WalletService } from './wallet.ts';

/**
 * Mall-wide lots (claims 24 and 39 across the mall): the operator lists a lot in mall
 * tokens; any member store forwards its customers' bids as signed requests while it
 * reaches the mall. A bid holds its units in the bidder's mall wallet (the wallet PIN is
 * needed, wrong PINs count as for any hold) and releases the bid it beats in the same
 * mall event, so a wallet only ever has the high bid held for a lot. The rules of a bid
 * are the store lots' (core/auctions.ts): the least bid, the increment, anti-sniping.
 *
 * The close is a mall event made once: every change runs inside the store's exclusive
 * section (on PostgreSQL under the mall's write lock, the state caught up first) and
 * checks again that the lot is open, so a timer in each of several mall processes, or a
 * restart after the close time, closes a lot exactly once. A sold lot's held units leave
 * the winner's wallet: the mall is the seller, paid in its own tokens, so no money moves
 * between parties (the face value of mall tokens was paid to the mall when a store bought
 * them); the wallet check counts those units as sold by the mall.
 */

const units = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const isoTime = z.iso.datetime({ offset: true });

export const mallLotCreateRequest = z.strictObject({
  key: idempotencyKey,
  title: text(1, 80),
  token: tokenCode,
  reserveUnits: units,
  incrementUnits: posInt,
  /** Absent: open now. */
  opensAt: isoTime.optional(),
  closesAt: isoTime,
  snipeWindowSeconds: z.number().int().min(0).max(SNIPE_S_MAX).optional(),
  extendSeconds: z.number().int().min(0).max(SNIPE_S_MAX).optional(),
});

export const mallLotCancelRequest = z.strictObject({ reason: text(1, 200) });

/** A store's bid for its customer: the card, the units and the card's wallet PIN. */
export const mallLotBidRequest = z.strictObject({
  key: idempotencyKey,
  card: cardSchema,
  units: posInt,
  pin: pinCode.optional(),
});

/** How often the close timer looks for lots that are due. */
export const LOT_CLOSE_SWEEP_MS = 1_000;
/**
 * Lots a store is shown (the open ones, then those closed in the last day, newest first),
 * and lots open at once: each is in every store's answer, which a store reads only up to
 * a bounded size.
 */
export const MALL_LOTS_LISTED_MAX = 100;
export const MALL_LOTS_OPEN_MAX = 100;
const RECENT_LOT_MS = 24 * 3_600_000;

/** What the operator sees: the view with the reserve and the bidders' full cards. */
export interface MallLotDetail extends MallLotView {
  reserveUnits: number;
  snipeWindowSeconds: number;
  extendSeconds: number;
  highCard: string | null;
  cancelReason: string | null;
  closedSeq: number | null;
}

/** The store lots' rules read a lot in their own shape: the mall lot seen through it. */
function asLotState(lot: MallLotRecord): LotState {
  const { spec } = lot;
  return {
    spec: { ...spec, gtin: '', product: false, buyNowUnits: null },
    status: lot.status,
    closesAt: lot.closesAt,
    high: lot.high === null ? null : { customer: lot.high.card, units: lot.high.units, seq: lot.high.seq, terminal: null },
    bids: lot.bids,
    closedSeq: lot.closedSeq,
    saleId: lot.saleId,
  };
}

/** The store lots' refusals under the mall's codes. */
const MALL_CODES: Readonly<Record<string, 'MALL_ERR_LOT_UNKNOWN' | 'MALL_ERR_LOT_CLOSED' | 'MALL_ERR_BID_TOO_LOW'>> = {
  VND_ERR_LOT_UNKNOWN: 'MALL_ERR_LOT_UNKNOWN',
  VND_ERR_LOT_CLOSED: 'MALL_ERR_LOT_CLOSED',
  VND_ERR_BID_TOO_LOW: 'MALL_ERR_BID_TOO_LOW',
};

function mallBidCheck(lot: MallLotRecord | undefined, bidUnits: number, nowMs: number): { closesAt: string } {
  if (lot === undefined) fail('MALL_ERR_LOT_UNKNOWN', 'the mall has no such lot');
  try {
    return checkBid(asLotState(lot), bidUnits, nowMs);
  } catch (err) {
    const code = isMallposError(err) ? MALL_CODES[err.code] : undefined;
    if (code === undefined || !isMallposError(err)) throw err;
    throw new MallposError(code, err.message.replace(/^lot /, 'mall lot '), err.details);
  }
}

export function mallLotView(lot: MallLotRecord, nowMs: number): MallLotView {
  const state = asLotState(lot);
  const status = lot.status !== 'open' ? lot.status : nowMs < Date.parse(lot.spec.opensAt) ? 'scheduled' : 'open';
  const sold = lot.status === 'closed' && lot.saleId !== null && lot.high !== null;
  return {
    lotId: lot.spec.lotId,
    mall: true,
    title: lot.spec.title,
    token: lot.spec.token,
    incrementUnits: lot.spec.incrementUnits,
    opensAt: lot.spec.opensAt,
    closesAt: lot.closesAt,
    status,
    high: lot.high === null ? null : { units: lot.high.units, card: maskCard(lot.high.card), vendor: lot.high.vendor },
    bids: lot.bids,
    minBidUnits: status === 'open' || status === 'scheduled' ? minimumBid(state) : null,
    reserveMet: lot.high !== null && lot.high.units >= lot.spec.reserveUnits,
    result:
      lot.status === 'closed'
        ? {
            sold,
            saleId: lot.saleId,
            units: sold ? (lot.high?.units ?? null) : null,
            card: sold && lot.high !== null ? maskCard(lot.high.card) : null,
            vendor: sold ? (lot.high?.vendor ?? null) : null,
            closedAt: lot.closedAt,
          }
        : null,
  };
}

export class MallLotService {
  private timer: NodeJS.Timeout | null = null;
  private sweeping: Promise<number> | null = null;

  constructor(
    private readonly store: MallStore,
    private readonly change: RegistryChange,
    private readonly wallet: WalletService,
    /** Signs a JSON value with the mall key (the winner's receipt). */
    private readonly sign: (value: unknown, typ: string) => Promise<FlattenedJws>,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  private get state(): Readonly<MallState> {
    return this.store.state;
  }

  private lot(id: string): MallLotRecord {
    const lot = MALL_LOT_ID_PATTERN.test(id) ? own(this.state.mallLots.lots, id) : undefined;
    if (lot === undefined) fail('MALL_ERR_LOT_UNKNOWN', `the mall has no lot ${id.slice(0, 40)}`);
    return lot;
  }

  // ---- the operator ------------------------------------------------------------------

  create(body: unknown): Promise<MallLotDetail> {
    const input = parseAdmin(mallLotCreateRequest, body);
    const { key, ...rest } = input;
    const hash = bodyHash({ op: 'mall-lot', ...rest });
    return this.change(() => {
      const prior = own(this.state.mallLots.keys, key);
      if (prior !== undefined) {
        if (prior.bodyHash !== hash) fail('MALL_ERR_VALIDATION', `the key ${key} was already used for a different lot`, { key });
        return { events: [], result: () => this.detail(prior.lotId) };
      }
      const tt = own(this.state.tokenTypes, input.token);
      if (tt === undefined || tt.kind !== 'mall') fail('MALL_ERR_LOT_INVALID', `a mall lot is listed in mall tokens: ${input.token} is not one`, { token: input.token });
      const now = this.clock();
      const opensAt = input.opensAt === undefined ? now.toISOString() : new Date(input.opensAt).toISOString();
      const closesAt = new Date(input.closesAt).toISOString();
      if (Date.parse(closesAt) <= Math.max(now.getTime(), Date.parse(opensAt))) fail('MALL_ERR_LOT_INVALID', 'a mall lot closes after it opens and after now', { closesAt });
      if (Date.parse(closesAt) - now.getTime() > LOT_DURATION_MS_MAX) fail('MALL_ERR_LOT_INVALID', 'a mall lot closes within 90 days', { closesAt });
      if (Object.keys(this.state.mallLots.open).length >= MALL_LOTS_OPEN_MAX) fail('MALL_ERR_LOT_INVALID', `at most ${MALL_LOTS_OPEN_MAX} mall lots are open at once`);
      const lotId = makeMallLotId(this.state.mallLots.serial + 1);
      const spec: MallLotSpec = {
        lotId,
        title: input.title,
        token: input.token,
        reserveUnits: input.reserveUnits,
        incrementUnits: input.incrementUnits,
        opensAt,
        closesAt,
        snipeWindowSeconds: input.snipeWindowSeconds ?? SNIPE_WINDOW_S_DEFAULT,
        extendSeconds: input.extendSeconds ?? SNIPE_EXTEND_S_DEFAULT,
      };
      return { events: [{ type: 'mall-lot.opened', at: now.toISOString(), data: { ...spec, key, bodyHash: hash } }], result: () => this.detail(lotId) };
    });
  }

  list(): MallLotDetail[] {
    return Object.keys(this.state.mallLots.lots)
      .sort()
      .map((id) => this.detail(id));
  }

  detail(id: string): MallLotDetail {
    const lot = this.lot(id);
    return {
      ...mallLotView(lot, this.clock().getTime()),
      reserveUnits: lot.spec.reserveUnits,
      snipeWindowSeconds: lot.spec.snipeWindowSeconds,
      extendSeconds: lot.spec.extendSeconds,
      highCard: lot.high?.card ?? null,
      cancelReason: lot.cancelReason,
      closedSeq: lot.closedSeq,
    };
  }

  /** Cancels an open lot; the high bid's hold is released in the same event. A cancelled lot answers as it is. */
  cancel(id: string, body: unknown): Promise<MallLotDetail> {
    const input = parseAdmin(mallLotCancelRequest, body);
    return this.change(() => {
      const lot = this.lot(id);
      if (lot.status === 'cancelled') return { events: [], result: () => this.detail(id) };
      if (lot.status === 'closed') fail('MALL_ERR_LOT_CLOSED', `mall lot ${id} has closed: it cannot be cancelled`);
      const released: MallLotBidder | null = lot.high === null ? null : { card: lot.high.card, vendor: lot.high.vendor, units: lot.high.units };
      return { events: [{ type: 'mall-lot.cancelled', at: this.clock().toISOString(), data: { lotId: id, reason: input.reason, released } }], result: () => this.detail(id) };
    });
  }

  // ---- the stores ----------------------------------------------------------------------

  /** The open lots and those closed in the last day, newest first, bounded. */
  views(): MallLotView[] {
    const now = this.clock().getTime();
    const ids = Object.keys(this.state.mallLots.lots).sort();
    const out: MallLotView[] = [];
    for (let i = ids.length - 1; i >= 0 && out.length < MALL_LOTS_LISTED_MAX; i--) {
      const lot = this.lot(ids[i] as string);
      if (lot.status !== 'open' && (lot.closedAt === null || now - Date.parse(lot.closedAt) > RECENT_LOT_MS)) continue;
      out.push(mallLotView(lot, now));
    }
    return out;
  }

  /**
   * A lot as a store sees it; the store the winning bid came through also gets the
   * receipt, signed with the mall key (anyone with the mall's public key can check it).
   */
  async viewFor(vendor: string, id: string): Promise<MallLotView & { receipt: MallLotReceipt | null; receiptJws: FlattenedJws | null }> {
    const lot = this.lot(id);
    const view = mallLotView(lot, this.clock().getTime());
    const receipt: MallLotReceipt | null =
      lot.status === 'closed' && lot.high !== null && lot.high.vendor === vendor && lot.saleId !== null && lot.closedAt !== null && lot.closedSeq !== null
        ? { saleId: lot.saleId, lotId: id, title: lot.spec.title, token: lot.spec.token, units: lot.high.units, card: lot.high.card, vendor, closedAt: lot.closedAt, closedSeq: lot.closedSeq }
        : null;
    return { ...view, receipt, receiptJws: receipt === null ? null : await this.sign(receipt, MALL_LOT_RECEIPT_TYP) };
  }

  bid(vendor: string, id: string, body: unknown): Promise<MallLotBidAnswer> {
    const input = parseAdmin(mallLotBidRequest, body);
    // The PIN is no part of the request's identity: a retry is answered whatever PIN it carries.
    const { pin, ...identity } = input;
    const hash = bodyHash({ op: 'mall-lot-bid', lotId: id, ...identity });
    const replay = () => storedAnswer(this.state, vendor, input.key, hash);
    // A bid on a lot that does not exist or takes no bids is refused before any PIN is checked.
    if (replay() === null) mallBidCheck(MALL_LOT_ID_PATTERN.test(id) ? own(this.state.mallLots.lots, id) : undefined, input.units, this.clock().getTime());
    return this.wallet.pinnedChange(vendor, input.card, pin, replay, () => {
      const now = this.clock();
      const lot = MALL_LOT_ID_PATTERN.test(id) ? own(this.state.mallLots.lots, id) : undefined;
      const { closesAt } = mallBidCheck(lot, input.units, now.getTime());
      if (lot === undefined) throw new Error('assertion failed: a checked lot exists');
      const { token } = lot.spec;
      // A bidder raising their own bid needs only the difference: the old hold is released in the same event.
      const ownHeld = lot.high !== null && lot.high.card === input.card ? lot.high.units : 0;
      const available = walletUnits(this.state, input.card, token) - heldUnits(this.state, input.card, token) + ownHeld;
      if (available < input.units) {
        fail('MALL_ERR_WALLET_INSUFFICIENT', `the wallet of card ${input.card} has ${available} ${token} available, ${input.units} bid`, { card: input.card, token, availableUnits: available });
      }
      const previous: MallLotBidder | null = lot.high === null ? null : { card: lot.high.card, vendor: lot.high.vendor, units: lot.high.units };
      const after = walletView(this.state, input.card, now.toISOString());
      after.held[token] = (own(after.held, token) ?? 0) + input.units - ownHeld;
      const answer: MallLotBidAnswer = {
        lotId: id,
        card: input.card,
        units: input.units,
        at: now.toISOString(),
        closesAt,
        nextMinBidUnits: input.units + lot.spec.incrementUnits,
        wallet: after,
      };
      const events: NewMallEvent[] = [{ type: 'mall-lot.bid', at: now.toISOString(), data: { lotId: id, vendor, card: input.card, units: input.units, previous, closesAt, key: input.key, bodyHash: hash, answer } }];
      return { events, result: () => answer };
    });
  }

  // ---- the close ---------------------------------------------------------------------------

  /** The open lots due by now. */
  private due(now: number): string[] {
    const out: string[] = [];
    for (const [id, closesAt] of Object.entries(this.state.mallLots.open)) if (Date.parse(closesAt) <= now) out.push(id);
    return out.sort();
  }

  /** Closes every open lot past its time; resolves with how many it closed. */
  closeDue(): Promise<number> {
    this.sweeping ??= this.closeNow().finally(() => {
      this.sweeping = null;
    });
    return this.sweeping;
  }

  private async closeNow(): Promise<number> {
    await this.store.flushed();
    if (this.due(this.clock().getTime()).length === 0) return 0;
    return this.change(() => {
      const now = this.clock();
      // Checked again inside the change: another mall process may have closed them.
      const ids = this.due(now.getTime());
      let saleSerial = this.state.mallLots.saleSerial;
      const events: NewMallEvent[] = ids.map((lotId) => {
        const lot = this.lot(lotId);
        const high: MallLotBidder | null = lot.high === null ? null : { card: lot.high.card, vendor: lot.high.vendor, units: lot.high.units };
        if (high !== null && high.units >= lot.spec.reserveUnits) {
          saleSerial += 1;
          return { type: 'mall-lot.closed', at: now.toISOString(), data: { lotId, outcome: 'sold', winner: high, released: null, saleId: `mls-${String(saleSerial).padStart(6, '0')}` } };
        }
        return { type: 'mall-lot.closed', at: now.toISOString(), data: { lotId, outcome: 'unsold', winner: null, released: high, saleId: null } };
      });
      return {
        events,
        result: () => {
          mallStopHere('mall-lot-close-durable');
          return ids.length;
        },
      };
    });
  }

  /** Starts the close timer (the start-up close is the caller's `closeDue()`, before it serves anyone). */
  startTimer(onError: (err: unknown) => void): void {
    this.timer = setInterval(() => {
      this.closeDue().catch(onError);
    }, LOT_CLOSE_SWEEP_MS);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    await this.sweeping?.catch(() => undefined);
  }
}

