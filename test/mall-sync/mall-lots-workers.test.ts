import { expect } from 'chai';
import type { RunningMall } from '../../mall-sync/server.ts';
import { startTestMall } from '../helpers/mall.ts';
import { initMallOn, newKey, scenarioTokenTypes, tempDir } from './helpers.ts';

/**
 * Two mall-sync processes on one PostgreSQL database, both past the close time of the
 * same lots and both closing at the same moment: the mall's write lock and the state
 * caught up under it close each lot exactly once.
 */
const LOTS = 6;

describe('mall-sync on PostgreSQL: two workers racing to close the same mall lots', function () {
  this.timeout(120_000);
  let dir: string;
  let cleanup: () => Promise<void>;
  const workers: RunningMall[] = [];

  before(async () => {
    ({ dir, cleanup } = await tempDir());
    await initMallOn(dir, 'postgres');
  });
  after(async () => {
    for (const w of workers) await w.close();
    await cleanup?.();
  });

  it('closes each lot once, whichever worker gets there first', async () => {
    let nowMs = Date.now();
    const clock = () => new Date(nowMs);
    const registrar = await startTestMall(dir, 0, { clock });
    try {
      await registrar.service.registerVendor({ id: 'acme', name: 'ACME Market', jwk: (await newKey()).publicJwk });
      const mallToken = scenarioTokenTypes().find((t) => t.code === 'MALL');
      await registrar.service.upsertTokenType('MALL', mallToken);
      for (let i = 1; i <= LOTS; i++) {
        await registrar.lots.create({ key: `lot:race-${String(i).padStart(6, '0')}`, title: `Lot ${i}`, token: 'MALL', reserveUnits: 0, incrementUnits: 1, closesAt: new Date(nowMs + 60_000).toISOString() });
      }
    } finally {
      await registrar.close();
    }
    // Both workers start before the close time (so neither closes at start), then the time passes.
    workers.push(await startTestMall(dir, 0, { clock }), await startTestMall(dir, 0, { clock }));
    const [w1, w2] = workers as [RunningMall, RunningMall];
    nowMs += 60_001;
    const [a, b] = await Promise.all([w1.lots.closeDue(), w2.lots.closeDue()]);
    expect(a + b).to.equal(LOTS);
    // Each worker's state, caught up, shows every lot closed once; the event log has one close per lot.
    for (const w of workers) {
      await w.store.flushed();
      await w.store.exclusive(() => Promise.resolve());
      const closed: string[] = [];
      for (let seq = 1; seq <= w.store.state.seq; seq++) {
        const e = await w.store.read(seq);
        if (e.type === 'mall-lot.closed') closed.push(e.data.lotId);
      }
      expect(closed.sort()).to.deep.equal(Array.from({ length: LOTS }, (_, i) => `mlot-${String(i + 1).padStart(6, '0')}`));
      expect(Object.keys(w.store.state.mallLots.open)).to.deep.equal([]);
      expect(await w.lots.closeDue()).to.equal(0);
    }
  });
});
