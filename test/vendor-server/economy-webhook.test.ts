import { stat } from 'node:fs/promises';
import { expect } from 'chai';
import { makeCardNumber, type JournalEvent } from '../../core/index.ts';
import { acceptedSecrets, readWebhookSecrets, rotateWebhookSecret, webhookSecretPath, WEBHOOK_SECRET_GRACE_MS } from '../../vendor-server/economy/webhook-secret.ts';
import { WEBHOOK_BODY_BYTES_MAX, webhookSignature } from '../../vendor-server/economy/webhooks.ts';
import { http, type HttpResult } from '../helpers/http.ts';
import { runCli } from '../helpers/process.ts';
import { startDemoStore, type DemoStore } from '../helpers/vendor.ts';
import { exportJournal, journalBytes, ledgerPicture } from './economy-helpers.ts';

const ACME_FACE = 5;

describe('vendor server: online purchases by the payment webhook (POST /webhooks/payments)', function () {
  this.timeout(120_000);
  let store: DemoStore;
  let secret: string;
  let card: string;
  let otherCard: string;
  let customerId: string;
  let paymentSerial = 0;

  const now = () => Math.floor(Date.now() / 1000);
  const payment = (over: Record<string, unknown> = {}) => ({
    paymentId: `pi_test_${++paymentSerial}_${Date.now()}`,
    provider: 'testpay',
    card,
    token: 'ACME',
    units: 40,
    amountMinor: 40 * ACME_FACE,
    currency: 'EUR',
    ...over,
  });
  /** Posts a raw body with a signature header as a provider would. */
  const deliver = (raw: string, header: string | null): Promise<HttpResult> =>
    http(`${store.server.url}/webhooks/payments`, 'POST', raw, { 'content-type': 'application/json', ...(header === null ? {} : { 'mallpos-signature': header }) });
  const signed = (raw: string, opts: { t?: number; key?: string } = {}) => {
    const t = opts.t ?? now();
    return deliver(raw, `t=${t},v1=${webhookSignature(opts.key ?? secret, t, raw)}`);
  };
  const acme = () => store.server.ledger.customerView(customerId).balances.find((b) => b.token === 'ACME')?.units ?? 0;

  before(async () => {
    store = await startDemoStore();
    const file = await readWebhookSecrets(store.dir);
    secret = file?.current.secret as string;
    card = store.init.demo?.customers[3]?.card as string;
    customerId = store.init.demo?.customers[3]?.id as string;
    otherCard = store.init.demo?.customers[4]?.card as string;
  });
  after(async () => store.close());

  it('init made a 32-byte secret readable by the owner only', async () => {
    expect(secret).to.match(/^mpwh_[0-9a-f]{64}$/);
    expect((await stat(webhookSecretPath(store.dir))).mode & 0o777).to.equal(0o600);
  });

  it('credits a signed purchase once, durable, journalled as an issuance paid online', async () => {
    const before = acme();
    const floatBefore = store.server.ledger.float()['ACME'] as number;
    const totalsBefore = (await store.operator('GET', `/api/totals?date=${new Date().toISOString().slice(0, 10)}`)).body;
    const body = payment();
    const raw = JSON.stringify(body);
    const res = await signed(raw);
    expect(res.status, res.text).to.equal(200);
    expect(res.body).to.include({ credited: true, paymentId: body.paymentId, token: 'ACME', units: 40 });
    expect(acme()).to.equal(before + 40);
    expect(store.server.ledger.float()['ACME']).to.equal(floatBefore - 40);
    const e = (await exportJournal(store)).find((x) => x.seq === res.body.seq) as Extract<JournalEvent, { type: 'issuance' }>;
    expect(e.type).to.equal('issuance');
    expect(e.key).to.equal(`online:${body.paymentId}`);
    expect(e.terminal).to.equal(null);
    expect(e.data).to.deep.include({ customer: customerId, token: 'ACME', units: 40, reason: 'purchase', cashMinor: 200, payment: { method: 'online', paymentId: body.paymentId, provider: 'testpay' } });

    // The exact delivery again (a provider's retry, or a replay within the window): the same answer, no second credit.
    const picture = await ledgerPicture(store);
    const again = await signed(raw);
    expect(again.status).to.equal(200);
    expect(again.body).to.deep.equal(res.body);
    expect(await ledgerPicture(store)).to.deep.equal(picture);

    // The day's totals count it as paid online, not as cash in the drawer.
    const day = res.body.at.slice(0, 10);
    const totals = (await store.operator('GET', `/api/totals?date=${day}`)).body;
    expect(totals.onlineTokenPurchasesMinor).to.equal(200);
    expect(totals.cashTokenPurchasesMinor, 'the demo\'s seeded purchases only').to.equal(totalsBefore.cashTokenPurchasesMinor);
    expect(totals.cashMinor).to.equal(totalsBefore.cashMinor);
  });

  it('credits 20 parallel identical deliveries once, all answered alike', async () => {
    const before = acme();
    const seq0 = store.server.ledger.state.seq;
    const raw = JSON.stringify(payment({ units: 7, amountMinor: 35 }));
    const t = now();
    const header = `t=${t},v1=${webhookSignature(secret, t, raw)}`;
    const answers = await Promise.all(Array.from({ length: 20 }, () => deliver(raw, header)));
    for (const a of answers) {
      expect(a.status, a.text).to.equal(200);
      expect(a.body).to.deep.equal(answers[0]?.body);
    }
    expect(acme()).to.equal(before + 7);
    expect(store.server.ledger.state.seq).to.equal(seq0 + 1);
  });

  it('refuses forged, altered, stale, future, unsigned and malformed deliveries, changing nothing', async () => {
    const before = await journalBytes(store.dir);
    const picture = await ledgerPicture(store);
    const raw = JSON.stringify(payment());
    const t = now();
    const good = webhookSignature(secret, t, raw);
    const cases: [string, Promise<HttpResult>, number, string][] = [
      ['forged with another secret', signed(raw, { key: `mpwh_${'0'.repeat(64)}` }), 401, 'VND_ERR_WEBHOOK_SIGNATURE'],
      ['body altered after signing', deliver(raw.replace('"units":40', '"units":4000').replace('"amountMinor":200', '"amountMinor":20000'), `t=${t},v1=${good}`), 401, 'VND_ERR_WEBHOOK_SIGNATURE'],
      ['whitespace added after signing', deliver(`${raw} `, `t=${t},v1=${good}`), 401, 'VND_ERR_WEBHOOK_SIGNATURE'],
      ['timestamp changed after signing', deliver(raw, `t=${t + 1},v1=${good}`), 401, 'VND_ERR_WEBHOOK_SIGNATURE'],
      ['stale', signed(raw, { t: t - 301 }), 401, 'VND_ERR_WEBHOOK_SIGNATURE'],
      // A clock that runs ahead: beyond the window whatever second the request is served in.
      ['from the future', signed(raw, { t: t + 360 }), 401, 'VND_ERR_WEBHOOK_SIGNATURE'],
      ['unsigned', deliver(raw, null), 401, 'VND_ERR_WEBHOOK_SIGNATURE'],
      ['no timestamp', deliver(raw, `v1=${good}`), 401, 'VND_ERR_WEBHOOK_SIGNATURE'],
      ['signature not hex', deliver(raw, `t=${t},v1=${'z'.repeat(64)}`), 401, 'VND_ERR_WEBHOOK_SIGNATURE'],
      ['truncated signature', deliver(raw, `t=${t},v1=${good.slice(0, 32)}`), 401, 'VND_ERR_WEBHOOK_SIGNATURE'],
      ['the operator credential instead of a signature', http(`${store.server.url}/webhooks/payments`, 'POST', raw, { 'content-type': 'application/json', authorization: `Bearer ${store.init.operatorToken}` }), 401, 'VND_ERR_WEBHOOK_SIGNATURE'],
      ['oversized, though signed', signed(JSON.stringify({ ...payment(), pad: 'x'.repeat(WEBHOOK_BODY_BYTES_MAX) })), 413, 'VND_ERR_PAYLOAD_TOO_LARGE'],
      ['JSON array, signed', signed('[1,2,3]'), 400, 'CORE_ERR_VALIDATION'],
      ['JSON string, signed', signed('"pay me"'), 400, 'CORE_ERR_VALIDATION'],
      ['JSON null, signed', signed('null'), 400, 'CORE_ERR_VALIDATION'],
      ['not JSON, signed', signed('paymentId=1'), 400, 'CORE_ERR_VALIDATION'],
      ['__proto__ key, signed', signed(raw.replace('{', '{"__proto__":{"x":1},')), 400, 'CORE_ERR_VALIDATION'],
      ['negative units, signed', signed(JSON.stringify(payment({ units: -40, amountMinor: -200 }))), 400, 'CORE_ERR_AMOUNT'],
      ['fractional amount, signed', signed(JSON.stringify(payment({ amountMinor: 200.5 }))), 400, 'CORE_ERR_AMOUNT'],
      ['amount not the face value, signed', signed(JSON.stringify(payment({ amountMinor: 199 }))), 409, 'VND_ERR_PAYMENT_MISMATCH'],
      ['another currency, signed', signed(JSON.stringify(payment({ currency: 'USD' }))), 409, 'VND_ERR_PAYMENT_MISMATCH'],
      ['unknown card, signed', signed(JSON.stringify(payment({ card: makeCardNumber(888_888_888) }))), 404, 'VND_ERR_CUSTOMER_UNKNOWN'],
      ['unknown token, signed', signed(JSON.stringify(payment({ token: 'NOPE' }))), 404, 'CORE_ERR_TOKEN_UNKNOWN'],
    ];
    for (const [what, pending, status, errorCode] of cases) {
      const res = await pending;
      expect(res.status, `${what}: ${res.text}`).to.equal(status);
      expect(res.body?.error?.code, what).to.equal(errorCode);
    }
    expect(await journalBytes(store.dir)).to.equal(before);
    expect(await ledgerPicture(store)).to.deep.equal(picture);
  });

  it('refuses a payment id already credited for another card, token, amount or provider, changing nothing', async () => {
    const first = payment();
    expect((await signed(JSON.stringify(first))).status).to.equal(200);
    const before = await journalBytes(store.dir);
    const picture = await ledgerPicture(store);
    const variants = [
      { ...first, card: otherCard },
      { ...first, units: 41, amountMinor: 205 },
      { ...first, token: 'MALL', units: 20, amountMinor: 200 },
      { ...first, provider: 'otherpay' },
    ];
    for (const v of variants) {
      const res = await signed(JSON.stringify(v));
      expect(res.status, res.text).to.equal(409);
      expect(res.body.error.code).to.equal('VND_ERR_PAYMENT_REUSED');
    }
    expect(await journalBytes(store.dir)).to.equal(before);
    expect(await ledgerPicture(store)).to.deep.equal(picture);
  });

  it('accepts the previous secret for a day after a rotation, and the new one at once', async () => {
    const old = secret;
    const r = await runCli(['webhook-secret', '--data-dir', store.dir, '--rotate']);
    expect(r.code, r.stderr).to.equal(0);
    const shown = JSON.parse(r.stdout) as { secret: string; previousAcceptedUntil: string };
    expect(shown.secret).to.not.equal(old);
    expect(Date.parse(shown.previousAcceptedUntil) - Date.now()).to.be.within(WEBHOOK_SECRET_GRACE_MS - 120_000, WEBHOOK_SECRET_GRACE_MS);
    expect((await stat(webhookSecretPath(store.dir))).mode & 0o777).to.equal(0o600);
    secret = shown.secret;
    expect((await signed(JSON.stringify(payment()), { key: old })).status).to.equal(200);
    expect((await signed(JSON.stringify(payment()))).status).to.equal(200);
    // Showing it again prints the same secret.
    const again = await runCli(['webhook-secret', '--data-dir', store.dir]);
    expect((JSON.parse(again.stdout) as { secret: string }).secret).to.equal(secret);

    // Past the grace period only the current secret counts.
    const file = await rotateWebhookSecret(store.dir, new Date(Date.now() - WEBHOOK_SECRET_GRACE_MS - 1000));
    expect(acceptedSecrets(file, Date.now())).to.deep.equal([file.current.secret]);
    const before = await journalBytes(store.dir);
    const res = await signed(JSON.stringify(payment()), { key: secret });
    expect(res.status).to.equal(401);
    expect(await journalBytes(store.dir)).to.equal(before);
    secret = file.current.secret;
    expect((await signed(JSON.stringify(payment()))).status).to.equal(200);
  });

  it('takes a header with several v1 signatures when one matches, and refuses more than four', async () => {
    const raw = JSON.stringify(payment({ units: 2, amountMinor: 10 }));
    const t = now();
    const wrong = webhookSignature(`mpwh_${'1'.repeat(64)}`, t, raw);
    const good = webhookSignature(secret, t, raw);
    const before = await journalBytes(store.dir);
    const tooMany = await deliver(raw, `t=${t},v1=${wrong},v1=${wrong},v1=${wrong},v1=${wrong},v1=${good}`);
    expect(tooMany.status).to.equal(401);
    expect(await journalBytes(store.dir)).to.equal(before);
    const ok = await deliver(raw, `t=${t},v0=ignored,v1=${wrong},v1=${good}`);
    expect(ok.status, ok.text).to.equal(200);
  });

  it('keeps every online credit across a restart, and a late retry still credits nothing more', async () => {
    const body = payment({ units: 3, amountMinor: 15 });
    const raw = JSON.stringify(body);
    const first = await signed(raw);
    expect(first.status).to.equal(200);
    const picture = await ledgerPicture(store);
    await store.restart();
    expect(await ledgerPicture(store)).to.deep.equal(picture);
    const again = await signed(raw);
    expect(again.status).to.equal(200);
    expect(again.body).to.deep.equal(first.body);
    expect(await ledgerPicture(store)).to.deep.equal(picture);
  });
});
