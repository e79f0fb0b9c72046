import { randomBytes, randomInt, randomUUID, timingSafeEqual } from 'node:crypto';
import { dirname, join } from 'node:path';
import { Low } from 'lowdb';
import { fail, sha256Hex } from '../core/index.ts';
import { PinHasher } from '../platform/pin-hash.ts';
import { DurableJSONFile } from '../platform/storage/index.ts';

/**
 * Who may do what: operator credentials, terminals with their pairing codes, and staff
 * with PINs. Secrets are stored only as hashes (sha256 for high-entropy tokens and
 * codes; PINs keyed with a pepper from the keys directory, see platform/pin-hash.ts). Kept out of the journal so that no secret, not even
 * a hash, travels to the mall with the batches; every change is written durably.
 */
export interface TerminalRecord {
  id: string;
  name: string;
  createdAt: string;
  pairing: { codeHash: string; expiresAt: string } | null;
  pairedAt: string | null;
  /** The id of the one valid credential; pairing again replaces it. */
  credentialId: string | null;
  revokedAt: string | null;
  /** Wrong staff PINs entered at this till since the last right one. */
  pinFailures?: number;
  pinFailedAt?: string | null;
  /** Set when too many wrong PINs locked the till for sign-ins; the operator clears it. */
  pinLockedAt?: string | null;
}

export interface StaffRecord {
  id: string;
  name: string;
  role: 'cashier' | 'supervisor';
  pinHash: string;
  updatedAt: string;
  /** Wrong PINs for this staff member since the last right one. */
  pinFailures?: number;
  pinFailedAt?: string | null;
  /** Set when too many wrong PINs locked this staff member out; the operator clears it. */
  lockedAt?: string | null;
}

/**
 * How PIN guessing is slowed and stopped. The first `freeFailures` wrong PINs cost
 * nothing (people mistype); after that each attempt waits `backoffBaseMs` doubled per
 * further failure, up to `backoffMaxMs`. At `staffLockFailures` wrong PINs for one staff
 * member, or `terminalLockFailures` at one till (whatever staff ids were tried), sign-ins
 * stop until the operator unlocks. One attempt at a time per staff member and per till.
 */
export interface PinPolicy {
  freeFailures: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  staffLockFailures: number;
  terminalLockFailures: number;
}

export const PIN_POLICY_DEFAULT: PinPolicy = {
  freeFailures: 3,
  backoffBaseMs: 1_000,
  backoffMaxMs: 60_000,
  staffLockFailures: 10,
  terminalLockFailures: 20,
};

/** What a sign-in attempt did, for the log. No PIN is ever part of it. */
export interface PinAuditEntry {
  event: 'pin.wrong' | 'pin.refused' | 'staff.locked' | 'terminal.locked' | 'customer-pin.wrong' | 'customer-pin.refused' | 'customer.locked';
  staffId?: string;
  customerId?: string;
  terminalId: string | null;
  staffFailures?: number;
  terminalFailures?: number;
  code?: string;
}

/** A customer's optional PIN for token payments above the store's limit. */
export interface CustomerPinRecord {
  pinHash: string;
  updatedAt: string;
  pinFailures: number;
  pinFailedAt: string | null;
  lockedAt: string | null;
}

export interface AccessData {
  operators: { id: string; tokenHash: string; createdAt: string }[];
  terminals: Record<string, TerminalRecord>;
  staff: Record<string, StaffRecord>;
  /** Customer PINs by customer id; a secret, so kept here and never in the journal. */
  customerPins?: Record<string, CustomerPinRecord>;
  terminalSerial: number;
}

export const PAIRING_ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZ23456789';
export const PAIRING_CODE_LENGTH = 8;

function nullProto<T>(record: Record<string, T> | undefined): Record<string, T> {
  const d = Object.create(null) as Record<string, T>;
  for (const [k, v] of Object.entries(record ?? {})) d[k] = v;
  return d;
}

function equalHex(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === y.length && timingSafeEqual(x, y);
}

export function newOperatorToken(): string {
  return `mpo_${randomBytes(32).toString('base64url')}`;
}

export function newPairingCode(): string {
  let code = '';
  for (let i = 0; i < PAIRING_CODE_LENGTH; i++) code += PAIRING_ALPHABET[randomInt(PAIRING_ALPHABET.length)];
  return code;
}

