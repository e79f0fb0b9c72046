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
}

export interface StaffRecord {
  id: string;
  name: string;
  role: 'cashier' | 'supervisor';
  pinHash: string;
  updatedAt: string;
}

export interface AccessData {
  operators: { id: string; tokenHash: string; createdAt: string }[];
  terminals: Record<string, TerminalRecord>;
  staff: Record<string, StaffRecord>;
  terminalSerial: number;
}

export const PAIRING_ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZ23456789';
export const PAIRING_CODE_LENGTH = 8;

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
  private constructor(
    private readonly db: Low<AccessData>,
    private readonly pins: PinHasher,
  ) {}

  /** Opens the access file; the PIN pepper lives in the keys directory beside it unless `pepperFile` says otherwise. */
  static async open(file: string, pepperFile = join(dirname(file), 'keys', 'pin-pepper.key')): Promise<AccessStore> {
    const db = new Low<AccessData>(new DurableJSONFile<AccessData>(file), { operators: [], terminals: {}, staff: {}, terminalSerial: 0 });
    await db.read();
    return new AccessStore(db, await PinHasher.open(pepperFile));
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
    const t = this.db.data.terminals[id];
    if (t === undefined) fail('VND_ERR_TERMINAL_UNKNOWN', `no terminal ${id.slice(0, 40)}`);
    return t;
  }

  /** Whether a credential is still the valid one of an unrevoked terminal. */
  credentialValid(terminalId: string, credentialId: string): boolean {
    const t = this.db.data.terminals[terminalId];
    return t !== undefined && t.revokedAt === null && t.credentialId === credentialId;
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
    const record: StaffRecord = { id: input.id, name: input.name, role: input.role, pinHash: await this.pins.hash(input.pin), updatedAt: new Date().toISOString() };
    this.db.data.staff[input.id] = record;
    await this.save();
    return record;
  }

  /** Checks a staff id and PIN; the same error for an unknown id and a wrong PIN. */
  async authenticateStaff(staffId: string, pin: string): Promise<StaffRecord> {
    const s = this.db.data.staff[staffId];
    const ok = s !== undefined && (await this.pins.verify(pin, s.pinHash));
    if (!ok || s === undefined) fail('VND_ERR_PIN');
    return s;
  }
}
