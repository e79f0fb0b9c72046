import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { expect } from 'chai';
import pg from 'pg';
import { auditArchive } from '../../mall-sync/audit.ts';
import { loadMallConfig } from '../../mall-sync/config.ts';
import { reconcile } from '../../mall-sync/reconcile.ts';
import { createLogger } from '../../platform/logger.ts';
import { bytesUnder } from '../helpers/file-bytes.ts';
import { archiveOf, forEachStore, registerEconomy, runMallCli, startMall, storeFingerprint, vendorAuth, vendorPost, type MallRig, type RawVendor } from './helpers.ts';

/**
 * The wallet PIN, played by hostile stores: a store that names a card it does not own
 * cannot hold or spend its wallet without the PIN; guesses are counted per card at the
 * mall across stores and lock the wallet; a PIN set cannot be overwritten without the old
 * one; and the PIN itself is nowhere in what the mall keeps or logs.
 */
const PIN = '804172935516';
const today = () => new Date().toISOString().slice(0, 10);

forEachStore('mall-sync: the wallet PIN against hostile stores', function (store) {
  this.timeout(60_000);
  let mall: MallRig;
  let acme: RawVendor;
  let bobs: RawVendor;
  let logged = '';

  beforeEach(async () => {
    logged = '';
    const sink = new PassThrough();
    sink.on('data', (d: Buffer) => (logged += d.toString('latin1')));
    mall = await startMall({ store, logger: createLogger({ level: 'debug', name: 'mall-sync', destination: sink }) });
    ({ acme, bobs } = await registerEconomy(mall));
    // acme's customer puts 100 ACME into the wallet of card C1 and chooses a PIN; bobs knows the card too.
    acme.register('c1', 'C1', { consent: true, name: 'Ann' });
    acme.issue('c1', 'ACME', 200, 5);
    acme.move('c1', 'C1', 'to-wallet', 'ACME', 100);
    // Card C2 has a wallet but no PIN yet.
    acme.register('c2', 'C2');
    acme.issue('c2', 'ACME', 50, 5);
    acme.move('c2', 'C2', 'to-wallet', 'ACME', 50);
    expect((await acme.push(mall)).ack.flagged).to.deep.equal([]);
    bobs.register('b1', 'C1');
    expect((await bobs.push(mall)).status).to.equal(200);
    const set = await setPin(acme, { key: 'acme:pin-1', card: 'C1', pin: PIN });
    expect([set.status, set.body]).to.deep.equal([200, { card: 'C1', pinSet: true }]);
  });
  afterEach(async () => {
    await mall?.close();
  });

  const setPin = (vendor: RawVendor, body: Record<string, unknown>) => vendorPost(mall, vendor.keys, vendor.vendorId, `/v1/vendors/${vendor.vendorId}/wallet/pin`, body);
  const hold = (vendor: RawVendor, key: string, pin: unknown, card = 'C1', units = 10) =>
    vendorPost(mall, vendor.keys, vendor.vendorId, `/v1/vendors/${vendor.vendorId}/wallet/authorisations`, { key, card, token: 'ACME', units, purpose: 'sale', ...(pin === undefined ? {} : { pin }) });
  const wallet = async (card = 'C1') => (await mall.get(`/v1/vendors/bobs/wallet/${card}`, await vendorAuth(bobs.keys, 'bobs'))).body;
  const adminGet = async (path: string) => (await mall.get(path, { authorization: `Bearer ${mall.init.adminToken}` })).body;

  it('refuses a hold without the PIN, with a wrong one, and on a wallet without a PIN; the right PIN holds; the balance says whether a PIN is set', async () => {
    expect(await wallet()).to.deep.include({ balances: { ACME: 100 }, held: {}, pinSet: true, locked: false });
    expect(await wallet('C2')).to.deep.include({ balances: { ACME: 50 }, pinSet: false });
    const before = storeFingerprint(mall.mall);
    const none = await hold(bobs, 'bobs:h-1', undefined);
    expect([none.status, none.body.error.code]).to.deep.equal([403, 'MALL_ERR_WALLET_PIN_REQUIRED']);
    const noPin = await hold(bobs, 'bobs:h-2', '1234', 'C2');
    expect([noPin.status, noPin.body.error.code]).to.deep.equal([409, 'MALL_ERR_WALLET_PIN_NOT_SET']);
    // Refusals without a guess change nothing at all.
    expect(storeFingerprint(mall.mall)).to.equal(before);
    const wrong = await hold(bobs, 'bobs:h-3', '0000');
    expect([wrong.status, wrong.body.error.code, wrong.body.error.message]).to.deep.equal([403, 'MALL_ERR_WALLET_PIN', 'wrong wallet PIN for card C1']);
    // An unknown card is answered in the same way.
    const unknown = await hold(bobs, 'bobs:h-4', '0000', 'C404');
    expect([unknown.status, unknown.body.error]).to.deep.equal([wrong.status, { ...wrong.body.error, message: 'wrong wallet PIN for card C404', details: { card: 'C404' } }]);
    expect(await wallet()).to.deep.include({ balances: { ACME: 100 }, held: {} });
    expect(mall.mall.store.state.authorisations).to.deep.equal({});
    const right = await hold(bobs, 'bobs:h-5', PIN);
    expect(right.status, right.text).to.equal(200);
    expect(await wallet()).to.deep.include({ balances: { ACME: 100 }, held: { ACME: 10 } });
    // A retry of the same key is the same hold, whatever PIN it carries: the PIN is not part of the request.
    const retried = await hold(bobs, 'bobs:h-5', '9999');
    expect(retried.text).to.equal(right.text);
    // The right PIN reset the count of the wrong one before it.
    expect(await adminGet('/admin/wallets/C1/pin')).to.deep.equal({ card: 'C1', pinSet: true, failures: 0, failedBy: {}, lockedAt: null });
  });

  it('attack: 10 wrong guesses spread over two stores lock the wallet at every store, the right PIN too, until the operator unlocks it; nothing moved', async () => {
    const balances = await wallet();
    for (let i = 1; i <= 9; i++) {
      const guess = await hold(i % 2 === 0 ? acme : bobs, `${i % 2 === 0 ? 'acme' : 'bobs'}:g-${i}`, String(1000 + i));
      expect([guess.status, guess.body.error.code], `guess ${i}`).to.deep.equal([403, 'MALL_ERR_WALLET_PIN']);
    }
    expect(await adminGet('/admin/wallets/C1/pin')).to.deep.include({ failures: 9, failedBy: { bobs: 5, acme: 4 }, lockedAt: null });
    // Survives a restart: the count is mall state.
    await mall.restart();
    const tenth = await hold(acme, 'acme:g-10', '1010');
    expect([tenth.status, tenth.body.error.code]).to.deep.equal([423, 'MALL_ERR_WALLET_LOCKED']);
    for (const [vendor, key] of [
      [bobs, 'bobs:r-1'],
      [acme, 'acme:r-1'],
    ] as const) {
      const right = await hold(vendor, key, PIN);
      expect([right.status, right.body.error.code], vendor.vendorId).to.deep.equal([423, 'MALL_ERR_WALLET_LOCKED']);
    }
    // Nor can the PIN be changed while locked, even with the right one.
    const change = await setPin(bobs, { key: 'bobs:pin-c', card: 'C1', pin: '1111', oldPin: PIN });
    expect(change.body.error.code).to.equal('MALL_ERR_WALLET_LOCKED');
    const locked = await wallet();
    expect(locked).to.deep.equal({ ...balances, asOf: locked.asOf, locked: true });
    expect(mall.mall.store.state.authorisations).to.deep.equal({});
    const check = await adminGet('/admin/wallet-check');
    expect(check.ok).to.equal(true);
    // The alarm names the card and the stores that sent wrong PINs.
    const alarm = (await mall.admin.alarms()).find((a) => a.kind === 'wallet-pin');
    expect(alarm).to.deep.include({ card: 'C1', vendor: 'acme' });
    expect(alarm?.message).to.equal('the wallet of card C1 is locked after 10 wrong PINs (bobs: 5, acme: 5)');
    const rec = await reconcile(mall.dir, today(), today(), join(mall.dir, 'reconciled'));
    expect(rec.problems.some((p) => p.startsWith('WALLET PIN ALARM acme: the wallet of card C1 is locked') && p.includes('mall-sync wallet unlock --card C1'))).to.equal(true);
    // Every wrong PIN and the lockout are logged, with card, store and count.
    const lines = logged.split('\n').filter((l) => l.includes('wallet PIN') || l.includes('wallet locked'));
    expect(lines.filter((l) => l.includes('"msg":"wrong wallet PIN"'))).to.have.length(9);
    expect(lines.filter((l) => l.includes('"msg":"wallet locked after wrong PINs"'))).to.have.length(1);
    expect(lines.at(-1)).to.contain('"card":"C1"').and.contain('"failures":10');
    // The operator unlocks it with the CLI: the right PIN holds again, at either store.
    const cli = await runMallCli(['wallet', 'unlock', '--data-dir', mall.dir, '--card', 'C1']);
    expect(cli.code, cli.stderr).to.equal(0);
    expect(JSON.parse(cli.stdout)).to.deep.equal({ card: 'C1', pinSet: true, failures: 0, failedBy: {}, lockedAt: null });
    const after = await hold(bobs, 'bobs:r-2', PIN);
    expect(after.status, after.text).to.equal(200);
    expect(await wallet()).to.deep.include({ balances: { ACME: 100 }, held: { ACME: 10 }, locked: false });
    // The audit replays the signed history, PIN events included, to the same positions.
    const audit = await auditArchive(await archiveOf(mall));
    expect(audit.differences).to.deep.equal([]);
    expect(audit.ok).to.equal(true);
  });

  it('attack: a PIN set cannot be replaced without the old one; a wrong old PIN counts; the right one changes it', async () => {
    const before = storeFingerprint(mall.mall);
    const over = await setPin(bobs, { key: 'bobs:pin-1', card: 'C1', pin: '1234' });
    expect([over.status, over.body.error.code]).to.deep.equal([403, 'MALL_ERR_WALLET_PIN_REQUIRED']);
    expect(storeFingerprint(mall.mall)).to.equal(before);
    const guess = await setPin(bobs, { key: 'bobs:pin-2', card: 'C1', pin: '1234', oldPin: '0000' });
    expect([guess.status, guess.body.error.code]).to.deep.equal([403, 'MALL_ERR_WALLET_PIN']);
    expect(await adminGet('/admin/wallets/C1/pin')).to.deep.include({ failures: 1, failedBy: { bobs: 1 } });
    // The old PIN still holds; the guessed one does not.
    expect((await hold(bobs, 'bobs:h-1', '1234')).body.error.code).to.equal('MALL_ERR_WALLET_PIN');
    expect((await hold(bobs, 'bobs:h-2', PIN)).status).to.equal(200);
    // The customer changes it at bobs with the old PIN: the old one no longer holds.
    const changed = await setPin(bobs, { key: 'bobs:pin-3', card: 'C1', pin: '7531', oldPin: PIN });
    expect([changed.status, changed.body]).to.deep.equal([200, { card: 'C1', pinSet: true }]);
    expect((await hold(bobs, 'bobs:h-3', PIN)).body.error.code).to.equal('MALL_ERR_WALLET_PIN');
    expect((await hold(bobs, 'bobs:h-4', '7531')).status).to.equal(200);
    // A wallet without a PIN has none to change; an unknown card gets none.
    expect((await setPin(bobs, { key: 'bobs:pin-4', card: 'C2', pin: '1234', oldPin: '1234' })).body.error.code).to.equal('MALL_ERR_WALLET_PIN_NOT_SET');
    expect((await setPin(bobs, { key: 'bobs:pin-5', card: 'C404', pin: '1234' })).body.error.code).to.equal('MALL_ERR_CUSTOMER_UNKNOWN');
    // The same key again is the same answer; its other form (a change rather than a first PIN) is refused.
    const again = await setPin(bobs, { key: 'bobs:pin-3', card: 'C1', pin: '7531', oldPin: PIN });
    expect(again.body).to.deep.equal({ card: 'C1', pinSet: true });
    const reused = await setPin(bobs, { key: 'bobs:pin-3', card: 'C1', pin: '7531' });
    expect(reused.body.error.code).to.equal('MALL_ERR_VALIDATION');
  });

  it('attack: oversized, non-digit, non-string and __proto__ PINs are validation errors that change nothing', async () => {
    const before = storeFingerprint(mall.mall);
    for (const pin of ['1'.repeat(13), '123', '12a4', ' 1234', '１２３４', '__proto__', 1234, null, { toString: '1234' }, ['1234']]) {
      const h = await hold(bobs, 'bobs:v-1', pin);
      expect([h.status, h.body.error.code], JSON.stringify(pin)).to.deep.equal([400, 'MALL_ERR_VALIDATION']);
      expect(h.body.error.message).to.match(/^pin: /);
      const s = await setPin(bobs, { key: 'bobs:v-2', card: 'C2', pin });
      expect([s.status, s.body.error.code], JSON.stringify(pin)).to.deep.equal([400, 'MALL_ERR_VALIDATION']);
      const o = await setPin(bobs, { key: 'bobs:v-3', card: 'C1', pin: '1234', oldPin: pin });
      expect([o.status, o.body.error.code], JSON.stringify(pin)).to.deep.equal([400, 'MALL_ERR_VALIDATION']);
    }
    const proto = await vendorPost(mall, bobs.keys, 'bobs', '/v1/vendors/bobs/wallet/pin', JSON.parse('{"key":"bobs:v-4","card":"C2","pin":"1234","__proto__":{"oldPin":"1"}}'));
    expect(proto.body.error.code).to.equal('MALL_ERR_VALIDATION');
    expect(storeFingerprint(mall.mall)).to.equal(before);
    expect(await adminGet('/admin/wallets/C1/pin')).to.deep.include({ failures: 0 });
  });

  it('keeps the PIN out of the journal, the archive, the database and the logs: only its salted hash', async () => {
    await hold(bobs, 'bobs:h-1', PIN);
    await hold(bobs, 'bobs:h-2', '918273645546');
    await setPin(acme, { key: 'acme:pin-2', card: 'C1', pin: '135792468024', oldPin: PIN });
    expect(mall.mall.store.state.walletPins['C1']?.hash).to.match(/^scrypt\$16384\$8\$1\$[0-9a-f]{32}\$[0-9a-f]{64}$/);
    await mall.restart();
    let kept = await bytesUnder(mall.dir);
    kept += await bytesUnder(await archiveOf(mall));
    if (store === 'postgres') {
      const config = await loadMallConfig(mall.dir);
      const client = new pg.Client({ connectionString: config.store.kind === 'postgres' ? config.store.databaseUrl : '' });
      await client.connect();
      try {
        const { rows } = await client.query<{ t: string }>("SELECT coalesce(string_agg(body::text, ''), '') AS t FROM mall_events");
        kept += rows[0]?.t ?? '';
        expect(kept).to.contain('wallet.pin-set');
      } finally {
        await client.end();
      }
    }
    expect(kept).to.contain('scrypt$16384$8$1$');
    for (const pin of [PIN, '135792468024', '918273645546']) {
      expect(kept.includes(pin), `the data keeps ${pin}`).to.equal(false);
      expect(logged.includes(pin), `the log holds ${pin}`).to.equal(false);
    }
    expect(logged).to.contain('wrong wallet PIN');
  });
});