export class AccessStore {
  pinPolicy: PinPolicy = { ...PIN_POLICY_DEFAULT };
  /**
   * PIN checks in progress per staff member, customer and till. A check in flight counts
   * as a failure until it is decided: while the failures so far plus those in flight
   * reach `freeFailures`, further attempts wait, so a burst of guesses sent at once gets
   * no more tries than guesses sent one by one (while the same staff member signing in at
   * two tills at once still works).
   */
  private readonly checking = new Map<string, number>();

  /** Reserves a PIN check for each subject; null when one has no free try left. */
  private beginCheck(subjects: { key: string; failures: number }[]): (() => void) | null {
    const busy = subjects.some(({ key, failures }) => {
      const inFlight = this.checking.get(key) ?? 0;
      return inFlight > 0 && failures + inFlight >= this.pinPolicy.freeFailures;
    });
    if (busy) return null;
    for (const { key } of subjects) this.checking.set(key, (this.checking.get(key) ?? 0) + 1);
    return () => {
      for (const { key } of subjects) {
        const n = (this.checking.get(key) ?? 1) - 1;
        if (n === 0) this.checking.delete(key);
        else this.checking.set(key, n);
      }
    };
  }

  /**
   * A PIN hash to check against when the staff id is unknown, so both take the same time
   * (made at this store's cost). Its PIN is random and never told: no guess verifies
   * against it, so none is remembered (platform/pin-hash.ts) and answered faster than a
   * guess at a real staff member's PIN.
   */
  private decoyPinHash: Promise<string> | null = null;

  private constructor(
    private readonly db: Low<AccessData>,
    private readonly pins: PinHasher,
  ) {}

  /**
   * Opens the access file. The PIN pepper lives in the keys directory beside it; PINs set
   * from now on are hashed at scrypt N = `pinHashCost` (platform/pin-hash.ts).
   */
  static async open(file: string, pinHashCost?: number): Promise<AccessStore> {
    const pepperFile = join(dirname(file), 'keys', 'pin-pepper.key');
    const db = new Low<AccessData>(new DurableJSONFile<AccessData>(file), { operators: [], terminals: {}, staff: {}, terminalSerial: 0 });
    await db.read();
    // Terminal and staff ids come from requests: look them up only among own entries.
    db.data.terminals = nullProto(db.data.terminals);
    db.data.staff = nullProto(db.data.staff);
    db.data.customerPins = nullProto(db.data.customerPins);
    return new AccessStore(db, await PinHasher.open(pepperFile, pinHashCost));
  }

  get data(): AccessData {
    return this.db.data;
  }

  private save(): Promise<void> {
    return this.db.write();
  }

  async addOperator(): Promise<string> {
    const token = newOperatorToken();
    this.db.data.operators.push({ id: randomUUID(), tokenHash: sha256Hex(token), createdAt: new Date().toISOString() });
    await this.save();
    return token;
  }

  isOperator(token: string): boolean {
    const h = sha256Hex(token);
    return this.db.data.operators.some((o) => equalHex(o.tokenHash, h));
  }

  /** A new terminal with a one-time pairing code, shown once. */
  async createTerminal(name: string, ttlMs: number, now = new Date()): Promise<{ terminal: TerminalRecord; code: string }> {
    const serial = this.db.data.terminalSerial + 1;
    const id = `t${String(serial).padStart(3, '0')}`;
    const code = newPairingCode();
    const terminal: TerminalRecord = {
      id,
      name,
      createdAt: now.toISOString(),
      pairing: { codeHash: sha256Hex(code), expiresAt: new Date(now.getTime() + ttlMs).toISOString() },
      pairedAt: null,
      credentialId: null,
      revokedAt: null,
    };
    this.db.data.terminalSerial = serial;
    this.db.data.terminals[id] = terminal;
    await this.save();
    return { terminal, code };
  }

  /** A fresh one-time code for an existing terminal (re-pairing replaces its credential). */
  async newCode(terminalId: string, ttlMs: number, now = new Date()): Promise<string> {
    const t = this.terminal(terminalId);
    if (t.revokedAt !== null) fail('VND_ERR_TERMINAL_REVOKED', `terminal ${t.id} is revoked`);
    const code = newPairingCode();
    t.pairing = { codeHash: sha256Hex(code), expiresAt: new Date(now.getTime() + ttlMs).toISOString() };
    await this.save();
    return code;
  }

