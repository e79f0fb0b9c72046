import { z } from 'zod';
import { fail, flattenedJwsSchema, type FlattenedJws, idempotencyKey, MallposError, parse, pinCode, scanCode, tokenCode } from '../../core/index.ts';
import { MALL_LOT_ID_PATTERN, mallLotId, type MallLotBidAnswer, type MallLotReceipt, type MallLotView } from '../../core/auctions.ts';
import type { MallRequests } from '../sync/mall-requests.ts';

/**
 * The store's side of mall-wide lots: the till asks for the mall's lots and forwards its
 * customers' bids to the mall, which holds each bid in the customer's mall wallet (with
 * the wallet PIN). Mall lots are online only: nothing about them is kept or journalled at
 * the store, so a mall that cannot be reached is refused at once with
 * VND_ERR_MALL_LOT_OFFLINE and nothing was held. A bid's key is the till's, passed on as
 * the mall's idempotency key: a retry through this store is answered by the mall with its
 * stored answer. The mall's answers are checked against the contract before a till sees
 * them; anything else is the mall not answering.
 */

/** A bid at a till on a mall lot: the scanned card, the units, the customer's wallet PIN. */
export const mallLotBidRequest = z.strictObject({
  key: idempotencyKey,
  lotId: mallLotId,
  card: scanCode,
  units: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
  walletPin: pinCode.optional(),
});

export const mallLotRequest = z.strictObject({ lotId: mallLotId });

/** The most mall lots a till is shown (the mall's answer is bounded by its size anyway). */
export const MALL_LOTS_SHOWN_MAX = 200;

const units = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const when = z.string().max(40);
const shortText = z.string().max(200);
const unitsRecord = z.record(tokenCode, units);

const viewSchema = z.object({
  lotId: z.string().regex(MALL_LOT_ID_PATTERN),
  mall: z.literal(true),
  title: shortText,
  token: tokenCode,
  incrementUnits: units,
  opensAt: when,
  closesAt: when,
  status: z.enum(['scheduled', 'open', 'closed', 'cancelled']),
  high: z.object({ units, card: shortText, vendor: shortText }).nullable(),
  bids: units,
  minBidUnits: units.nullable(),
  reserveMet: z.boolean(),
  result: z
    .object({ sold: z.boolean(), saleId: shortText.nullable(), units: units.nullable(), card: shortText.nullable(), vendor: shortText.nullable(), closedAt: when.nullable() })
    .nullable(),
});
const receiptSchema = z.object({ saleId: shortText, lotId: z.string().regex(MALL_LOT_ID_PATTERN), title: shortText, token: tokenCode, units, card: shortText, vendor: shortText, closedAt: when, closedSeq: units });
const bidAnswerSchema = z.object({
  lotId: z.string().regex(MALL_LOT_ID_PATTERN),
  card: shortText,
  units,
  at: when,
  closesAt: when,
  nextMinBidUnits: units,
  wallet: z.object({ card: shortText, balances: unitsRecord, held: unitsRecord, asOf: when }),
});

function checked<T extends z.ZodType>(schema: T, answer: unknown, what: string): z.output<T> {
  const r = schema.safeParse(answer);
  if (!r.success) throw new MallposError('VND_ERR_MALL_LOT_OFFLINE', `the mall answered ${what} with something else than the contract`);
  return r.data;
}

/** Passes the till's mall-lot requests on to the mall; `mall()` is null for a store not linked to one. */
export class MallLotForwarder {
  constructor(private readonly mall: () => MallRequests | null) {}

  private client(): MallRequests {
    const m = this.mall();
    if (m === null) fail('VND_ERR_MALL_LOT_OFFLINE', 'this store is not linked to a mall: it has no mall lots');
    return m;
  }

  async list(): Promise<MallLotView[]> {
    const answer = checked(z.object({ lots: z.array(viewSchema).max(10_000) }), await this.client().mallLots(), 'the lots request');
    return answer.lots.slice(-MALL_LOTS_SHOWN_MAX) as MallLotView[];
  }

  /** A lot and, when this store's customer won it, the mall's record of the sale to print at pickup, with the mall's signature over it. */
  async lot(payload: unknown): Promise<MallLotView & { receipt: MallLotReceipt | null; receiptJws: FlattenedJws | null }> {
    const { lotId } = parse(mallLotRequest, payload);
    const answer = checked(viewSchema.extend({ receipt: receiptSchema.nullable(), receiptJws: flattenedJwsSchema.nullable() }), await this.client().mallLot(lotId), 'the lot request');
    if (answer.lotId !== lotId) throw new MallposError('VND_ERR_MALL_LOT_OFFLINE', 'the mall answered with another lot than the one asked for');
    return answer as MallLotView & { receipt: MallLotReceipt | null; receiptJws: FlattenedJws | null };
  }

  async bid(req: z.output<typeof mallLotBidRequest>): Promise<MallLotBidAnswer> {
    const answer = checked(bidAnswerSchema, await this.client().mallLotBid(req.lotId, { key: req.key, card: req.card, units: req.units, pin: req.walletPin }), 'the bid');
    if (answer.lotId !== req.lotId || answer.card !== req.card || answer.units !== req.units || answer.wallet.card !== req.card) {
      throw new MallposError('VND_ERR_MALL_LOT_OFFLINE', 'the mall answered with another bid than the one sent');
    }
    return answer;
  }
}
