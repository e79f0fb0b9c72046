import {
  checkSpendable,
  fail,
  formatMinor,
  issuancePostings,
  isMallposError,
  lookupTokenType,
  maskCard,
  mul,
  settleCash,
  FLOAT_ACCOUNT,
  type EventBase,
  type JournalEvent,
  type NewEvent,
  type TokenPayment,
  type TokenSaleAck,
  type TokenType,
} from '../../core/index.ts';
import type { PaymentWebhookBody, TokensSellRequest } from '../../core/economy-requests.ts';
import type { Actor, LedgerService } from '../ledger/service.ts';
import { customerBalances, own } from '../ledger/state.ts';

/**
 * Tokens sold at face value (claims 31-33): at the till for cash (change given, the cash
 * counts into the drawer) or by card (the card terminal's approval reference), and online
 * through the payment provider's notification. Each is one `issuance` event, reason
 * 'purchase': float -n T, customer +n T, `cashMinor` = face value x n, and `payment`
 * saying how it was paid. The store sells its own tokens or any token its float holds.
 */

/** A token of this store's float, spendable here, valued in the store's currency. */
function sellableToken(ledger: LedgerService, code: string): TokenType {
  const tt = lookupTokenType(ledger.tokenTypes, code);
  // Tokens whose rules come from the mall are refused when the mall's registry is too old.
  ledger.tokenGate?.(tt.code);
  checkSpendable(tt, ledger.store.vendorId, new Date());
  if (tt.currency !== ledger.store.currency) {
    fail('CORE_ERR_VALIDATION', `${tt.code} tokens are valued in ${tt.currency}; this store sells in ${ledger.store.currency}`, { token: tt.code });
  }
  return tt;
}

/** The issuance of a purchase, checked against the float before anything is journalled. */
function purchaseEvent(ledger: LedgerService, base: Omit<EventBase, 'prev'>, customerId: string, tt: TokenType, units: number, payment: TokenPayment): NewEvent {
  const held = own(own(ledger.state.balances, FLOAT_ACCOUNT) ?? {}, tt.code) ?? 0;
  if (held === 0) fail('CORE_ERR_INSUFFICIENT_TOKENS', `the store float holds no ${tt.code} tokens to sell`, { account: FLOAT_ACCOUNT, token: tt.code, shortUnits: units });
  if (held < units) fail('CORE_ERR_INSUFFICIENT_TOKENS', `the store float has not enough ${tt.code} tokens: ${units - held} short`, { account: FLOAT_ACCOUNT, token: tt.code, shortUnits: units - held });
  const balancesAfter = customerBalances(ledger.state, customerId);
  balancesAfter[tt.code] = (balancesAfter[tt.code] ?? 0) + units;
  return {
    ...base,
    type: 'issuance',
    postings: issuancePostings(customerId, tt.code, units),
    data: { customer: customerId, token: tt.code, units, reason: 'purchase', cashMinor: mul(tt.faceValueMinor, units), payment, balancesAfter },
  };
}

async function purchaseOf(ledger: LedgerService, seq: number): Promise<Extract<JournalEvent, { type: 'issuance' }>> {
  const event = await ledger.readEvent(seq);
  if (event.type !== 'issuance' || event.data.payment === undefined) return fail('VND_ERR_IDEMPOTENCY_CONFLICT', 'this request key was already used for a different request');
  return event;
}

async function tokenSaleAck(ledger: LedgerService, seq: number): Promise<TokenSaleAck> {
  const event = await purchaseOf(ledger, seq);
  const d = event.data;
  return {
    seq: event.seq,
    at: event.at,
    token: d.token,
    units: d.units,
    priceMinor: d.cashMinor,
    currency: ledger.store.currency,
    payment: d.payment as TokenPayment,
    customer: ledger.customerView(d.customer),
  };
}

/**
 * `tokens:sell`: idempotent by the till's key. A card approval reference pays once: the
 * same reference for the same customer, token and units (a till that lost its key and
 * sends again) answers the sale it paid for; with anything else it is refused with
 * VND_ERR_PAYMENT_REUSED. `precondition` (the cashier's open shift) runs right before the
 * append.
 */