  /** Exchanges a pairing code for the terminal it belongs to; the code is used up. */
  async redeemCode(code: string, now = new Date()): Promise<{ terminal: TerminalRecord; credentialId: string }> {
    const h = sha256Hex(code.trim().toUpperCase());
    const t = Object.values(this.db.data.terminals).find((x) => x.pairing !== null && equalHex(x.pairing.codeHash, h));
    if (t === undefined || t.pairing === null || t.revokedAt !== null || Date.parse(t.pairing.expiresAt) <= now.getTime()) {
      fail('VND_ERR_PAIRING_CODE');
    }
    const credentialId = randomUUID();
    t.pairing = null;
    t.pairedAt = now.toISOString();
    t.credentialId = credentialId;
    await this.save();
    return { terminal: t, credentialId };
  }

  terminal(id: string): TerminalRecord {
    const t = this.findTerminal(id);
    if (t === undefined) fail('VND_ERR_TERMINAL_UNKNOWN', `no terminal ${id.slice(0, 40)}`);
    return t;
  }

  findTerminal(id: string): TerminalRecord | undefined {
    return Object.hasOwn(this.db.data.terminals, id) ? this.db.data.terminals[id] : undefined;
  }

  findStaff(id: string): StaffRecord | undefined {
    return Object.hasOwn(this.db.data.staff, id) ? this.db.data.staff[id] : undefined;
  }

  staffMember(id: string): StaffRecord {
    const s = this.findStaff(id);
    if (s === undefined) fail('VND_ERR_STAFF_UNKNOWN', `no staff member ${id.slice(0, 40)}`);
    return s;
  }

  /** Whether a credential is still the valid one of an unrevoked terminal. */
  credentialValid(terminalId: string, credentialId: string): boolean {
    return this.credentialState(terminalId, credentialId) === 'valid';
  }

  /** Why a credential is or is not valid: revoked terminal, replaced by a new pairing, or unknown. */
  credentialState(terminalId: string, credentialId: string): 'valid' | 'revoked' | 'replaced' | 'unknown' {
    const t = this.findTerminal(terminalId);
    if (t === undefined) return 'unknown';
    if (t.revokedAt !== null) return 'revoked';
    return t.credentialId === credentialId ? 'valid' : 'replaced';
  }

  async revokeTerminal(id: string, now = new Date()): Promise<TerminalRecord> {
    const t = this.terminal(id);
    if (t.revokedAt === null) {
      t.revokedAt = now.toISOString();
      t.pairing = null;
      await this.save();
    }
    return t;
  }

  async upsertStaff(input: { id: string; name: string; role: 'cashier' | 'supervisor'; pin: string }): Promise<StaffRecord> {
    const before = this.findStaff(input.id);
    const record: StaffRecord = {
      id: input.id,
      name: input.name,
      role: input.role,
      pinHash: await this.pins.hash(input.pin),
      updatedAt: new Date().toISOString(),
      // A new PIN does not lift a lockout: unlocking is its own, explicit step.
      pinFailures: before?.pinFailures ?? 0,
      pinFailedAt: before?.pinFailedAt ?? null,
      lockedAt: before?.lockedAt ?? null,
    };
    this.db.data.staff[input.id] = record;
    await this.save();
    return record;
  }

  async unlockStaff(id: string): Promise<StaffRecord> {
    const s = this.staffMember(id);
    s.pinFailures = 0;
    s.pinFailedAt = null;
    s.lockedAt = null;
    await this.save();
    return s;
  }

  async unlockTerminal(id: string): Promise<TerminalRecord> {
    const t = this.terminal(id);
    t.pinFailures = 0;
    t.pinFailedAt = null;
    t.pinLockedAt = null;
    await this.save();
    return t;
  }

  private customerPin(customerId: string): CustomerPinRecord | undefined {
    const pins = this.db.data.customerPins ?? {};
    return Object.hasOwn(pins, customerId) ? pins[customerId] : undefined;
  }

  /** Whether the customer chose a PIN for token payments above the store's limit. */
  customerHasPin(customerId: string): boolean {
    return this.customerPin(customerId) !== undefined;
  }

