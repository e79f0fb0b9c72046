import { expect } from 'chai';
import type { PrinterSimulator } from '../../hardware/printer/index.ts';
import { startTerminalRig, waitFor, type TerminalRig } from '../helpers/browser.ts';

const PEN = '4006381333931';
const ANNA_CARD = 'C0000000018';
const WAIT_MS = 30_000;

/**
 * The cash drawer with the real parts: a demo store, a paired terminal, and the printer
 * simulator that decodes the drawer kick and reports the drawer through DLE EOT. The
 * drawer opens when cash changes hands and at no other sale.
 */
describe('e2e: the cash drawer opens on cash sales and refunds, never on token-only sales', function () {
  this.timeout(120_000);
  let rig: TerminalRig;
  let sim: PrinterSimulator;

  before(async () => {
    rig = await startTerminalRig({
      terminal: {
        drawer: { pulse: { pin: 5, onMs: 60, offMs: 300 }, openWarnMs: 200, pollOpenMs: 20, pollIdleMs: 50 },
        // The test closes the drawer itself, as the cashier would.
        printerSimDrawerCloseAfterMs: 0,
      },
    });
    const s = rig.terminal.printerSim;
    if (s === null) throw new Error('no printer simulator');
    sim = s;
    await rig.terminal.app.command({ type: 'login', staffId: 'ana', pin: '1234' });
    await waitFor(() => rig.terminal.app.state().cashier !== null, WAIT_MS, 'the cashier signed in');
  });
  after(async () => {
    await rig?.close();
  });

  const app = () => rig.terminal.app;
  const lastMessage = () => app().state().message?.text ?? '';
  const sell = async (steps: () => Promise<void>): Promise<string> => {
    const before = sim.receipts().length;
    await app().command({ type: 'scan', code: PEN });
    await waitFor(() => app().state().priced !== null, WAIT_MS, 'the cart priced');
    await steps();
    await app().command({ type: 'complete' });
    const saleId = /sale (S\d{10}) complete/.exec(lastMessage())?.[1];
    if (saleId === undefined) throw new Error(`the sale did not complete: ${lastMessage()}`);
    await sim.waitForReceipts(before + 1, WAIT_MS);
    return saleId;
  };

  it('kicks the configured pin and pulse at a cash sale, shows the drawer open, and warns when it stays open', async () => {
    await waitFor(() => app().state().status.drawer.state === 'closed', WAIT_MS, 'the drawer reported closed');
    const saleId = await sell(async () => {
      await app().command({ type: 'setCash', cashTenderedMinor: 1000 });
    });
    expect(saleId).to.match(/^S\d{10}$/);
    const kicks = await sim.waitForDrawerKicks(1, WAIT_MS);
    expect(kicks.map(({ pin, onMs, offMs }) => ({ pin, onMs, offMs }))).to.deep.equal([{ pin: 5, onMs: 60, offMs: 300 }]);
    await waitFor(() => app().state().status.drawer.state === 'open', WAIT_MS, 'the drawer shown open');
    await waitFor(() => app().state().status.drawer.openTooLong, WAIT_MS, 'the warning that the drawer stays open');
    sim.closeDrawer();
    await waitFor(() => app().state().status.drawer.state === 'closed' && !app().state().status.drawer.openTooLong, WAIT_MS, 'the drawer shown closed');
  });

  it('never kicks at a sale paid with tokens only', async () => {
    const kicksBefore = sim.drawerKicks().length;
    await app().command({ type: 'scan', code: ANNA_CARD });
    await sell(async () => {
      await app().command({ type: 'setTenders', tenders: [{ token: 'ACME' }] });
      await waitFor(() => app().state().priced?.cashDueMinor === 0, WAIT_MS, 'the cart priced in tokens');
    });
    // The receipt printed after the sale completed; a kick would have gone before it.
    expect(sim.drawerKicks()).to.have.length(kicksBefore);
    expect(sim.drawerOpen()).to.equal(false);
  });

  it('kicks at a sale paid part with tokens and part with cash, and at the cash refund of a sale', async () => {
    const kicksBefore = sim.drawerKicks().length;
    await app().command({ type: 'scan', code: ANNA_CARD });
    const saleId = await sell(async () => {
      await app().command({ type: 'setTenders', tenders: [{ token: 'ACME', units: 40 }] });
      await waitFor(() => (app().state().priced?.cashDueMinor ?? 0) > 0, WAIT_MS, 'a cash part due');
      await app().command({ type: 'setCash', cashTenderedMinor: 500 });
    });
    await sim.waitForDrawerKicks(kicksBefore + 1, WAIT_MS);
    sim.closeDrawer();

    await app().command({ type: 'scan', code: saleId });
    await waitFor(() => app().state().refund !== null, WAIT_MS, 'the sale found for a refund');
    await app().command({ type: 'refund', staffId: 'sam', pin: '9999', reason: 'damaged item' });
    expect(lastMessage()).to.match(/in cash/);
    await sim.waitForDrawerKicks(kicksBefore + 2, WAIT_MS);
  });

  it('says so when the drawer cannot be opened, and the sale stays complete', async () => {
    const kicksBefore = sim.drawerKicks().length;
    sim.closeDrawer();
    await sim.stop();
    await app().command({ type: 'scan', code: PEN });
    await waitFor(() => app().state().priced !== null, WAIT_MS, 'the cart priced');
    await app().command({ type: 'setCash', cashTenderedMinor: 1000 });
    await app().command({ type: 'complete' });
    expect(lastMessage()).to.match(/sale S\d{10} complete/);
    await waitFor(() => app().state().status.drawer.lastKickError !== null, WAIT_MS, 'the kick failure shown');
    expect(app().state().status.drawer.lastKickError).to.match(/key/);
    expect(sim.drawerKicks()).to.have.length(kicksBefore);
  });
});
