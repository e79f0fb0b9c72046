import { fail, type CustomerView } from '../../core/index.ts';
import type { CustomerRegisterRequest } from '../../core/economy-requests.ts';
import type { Actor, LedgerService } from '../ledger/service.ts';

/**
 * Opens a customer's account at the till (`customer:register`, claim 2): a pre-printed
 * card scanned, or a new random number the till prints; the customer's consent to share
 * their contact data with member stores, and the contact itself when given. Idempotent
 * by the till's key: a retry gets the account it opened, another body with the same key
 * is a conflict, and a card another customer holds is refused before anything is
 * journalled.
 */
export function registerAtTill(ledger: LedgerService, actor: Actor, req: CustomerRegisterRequest): Promise<CustomerView> {
  const body = { op: 'customer.register', name: req.name, card: req.card, consent: req.consent, contact: req.contact ?? null };
  return ledger.commitRequest(
    actor,
    req.key,
    body,
    (base) => ({
      ...base,
      type: 'customer.registered',
      postings: [],
      data: ledger.newCustomer({ name: req.name, card: req.card, consent: req.consent, contact: req.contact }),
    }),
    async (seq) => {
      const event = await ledger.readEvent(seq);
      if (event.type !== 'customer.registered') return fail('VND_ERR_IDEMPOTENCY_CONFLICT', 'this request key was already used for a different request');
      return ledger.customerView(event.data.id);
    },
  );
}