  async setCustomerPin(customerId: string, pin: string): Promise<void> {
    const pins = (this.db.data.customerPins ??= Object.create(null) as Record<string, CustomerPinRecord>);
    pins[customerId] = { pinHash: await this.pins.hash(pin), updatedAt: new Date().toISOString(), pinFailures: 0, pinFailedAt: null, lockedAt: null };
    await this.save();
  }

  async unlockCustomer(customerId: string): Promise<void> {
    const c = this.customerPin(customerId);
    if (c === undefined) fail('VND_ERR_CUSTOMER_UNKNOWN', 'this customer has no PIN');
    c.pinFailures = 0;
    c.pinFailedAt = null;
    c.lockedAt = null;
    await this.save();
  }

  /**
   * Checks a customer's PIN entered at a till, with the same backoff and lockout as staff
   * PINs (the customer's limit is `staffLockFailures`); wrong PINs also count against the
   * till.
   */
  async verifyCustomerPin(customerId: string, pin: string, at: { terminalId: string | null; audit?: (entry: PinAuditEntry) => void; now?: Date }): Promise<void> {
    const now = at.now ?? new Date();
    const c = this.customerPin(customerId);
    if (c === undefined) fail('VND_ERR_CUSTOMER_PIN', 'this customer has no PIN');
    const terminal = at.terminalId === null ? undefined : this.findTerminal(at.terminalId);
    const refuse = (code: 'VND_ERR_TERMINAL_LOCKED' | 'VND_ERR_CUSTOMER_LOCKED' | 'VND_ERR_RATE_LIMITED', details?: Record<string, unknown>): never => {
      at.audit?.({ event: 'customer-pin.refused', customerId, terminalId: at.terminalId, code });
      return fail(code, undefined, details);
    };
    if (terminal !== undefined && (terminal.pinLockedAt ?? null) !== null) refuse('VND_ERR_TERMINAL_LOCKED');
    if (c.lockedAt !== null) refuse('VND_ERR_CUSTOMER_LOCKED');
    const waitMs = Math.max(this.waitMs(c.pinFailures, c.pinFailedAt, now), this.waitMs(terminal?.pinFailures, terminal?.pinFailedAt, now));
    if (waitMs > 0) refuse('VND_ERR_RATE_LIMITED', { retryAfterMs: waitMs });
    const subjects = [{ key: `customer:${customerId}`, failures: c.pinFailures }];
    if (at.terminalId !== null) subjects.push({ key: `terminal:${at.terminalId}`, failures: terminal?.pinFailures ?? 0 });
    const done = this.beginCheck(subjects) ?? refuse('VND_ERR_RATE_LIMITED', { retryAfterMs: 0 });
    let ok: boolean;
    try {
      ok = await this.pins.verify(pin, c.pinHash);
    } finally {
      done();
    }
    if (ok) {
      if (c.pinFailures > 0) {
        c.pinFailures = 0;
        c.pinFailedAt = null;
        await this.save();
      }
      return;
    }
    const stamp = now.toISOString();
    c.pinFailures += 1;
    c.pinFailedAt = stamp;
    const entry: PinAuditEntry = { event: 'customer-pin.wrong', customerId, terminalId: at.terminalId };
    const locked: PinAuditEntry['event'][] = [];
    if (c.pinFailures >= this.pinPolicy.staffLockFailures) {
      c.lockedAt = stamp;
      locked.push('customer.locked');
    }
    if (terminal !== undefined) this.countTerminalFailure(terminal, stamp, entry, locked);
    await this.save();
    at.audit?.(entry);
    for (const event of locked) at.audit?.({ ...entry, event });
    fail('VND_ERR_CUSTOMER_PIN');
  }

  /** A wrong PIN at a till counts against the till too, whoever's PIN it was; enough of them lock its sign-ins. */
  private countTerminalFailure(terminal: TerminalRecord, stamp: string, entry: PinAuditEntry, locked: PinAuditEntry['event'][]): void {
    terminal.pinFailures = (terminal.pinFailures ?? 0) + 1;
    terminal.pinFailedAt = stamp;
    entry.terminalFailures = terminal.pinFailures;
    if (terminal.pinFailures >= this.pinPolicy.terminalLockFailures) {
      terminal.pinLockedAt = stamp;
      locked.push('terminal.locked');
    }
  }

