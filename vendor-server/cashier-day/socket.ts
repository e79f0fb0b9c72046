import {
  fail,
  noSaleRequest,
  parse,
  reprintRequest,
  shiftCashMoveRequest,
  shiftCloseRequest,
  shiftCurrentRequest,
  shiftOpenRequest,
  xReportRequest,
  zReportRequest,
  type ClientToServerEvents,
  type ReceiptData,
} from '../../core/index.ts';
import type { AccessStore, PinAuditEntry } from '../access.ts';
import type { Actor } from '../ledger/service.ts';
import type { Logger } from '../../platform/logger.ts';
import type { CashierDayService } from './service.ts';

/** The cashier's-day events a terminal may send. */
export const CASHIER_DAY_EVENTS: readonly (keyof ClientToServerEvents)[] = [
  'shift:current',
  'shift:open',
  'shift:cash-move',
  'shift:close',
  'drawer:no-sale',
  'report:x',
  'report:z',
  'receipt:reprint',
];

export interface CashierDaySocketContext {
  on: (event: string, listener: (first: unknown, second: unknown) => void) => void;
  handle: <Res>(event: string, run: (payload: unknown) => Promise<Res> | Res) => (first: unknown, second: unknown) => void;
  terminalId: string;
  actor: () => Actor;
  cashier: () => { staffId: string; name: string; role: 'cashier' | 'supervisor' } | null;
  /** Waits for a sign-in in progress, then refuses a new key without a signed-in cashier. */
  needCashier: (key: string) => Promise<void>;
  /** Waits for a sign-in in progress, then refuses without a signed-in cashier. */
  signedIn: () => Promise<{ staffId: string; name: string; role: 'cashier' | 'supervisor' }>;
  /** The receipt of a sale, with the same access rule as `receipt:get`. */
  receipt: (saleId: string) => Promise<ReceiptData>;
  access: AccessStore;
  audit: (entry: PinAuditEntry) => void;
  logger: Logger;
  service: CashierDayService;
}

/** A terminal may only use its own keys: `<terminal id>:<uuid>` (the sale path passes its prefix, made once per connection). */
export function checkKeyOwner(key: string, terminalId: string, prefix = `${terminalId}:`): void {
  if (!key.startsWith(prefix)) fail('VND_ERR_IDEMPOTENCY_KEY', `the request key must start with "${terminalId}:"`);
}

/**
 * The cashier's-day handlers of one terminal connection. Each money-moving request
 * (open, cash move, close, no-sale, Z) carries its idempotency key like `sale:commit`; a
 * retry gets the original answer whoever is signed in.
 */
export function registerCashierDay(ctx: CashierDaySocketContext): void {
  const { on, handle, terminalId, access, audit, logger, service } = ctx;
  const supervisorOf = async (cred: { staffId: string; pin: string }, what: string) => {
    const staff = await access.authenticateStaff(cred.staffId, cred.pin, { terminalId, audit });
    if (staff.role !== 'supervisor') fail('VND_ERR_SUPERVISOR_REQUIRED', `${staff.name} may not approve ${what}: a supervisor must`);
    return staff;
  };

  on('shift:current', handle('shift:current', async (p) => {
    parse(shiftCurrentRequest, p ?? {});
    await ctx.signedIn();
    return service.currentShift(terminalId);
  }));

  on('shift:open', handle('shift:open', async (p) => {
    const req = parse(shiftOpenRequest, p);
    checkKeyOwner(req.key, terminalId);
    await ctx.needCashier(req.key);
    const who = ctx.cashier();
    const actor = ctx.actor();
    const view = await service.openShift({ terminal: actor.terminal, cashier: actor.cashier ?? '' }, who?.name ?? '', req.key, req.count);
    logger.info({ terminal: terminalId, shift: view.shiftId, staff: view.staffId }, 'shift opened');
    return view;
  }));

  on('shift:cash-move', handle('shift:cash-move', async (p) => {
    const req = parse(shiftCashMoveRequest, p);
    checkKeyOwner(req.key, terminalId);
    await ctx.needCashier(req.key);
    const view = await service.moveCash(ctx.actor(), req.key, { kind: req.kind, amountMinor: req.amountMinor, reason: req.reason });
    logger.info({ terminal: terminalId, shift: view.shiftId, kind: req.kind, amountMinor: req.amountMinor }, 'cash moved');
    return view;
  }));

  on('shift:close', handle('shift:close', async (p) => {
    const req = parse(shiftCloseRequest, p);
    checkKeyOwner(req.key, terminalId);
    await ctx.needCashier(req.key);
    const view = await service.closeShift(ctx.actor(), req.key, req.count, ctx.cashier()?.role === 'supervisor');
    logger.info({ terminal: terminalId, shift: view.shiftId, overShortMinor: view.overShortMinor }, 'shift closed');
    return view;
  }));

  on('drawer:no-sale', handle('drawer:no-sale', async (p) => {
    const req = parse(noSaleRequest, p);
    checkKeyOwner(req.key, terminalId);
    await ctx.needCashier(req.key);
    const staff = await supervisorOf(req.supervisor, 'opening the drawer without a sale');
    await service.noSale(ctx.actor(), req.key, req.reason, staff.id);
    logger.info({ terminal: terminalId, supervisor: staff.id }, 'drawer opened without a sale');
    return null;
  }));

  on('report:x', handle('report:x', async (p) => {
    const req = parse(xReportRequest, p);
    await ctx.signedIn();
    return service.xReport(req.scope, terminalId);
  }));

  on('report:z', handle('report:z', async (p) => {
    const req = parse(zReportRequest, p);
    checkKeyOwner(req.key, terminalId);
    await ctx.needCashier(req.key);
    const staff = await supervisorOf(req.supervisor, 'closing the day');
    const z = await service.closeDay({ terminal: terminalId, cashier: staff.id }, req.key, service.settings.zPerTerminal ? terminalId : null);
    logger.info({ terminal: terminalId, zNumber: z.zNumber, day: z.day, supervisor: staff.id }, 'day closed (Z report)');
    return z;
  }));

  on('receipt:reprint', handle('receipt:reprint', async (p) => {
    const req = parse(reprintRequest, p);
    // A reprint is journalled: it names the cashier who asked for it.
    await ctx.signedIn();
    const receipt = await ctx.receipt(req.saleId);
    return service.reprint(ctx.actor(), receipt);
  }));
}
