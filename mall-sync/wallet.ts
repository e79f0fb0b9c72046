import { z } from 'zod';
import { bodyHash, fail, idempotencyKey, tokenCode } from '../core/index.ts';
import { AUTHORISATION_PATTERN, cardSchema, posInt } from './economy-judge.ts';
import { parseAdmin } from './schemas.ts';
import { dict, own } from './store/dict.ts';
import { heldUnits, requestSlot, walletUnits, type MallState } from './store/state.ts';
import type { NewMallEvent } from './events.ts';
import type { MallStore } from './store/store.ts';

/**
 * The mall wallet (claim 36): tokens a customer keeps at the mall, spendable at any
 * member store. A store asks for an authorisation (a hold on units of one token of one
 * card), then captures it (it journalled the event that used them) or releases it (it
 * did not). Holds count against the balance. A hold neither captured nor released within
 * `walletAuthorisationTtlS` is released by the mall's timer, which also runs at start-up,
 * so a restart after the time releases at once.
 *
 * Every request is idempotent by the vendor's key: the same key and body answer the
 * stored answer, the same key with another body is refused. Each change is checked and
 * committed as a registry change (one at a time, inside the store's exclusive section: on
 * PostgreSQL under the mall's write lock, the state caught up first), signed into the
 * registry history so that an audit replays it before the batches judged after it, and
 * answered once it is durable.
 */

export const authoriseRequest = z.strictObject({ key: idempotencyKey, card: cardSchema, token: tokenCode, units: posInt, purpose: z.enum(['sale', 'exchange', 'withdraw']) });
export const releaseRequest = z.strictObject({ key: idempotencyKey });
export const captureRequest = z.strictObject({ key: idempotencyKey, eventSeq: posInt });

export interface WalletBalancesView {
  card: string;
  balances: Record<string, number>;
  held: Record<string, number>;
  asOf: string;
}

export interface AuthorisationAnswer {
  authorisation: { id: string; card: string; token: string; units: number; expiresAt: string };
  wallet: WalletBalancesView;
}

/** How often the expiry timer looks for holds that are due. */
export const EXPIRY_SWEEP_MS = 1_000;

/** A stored answer for the key, or null; a different body under the key is refused. */
export function storedAnswer(state: Readonly<MallState>, vendor: string, key: string, hash: string): unknown {
  const prior = own(state.requestKeys, requestSlot(vendor, key));
  if (prior === undefined) return null;
  if (prior.bodyHash !== hash) fail('MALL_ERR_VALIDATION', `the key ${key} was already used for a different request`, { key });
  return prior.answer;
}

export function walletView(state: Readonly<MallState>, card: string, asOf: string): WalletBalancesView {
  const balances = dict<number>(own(state.wallets, card));
  const held = dict<number>(own(state.walletHeld, card));
  return { card, balances: { ...balances }, held: { ...held }, asOf };
}

/**
 * Runs one change of the mall: `plan` checks against the current state (synchronously)
 * and names the events; they are signed into the registry history and committed, and
 * `result` answers once they are durable (MallService.registryChange).
 */
export type RegistryChange = <T>(plan: () => { events: NewMallEvent[]; result: () => T }) => Promise<T>;

export class WalletService {
  private timer: NodeJS.Timeout | null = null;
  private sweeping: Promise<number> | null = null;

