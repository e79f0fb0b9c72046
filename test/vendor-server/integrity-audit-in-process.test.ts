import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import { sealCheckpoint, unsealCheckpoint } from '../../platform/storage/index.ts';
import { initVendor } from '../../vendor-server/init.ts';
import { AUDIT_IN_PROCESS_MAX } from '../../vendor-server/ledger/store.ts';
import { until } from '../helpers/process.ts';
import { startTestVendor, tempDir } from '../helpers/vendor.ts';
import { capturedLogger } from './helpers-files.ts';
import { TEST_PIN_HASH_COST } from '../helpers/pin-cost.ts';

const CUSTOMER_ACME = /("customer:cust-000001":\{"ACME":)(\d+)/;

/** A verdict, once the audit has one. */
const verdict = (server: Awaited<ReturnType<typeof startTestVendor>>) =>
  until('the integrity audit', () => (server.audit.status.state === 'checking' ? undefined : server.audit.status.state));

describe('vendor-server: a small journal is audited in the server process', function () {
  this.timeout(60_000);
  let dir: string;
  let cleanup: () => Promise<void>;

  beforeEach(async () => {
    ({ dir, cleanup } = await tempDir('mallpos-audit-small-'));
    await initVendor({ dataDir: dir, demo: true, host: '127.0.0.1', pinHashCost: TEST_PIN_HASH_COST });
  });
  afterEach(() => cleanup());

  it('confirms a small store without starting a process, and starts one when told to', async () => {
    const { logger, text } = capturedLogger();
    const server = await startTestVendor(dir, { logger });
    try {
      expect(server.ledger.state.seq).to.be.within(1, AUDIT_IN_PROCESS_MAX);
      // A process would be running now: spawning it is part of start().
      expect(server.audit.pid).to.equal(null);
      expect(await verdict(server)).to.equal('ok');
      expect(text()).to.include('ledger integrity confirmed');
    } finally {
      await server.close();
    }
    const again = await startTestVendor(dir, { auditInProcessMax: 0, auditNice: 0 });
    try {
      expect(again.audit.pid).to.be.a('number');
      expect(await verdict(again)).to.equal('ok');
    } finally {
      await again.close();
    }
  });

  it('raises the alarm in the server process for a checkpoint that does not match the journal', async () => {
    // A balance changed and the seal made again, as a store operator could: only a replay tells.
    const file = join(dir, 'ledger', 'state', 'checkpoint.json');
    const { header, stateText } = unsealCheckpoint(file, await readFile(file, 'utf8'));
    expect(stateText).to.match(CUSTOMER_ACME);
    await writeFile(file, sealCheckpoint(header.seq, header.hash, stateText.replace(CUSTOMER_ACME, (_m, head: string) => `${head}999999`)));
    const server = await startTestVendor(dir, { logger: capturedLogger().logger });
    try {
      expect(server.audit.pid).to.equal(null);
      expect(await verdict(server)).to.equal('damaged');
      expect(server.audit.status.detail).to.include('customer:cust-000001');
    } finally {
      await server.close();
    }
  });
});
