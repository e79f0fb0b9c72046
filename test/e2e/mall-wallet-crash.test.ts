import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'chai';
import { MallAdminClient } from '../../mall-sync/admin-client.ts';
import { auditArchive } from '../../mall-sync/audit.ts';
import { initMall } from '../../mall-sync/init.ts';
import { MALL_STOP_AT_ENV, type MallStopPoint } from '../../mall-sync/stop-at.ts';
import { http } from '../helpers/http.ts';
import { killHard, spawnMall, START_DEADLINE_MS, until, type ChildServer } from '../helpers/process.ts';
import { tempDir } from '../helpers/temp.ts';
import { registerEconomy, vendorAuth, vendorPost, type RawVendor } from '../mall-sync/helpers.ts';

const PIN = '470215';
const AUTH = '/v1/vendors/bobs/wallet/authorisations';

/**
 * The real mall (`mall-sync serve`, a child process on the embedded store) killed with
 * SIGKILL at the moments of a wallet authorisation that matter: while the hold is being
 * made durable (signed into the archive, not yet committed), once it is durable but
 * before its answer is sent, and once a capture is durable but unanswered. After each
 * restart the store's retry with the same key gets the same authorisation (or, when it
 * never became durable, a fresh one), every hold is counted once, captures and releases
 * after the restart come out right, and the mall's own audit of its archive and its
 * wallet check agree.
 */