  constructor(
    private readonly store: MallStore,
    private readonly change: RegistryChange,
    private readonly ttlS: number,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  private get state(): Readonly<MallState> {
    return this.store.state;
  }

  private checkCard(card: string): void {
    if (own(this.state.customers, card) === undefined) fail('MALL_ERR_CUSTOMER_UNKNOWN', `no member store has registered card ${card}`, { card });
  }

  async view(card: string): Promise<WalletBalancesView> {
    const parsed = cardSchema.safeParse(card);
    if (!parsed.success) fail('MALL_ERR_CUSTOMER_UNKNOWN', 'no member store has registered this card');
    await this.store.flushed();
    this.checkCard(card);
    return walletView(this.state, card, this.clock().toISOString());
  }

  authorise(vendor: string, body: unknown): Promise<AuthorisationAnswer> {
    const input = parseAdmin(authoriseRequest, body);
    const hash = bodyHash({ op: 'authorise', ...input });
    return this.change(() => {
      const prior = storedAnswer(this.state, vendor, input.key, hash);
      if (prior !== null) return { events: [], result: () => prior as AuthorisationAnswer };
      this.checkCard(input.card);
      if (own(this.state.tokenTypes, input.token) === undefined) fail('CORE_ERR_TOKEN_UNKNOWN', `the mall has no token type ${input.token}`, { token: input.token });
      const available = walletUnits(this.state, input.card, input.token) - heldUnits(this.state, input.card, input.token);
      if (available < input.units) {
        fail('MALL_ERR_WALLET_INSUFFICIENT', `the wallet of card ${input.card} has ${available} ${input.token} available, ${input.units} asked`, { card: input.card, token: input.token, availableUnits: available });
      }
      const now = this.clock();
      const id = `wa-${String(this.state.authorisationSerial + 1).padStart(6, '0')}`;
      const expiresAt = new Date(now.getTime() + this.ttlS * 1000).toISOString();
      const after = walletView(this.state, input.card, now.toISOString());
      after.held[input.token] = (own(after.held, input.token) ?? 0) + input.units;
      const answer: AuthorisationAnswer = { authorisation: { id, card: input.card, token: input.token, units: input.units, expiresAt }, wallet: after };
      return {
        events: [
          {
            type: 'wallet.authorised',
            at: now.toISOString(),
            data: { id, vendor, card: input.card, token: input.token, units: input.units, purpose: input.purpose, expiresAt, key: input.key, bodyHash: hash, answer },
          },
        ],
        result: () => answer,
      };
    });
  }

  private authorisationOf(vendor: string, id: string) {
    const auth = AUTHORISATION_PATTERN.test(id) ? own(this.state.authorisations, id) : undefined;
    // Another vendor's authorisation is answered like one that does not exist.
    if (auth === undefined || auth.vendor !== vendor) fail('MALL_ERR_AUTHORISATION_UNKNOWN', `${vendor} has no wallet authorisation ${id.slice(0, 40)}`);
    return auth;
  }

  release(vendor: string, id: string, body: unknown): Promise<{ released: true }> {
    const input = parseAdmin(releaseRequest, body);
    const hash = bodyHash({ op: 'release', id, ...input });
    const released = () => ({ released: true as const });
    return this.change(() => {
      if (storedAnswer(this.state, vendor, input.key, hash) !== null) return { events: [], result: released };
      const auth = this.authorisationOf(vendor, id);
      if (auth.status === 'captured') fail('MALL_ERR_AUTHORISATION_SPENT', `authorisation ${id} was captured by event ${auth.eventSeq ?? '?'}: it cannot be released`, { eventSeq: auth.eventSeq });
      // Released or expired already: the tokens are free, which is what was asked.
      if (auth.status !== 'open') return { events: [], result: released };
      return { events: [{ type: 'wallet.closed', at: this.clock().toISOString(), data: { id, vendor, how: 'released', eventSeq: null, key: input.key, bodyHash: hash } }], result: released };
    });
  }

  capture(vendor: string, id: string, body: unknown): Promise<{ captured: true }> {
    const input = parseAdmin(captureRequest, body);
    const hash = bodyHash({ op: 'capture', id, ...input });
    const captured = () => ({ captured: true as const });
    return this.change(() => {
      if (storedAnswer(this.state, vendor, input.key, hash) !== null) return { events: [], result: captured };
      const auth = this.authorisationOf(vendor, id);
      if (auth.status === 'captured') {
        // The batch carrying the event may have captured it first: the same event is no second capture.
        if (auth.eventSeq === input.eventSeq) return { events: [], result: captured };
        fail('MALL_ERR_AUTHORISATION_SPENT', `authorisation ${id} was already captured by event ${auth.eventSeq ?? '?'}`, { eventSeq: auth.eventSeq });
      }
      if (auth.status !== 'open') {
        fail('MALL_ERR_AUTHORISATION_SPENT', `authorisation ${id} was ${auth.status} at ${auth.closedAt ?? '?'}: the batch carrying event ${input.eventSeq} is honoured if the wallet still covers it`, { status: auth.status });
      }
      return { events: [{ type: 'wallet.closed', at: this.clock().toISOString(), data: { id, vendor, how: 'captured', eventSeq: input.eventSeq, key: input.key, bodyHash: hash } }], result: captured };
    });
  }

  /** The open holds due by now. */
  private due(now: number): string[] {
    const out: string[] = [];
    for (const [id, expiresAt] of Object.entries(this.state.openAuthorisations)) if (Date.parse(expiresAt) <= now) out.push(id);
    return out;
  }

  /** Releases every open hold past its time; resolves with how many it released. */
  expire(): Promise<number> {
    this.sweeping ??= this.expireNow().finally(() => {
      this.sweeping = null;
    });
    return this.sweeping;
  }

  private async expireNow(): Promise<number> {
    if (this.due(this.clock().getTime()).length === 0) return 0;
    return this.change(() => {
      const now = this.clock();
      // Checked again in the change: another mall process may have released them.
      const ids = this.due(now.getTime());
      const events: NewMallEvent[] = ids.map((id) => {
        const auth = own(this.state.authorisations, id);
        if (auth === undefined) throw new Error(`assertion failed: open authorisation ${id} is recorded`);
        return { type: 'wallet.closed', at: now.toISOString(), data: { id, vendor: auth.vendor, how: 'expired', eventSeq: null, key: null, bodyHash: null } };
      });
      return { events, result: () => ids.length };
    });
  }

  /** Starts the expiry timer (the start-up sweep is the caller's `expire()`, before it serves anyone). */
  startTimer(onError: (err: unknown) => void): void {
    this.timer = setInterval(() => {
      this.expire().catch(onError);
    }, EXPIRY_SWEEP_MS);
    this.timer.unref();
  }

  /** Stops the timer and waits for a sweep under way. */
  async stop(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    await this.sweeping?.catch(() => undefined);
  }
}
