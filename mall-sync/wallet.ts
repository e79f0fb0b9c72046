import { z } from 'zod';
import { bodyHash, fail, idempotencyKey, isMallposError, MallposError, pinCode, tokenCode } from '../core/index.ts';
import { AUTHORISATION_PATTERN, cardSchema, posInt } from './economy-judge.ts';
import { parseAdmin } from './schemas.ts';
import { dict, own } from './store/dict.ts';
import { heldUnits, requestSlot, WALLET_PIN_FAILURES_MAX, walletUnits, type MallState } from './store/state.ts';
import { hashWalletPin, UNMATCHABLE_PIN_HASH, verifyWalletPin } from './wallet-pin-hash.ts';
import { mallStopHere } from './stop-at.ts';
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
 *
 * Every hold needs the card's wallet PIN, which only the mall checks: a store names any
 * card it likes, so the card number alone proves nothing. The PIN is checked against the
 * stored salted hash outside the exclusive section (scrypt is slow) and the decision is
 * taken inside it, after checking that the hash checked against is still the card's.
 * Wrong PINs count per card across all stores and mall processes (mall events); at
 * WALLET_PIN_FAILURES_MAX the wallet is locked for holds until the operator unlocks it.
 * The PIN is never part of an idempotency body hash nor of any event.
 */

export const authoriseRequest = z.strictObject({
  key: idempotencyKey,
  card: cardSchema,
  token: tokenCode,
  units: posInt,
  purpose: z.enum(['sale', 'exchange', 'withdraw']),
  pin: pinCode.optional(),
});
/** `oldPin` changes a PIN that is set; without it, only a wallet that has none gets one. */
export const pinRequest = z.strictObject({ key: idempotencyKey, card: cardSchema, pin: pinCode, oldPin: pinCode.optional() });
export const releaseRequest = z.strictObject({ key: idempotencyKey });
export const captureRequest = z.strictObject({ key: idempotencyKey, eventSeq: posInt });

export interface WalletBalancesView {
  card: string;
  balances: Record<string, number>;
  held: Record<string, number>;
  asOf: string;
}

/** The mall's answer to a balance request: the wallet and whether it has a PIN (and is locked). */
export interface WalletStatusView extends WalletBalancesView {
  pinSet: boolean;
  locked: boolean;
}

export interface PinAnswer {
  card: string;
  pinSet: true;
}

/** What the operator sees of a card's wallet PIN (never the hash). */
export interface WalletPinStatus {
  card: string;
  pinSet: boolean;
  failures: number;
  failedBy: Record<string, number>;
  lockedAt: string | null;
}

/** Told of every wrong wallet PIN once it is counted (the server logs it; `locked` when it locked the wallet). */
export type WrongPinHook = (e: { card: string; vendor: string; failures: number; locked: boolean; stores: Record<string, number> }) => void;

/** A PIN checked outside the exclusive section: against which stored hash (null: none), and the outcome. */
interface PinCheck {
  against: string | null;
  right: boolean;
}

