import { createHash, randomUUID } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { expect } from 'chai';
import { GENESIS_HASH } from '../../platform/storage/index.ts';
import { createLogger } from '../../platform/logger.ts';
import { startVendorServer } from '../../vendor-server/server.ts';
import { call, expectOk, startDemoStore, type DemoStore } from '../helpers/vendor.ts';
import type { SaleResult } from '../../core/index.ts';

describe('vendor server: operator HTTP API', function () {
  this.timeout(30_000);
  let store: DemoStore;
  before(async () => {
    store = await startDemoStore();
  });
  after(async () => store.close());

  it('answers health and Prometheus metrics without a credential', async () => {
    const health = await fetch(`${store.server.url}/health`);
    expect(health.status).to.equal(200);
    const h = (await health.json()) as { ok: boolean; vendorId: string; journalSeq: number };
    expect(h).to.include({ ok: true, vendorId: 'acme' });
    expect(h.journalSeq).to.equal(store.server.ledger.state.seq);
    const metrics = await (await fetch(`${store.server.url}/metrics`)).text();
    expect(metrics).to.match(/^mallpos_sales_total \d+$/m);
    expect(metrics).to.match(/^mallpos_journal_bytes [1-9]\d*$/m);
    expect(metrics).to.include('mallpos_journal_fsync_seconds_bucket');
  });

  it('manages the catalog', async () => {
    const put = await store.operator('PUT', '/api/products/5449000000996', { name: 'Cola 330 ml', priceMinor: 120, tokenPrices: { ACME: 24 } });
    expect(put.status, put.text).to.equal(200);
    const got = await store.operator('GET', '/api/products/5449000000996');
    expect(got.body).to.include({ gtin: '5449000000996', name: 'Cola 330 ml', priceMinor: 120 });
    const list = await store.operator('GET', '/api/products');
    expect(list.body.map((p: { gtin: string }) => p.gtin)).to.include('5449000000996');
  });

  it('registers customers and issues tokens at the rate of exchange, once per key', async () => {
    const created = await store.operator('POST', '/api/customers', { name: 'Zoë Kowalski' });
    expect(created.status, created.text).to.equal(200);
    const id: string = created.body.id;
    expect(created.body.card).to.match(/^C\d{10}$/);
    const byCard = await store.operator('GET', `/api/customers?card=${created.body.card}`);
    expect(byCard.body[0].id).to.equal(id);

    const floatBefore = (await store.operator('GET', '/api/float')).body.MALL as number;
    const key = randomUUID();
    const body = { customerId: id, token: 'MALL', units: 50, reason: 'purchase', cashMinor: 500 };
    const first = await store.operator('POST', '/api/issuances', body, { 'idempotency-key': key });
    expect(first.status, first.text).to.equal(200);
    const again = await store.operator('POST', '/api/issuances', body, { 'idempotency-key': key });
    expect(again.body.seq).to.equal(first.body.seq);
    const other = await store.operator('POST', '/api/issuances', { ...body, units: 51, cashMinor: 510 }, { 'idempotency-key': key });
    expect(other.status).to.equal(409);
    expect(other.body.error.code).to.equal('VND_ERR_IDEMPOTENCY_CONFLICT');
    const wrongPrice = await store.operator('POST', '/api/issuances', { ...body, cashMinor: 499 }, { 'idempotency-key': randomUUID() });
    expect(wrongPrice.body.error.code).to.equal('CORE_ERR_VALIDATION');

    const view = await store.operator('GET', `/api/customers/${id}`);
    expect(view.body.balances.find((b: { token: string }) => b.token === 'MALL').units).to.equal(50);
    expect((await store.operator('GET', '/api/float')).body.MALL).to.equal(floatBefore - 50);
    const history = await store.operator('GET', `/api/customers/${id}/history`);
    expect(history.body).to.have.length(1);
    expect(history.body[0].type).to.equal('issuance');
    expect(history.body[0].data.cashMinor).to.equal(500);
  });

  it('records allotments of the store\'s own tokens into the float exactly once', async () => {
    const before = (await store.operator('GET', '/api/float')).body.ACME as number;
    const key = randomUUID();
    for (let i = 0; i < 3; i++) {
      const res = await store.operator('POST', '/api/allotments', { token: 'ACME', units: 1000, reference: 'campaign 2' }, { 'idempotency-key': key });
      expect(res.status, res.text).to.equal(200);
    }
    expect((await store.operator('GET', '/api/float')).body.ACME).to.equal(before + 1000);
  });

  it('exports the ledger as hash-chained JSON lines and as CSV, and totals the day', async () => {
    const { terminalId, credential } = await store.pairTerminal();
    const socket = await store.connect(credential);
    expectOk(await call(socket, 'cashier:login', { staffId: 'ana', pin: '1234' }));
    const card = store.init.demo?.customers[2]?.card;
    const sale = expectOk(await call<SaleResult>(socket, 'sale:commit', { key: `${terminalId}:${randomUUID()}`, lines: [{ code: '4006381333931', qty: 1 }], card, tenders: [{ token: 'MALL' }], cashTenderedMinor: 0 }));

    const jsonl = await store.operator('GET', '/api/ledger/export?format=jsonl');
    expect(jsonl.status).to.equal(200);
    const lines = jsonl.text.trim().split('\n').map((l) => JSON.parse(l) as { hash: string; event: { seq: number; prev: string } });
    expect(lines).to.have.length(store.server.ledger.state.seq);
    let prev = GENESIS_HASH;
    for (const [i, l] of lines.entries()) {
      expect(l.event.seq).to.equal(i + 1);
      expect(l.event.prev).to.equal(prev);
      prev = l.hash;
    }
    // Each hash covers the event's exact bytes as journalled.
    const raw = jsonl.text.trim().split('\n').at(-1) ?? '';
    const eventText = raw.slice(raw.indexOf('"event":') + 8, -1);
    expect(createHash('sha256').update(eventText).digest('hex')).to.equal(lines.at(-1)?.hash);

    const csv = await store.operator('GET', '/api/ledger/export?format=csv');
    const rows = csv.text.trim().split('\n');
    expect(rows[0]).to.equal('seq,at,type,terminal,cashier,reference,account,token,units');
    const saleRows = rows.filter((r) => r.includes(sale.saleId));
    expect(saleRows).to.have.length(2);
    expect(saleRows.some((r) => r.endsWith(',redeemed,MALL,45'))).to.equal(true);

    const totals = await store.operator('GET', '/api/totals');
    expect(totals.body.sales).to.be.at.least(1);
    expect(totals.body.tokens.MALL).to.be.at.least(45);
  });

  it('lists terminals with their state', async () => {
    const { terminalId } = await store.pairTerminal('Till 7');
    const list = await store.operator('GET', '/api/terminals');
    const t = list.body.find((x: { id: string }) => x.id === terminalId);
    expect(t.pairedAt).to.be.a('string');
    expect(t.revokedAt).to.equal(null);
  });

  it('keeps secrets out of the logs', async () => {
    const out = new PassThrough();
    let logged = '';
    out.on('data', (d: Buffer) => (logged += d.toString()));
    await store.server.close();
    store.server = await startVendorServer({ dataDir: store.dir, port: 0, host: '127.0.0.1', logger: createLogger({ level: 'debug', destination: out }), defaultMetrics: false });
    const created = await store.operator('POST', '/api/terminals', { name: 'Till 8' });
    const paired = await (await fetch(`${store.server.url}/pair`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ code: created.body.pairingCode }) })).json() as { terminalId: string; credential: string };
    const socket = await store.connect(paired.credential);
    await call(socket, 'cashier:login', { staffId: 'ana', pin: '1234' });
    const staff = await store.operator('PUT', '/api/staff/sup2', { name: 'Second supervisor', role: 'supervisor', pin: '48151623' });
    expect(staff.status, staff.text).to.equal(200);
    await call(socket, 'sale:refund', { key: `${paired.terminalId}:${randomUUID()}`, saleId: 'S0000000001', reason: 'x', supervisor: { staffId: 'sup2', pin: '48151623' } });
    await new Promise((r) => setTimeout(r, 50));
    expect(logged).to.include('terminal paired');
    for (const secret of [store.init.operatorToken, created.body.pairingCode as string, paired.credential, '48151623']) {
      expect(logged).to.not.include(secret);
    }
  });
});
