import type { CashDrawer, DrawerState, KickResult } from '../hardware/printer/index.ts';

/** What the status bar shows about the cash drawer. */
export interface DrawerStatus {
  /** `none`: no drawer is configured on this till. */
  state: DrawerState | 'none';
  /** When the drawer was last seen to open (while it is open), else null. */
  openSince: string | null;
  /** Open for longer than the configured time: the screen warns. */
  openTooLong: boolean;
  /** Why the last kick did not open it, until the next kick that does. */
  lastKickError: string | null;
}

export interface DrawerWatchOptions {
  drawer: CashDrawer;
  /** Warn when the drawer stays open longer than this; 30 s by default. */
  openWarnMs?: number;
  /** How often the drawer is asked while open or just kicked; 1 s by default. */
  pollOpenMs?: number;
  /** How often it is asked otherwise; 5 s by default (0 asks only after a kick). */
  pollIdleMs?: number;
}

/**
 * Watches the cash drawer through the printer's status and opens it on request. The
 * drawer is asked often while it is open (to warn when it stays open) and seldom
 * otherwise, since every question is a connection to the printer.
 */
export class DrawerWatch {
  private current: DrawerStatus = { state: 'unknown', openSince: null, openTooLong: false, lastKickError: null };
  private readonly listeners = new Set<(s: DrawerStatus) => void>();
  private timer: NodeJS.Timeout | undefined;
  private polling: Promise<void> | null = null;
  private pollAgain = false;
  private closed = false;
  private readonly openWarnMs: number;
  private readonly pollOpenMs: number;
  private readonly pollIdleMs: number;

  constructor(private readonly opts: DrawerWatchOptions) {
    this.openWarnMs = opts.openWarnMs ?? 30_000;
    this.pollOpenMs = opts.pollOpenMs ?? 1_000;
    this.pollIdleMs = opts.pollIdleMs ?? 5_000;
    for (const [name, v] of Object.entries({ openWarnMs: this.openWarnMs, pollOpenMs: this.pollOpenMs, pollIdleMs: this.pollIdleMs })) {
      if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${name} must be a non-negative integer`);
    }
    this.schedule(0);
  }

  status(): DrawerStatus {
    return this.current;
  }

  onChange(cb: (s: DrawerStatus) => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  /** Opens the drawer and watches it closely until it is closed again. */
  async kick(): Promise<KickResult> {
    if (this.closed) return { ok: false, message: 'The cash drawer cannot be opened: the terminal is stopping.' };
    const result = await this.opts.drawer.kickDrawer();
    this.set({ ...this.current, lastKickError: result.ok ? null : result.message });
    this.schedule(0);
    return result;
  }

  close(): void {
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.listeners.clear();
  }

  private schedule(ms: number): void {
    if (this.closed) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.poll();
    }, ms);
    this.timer.unref();
  }

  private poll(): Promise<void> {
    // A question already on its way may have left before a kick: ask once more after it.
    if (this.polling !== null) {
      this.pollAgain = true;
      return this.polling;
    }
    this.polling = (async () => {
      const state = await this.opts.drawer.drawerState().catch((): DrawerState => 'unknown');
      const now = Date.now();
      const openSince = state === 'open' ? (this.current.openSince ?? new Date(now).toISOString()) : null;
      const openTooLong = openSince !== null && now - Date.parse(openSince) >= this.openWarnMs;
      this.set({ ...this.current, state, openSince, openTooLong });
    })().finally(() => {
      this.polling = null;
      if (this.pollAgain) {
        this.pollAgain = false;
        this.schedule(0);
      } else if (this.current.state === 'open') this.schedule(this.pollOpenMs);
      else if (this.pollIdleMs > 0) this.schedule(this.pollIdleMs);
    });
    return this.polling;
  }

  private set(next: DrawerStatus): void {
    const changed = JSON.stringify(next) !== JSON.stringify(this.current);
    this.current = next;
    if (!changed) return;
    for (const cb of [...this.listeners]) cb(next);
  }
}
