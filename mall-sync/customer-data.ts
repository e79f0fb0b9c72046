import { z } from 'zod';
import { bodyHash, fail, idempotencyKey, type CustomerDataView } from '../core/index.ts';
import { cardSchema } from './economy-judge.ts';
import { MALL_ACCOUNT, vendorAccount, type Transfer } from './events.ts';
import { parseAdmin } from './schemas.ts';
import { own } from './store/dict.ts';
import type { MallState, PurchaseSummary } from './store/state.ts';
import type { MallStore } from './store/store.ts';
import { storedAnswer, type RegistryChange } from './wallet.ts';

/**
 * A member store asks the mall about a customer registered at another store (claim 41):
 * only with the customer's consent (MALL_ERR_NO_CONSENT, no toll), never about its own
 * customer. The answer is the contact the customer agreed to share and a purchase summary
 * counted from the home store's ingested sales of that customer; the mall records who
 * asked, when, about which card and home store, and charges the requester the toll
 * `fees.customerDataTollMinor` as a clearing transfer to the mall. Idempotent by key:
 * the same key and body give the same answer and one toll.
 */
export const customerDataRequest = z.strictObject({ key: idempotencyKey, card: cardSchema });

const NO_SALES: PurchaseSummary = { sales: 0, spentMinor: 0, firstAt: null, lastAt: null };

export class CustomerDataService {
  constructor(
    private readonly store: MallStore,
    private readonly change: RegistryChange,
    private readonly currency: string,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  private get state(): Readonly<MallState> {
    return this.store.state;
  }

  request(vendor: string, body: unknown): Promise<CustomerDataView> {
    const input = parseAdmin(customerDataRequest, body);
    const hash = bodyHash({ op: 'customer-data', ...input });
    return this.change(() => {
      const prior = storedAnswer(this.state, vendor, input.key, hash);
      if (prior !== null) return { events: [], result: () => prior as CustomerDataView };
      const entry = own(this.state.customers, input.card);
      if (entry === undefined) fail('MALL_ERR_CUSTOMER_UNKNOWN', `no member store has registered card ${input.card}`, { card: input.card });
      if (entry.home === vendor) fail('MALL_ERR_VALIDATION', `card ${input.card} is your own customer: the mall does not sell a store its own customer's data`);
      if (!entry.consent) fail('MALL_ERR_NO_CONSENT', `the holder of card ${input.card} has not agreed to share their data with other stores: nothing was charged`);
      const home = own(this.state.vendors, entry.home);
      if (home === undefined) throw new Error(`assertion failed: the home store ${entry.home} of a card is registered`);
      const summary = own(own(this.state.customerSales, entry.home) ?? {}, entry.customer) ?? NO_SALES;
      const tollMinor = this.state.fees.customerDataTollMinor;
      const requestId = `cdr-${String(this.state.dataRequestSerial + 1).padStart(6, '0')}`;
      const answer: CustomerDataView = {
        requestId,
        card: input.card,
        home: { vendorId: home.id, name: home.name },
        name: entry.name ?? '',
        contact: { ...(entry.contact ?? {}) },
        summary: { sales: summary.sales, spentMinor: summary.spentMinor, currency: this.currency, firstAt: summary.firstAt, lastAt: summary.lastAt },
        tollMinor,
      };
      const transfers: Transfer[] = tollMinor > 0 ? [{ kind: 'data-toll', from: vendorAccount(vendor), to: MALL_ACCOUNT, amountMinor: tollMinor, token: null, units: 0 }] : [];
      return {
        events: [
          {
            type: 'customer-data.requested',
            at: this.clock().toISOString(),
            data: { requestId, requester: vendor, card: input.card, home: home.id, homeCustomer: entry.customer, key: input.key, bodyHash: hash, tollMinor, transfers, answer },
          },
        ],
        result: () => answer,
      };
    });
  }
}
