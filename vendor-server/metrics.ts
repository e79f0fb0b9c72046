import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * Prometheus metrics of one vendor server (one registry per instance, so tests can run
 * several). The counts of committed events are kept as plain numbers by `committed`, on
 * every commit, and handed to their counters when the metrics are read: a labelled
 * prom-client increment costs more than the rest of the bookkeeping of a sale.
 */
export class VendorMetrics {
  readonly registry = new Registry();
  private pendingSales = 0;
  private pendingRefunds = 0;
  private readonly pendingEvents = new Map<string, number>();
  private readonly flushPending = () => {
    if (this.pendingSales > 0) this.sales.inc(this.pendingSales);
    if (this.pendingRefunds > 0) this.refunds.inc(this.pendingRefunds);
    for (const [type, n] of this.pendingEvents) this.events.inc({ type }, n);
    this.pendingSales = 0;
    this.pendingRefunds = 0;
    this.pendingEvents.clear();
  };
  readonly sales = new Counter({ name: 'mallpos_sales_total', help: 'Committed sales', registers: [this.registry], collect: this.flushPending });
  readonly refunds = new Counter({ name: 'mallpos_refunds_total', help: 'Committed refunds', registers: [this.registry], collect: this.flushPending });
  readonly events = new Counter({
    name: 'mallpos_journal_events_total',
    help: 'Journal events committed since start',
    labelNames: ['type'],
    registers: [this.registry],
    collect: this.flushPending,
  });
  readonly rejected = new Counter({ name: 'mallpos_requests_rejected_total', help: 'Requests refused with a typed error', labelNames: ['code'], registers: [this.registry] });
  readonly commitLatency = new Histogram({
    name: 'mallpos_commit_latency_seconds',
    help: 'From journal append to durable, per event',
    buckets: [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  });
  readonly fsync = new Histogram({
    name: 'mallpos_journal_fsync_seconds',
    help: 'Duration of one journal group commit (write + fdatasync)',
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1],
    registers: [this.registry],
  });
  readonly fsyncLines = new Histogram({
    name: 'mallpos_journal_group_commit_events',
    help: 'Events covered by one fsync',
    buckets: [1, 2, 4, 8, 16, 32, 64, 128],
    registers: [this.registry],
  });
  readonly journalBytes = new Gauge({ name: 'mallpos_journal_bytes', help: 'Journal size on disk', registers: [this.registry] });
  readonly journalSeq = new Gauge({ name: 'mallpos_journal_seq', help: 'Last journal seq', registers: [this.registry] });
  readonly syncWaiting = new Gauge({ name: 'mallpos_sync_events_waiting', help: 'Journal events not yet acknowledged by the mall', registers: [this.registry] });
  readonly syncOldestAge = new Gauge({ name: 'mallpos_sync_oldest_waiting_age_seconds', help: 'Age of the oldest event waiting for the mall', registers: [this.registry] });
  readonly syncLastAck = new Gauge({ name: 'mallpos_sync_last_ack_timestamp_seconds', help: 'Time of the last ack from the mall (0: never)', registers: [this.registry] });
  readonly ledgerIntact = new Gauge({
    name: 'mallpos_ledger_integrity_ok',
    help: '1 while the journal chain and checkpoint are intact or being checked, 0 once the integrity audit found damage',
    registers: [this.registry],
  });
  readonly ledgerDamage = new Counter({ name: 'mallpos_ledger_integrity_alarms_total', help: 'Integrity audits that found the ledger on disk damaged', registers: [this.registry] });
  // Labelled by terminal id: ids come from the store's own pairing records, so the label set is bounded.
  readonly offlineWaiting = new Gauge({ name: 'mallpos_offline_sales_waiting', help: 'Offline sales a till last reported it holds unforwarded', labelNames: ['terminal'], registers: [this.registry] });
  readonly offlineAlarm = new Gauge({ name: 'mallpos_offline_forward_alarm', help: '1 while a till holds offline sales and has not forwarded for longer than offline.forwardAlarmAfterS', labelNames: ['terminal'], registers: [this.registry] });
  readonly offlineForwarded = new Counter({ name: 'mallpos_offline_sales_forwarded_total', help: 'Offline sales journalled since start', registers: [this.registry] });
  readonly offlinePriceDifferences = new Counter({ name: 'mallpos_offline_price_differences_total', help: 'Lines of forwarded offline sales priced differently on the till than in the catalog', registers: [this.registry] });
  readonly terminals = new Gauge({ name: 'mallpos_terminals_connected', help: 'Connected terminals', registers: [this.registry] });

  /** Counts one committed journal event (a sale, a refund, ...) and how long it took to become durable. */
  committed(type: string, latencyMs: number): void {
    this.pendingEvents.set(type, (this.pendingEvents.get(type) ?? 0) + 1);
    if (type === 'sale') this.pendingSales += 1;
    else if (type === 'reversal') this.pendingRefunds += 1;
    this.commitLatency.observe(latencyMs / 1000);
  }

  constructor(defaults = false) {
    if (defaults) collectDefaultMetrics({ register: this.registry });
    this.ledgerIntact.set(1);
  }
}