describe('e2e: the mall killed between a wallet authorisation and its answer (child process)', function () {
  this.timeout(240_000);
  let dir: string;
  let cleanup: () => Promise<void>;
  let adminToken: string;
  let mall: (ChildServer & { caPem: string }) | null = null;
  let acme: RawVendor;
  let bobs: RawVendor;

  const start = async (stopAt: MallStopPoint | null) => {
    mall = await spawnMall(dir, 0, START_DEADLINE_MS, stopAt === null ? {} : { [MALL_STOP_AT_ENV]: stopAt });
    return mall;
  };
  const url = () => mall?.url ?? '';
  const admin = () => new MallAdminClient(url(), adminToken, mall?.caPem ?? '');
  const hold = (key: string, units: number) => vendorPost(url(), bobs.keys, 'bobs', AUTH, { key, card: 'C1', token: 'ACME', units, purpose: 'sale', pin: PIN });
  const wallet = async () => (await http(`${url()}/v1/vendors/bobs/wallet/C1`, 'GET', undefined, await vendorAuth(bobs.keys, 'bobs'))).body as { balances: Record<string, number>; held: Record<string, number> };
  /** Sends `request` to a mall set to die on it: the request gets no answer, and the process dies of SIGKILL. */
  const killedBy = async (request: () => Promise<unknown>) => {
    const child = mall?.child;
    if (child === undefined) throw new Error('no mall');
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
    const answer = await request().then(
      (res) => res,
      () => null,
    );
    expect(answer, 'the request got no answer').to.equal(null);
    expect(await exited).to.equal('SIGKILL');
    mall = null;
  };
  /** The mall's audit of its archive and its wallet check, both clean. */
  const audited = async () => {
    const check = await admin().walletCheck();
    expect(check.ok, JSON.stringify(check)).to.equal(true);
    const audit = await auditArchive(join(dir, 'archive'));
    expect(audit.differences).to.deep.equal([]);
    expect(audit.ok).to.equal(true);
  };

  before(async () => {
    ({ dir, cleanup } = await tempDir('mallpos-mall-crash-'));
    adminToken = (await initMall({ dataDir: dir })).adminToken;
    await start(null);
    ({ acme, bobs } = await registerEconomy({ admin: admin() }));
    await admin().upsertTokenType({ code: 'ACME', name: 'ACME token', kind: 'vendor', issuer: 'acme', faceValueMinor: 5, currency: 'EUR', acceptedBy: ['acme', 'bobs'] });
    // acme's customer puts 100 ACME into the wallet of card C1 and chooses a PIN; bobs knows the card.
    acme.register('c1', 'C1', { consent: true, name: 'Ann' });
    acme.issue('c1', 'ACME', 200, 5);
    acme.move('c1', 'C1', 'to-wallet', 'ACME', 100);
    expect((await acme.push(url())).ack.flagged).to.deep.equal([]);
    bobs.register('b1', 'C1');
    expect((await bobs.push(url())).status).to.equal(200);
    expect((await vendorPost(url(), acme.keys, 'acme', '/v1/vendors/acme/wallet/pin', { key: 'acme:pin-1', card: 'C1', pin: PIN })).status).to.equal(200);
    await killHard((mall as ChildServer).child);
    mall = null;
  });
  after(async () => {
    if (mall !== null) await killHard(mall.child);
    await cleanup?.();
  });

  it('killed with the hold durable and its answer unsent: the retry gets the same authorisation, held once; capture and release after the restart are right', async () => {
    await start('wallet-authorise-durable');
    await killedBy(() => hold('bobs:crash-1', 30));
    await start(null);
    // The hold was made before the crash: it is there, once.
    expect(await wallet()).to.deep.include({ balances: { ACME: 100 }, held: { ACME: 30 } });
    const retried = await hold('bobs:crash-1', 30);
    expect(retried.status, retried.text).to.equal(200);
    const id = retried.body.authorisation.id as string;
    expect(retried.body.authorisation).to.deep.include({ card: 'C1', token: 'ACME', units: 30 });
    expect((await hold('bobs:crash-1', 30)).text, 'the same answer every time').to.equal(retried.text);
    expect(await wallet()).to.deep.include({ held: { ACME: 30 } });
    // The other 70 can be held, and not one more.
    const rest = await hold('bobs:crash-1b', 70);
    expect(rest.status, rest.text).to.equal(200);
    expect((await hold('bobs:crash-1c', 1)).body.error.code).to.equal('MALL_ERR_WALLET_INSUFFICIENT');
    // The store commits a sale with the first hold and captures it; it releases the other.
    const sale = bobs.sale(null, 'ACME', 30, { wallet: [{ authorisation: id, units: 30 }] });
    expect((await vendorPost(url(), bobs.keys, 'bobs', `${AUTH}/${id}/capture`, { key: 'bobs:crash-1.capture', eventSeq: sale })).body).to.deep.equal({ captured: true });
    expect((await vendorPost(url(), bobs.keys, 'bobs', `${AUTH}/${rest.body.authorisation.id as string}/release`, { key: 'bobs:crash-1b.release' })).body).to.deep.equal({ released: true });
    expect((await bobs.push(url())).ack.flagged).to.deep.equal([]);
    expect(await wallet()).to.deep.include({ balances: { ACME: 70 }, held: {} });
    await audited();
    await killHard((mall as ChildServer).child);
    mall = null;
  });

  it('killed while the hold is being made durable (signed into the archive, not committed): it never was; the retry makes it afresh, once', async () => {
    await start(null);
    const before = await wallet();
    await killHard((mall as ChildServer).child);
    const entries = async () => (await readdir(join(dir, 'archive', 'registry'))).length;
    const signed = await entries();
    await start('wallet-authorise-archived');
    await killedBy(() => hold('bobs:crash-2', 20));
    expect(await entries(), 'the hold was signed into the archive when the mall died').to.equal(signed + 1);
    await start(null);
    expect(await wallet(), 'nothing held by a hold that never became durable').to.deep.include({ balances: before.balances, held: before.held });
    const fresh = await hold('bobs:crash-2', 20);
    expect(fresh.status, fresh.text).to.equal(200);
    expect((await hold('bobs:crash-2', 20)).text).to.equal(fresh.text);
    expect(await wallet()).to.deep.include({ balances: { ACME: 70 }, held: { ACME: 20 } });
    // The entry signed before the crash was dropped on start and signed again: the audit agrees.
    await audited();
    await killHard((mall as ChildServer).child);
    mall = null;
  });

  it('killed with a capture durable and its answer unsent: the retry is answered captured, the wallet debited once, and the batch captures nothing more', async () => {
    await start(null);
    const open = await hold('bobs:crash-2', 20);
    const id = open.body.authorisation.id as string;
    await killHard((mall as ChildServer).child);
    await start('wallet-capture-durable');
    const sale = bobs.sale(null, 'ACME', 20, { wallet: [{ authorisation: id, units: 20 }] });
    await killedBy(() => vendorPost(url(), bobs.keys, 'bobs', `${AUTH}/${id}/capture`, { key: 'bobs:crash-2.capture', eventSeq: sale }));
    await start(null);
    expect(await wallet()).to.deep.include({ balances: { ACME: 50 }, held: {} });
    const again = await vendorPost(url(), bobs.keys, 'bobs', `${AUTH}/${id}/capture`, { key: 'bobs:crash-2.capture', eventSeq: sale });
    expect([again.status, again.body]).to.deep.equal([200, { captured: true }]);
    const released = await vendorPost(url(), bobs.keys, 'bobs', `${AUTH}/${id}/release`, { key: 'bobs:crash-2.release' });
    expect(released.body.error.code).to.equal('MALL_ERR_AUTHORISATION_SPENT');
    expect((await bobs.push(url())).ack.flagged).to.deep.equal([]);
    await until('the batch ingested', async () => ((await wallet()).balances['ACME'] === 50 ? true : undefined));
    expect(await wallet()).to.deep.include({ balances: { ACME: 50 }, held: {} });
    await audited();
  });
});