export async function sellTokens(ledger: LedgerService, actor: Actor, req: TokensSellRequest, precondition: () => void): Promise<TokenSaleAck> {
  const body = { op: 'tokens.sell', card: req.card, token: req.token, units: req.units, payment: req.payment };
  if (req.payment.method === 'card' && !ledger.knowsKey(req.key)) {
    const paidSeq = own(ledger.state.cardPayments, req.payment.approvalRef);
    if (paidSeq !== undefined) {
      const paid = await purchaseOf(ledger, paidSeq);
      const customerId = ledger.customerIdByCard(req.card);
      if (paid.data.customer === customerId && paid.data.token === req.token && paid.data.units === req.units) return tokenSaleAck(ledger, paidSeq);
      fail('VND_ERR_PAYMENT_REUSED', `card approval ${req.payment.approvalRef} already paid for ${paid.data.units} ${paid.data.token} tokens of another purchase`, { approvalRef: req.payment.approvalRef });
    }
  }
  return ledger.commitRequest(
    actor,
    req.key,
    body,
    (base) => {
      const customerId = ledger.customerIdByCard(req.card);
      const tt = sellableToken(ledger, req.token);
      const priceMinor = mul(tt.faceValueMinor, req.units);
      let payment: TokenPayment;
      if (req.payment.method === 'cash') {
        const { changeMinor } = settleCash(priceMinor, req.payment.tenderedMinor, (m) => formatMinor(m, tt.currency));
        payment = { method: 'cash', tenderedMinor: req.payment.tenderedMinor, changeMinor };
      } else {
        // Another request may have used the reference while this one read the journal.
        if (own(ledger.state.cardPayments, req.payment.approvalRef) !== undefined) fail('VND_ERR_PAYMENT_REUSED', `card approval ${req.payment.approvalRef} already paid for another purchase`, { approvalRef: req.payment.approvalRef });
        payment = { method: 'card', approvalRef: req.payment.approvalRef };
      }
      precondition();
      return purchaseEvent(ledger, base, customerId, tt, req.units, payment);
    },
    (seq) => tokenSaleAck(ledger, seq),
  );
}

/** What the payment webhook answers: the same for every delivery of one payment. */
export interface OnlineCreditAck {
  credited: true;
  paymentId: string;
  seq: number;
  at: string;
  card: string;
  token: string;
  units: number;
}

/** The idempotency key of an online payment: one credit per payment id, whoever delivers it how often. */
export function onlinePaymentKey(paymentId: string): string {
  return `online:${paymentId}`;
}

/**
 * Credits an online purchase once per payment id. The same id with another body (another
 * card, token, amount or provider) is refused with VND_ERR_PAYMENT_REUSED and changes
 * nothing; the amount must be the tokens' face value x units (VND_ERR_PAYMENT_MISMATCH).
 */
export async function creditOnlinePayment(ledger: LedgerService, body: PaymentWebhookBody): Promise<OnlineCreditAck> {
  const answer = async (seq: number): Promise<OnlineCreditAck> => {
    const event = await purchaseOf(ledger, seq);
    const c = own(ledger.state.customers, event.data.customer);
    return { credited: true, paymentId: body.paymentId, seq: event.seq, at: event.at, card: maskCard(c?.card ?? ''), token: event.data.token, units: event.data.units };
  };
  try {
    return await ledger.commitRequest(
      { terminal: null, cashier: null },
      onlinePaymentKey(body.paymentId),
      body,
      (base) => {
        const customerId = ledger.customerIdByCard(body.card);
        const tt = sellableToken(ledger, body.token);
        const priceMinor = mul(tt.faceValueMinor, body.units);
        if (body.currency !== tt.currency || body.amountMinor !== priceMinor) {
          fail('VND_ERR_PAYMENT_MISMATCH', `${body.units} ${tt.code} tokens cost ${formatMinor(priceMinor, tt.currency)}, the payment is ${formatMinor(body.amountMinor, body.currency)}`, { expectedMinor: priceMinor, currency: tt.currency });
        }
        return purchaseEvent(ledger, base, customerId, tt, body.units, { method: 'online', paymentId: body.paymentId, provider: body.provider });
      },
      answer,
    );
  } catch (err) {
    if (isMallposError(err) && err.code === 'VND_ERR_IDEMPOTENCY_CONFLICT') {
      fail('VND_ERR_PAYMENT_REUSED', `payment ${body.paymentId} was already credited with different details`, { paymentId: body.paymentId });
    }
    throw err;
  }
}
