/**
 * The mall's first PostgreSQL schema. `mall_events` is the mall's event log (the same
 * events, in the same order, as the embedded journal); the other tables are written in
 * the same transaction as the event they come from and carry the constraints that make
 * exactly-once a property of the database: one batch per (vendor, seq), batches without
 * gaps, one allotment per idempotency key, one fork alarm per forged batch. Money is
 * `bigint` minor units throughout.
 */
export const sql = `
CREATE TABLE mall_events (
  seq bigint PRIMARY KEY CHECK (seq >= 1),
  type text NOT NULL,
  at text NOT NULL,
  prev char(64) NOT NULL,
  hash char(64) NOT NULL,
  -- The event exactly as committed (json keeps the text as it was written).
  body json NOT NULL
);

CREATE TABLE mall_vendors (
  id text PRIMARY KEY,
  name text NOT NULL,
  registered_at text NOT NULL,
  registered_seq bigint NOT NULL REFERENCES mall_events (seq),
  -- The cursor: the last batch ingested and the last vendor event it carried.
  last_batch_seq bigint NOT NULL DEFAULT 0,
  last_batch_hash char(64),
  last_event_seq bigint NOT NULL DEFAULT 0,
  last_event_hash char(64),
  last_batch_at text
);

CREATE TABLE mall_keys (
  kid text PRIMARY KEY,
  vendor text NOT NULL REFERENCES mall_vendors (id),
  jwk json NOT NULL,
  status text NOT NULL CHECK (status IN ('active', 'retired', 'revoked')),
  added_at text NOT NULL,
  retired_at text,
  retired_at_seq bigint,
  revoked_at text,
  revoked_reason text
);
-- A vendor has at most one active key.
CREATE UNIQUE INDEX mall_keys_one_active ON mall_keys (vendor) WHERE status = 'active';

CREATE TABLE mall_key_history (
  event_seq bigint NOT NULL REFERENCES mall_events (seq),
  kid text NOT NULL REFERENCES mall_keys (kid),
  change text NOT NULL CHECK (change IN ('added', 'retired', 'revoked')),
  at text NOT NULL,
  PRIMARY KEY (event_seq, kid, change)
);

CREATE TABLE mall_token_types (
  code text PRIMARY KEY,
  body json NOT NULL,
  event_seq bigint NOT NULL REFERENCES mall_events (seq)
);

CREATE TABLE mall_fees (
  event_seq bigint PRIMARY KEY REFERENCES mall_events (seq),
  body json NOT NULL
);

CREATE TABLE mall_parties (
  id text PRIMARY KEY,
  name text NOT NULL,
  kind text NOT NULL CHECK (kind IN ('manufacturer', 'issuer')),
  added_at text NOT NULL
);

CREATE TABLE mall_allotments (
  id text PRIMARY KEY,
  vendor text NOT NULL REFERENCES mall_vendors (id),
  token text NOT NULL,
  units bigint NOT NULL CHECK (units > 0),
  reference text NOT NULL,
  issued_at text NOT NULL,
  face_value_minor bigint NOT NULL,
  purchase_minor bigint NOT NULL,
  idempotency_key text NOT NULL UNIQUE,
  body_hash char(64) NOT NULL,
  event_seq bigint NOT NULL REFERENCES mall_events (seq),
  used_batch_seq bigint,
  used_event_seq bigint
);

CREATE TABLE mall_gap_decisions (
  event_seq bigint PRIMARY KEY REFERENCES mall_events (seq),
  vendor text NOT NULL REFERENCES mall_vendors (id),
  decision text NOT NULL CHECK (decision IN ('wait', 'resend')),
  expected_seq bigint NOT NULL,
  seen_seq bigint NOT NULL,
  resend_from_seq bigint,
  note text NOT NULL,
  at text NOT NULL
);

CREATE TABLE mall_batches (
  vendor text NOT NULL REFERENCES mall_vendors (id),
  seq bigint NOT NULL CHECK (seq >= 1),
  -- Batch k follows batch k - 1 of the same vendor: no gap can be stored.
  prev_seq bigint GENERATED ALWAYS AS (NULLIF(seq - 1, 0)) STORED,
  hash char(64) NOT NULL,
  kid text NOT NULL REFERENCES mall_keys (kid),
  event_seq bigint NOT NULL UNIQUE REFERENCES mall_events (seq),
  from_seq bigint NOT NULL,
  to_seq bigint NOT NULL CHECK (to_seq >= from_seq),
  events bigint NOT NULL,
  ingested_at text NOT NULL,
  registry_seq bigint NOT NULL,
  -- The mall's signed ack, exactly as sent: every duplicate gets these bytes.
  ack json NOT NULL,
  PRIMARY KEY (vendor, seq),
  FOREIGN KEY (vendor, prev_seq) REFERENCES mall_batches (vendor, seq)
);

-- The signed batch exactly as the vendor sent it (the audit archive keeps it with the ack).
CREATE TABLE mall_batch_bodies (
  vendor text NOT NULL,
  seq bigint NOT NULL,
  body bytea NOT NULL,
  PRIMARY KEY (vendor, seq),
  FOREIGN KEY (vendor, seq) REFERENCES mall_batches (vendor, seq) DEFERRABLE INITIALLY DEFERRED
);

-- The clearing ledger: every transfer, double entry (from owes to).
CREATE TABLE mall_transfers (
  event_seq bigint NOT NULL REFERENCES mall_events (seq),
  n bigint NOT NULL,
  vendor_event_seq bigint,
  kind text NOT NULL CHECK (kind IN ('royalty', 'reimbursement', 'toll', 'allotment')),
  from_account text NOT NULL,
  to_account text NOT NULL CHECK (to_account <> from_account),
  amount_minor bigint NOT NULL,
  token text,
  units bigint NOT NULL,
  at text NOT NULL,
  PRIMARY KEY (event_seq, n)
);

CREATE TABLE mall_positions (
  account text PRIMARY KEY,
  position_minor bigint NOT NULL
);

CREATE TABLE mall_flagged (
  vendor text NOT NULL REFERENCES mall_vendors (id),
  event_seq bigint NOT NULL,
  batch_seq bigint NOT NULL,
  at text NOT NULL,
  type text NOT NULL,
  reason text NOT NULL,
  PRIMARY KEY (vendor, event_seq),
  FOREIGN KEY (vendor, batch_seq) REFERENCES mall_batches (vendor, seq)
);

CREATE TABLE mall_alarms (
  id text PRIMARY KEY,
  event_seq bigint NOT NULL UNIQUE REFERENCES mall_events (seq),
  kind text NOT NULL,
  vendor text NOT NULL,
  batch_seq bigint NOT NULL,
  stored_hash char(64) NOT NULL,
  received_hash char(64) NOT NULL,
  kid text NOT NULL,
  message text NOT NULL,
  at text NOT NULL,
  -- A pusher retrying the same forged batch raises one alarm.
  UNIQUE (vendor, batch_seq, received_hash)
);

-- The registry history, one mall-signed entry per change (the audit archive's registry/).
CREATE TABLE mall_registry_archive (
  registry_seq bigint PRIMARY KEY CHECK (registry_seq >= 1),
  jws json NOT NULL
);

CREATE TABLE mall_statements (
  vendor text NOT NULL,
  from_day text NOT NULL,
  to_day text NOT NULL,
  issued_at text NOT NULL,
  jws json NOT NULL,
  PRIMARY KEY (vendor, from_day, to_day, issued_at)
);

-- Refusals of authenticated batches, per vendor (what reconcile reports as gaps).
CREATE TABLE mall_observations (
  vendor text PRIMARY KEY,
  body json NOT NULL
);

-- Snapshots of the materialised state, so a worker starts without replaying the whole log.
CREATE TABLE mall_checkpoints (
  seq bigint PRIMARY KEY REFERENCES mall_events (seq),
  state text NOT NULL,
  written_at timestamptz NOT NULL DEFAULT now()
);
`;
