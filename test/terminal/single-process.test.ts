import { expect } from 'chai';
import { PrinterSimulator } from '../../hardware/printer/index.ts';
import { pairTerminal } from '../../terminal/credential.ts';
import { startTerminal, type RunningTerminal } from '../../terminal/run.ts';
import { startDemoStore, tempDir, type DemoStore } from '../helpers/vendor.ts';

describe('pos-terminal: one process per data directory', function () {
  this.timeout(60_000);
  let store: DemoStore;

  before(async () => {
    store = await startDemoStore();
  });
  after(async () => store.close());

  it('refuses a second terminal on the same data directory and allows it once the first stopped', async () => {
    const { dir, cleanup } = await tempDir('mallpos-till-');
    const printer = new PrinterSimulator({ port: 0, host: '127.0.0.1', columns: 42 });
    const { port } = await printer.start();
    let first: RunningTerminal | null = null;
    try {
      const created = await store.operator('POST', '/api/terminals', { name: 'Till 1' });
      await pairTerminal(dir, store.server.url, created.body.pairingCode as string);
      const opts = { dataDir: dir, scanner: 'none', printer: `tcp://127.0.0.1:${port}`, port: 0 };
      first = await startTerminal(opts);
      const err = await startTerminal(opts).then(
        (t) => {
          void t.close();
          return null;
        },
        (e: unknown) => e as { code?: string; message?: string },
      );
      expect(err?.code).to.equal('POS_ERR_DATA_DIR_IN_USE');
      expect(err?.message).to.include(`another pos-terminal process (pid ${process.pid}`);
      await first.close();
      first = null;
      const again = await startTerminal(opts);
      await again.close();
    } finally {
      await first?.close();
      await printer.stop();
      await cleanup();
    }
  });
});