/** Thrown inside a change when the PIN hash changed after it was checked: the request checks again. */
class PinChanged extends Error {}
const PIN_CHECKS_MAX = 3;

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
    private readonly onWrongPin: WrongPinHook = () => undefined,
  ) {}

  private get state(): Readonly<MallState> {
    return this.store.state;
  }

  private checkCard(card: string): void {
    if (own(this.state.customers, card) === undefined) fail('MALL_ERR_CUSTOMER_UNKNOWN', `no member store has registered card ${card}`, { card });
  }

  async view(card: string): Promise<WalletStatusView> {
    const parsed = cardSchema.safeParse(card);
    if (!parsed.success) fail('MALL_ERR_CUSTOMER_UNKNOWN', 'no member store has registered this card');
    await this.store.flushed();
    this.checkCard(card);
    const pin = own(this.state.walletPins, card);
    return { ...walletView(this.state, card, this.clock().toISOString()), pinSet: pin !== undefined, locked: pin !== undefined && pin.lockedAt !== null };
  }

  /** The operator's view of a card's PIN and wrong-PIN count. */
  pinStatus(card: string): WalletPinStatus {
    if (!cardSchema.safeParse(card).success) fail('MALL_ERR_CUSTOMER_UNKNOWN', 'no member store has registered this card');
    this.checkCard(card);
    const p = own(this.state.walletPins, card);
    return { card, pinSet: p !== undefined, failures: p?.failures ?? 0, failedBy: { ...(p?.failedBy ?? {}) }, lockedAt: p?.lockedAt ?? null };
  }

  /**
   * Runs a request whose change depends on a PIN checked before it: `check` runs outside
   * the exclusive section, `plan` inside; a PIN hash changed in between means checking again.
   */
  private async withPinCheck<T>(check: () => Promise<PinCheck | null>, plan: (checked: PinCheck | null) => { events: NewMallEvent[]; result: () => T }): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      await this.store.flushed();
      const checked = await check();
      try {
        return await this.change(() => plan(checked));
      } catch (err) {
        if (!(err instanceof PinChanged)) throw err;
        if (attempt >= PIN_CHECKS_MAX) fail('MALL_ERR_UNAVAILABLE', 'the wallet PIN changed while it was being checked: try again');
      }
    }
  }

  /** Checks `pin` against the card's stored PIN (or, for a card without one, against nothing, taking as long). */
  private async checkPin(card: string, pin: string | undefined): Promise<PinCheck | null> {
    if (pin === undefined) return null;
    const rec = own(this.state.walletPins, card);
    if (rec !== undefined && rec.lockedAt !== null) return null;
    const against = rec?.hash ?? null;
    return { against, right: await verifyWalletPin(pin, against ?? UNMATCHABLE_PIN_HASH) };
  }

  /**
   * Decides on a PIN checked before the change, inside it: refuses (and counts a wrong
   * PIN), or names the events of a right one (a reset of the count after wrong ones).
   * A card the mall does not know is answered as a wrong PIN is, so that a guess learns
   * nothing about which cards exist; nothing is counted for it.
   */
  private pinDecision(vendor: string, card: string, pin: string | undefined, checked: PinCheck | null): { events: NewMallEvent[]; refusal: MallposError | null } {
    const at = this.clock().toISOString();
    const known = own(this.state.customers, card) !== undefined;
    if (!known) {
      if (pin === undefined) fail('MALL_ERR_WALLET_PIN_REQUIRED', `the wallet of card ${card} needs its PIN`, { card });
      fail('MALL_ERR_WALLET_PIN', `wrong wallet PIN for card ${card}`, { card });
    }
    const rec = own(this.state.walletPins, card);
    if (rec === undefined) fail('MALL_ERR_WALLET_PIN_NOT_SET', `the wallet of card ${card} has no PIN yet: the customer chooses one at a till first`, { card });
    if (rec.lockedAt !== null) fail('MALL_ERR_WALLET_LOCKED', `the wallet of card ${card} is locked after ${rec.failures} wrong PINs: the mall operator must unlock it`, { card });
    if (pin === undefined || checked === null) fail('MALL_ERR_WALLET_PIN_REQUIRED', `the wallet of card ${card} needs its PIN`, { card });
    if (checked.against !== rec.hash) throw new PinChanged();
    if (checked.right) return { events: rec.failures > 0 ? [{ type: 'wallet.pin-reset', at, data: { card, vendor } }] : [], refusal: null };
    const failures = rec.failures + 1;
    const locked = failures >= WALLET_PIN_FAILURES_MAX;
    const refusal = locked
      ? new MallposError('MALL_ERR_WALLET_LOCKED', `wrong wallet PIN for card ${card}: the wallet is now locked after ${failures} wrong PINs, the mall operator must unlock it`, { card })
      : new MallposError('MALL_ERR_WALLET_PIN', `wrong wallet PIN for card ${card}`, { card });
    return { events: [{ type: 'wallet.pin-failed', at, data: { card, vendor, failures, locked } }], refusal };
  }

  /** The result of a change that counted a wrong PIN: told to the hook once durable, then refused. */
  private refuse(card: string, vendor: string, refusal: MallposError): () => never {
    return () => {
      const p = own(this.state.walletPins, card);
      this.onWrongPin({ card, vendor, failures: p?.failures ?? 0, locked: p !== undefined && p.lockedAt !== null, stores: { ...(p?.failedBy ?? {}) } });
      throw refusal;
    };
  }

  authorise(vendor: string, body: unknown): Promise<AuthorisationAnswer> {
    const input = parseAdmin(authoriseRequest, body);
    // The PIN is no part of the request's identity: a retry is answered whatever PIN it carries.
    const { pin, ...identity } = input;
    const hash = bodyHash({ op: 'authorise', ...identity });
    const replay = () => storedAnswer(this.state, vendor, input.key, hash);
    return this.withPinCheck(
      () => (replay() !== null ? Promise.resolve(null) : this.checkPin(input.card, pin)),
      (checked) => {
        const prior = replay();
        if (prior !== null) return { events: [], result: () => prior as AuthorisationAnswer };
        const decision = this.pinDecision(vendor, input.card, pin, checked);
        if (decision.refusal !== null) return { events: decision.events, result: this.refuse(input.card, vendor, decision.refusal) };
        try {
          const made = this.hold(vendor, identity, hash);
          return { events: [...decision.events, ...made.events], result: made.result };
        } catch (err) {
          // A right PIN after wrong ones resets the count even when the hold itself is refused.
          if (decision.events.length === 0 || !isMallposError(err)) throw err;
          return {
            events: decision.events,
            result: () => {
              throw err;
            },
          };
        }
      },
    );
  }

  private hold(vendor: string, input: Omit<z.output<typeof authoriseRequest>, 'pin'>, hash: string): { events: NewMallEvent[]; result: () => AuthorisationAnswer } {
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
      result: () => {
        mallStopHere('wallet-authorise-durable');
        return answer;
      },
    };
  }

  /**
   * A change that holds a card's wallet units for another service (a mall lot's bid):
   * the same PIN rules as a hold, wrong PINs counted. `replay` answers a retried key
   * without a PIN check; `plan` runs inside the change once the PIN is right.
   */
  pinnedChange<T>(vendor: string, card: string, pin: string | undefined, replay: () => unknown, plan: () => { events: NewMallEvent[]; result: () => T }): Promise<T> {
    return this.withPinCheck(
      () => (replay() !== null ? Promise.resolve(null) : this.checkPin(card, pin)),
      (checked) => {
        const prior = replay();
        if (prior !== null) return { events: [], result: () => prior as T };
        const decision = this.pinDecision(vendor, card, pin, checked);
        if (decision.refusal !== null) return { events: decision.events, result: this.refuse(card, vendor, decision.refusal) };
        try {
          const made = plan();
          return { events: [...decision.events, ...made.events], result: made.result };
        } catch (err) {
          if (decision.events.length === 0 || !isMallposError(err)) throw err;
          return {
            events: decision.events,
            result: () => {
              throw err;
            },
          };
        }
      },
    );
  }

  /**
   * Sets a card's wallet PIN: the first one while the wallet has none, a new one with the
   * old one. A wrong old PIN counts as a wrong PIN (the change is no way around the count),
   * and a locked wallet's PIN is not changed. Answers `{card, pinSet: true}`.
   */
  setPin(vendor: string, body: unknown): Promise<PinAnswer> {
    const input = parseAdmin(pinRequest, body);
    const hash = bodyHash({ op: 'pin', key: input.key, card: input.card, change: input.oldPin !== undefined });
    const replay = () => storedAnswer(this.state, vendor, input.key, hash);
    let newHash: string | null = null;
    return this.withPinCheck(
      async () => {
        if (replay() !== null) return null;
        newHash ??= await hashWalletPin(input.pin);
        return this.checkPin(input.card, input.oldPin);
      },
      (checked) => {
        const prior = replay();
        if (prior !== null) return { events: [], result: () => prior as PinAnswer };
        this.checkCard(input.card);
        const at = this.clock().toISOString();
        const answer: PinAnswer = { card: input.card, pinSet: true };
        const setEvent = (): NewMallEvent => {
          if (newHash === null) throw new Error('assertion failed: the new PIN is hashed before the change');
          return { type: 'wallet.pin-set', at, data: { card: input.card, vendor, hash: newHash, key: input.key, bodyHash: hash, answer } };
        };
        const rec = own(this.state.walletPins, input.card);
        if (rec === undefined) {
          if (input.oldPin !== undefined) fail('MALL_ERR_WALLET_PIN_NOT_SET', `the wallet of card ${input.card} has no PIN to change: set one without the old PIN`, { card: input.card });
          return { events: [setEvent()], result: () => answer };
        }
        if (rec.lockedAt === null && input.oldPin === undefined) {
          fail('MALL_ERR_WALLET_PIN_REQUIRED', `the wallet of card ${input.card} already has a PIN: changing it needs the old PIN`, { card: input.card });
        }
        const decision = this.pinDecision(vendor, input.card, input.oldPin, checked);
        if (decision.refusal !== null) return { events: decision.events, result: this.refuse(input.card, vendor, decision.refusal) };
        // The new PIN starts with no wrong PINs: the reset is part of the new PIN's event.
        return { events: [setEvent()], result: () => answer };
      },
    );
  }

  /** The operator lifts a card's lock after wrong PINs (and clears its count). */
  unlock(card: string): Promise<WalletPinStatus> {
    return this.change(() => {
      const status = this.pinStatus(card);
      if (!status.pinSet) fail('MALL_ERR_WALLET_PIN_NOT_SET', `the wallet of card ${card} has no PIN: there is nothing to unlock`, { card });
      if (status.failures === 0 && status.lockedAt === null) return { events: [], result: () => this.pinStatus(card) };
      return { events: [{ type: 'wallet.unlocked', at: this.clock().toISOString(), data: { card } }], result: () => this.pinStatus(card) };
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
    const released = () => {
      mallStopHere('wallet-release-durable');
      return { released: true as const };
    };
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
    const captured = () => {
      mallStopHere('wallet-capture-durable');
      return { captured: true as const };
    };
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
