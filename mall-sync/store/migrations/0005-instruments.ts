/**
 * Bearer instruments: the clearing ledger takes the double-spend kind; instruments, the
 * operator's issue requests and the stores' reservations get tables whose keys make an
 * instrument recorded once, an issue key used once and a store's reservation key answer
 * once, whichever mall process took the request.
 */
export const sql = `
ALTER TABLE mall_transfers DROP CONSTRAINT mall_transfers_kind_check;
ALTER TABLE mall_transfers ADD CONSTRAINT mall_transfers_kind_check
  CHECK (kind IN ('royalty', 'reimbursement', 'toll', 'allotment', 'compensation', 'service-charge', 'data-toll', 'double-spend'));

CREATE TABLE mall_instruments (
  code text PRIMARY KEY,
  issuer text NOT NULL,
  serial text NOT NULL,
  kind text NOT NULL CHECK (kind IN ('gift', 'coupon')),
  token text NOT NULL,
  face_units bigint NOT NULL CHECK (face_units > 0),
  expires_at text NOT NULL,
  first_event_seq bigint NOT NULL REFERENCES mall_events (seq),
  UNIQUE (issuer, serial)
);

CREATE TABLE mall_instrument_issues (
  idempotency_key text PRIMARY KEY,
  body_hash char(64) NOT NULL,
  event_seq bigint NOT NULL UNIQUE REFERENCES mall_events (seq)
);

CREATE TABLE mall_instrument_reservations (
  id text PRIMARY KEY,
  vendor text NOT NULL REFERENCES mall_vendors (id),
  code text NOT NULL REFERENCES mall_instruments (code),
  units bigint NOT NULL CHECK (units > 0),
  hold_units bigint NOT NULL CHECK (hold_units >= units),
  expires_at text NOT NULL,
  idempotency_key text NOT NULL,
  body_hash char(64) NOT NULL,
  event_seq bigint NOT NULL UNIQUE REFERENCES mall_events (seq),
  status text NOT NULL DEFAULT 'held' CHECK (status IN ('held', 'captured', 'released')),
  used_event_seq bigint,
  closed_seq bigint REFERENCES mall_events (seq),
  UNIQUE (vendor, idempotency_key)
);
CREATE INDEX mall_instrument_reservations_code ON mall_instrument_reservations (code) WHERE status = 'held';
`;
