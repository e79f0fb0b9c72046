import { expect } from 'chai';
import { makeCardNumber } from '../../core/index.ts';
import { readWebhookSecrets } from '../../vendor-server/economy/webhook-secret.ts';
import { webhookSignature } from '../../vendor-server/economy/webhooks.ts';
import { http } from '../helpers/http.ts';
import { killHard, runCli, spawnVendorServer, type ChildServer } from '../helpers/process.ts';
import { tempDir } from '../helpers/vendor.ts';
import { TEST_PIN_HASH_COST } from '../helpers/pin-cost.ts';

/**
 * Acknowledged means durable: the vendor server as a child process is killed with SIGKILL
 * the moment it has answered a payment notification with 200, and after the restart the
 * credit is there, once; the provider's retry of it credits nothing more.
 */
describe('vendor server: an online credit answered 200 survives SIGKILL', function () {
  this.timeout(180_000);
  let dir: string;
  let cleanup: () => Promise<void>;
  let operatorToken: string;
  let server: ChildServer | null = null;

  before(async () => {
    ({ dir, cleanup } = await tempDir('mallpos-webhook-crash-'));
    const init = await runCli(['init', '--data-dir', dir, '--demo', '--pin-hash-cost', String(TEST_PIN_HASH_COST)]);
    expect(init.code, init.stderr).to.equal(0);
    operatorToken = /^\s+(mpo_\S+)$/m.exec(init.stdout)?.[1] ?? '';
  });
  after(async () => {
    if (server !== null) await killHard(server.child);
    await cleanup();
  });

  const acmeOf = async (url: string, card: string): Promise<number> => {
    const res = await http(`${url}/api/customers?card=${card}`, 'GET', undefined, { authorization: `Bearer ${operatorToken}` });
    expect(res.status, res.text).to.equal(200);
    return (res.body[0].balances as { token: string; units: number }[]).find((b) => b.token === 'ACME')?.units ?? 0;
  };

  it('keeps every credit acknowledged before the kill, exactly once', async () => {
    const secret = (await readWebhookSecrets(dir))?.current.secret as string;
    const card = makeCardNumber(3);
    server = await spawnVendorServer(dir);
    const before = await acmeOf(server.url, card);
    const deliveries: { raw: string; header: string }[] = [];
    for (let i = 1; i <= 5; i++) {
      const raw = JSON.stringify({ paymentId: `pi_crash_${i}`, provider: 'testpay', card, token: 'ACME', units: 10 * i, amountMinor: 50 * i, currency: 'EUR' });
      const t = Math.floor(Date.now() / 1000);
      deliveries.push({ raw, header: `t=${t},v1=${webhookSignature(secret, t, raw)}` });
    }
    const post = (d: { raw: string; header: string }) => http(`${(server as ChildServer).url}/webhooks/payments`, 'POST', d.raw, { 'content-type': 'application/json', 'mallpos-signature': d.header });
    // Each delivery is answered, and the last answer is followed at once by the kill.
    for (const d of deliveries) {
      const res = await post(d);
      expect(res.status, res.text).to.equal(200);
    }
    await killHard(server.child);
    server = await spawnVendorServer(dir);
    expect(await acmeOf(server.url, card)).to.equal(before + 10 + 20 + 30 + 40 + 50);
    // The provider retries the last one after the crash: the same answer, nothing more.
    const retry = await post(deliveries[4] as { raw: string; header: string });
    expect(retry.status, retry.text).to.equal(200);
    expect(retry.body.units).to.equal(50);
    expect(await acmeOf(server.url, card)).to.equal(before + 150);
    const verify = await runCli(['verify', '--data-dir', dir]);
    expect(verify.code, verify.stderr).to.equal(0);
  });
});
