import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { expect } from 'chai';
import type { SaleResult } from '../../core/index.ts';
import { initVendor } from '../../vendor-server/init.ts';
import { LedgerService } from '../../vendor-server/ledger/service.ts';
import { openLedger } from '../../vendor-server/ledger/store.ts';
import { startVendorServer } from '../../vendor-server/server.ts';
import { ROOT } from '../helpers/process.ts';
import { silentLogger, tempDir } from '../helpers/vendor.ts';
import { TEST_PIN_HASH_COST } from '../helpers/pin-cost.ts';

const FIXTURE = join(ROOT, 'test/vendor-server/fixtures/fail-after-append.ts');

function runFixture(args: string[], timeoutMs = 30_000): Promise<{ code: number | null; out: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

describe('vendor server: a failure after a journal append stops the process', function () {
  this.timeout(60_000);

  it('exits non-zero; the restart replays the event, applied once, and a retry gets the original sale', async () => {
    const { dir, cleanup } = await tempDir('mallpos-fatal-');
    try {
      const init = await initVendor({ dataDir: dir, demo: true, pinHashCost: TEST_PIN_HASH_COST });
      const customer = init.demo?.customers[0];
      if (customer === undefined) throw new Error('demo customers');
      const key = 't001:7b0c8f5e-1d2a-4f7e-9a55-0c1e2d3f4a5b';

      const run = await runFixture([dir, customer.card, key]);
      expect(run.out).to.not.include('the server went on');
      expect(run.code, run.out).to.equal(70);
      expect(run.out).to.include('failed after a journal append');
      const seqBefore = Number(/seq-before (\d+)/.exec(run.out)?.[1]);

      const server = await startVendorServer({ dataDir: dir, port: 0, host: '127.0.0.1', logger: silentLogger(), defaultMetrics: false });
      try {
        const { ledger } = server;
        expect(ledger.state.seq).to.equal(seqBefore + 1);
        const event = await ledger.readEvent(seqBefore + 1);
        expect(event.type).to.equal('sale');
        expect(event.key).to.equal(key);
        const acme = (id: string) => ledger.state.balances[`customer:${id}`]?.['ACME'] ?? 0;
        const expected = 200 - 90;
        expect(acme(customer.id)).to.equal(expected);
        const day = ledger.state.days[event.at.slice(0, 10)];
        expect(day?.sales).to.equal(1);

        const retry: SaleResult = await ledger.commitSale({ terminal: 't001', cashier: 'ana' }, { key, lines: [{ code: '4006381333931', qty: 1 }], card: customer.card, tenders: [{ token: 'ACME' }], cashTenderedMinor: 0 });
        expect(retry.seq).to.equal(seqBefore + 1);
        expect(ledger.state.seq).to.equal(seqBefore + 1);
        expect(acme(customer.id)).to.equal(expected);
      } finally {
        await server.close();
      }
    } finally {
      await cleanup();
    }
  });

  it('a failure once the sale is durable (the commit hook throws) stops the ledger too: the sale is in the journal, nothing more is served', async () => {
    const { dir, cleanup } = await tempDir('mallpos-fatal-hook-');
    try {
      const init = await initVendor({ dataDir: dir, demo: true, pinHashCost: TEST_PIN_HASH_COST });
      const customer = init.demo?.customers[0];
      if (customer === undefined) throw new Error('demo customers');
      const opened = await openLedger({ dataDir: join(dir, 'ledger'), vendorId: init.config.vendorId });
      const fatal: Error[] = [];
      let hookCalls = 0;
      const ledger = new LedgerService({ vendorId: init.config.vendorId, name: 'ACME', address: [], currency: 'EUR' }, opened.state, opened.journal, {
        onCommitted: () => {
          hookCalls += 1;
          throw new Error('injected failure in the commit hook');
        },
        onFatal: (err) => fatal.push(err),
      });
      try {
        const seqBefore = ledger.state.seq;
        const sale = { key: 't001:1e0c8f5e-1d2a-4f7e-9a55-0c1e2d3f4a5b', lines: [{ code: '4006381333931', qty: 1 }], card: customer.card, tenders: [{ token: 'ACME' }], cashTenderedMinor: 0 };
        const outcome = await ledger.commitSale({ terminal: 't001', cashier: 'ana' }, sale).then(
          () => 'answered',
          (err: unknown) => (err as Error).message,
        );
        expect(outcome).to.equal('injected failure in the commit hook');
        expect(hookCalls).to.equal(1);
        expect(fatal.map((e) => e.message)).to.deep.equal(['injected failure in the commit hook']);
        expect(opened.journal.durableSeq).to.equal(seqBefore + 1);
        expect((await ledger.readEvent(seqBefore + 1)).key).to.equal(sale.key);
        const next = await ledger.commitSale({ terminal: 't001', cashier: 'ana' }, { ...sale, key: 't001:2e0c8f5e-1d2a-4f7e-9a55-0c1e2d3f4a5b' }).then(
          () => null,
          (err: unknown) => (err as { code?: string }).code,
        );
        expect(next).to.equal('VND_ERR_SHUTTING_DOWN');
        expect(ledger.state.seq).to.equal(seqBefore + 1);
        expect(hookCalls).to.equal(1);
      } finally {
        await opened.journal.close();
      }
    } finally {
      await cleanup();
    }
  });
});
