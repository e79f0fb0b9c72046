import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import type { Ack, JournalEvent } from '../../core/index.ts';
import { writeConfig } from '../../vendor-server/config.ts';
import type { DemoStore } from '../helpers/vendor.ts';

/** The journal's bytes: what a refused request must leave untouched. */
export async function journalBytes(dataDir: string): Promise<string> {
  const dir = join(dataDir, 'ledger', 'journal');
  const parts = await Promise.all((await readdir(dir)).sort().map((f) => readFile(join(dir, f), 'utf8')));
  return parts.join('');
}

export function code(ack: Ack<unknown>): string | null {
  return ack.ok ? null : ack.error.code;
}

/** Every journalled event, through the operator's export. */
export async function exportJournal(store: DemoStore): Promise<JournalEvent[]> {
  const res = await store.operator('GET', '/api/ledger/export?format=jsonl');
  expect(res.status).to.equal(200);
  const lines = res.text.trim().split('\n');
  lines.pop(); // the trailer
  return lines.map((l) => (JSON.parse(l) as { event: JournalEvent }).event);
}

/** The balances and float as the operator sees them, to compare before and after a refusal. */
export async function ledgerPicture(store: DemoStore): Promise<{ seq: number; balances: string }> {
  return { seq: store.server.ledger.state.seq, balances: JSON.stringify(store.server.ledger.state.balances) };
}

/** Makes the store require an open shift for a sale (shifts are off unless configured) and restarts it. */
export async function requireShifts(store: DemoStore): Promise<void> {
  await writeConfig(store.dir, { ...store.init.config, shifts: { required: true } });
  await store.restart();
}
