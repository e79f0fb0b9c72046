import { parse, type FlattenedJws } from '../../core/index.ts';
import { lotBidRequest, type BidAck, type LotView, type MallLotBidAnswer, type MallLotReceipt, type MallLotView } from '../../core/auctions.ts';
import type { AccessStore, PinAuditEntry } from '../access.ts';
import type { Actor, LedgerService } from '../ledger/service.ts';
import type { Logger } from '../../platform/logger.ts';
import { checkKeyOwner } from '../cashier-day/socket.ts';
import type { AuctionService } from './service.ts';
import { mallLotBidRequest, type MallLotForwarder } from './mall-lots.ts';

/** The auction events a till may send. */
export const AUCTION_EVENTS = ['lots:list', 'lot:bid', 'mall-lots:list', 'mall-lot:get', 'mall-lot:bid'] as const;

export interface AuctionSocketDeps {
  on: (event: (typeof AUCTION_EVENTS)[number], listener: (...args: unknown[]) => void) => void;
  handle: <Res>(event: string, run: (payload: unknown) => Promise<Res> | Res) => (first: unknown, second: unknown) => void;
  terminalId: string;
  actor: () => Actor;
  needCashier: (key: string) => Promise<void>;
  ledger: LedgerService;
  access: AccessStore;
  auctions: AuctionService;
  /** Mall-wide lots, forwarded to the mall while it answers. */
  mallLots: MallLotForwarder;
  audit: (entry: PinAuditEntry) => void;
  logger: Logger;
}

/**
 * A till's side of the auctions: the lots, and a bid for the customer whose card the
 * cashier scanned. As with a payment, new units worth more than the store's limit need
 * the PIN of a customer who chose one; a retry of a key already used moves nothing and
 * needs none.
 */
export function registerAuctionEvents(deps: AuctionSocketDeps): void {
  const { ledger, access, auctions, terminalId } = deps;
  const keyPrefix = `${terminalId}:`;
  deps.on('lots:list', deps.handle<LotView[]>('lots:list', () => auctions.list()));
  deps.on(
    'lot:bid',
    deps.handle<BidAck>('lot:bid', async (p) => {
      const req = parse(lotBidRequest, p);
      checkKeyOwner(req.key, terminalId, keyPrefix);
      await deps.needCashier(req.key);
      const input = { key: req.key, lotId: req.lotId, card: req.card, units: req.units };
      const limit = ledger.customerPinAboveMinor;
      if (limit !== null && !ledger.knowsKey(req.key)) {
        const customerId = ledger.customerIdByCard(req.card);
        if (access.customerHasPin(customerId)) {
          if (req.customerPin === undefined) return auctions.bid(deps.actor(), input, { tokenValueLimitMinor: limit });
          await access.verifyCustomerPin(customerId, req.customerPin, { terminalId, audit: deps.audit });
        }
      }
      const ack = await auctions.bid(deps.actor(), input);
      // Every bid is in the journal; the log names one only when asked for detail.
      deps.logger.debug({ terminal: terminalId, lotId: ack.lotId, seq: ack.seq, units: ack.units }, 'bid placed');
      return ack;
    }),
  );
  // Mall lots: the mall checks the card's wallet PIN and holds the bid in the wallet; the store keeps nothing.
  deps.on('mall-lots:list', deps.handle<MallLotView[]>('mall-lots:list', () => deps.mallLots.list()));
  deps.on('mall-lot:get', deps.handle<MallLotView & { receipt: MallLotReceipt | null; receiptJws: FlattenedJws | null }>('mall-lot:get', (p) => deps.mallLots.lot(p)));
  deps.on(
    'mall-lot:bid',
    deps.handle<MallLotBidAnswer>('mall-lot:bid', async (p) => {
      const req = parse(mallLotBidRequest, p);
      checkKeyOwner(req.key, terminalId, keyPrefix);
      await deps.needCashier(req.key);
      const ack = await deps.mallLots.bid(req);
      deps.logger.info({ terminal: terminalId, lotId: ack.lotId, units: ack.units }, 'mall lot bid forwarded');
      return ack;
    }),
  );
}