  /** How long after its last failure a subject with this many failures must wait. */
  private backoffMs(failures: number): number {
    const p = this.pinPolicy;
    if (failures < p.freeFailures) return 0;
    return Math.min(p.backoffMaxMs, p.backoffBaseMs * 2 ** Math.min(failures - p.freeFailures, 30));
  }

  private waitMs(failures: number | undefined, failedAt: string | null | undefined, now: Date): number {
    if (failures === undefined || failures === 0 || failedAt === undefined || failedAt === null) return 0;
    return Math.max(0, Date.parse(failedAt) + this.backoffMs(failures) - now.getTime());
  }

  /**
   * Checks a staff id and PIN entered at a till (null for none); the same error for an
   * unknown id and a wrong PIN, in the same time. Wrong PINs count against the staff
   * member and the till, slow further attempts down and finally lock them (see
   * PinPolicy); each step is reported to `audit` for the log.
   */
  async authenticateStaff(
    staffId: string,
    pin: string,
    at: { terminalId: string | null; audit?: (entry: PinAuditEntry) => void; now?: Date } = { terminalId: null },
  ): Promise<StaffRecord> {
    const now = at.now ?? new Date();
    const terminal = at.terminalId === null ? undefined : this.findTerminal(at.terminalId);
    const staff = this.findStaff(staffId);
    const refuse = (code: 'VND_ERR_TERMINAL_LOCKED' | 'VND_ERR_STAFF_LOCKED' | 'VND_ERR_RATE_LIMITED', details?: Record<string, unknown>): never => {
      at.audit?.({ event: 'pin.refused', staffId, terminalId: at.terminalId, code });
      return fail(code, undefined, details);
    };
    if (terminal !== undefined && (terminal.pinLockedAt ?? null) !== null) refuse('VND_ERR_TERMINAL_LOCKED');
    if (staff !== undefined && (staff.lockedAt ?? null) !== null) refuse('VND_ERR_STAFF_LOCKED');
    const waitMs = Math.max(this.waitMs(staff?.pinFailures, staff?.pinFailedAt, now), this.waitMs(terminal?.pinFailures, terminal?.pinFailedAt, now));
    if (waitMs > 0) refuse('VND_ERR_RATE_LIMITED', { retryAfterMs: waitMs });
    const subjects = [{ key: `staff:${staffId}`, failures: staff?.pinFailures ?? 0 }];
    if (at.terminalId !== null) subjects.push({ key: `terminal:${at.terminalId}`, failures: terminal?.pinFailures ?? 0 });
    const done = this.beginCheck(subjects) ?? refuse('VND_ERR_RATE_LIMITED', { retryAfterMs: 0 });
    let ok: boolean;
    try {
      this.decoyPinHash ??= this.pins.hash(randomBytes(16).toString('hex'));
      ok = await this.pins.verify(pin, staff?.pinHash ?? (await this.decoyPinHash));
      ok = ok && staff !== undefined;
    } finally {
      done();
    }
    if (ok && staff !== undefined) {
      if ((staff.pinFailures ?? 0) > 0 || (terminal?.pinFailures ?? 0) > 0) {
        staff.pinFailures = 0;
        staff.pinFailedAt = null;
        if (terminal !== undefined) {
          terminal.pinFailures = 0;
          terminal.pinFailedAt = null;
        }
        await this.save();
      }
      return staff;
    }
    const stamp = now.toISOString();
    const entry: PinAuditEntry = { event: 'pin.wrong', staffId, terminalId: at.terminalId };
    const locked: PinAuditEntry['event'][] = [];
    if (staff !== undefined) {
      staff.pinFailures = (staff.pinFailures ?? 0) + 1;
      staff.pinFailedAt = stamp;
      entry.staffFailures = staff.pinFailures;
      if (staff.pinFailures >= this.pinPolicy.staffLockFailures) {
        staff.lockedAt = stamp;
        locked.push('staff.locked');
      }
    }
    if (terminal !== undefined) this.countTerminalFailure(terminal, stamp, entry, locked);
    await this.save();
    at.audit?.(entry);
    for (const event of locked) at.audit?.({ ...entry, event });
    return fail('VND_ERR_PIN');
  }
}
