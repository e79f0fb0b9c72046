import { hash as digest } from 'node:crypto';
import { z } from 'zod';
import { fail, idempotencyKey, parse, parseCardNumber, pinCode, scanCode, tokenCode, type ClientToServerEvents, type CustomerDataView } from '../../core/index.ts';
import { positiveUnits } from '../../core/economy-requests.ts';
import { checkKeyOwner } from '../cashier-day/socket.ts';
import type { Actor } from '../ledger/service.ts';
import type { MallRequests } from '../sync/mall-requests.ts';
import type { ExchangeService } from './exchange.ts';
import type { EconomyConnection } from './socket.ts';
import type { WalletService } from './wallet.ts';

/** The services behind exchange, the mall wallet and customer-data requests. */
export interface XchgServices {
  exchange: ExchangeService;
  wallet: WalletService;
  mall: () => MallRequests | null;
}

/** The exchange, wallet and customer-data events a terminal may send. */
export const XCHG_EVENTS: readonly (keyof ClientToServerEvents)[] = ['exchange:quote', 'exchange:commit', 'wallet:balance', 'wallet:move', 'wallet:pin', 'customer:data-request'];

const source = z.enum(['card', 'wallet']);
const exchangeFrom = z.strictObject({ token: tokenCode, units: positiveUnits('units to exchange'), source });

export const exchangeQuoteRequest = z.strictObject({ card: scanCode, from: exchangeFrom, to: tokenCode });
// Wallet PINs go to the mall and nowhere else: no request hash, journal or log line holds them.
export const exchangeCommitRequest = z.strictObject({ key: idempotencyKey, card: scanCode, from: exchangeFrom, to: tokenCode, expectUnits: positiveUnits('expected units'), walletPin: pinCode.optional() });
export const walletBalanceRequest = z.strictObject({ card: scanCode });
export const walletMoveRequest = z.strictObject({
  key: idempotencyKey,
  card: scanCode,
  direction: z.enum(['to-wallet', 'from-wallet']),
  token: tokenCode,
  units: positiveUnits('units to move'),
  walletPin: pinCode.optional(),
  newWalletPin: pinCode.optional(),
});
export const walletPinRequest = z.strictObject({ key: idempotencyKey, card: scanCode, pin: pinCode, oldPin: pinCode.optional() });
export const customerDataRequest = z.strictObject({ key: idempotencyKey, card: scanCode });

export interface XchgSocketContext extends EconomyConnection {
  /** The rule that a money event of this till needs an open shift (when the store asks for shifts). */
  precondition: (actor: Actor) => void;
  exchange: ExchangeService;
  wallet: WalletService;
  mall: () => MallRequests | null;
}

/**
 * The handlers of one terminal connection for tokens between stores. Money-moving
 * requests carry an idempotency key like `sale:commit`, and a retry gets the original
 * answer whoever is signed in.
 */
export function registerXchg(ctx: XchgSocketContext): void {
  const { on, handle, terminalId, exchange, wallet } = ctx;
  on('exchange:quote', handle('exchange:quote', (p) => exchange.quote(parse(exchangeQuoteRequest, p))));
  on(
    'exchange:commit',
    handle('exchange:commit', async (p) => {
      const req = parse(exchangeCommitRequest, p);
      checkKeyOwner(req.key, terminalId);
      await ctx.needCashier(req.key);
      const who = ctx.actor();
      const ack = await exchange.commit(who, req, () => ctx.precondition(who));
      ctx.logger.info({ terminal: terminalId, exchangeId: ack.exchangeId, seq: ack.seq, source: ack.source, offline: ack.offline }, 'exchange committed');
      return ack;
    }),
  );
  on('wallet:balance', handle('wallet:balance', (p) => wallet.balance(parse(walletBalanceRequest, p).card)));
  on(
    'wallet:move',
    handle('wallet:move', async (p) => {
      const req = parse(walletMoveRequest, p);
      checkKeyOwner(req.key, terminalId);
      await ctx.needCashier(req.key);
      const who = ctx.actor();
      const ack = await wallet.move(who, req, () => ctx.precondition(who));
      ctx.logger.info({ terminal: terminalId, moveId: ack.moveId, seq: ack.seq, direction: ack.direction }, 'wallet move committed');
      return ack;
    }),
  );
  on(
    'wallet:pin',
    handle('wallet:pin', async (p) => {
      const req = parse(walletPinRequest, p);
      checkKeyOwner(req.key, terminalId);
      await ctx.needCashier(req.key);
      const answer = await wallet.setPin(req);
      ctx.logger.info({ terminal: terminalId, cashier: ctx.actor().cashier, card: answer.card, change: req.oldPin !== undefined }, 'wallet PIN set at the mall');
      return answer;
    }),
  );
  on(
    'customer:data-request',
    handle('customer:data-request', async (p): Promise<CustomerDataView> => {
      const req = parse(customerDataRequest, p);
      checkKeyOwner(req.key, terminalId);
      await ctx.needCashier(req.key);
      const card = parseCardNumber(req.card);
      const mall = ctx.mall() ?? fail('VND_ERR_MALL_UNREACHABLE', 'this store is not linked to a mall');
      // The mall's key is derived from the till's, so a retry is the same request there: one toll.
      const view = await mall.customerData({ key: dataRequestKey(req.key), card });
      ctx.logger.info({ terminal: terminalId, cashier: ctx.actor().cashier, requestId: view.requestId, home: view.home.vendorId, tollMinor: view.tollMinor }, 'customer data bought from the mall');
      return view;
    }),
  );
}

/** The mall idempotency key of a till's customer-data request. */
export function dataRequestKey(tillKey: string): string {
  return `cd.${digest('sha256', tillKey, 'hex')}`;
}
