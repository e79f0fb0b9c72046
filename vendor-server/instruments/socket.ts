import { z } from 'zod';
import { amount, idempotencyKey, parse, pinCode, tokenCode, type ClientToServerEvents, type InstrumentSaleAck, type InstrumentView, type InstrumentVoidAck } from '../../core/index.ts';
import { approvalRef, positiveUnits } from '../../core/economy-requests.ts';
import type { VendorKeys } from '../config.ts';
import { checkKeyOwner } from '../cashier-day/socket.ts';
import type { Actor } from '../ledger/service.ts';
import type { EconomyConnection } from '../economy/socket.ts';
import type { InstrumentService } from './service.ts';

/** The gift certificate and coupon events a terminal may send (a sale pays with them through `sale:commit`). */
export const INSTRUMENT_EVENTS: readonly (keyof ClientToServerEvents)[] = ['instrument:inquire', 'instrument:sell', 'instrument:void'];

/** The compact form as scanned, or the short code as typed; anything else is refused before it is read. */
export const instrumentInquireRequest = z.union([
  z.strictObject({ instrument: z.string().min(1).max(1024) }),
  z.strictObject({ code: z.string().min(1).max(64) }),
]);

const certificatePayment = z.discriminatedUnion('method', [
  z.strictObject({ method: z.literal('cash'), tenderedMinor: amount('cash tendered') }),
  z.strictObject({ method: z.literal('card'), approvalRef }),
]);

/** A new certificate of the store's own tokens (token and units), or one from the mall's stock (its compact form). */
export const instrumentSellRequest = z.union([
  z.strictObject({ key: idempotencyKey, token: tokenCode, units: positiveUnits('units', 'a gift certificate is worth at least one token'), payment: certificatePayment }),
  z.strictObject({ key: idempotencyKey, instrument: z.string().min(1).max(1024), payment: certificatePayment }),
]);

export const instrumentVoidRequest = z.strictObject({
  key: idempotencyKey,
  code: z.string().min(1).max(64),
  reason: z.string().trim().min(1).max(200),
  supervisor: z.strictObject({ staffId: z.string().min(1).max(40), pin: pinCode }),
});

export interface InstrumentSocketContext extends EconomyConnection {
  instruments: InstrumentService;
  keys: VendorKeys;
  /** The rule that a money event of this till needs an open shift (when the store asks for shifts). */
  precondition: (actor: Actor) => void;
  /** A supervisor's id for their PIN, or the typed refusal (wrong PIN, locked, not a supervisor). */
  supervisor: (staffId: string, pin: string) => Promise<string>;
}

/**
 * A balance inquiry at any till, and selling this store's own gift certificates. An
 * inquiry changes nothing and needs no cashier: it verifies the instrument and says what
 * remains. Selling moves money: it carries an idempotency key like `tokens:sell`.
 */
export function registerInstruments(ctx: InstrumentSocketContext): void {
  const { on, handle, terminalId, instruments, logger } = ctx;
  on('instrument:inquire', handle('instrument:inquire', (p): Promise<InstrumentView> => instruments.inquire(parse(instrumentInquireRequest, p))));
  on(
    'instrument:sell',
    handle('instrument:sell', async (p): Promise<InstrumentSaleAck> => {
      const req = parse(instrumentSellRequest, p);
      checkKeyOwner(req.key, terminalId);
      await ctx.needCashier(req.key);
      const who = ctx.actor();
      const ack = await instruments.sell(who, req, { kid: ctx.keys.kid, privateKey: ctx.keys.privateKey }, () => ctx.precondition(who));
      // The certificate itself is a bearer credential: only its short code is logged.
      logger.info({ terminal: terminalId, seq: ack.seq, code: ack.code, token: ack.token, units: ack.units, method: ack.payment.method }, 'gift certificate sold at the till');
      return ack;
    }),
  );
  on(
    'instrument:void',
    handle('instrument:void', async (p): Promise<InstrumentVoidAck> => {
      const req = parse(instrumentVoidRequest, p);
      checkKeyOwner(req.key, terminalId);
      await ctx.needCashier(req.key);
      const supervisorId = await ctx.supervisor(req.supervisor.staffId, req.supervisor.pin);
      await instruments.loadSale(req.code);
      const who = ctx.actor();
      const ack = await instruments.void(who, { key: req.key, code: req.code, reason: req.reason, supervisorId }, () => ctx.precondition(who));
      logger.info({ terminal: terminalId, seq: ack.seq, code: ack.code, supervisor: supervisorId }, 'gift certificate voided at the till');
      return ack;
    }),
  );
}
