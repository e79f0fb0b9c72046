/**
 * Tokens that travel between stores: the clearing ledger takes the exchange and
 * customer-data kinds; wallet authorisations and customer data requests get tables whose
 * constraints make a vendor's idempotency key answer once (one hold, one toll per key),
 * whichever mall process took the request.
 */
export const sql = `
ALTER TABLE mall_transfers DROP CONSTRAINT mall_transfers_kind_check;
ALTER TABLE mall_transfers ADD CONSTRAINT mall_transfers_kind_check
  CHECK (kind IN ('royalty', 'reimbursement', 'toll', 'allotment', 'compensation', 'service-charge', 'data-toll'));

CREATE TABLE mall_wallet_authorisations (
  id text PRIMARY KEY,
  vendor text NOT NULL REFERENCES mall_vendors (id),
  card text NOT NULL,
  token text NOT NULL,
  units bigint NOT NULL CHECK (units > 0),
  purpose text NOT NULL CHECK (purpose IN ('sale', 'exchange', 'withdraw')),
  expires_at text NOT NULL,
  idempotency_key text NOT NULL,
  body_hash char(64) NOT NULL,
  event_seq bigint NOT NULL UNIQUE REFERENCES mall_events (seq),
  status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'captured', 'released', 'expired')),
  -- The vendor event that used it, once captured.
  used_event_seq bigint,
  closed_seq bigint REFERENCES mall_events (seq),
  UNIQUE (vendor, idempotency_key)
);
CREATE INDEX mall_wallet_authorisations_open ON mall_wallet_authorisations (expires_at) WHERE status = 'open';

CREATE TABLE mall_customer_data_requests (
  request_id text PRIMARY KEY,
  event_seq bigint NOT NULL UNIQUE REFERENCES mall_events (seq),
  requester text NOT NULL REFERENCES mall_vendors (id),
  card text NOT NULL,
  home text NOT NULL REFERENCES mall_vendors (id),
  at text NOT NULL,
  toll_minor bigint NOT NULL CHECK (toll_minor >= 0),
  idempotency_key text NOT NULL,
  body_hash char(64) NOT NULL,
  UNIQUE (requester, idempotency_key)
);
`;
