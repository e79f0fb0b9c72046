import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Prometheus metrics of one mall process (one registry per instance, so tests can run several). */
export class MallMetrics {
  readonly registry = new Registry();
  readonly batches = new Counter({ name: 'mallpos_mall_batches_ingested_total', help: 'Batches ingested', labelNames: ['vendor'], registers: [this.registry] });
  readonly replays = new Counter({ name: 'mallpos_mall_batches_replayed_total', help: 'Batches received again and answered with the stored ack', registers: [this.registry] });
  readonly events = new Counter({ name: 'mallpos_mall_events_ingested_total', help: 'Vendor events ingested', registers: [this.registry] });
  readonly flagged = new Counter({ name: 'mallpos_mall_events_flagged_total', help: 'Vendor events flagged and not cleared', registers: [this.registry] });
  readonly rejected = new Counter({ name: 'mallpos_mall_batches_rejected_total', help: 'Batches refused, by error code', labelNames: ['code'], registers: [this.registry] });
  readonly requestsRejected = new Counter({ name: 'mallpos_mall_requests_rejected_total', help: 'Other requests refused with a typed error', labelNames: ['code'], registers: [this.registry] });
  readonly alarms = new Counter({ name: 'mallpos_mall_alarms_total', help: 'Tamper alarms recorded', registers: [this.registry] });
  readonly ingestLatency = new Histogram({
    name: 'mallpos_mall_ingest_latency_seconds',
    help: 'From receiving a batch to its durable ack',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });
  readonly journalSeq = new Gauge({ name: 'mallpos_mall_journal_seq', help: 'Last mall journal seq', registers: [this.registry] });
  readonly fsync = new Histogram({
    name: 'mallpos_mall_journal_fsync_seconds',
    help: 'Duration of one mall journal group commit (write + fdatasync)',
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1],
    registers: [this.registry],
  });

  // The mall on PostgreSQL: its workers take turns at one write lock (mall-sync/store/postgres.ts).
  readonly lockWait = new Histogram({
    name: 'mallpos_mall_write_lock_wait_seconds',
    help: 'PostgreSQL: from asking for the mall\'s write lock to holding it (the other workers\' groups ahead)',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  });
  readonly lockHeld = new Histogram({
    name: 'mallpos_mall_write_lock_held_seconds',
    help: 'PostgreSQL: how long this worker held the mall\'s write lock for one group of changes (catch-up, judging, writes, commit)',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  });
  readonly lockPhase = new Counter({
    name: 'mallpos_mall_write_lock_phase_seconds_total',
    help: 'PostgreSQL: time this worker held the write lock, by phase: catch-up (other workers\' events), changes (checks, judging, acks), writes (waiting for the database to finish the statements), commit',
    labelNames: ['phase'],
    registers: [this.registry],
  });
  readonly groupChanges = new Histogram({
    name: 'mallpos_mall_group_changes',
    help: 'PostgreSQL: changes (batches, registry changes) committed together under one turn of the write lock',
    buckets: [1, 2, 4, 8, 16, 32, 64],
    registers: [this.registry],
  });
  readonly caughtUp = new Counter({ name: 'mallpos_mall_events_caught_up_total', help: 'PostgreSQL: mall events of other workers applied to this worker\'s state before its own changes', registers: [this.registry] });

  constructor(defaults = false) {
    if (defaults) collectDefaultMetrics({ register: this.registry });
  }
}
