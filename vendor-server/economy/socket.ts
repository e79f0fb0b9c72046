import { parse, type ClientToServerEvents } from '../../core/index.ts';
import { customerRegisterRequest, tokensSellRequest } from '../../core/economy-requests.ts';
import type { Logger } from '../../platform/logger.ts';
import type { CashierDayService } from '../cashier-day/service.ts';
import { checkKeyOwner } from '../cashier-day/socket.ts';
import type { Actor, LedgerService } from '../ledger/service.ts';
import { registerAtTill } from './accounts.ts';
import { sellTokens } from './token-sales.ts';

/** The account and token-sale events a terminal may send. */
export const SELL_EVENTS: readonly (keyof ClientToServerEvents)[] = ['customer:register', 'tokens:sell'];

/** What the economy's handlers take from one terminal connection. */
export interface EconomyConnection {
  on: (event: string, listener: (first: unknown, second: unknown) => void) => void;
  handle: <Res>(event: string, run: (payload: unknown) => Promise<Res> | Res) => (first: unknown, second: unknown) => void;
  terminalId: string;
  actor: () => Actor;
  /** Waits for a sign-in in progress, then refuses a new key without a signed-in cashier. */
  needCashier: (key: string) => Promise<void>;
  logger: Logger;
}

export interface SellSocketContext extends EconomyConnection {
  ledger: LedgerService;
  cashierDay: CashierDayService;
}

/**
 * Opening accounts and selling tokens at the till. Both name the signed-in cashier and
 * carry the till's idempotency key like `sale:commit`; a token sale, which puts cash in
 * the drawer, is made inside the cashier's own open shift where the store requires shifts.
 */
export function registerSellEvents(ctx: SellSocketContext): void {
  const { on, handle, terminalId, ledger, cashierDay, logger } = ctx;

  on('customer:register', handle('customer:register', async (p) => {
    const req = parse(customerRegisterRequest, p);
    checkKeyOwner(req.key, terminalId);
    await ctx.needCashier(req.key);
    const view = await registerAtTill(ledger, ctx.actor(), req);
    logger.info({ terminal: terminalId, customer: view.id, consent: req.consent }, 'customer registered at the till');
    return view;
  }));

  on('tokens:sell', handle('tokens:sell', async (p) => {
    const req = parse(tokensSellRequest, p);
    checkKeyOwner(req.key, terminalId);
    await ctx.needCashier(req.key);
    const who = ctx.actor();
    const ack = await sellTokens(ledger, who, req, () => cashierDay.requireShift(terminalId, who.cashier));
    logger.info({ terminal: terminalId, seq: ack.seq, token: ack.token, units: ack.units, method: ack.payment.method }, 'tokens sold at the till');
    return ack;
  }));
}
