import { expect } from 'chai';
import { auditArchive } from '../../mall-sync/audit.ts';
import type { StatementPayload } from '../../mall-sync/statements.ts';
import { archiveOf, forEachStore, registerEconomy, runMallCli, startMall, storeFingerprint, vendorPost, type MallRig, type RawVendor } from './helpers.ts';

const DATA = '/v1/vendors/bobs/customer-data';

forEachStore('mall-sync: the customer directory and the customer data toll (claims 2, 41)', (store) => {
  let mall: MallRig;
  let acme: RawVendor;
  let bobs: RawVendor;
  let admin: Record<string, string>;

  beforeEach(async () => {
    mall = await startMall({ store });
    ({ acme, bobs } = await registerEconomy(mall));
    admin = { authorization: `Bearer ${mall.init.adminToken}` };
    acme.register('c1', 'C1', { consent: true, name: 'Ann Example', contact: { email: 'ann@example.org', phone: '+3312345' } });
    acme.register('c2', 'C2', { consent: false, name: 'Bea Private', contact: { email: 'bea@example.org' } });
    acme.sale('c1', 'ACME', 90, { totalMinor: 450 });
    acme.sale('c1', 'ACME', 10, { totalMinor: 50 });
    acme.issue('c1', 'ACME', 200, 5);
    expect((await acme.push(mall)).ack.flagged).to.deep.equal([]);
    // The same card registered later at bobs: acme stays its home.
    bobs.register('b7', 'C1', { consent: false });
    expect((await bobs.push(mall)).status).to.equal(200);
  });
  afterEach(async () => {
    await mall?.close();
  });

  it('keeps card -> home store, customer id, consent and time; name and contact only with consent; later registrations elsewhere listed', async () => {
    const c1 = await mall.get('/admin/customers/C1', admin);
    expect(c1.status).to.equal(200);
    expect(c1.body).to.deep.include({ card: 'C1', home: 'acme', customer: 'c1', consent: true, name: 'Ann Example', contact: { email: 'ann@example.org', phone: '+3312345' } });
    expect(c1.body.alsoAt).to.have.length(1);
    expect(c1.body.alsoAt[0]).to.deep.include({ vendor: 'bobs', customer: 'b7' });
    const c2 = await mall.get('/admin/customers/C2', admin);
    expect(c2.body).to.deep.include({ home: 'acme', customer: 'c2', consent: false, name: null, contact: null });
    // Without consent, the name and contact are nowhere in the mall's state.
    expect(JSON.stringify(mall.mall.store.state)).to.not.match(/Bea Private|bea@example/);
    const none = await mall.get('/admin/customers/C404', admin);
    expect(none.status).to.equal(404);
    expect(none.body.error.code).to.equal('MALL_ERR_CUSTOMER_UNKNOWN');
    expect((await mall.get('/admin/customers/__proto__', admin)).status).to.equal(404);
    // The same entry from the command line.
    const cli = await runMallCli(['customer', '--data-dir', mall.dir, '--card', 'C1']);
    expect(cli.code, cli.stderr).to.equal(0);
    expect(JSON.parse(cli.stdout)).to.deep.include({ card: 'C1', home: 'acme', customer: 'c1', consent: true });
  });

  it('sells a consenting customer\'s data to another store for the toll, once per key, with an audit record; refuses without consent, unknown cards and own customers at no charge', async () => {
    const before = storeFingerprint(mall.mall);
    const noConsent = await vendorPost(mall, bobs.keys, 'bobs', DATA, { key: 'bobs:data-0001', card: 'C2' });
    expect(noConsent.status).to.equal(403);
    expect(noConsent.body.error.code).to.equal('MALL_ERR_NO_CONSENT');
    const unknown = await vendorPost(mall, bobs.keys, 'bobs', DATA, { key: 'bobs:data-0002', card: 'C404' });
    expect(unknown.status).to.equal(404);
    expect(unknown.body.error.code).to.equal('MALL_ERR_CUSTOMER_UNKNOWN');
    const own = await vendorPost(mall, acme.keys, 'acme', '/v1/vendors/acme/customer-data', { key: 'acme:data-0003', card: 'C1' });
    expect(own.status).to.equal(400);
    expect(own.body.error.message).to.match(/your own customer/);
    expect(storeFingerprint(mall.mall), 'a refusal charges nothing and records nothing').to.equal(before);

    const answer = await vendorPost(mall, bobs.keys, 'bobs', DATA, { key: 'bobs:data-0004', card: 'C1' });
    expect(answer.status, answer.text).to.equal(200);
    expect(answer.body).to.deep.include({ card: 'C1', home: { vendorId: 'acme', name: 'ACME Market' }, name: 'Ann Example', contact: { email: 'ann@example.org', phone: '+3312345' }, tollMinor: 25 });
    expect(answer.body.summary).to.deep.include({ sales: 2, spentMinor: 500, currency: 'EUR' });
    expect(answer.body.requestId).to.match(/^cdr-\d{6}$/);
    const again = await vendorPost(mall, bobs.keys, 'bobs', DATA, { key: 'bobs:data-0004', card: 'C1' });
    expect(again.text).to.equal(answer.text);
    const conflict = await vendorPost(mall, bobs.keys, 'bobs', DATA, { key: 'bobs:data-0004', card: 'C2' });
    expect(conflict.status).to.equal(400);
    // One toll: bobs owes the mall 25.
    const positions = await mall.admin.positions();
    expect(positions.positions['vendor:bobs']).to.equal(-25);
    expect(positions.sumMinor).to.equal(0);
    const trail = await mall.get('/admin/customer-data-requests', admin);
    expect(trail.body).to.have.length(1);
    expect(trail.body[0]).to.deep.include({ requestId: answer.body.requestId, requester: 'bobs', card: 'C1', home: 'acme', tollMinor: 25 });
    const today = new Date().toISOString().slice(0, 10);
    const st = (await mall.admin.statements(today, today)).find((s) => s.vendor === 'bobs')?.statement as StatementPayload;
    expect(st.totals).to.deep.include({ dataTollMinor: 25, netMinor: -25 });
    // Durable and the same after a restart.
    await mall.restart();
    const third = await vendorPost(mall, bobs.keys, 'bobs', DATA, { key: 'bobs:data-0004', card: 'C1' });
    expect(third.text).to.equal(answer.text);
    expect((await mall.admin.positions()).positions['vendor:bobs']).to.equal(-25);
    // The statement issued above is rebuilt from the archive alone, toll included.
    const audit = await auditArchive(await archiveOf(mall));
    expect(audit.ok, audit.differences.join('\n')).to.equal(true);
  });
});
