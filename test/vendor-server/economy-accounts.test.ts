import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { makeCardNumber, type CustomerView, type JournalEvent } from '../../core/index.ts';
import { call, expectOk, startDemoStore, type DemoStore, type TerminalClient } from '../helpers/vendor.ts';
import { code, exportJournal, journalBytes } from './economy-helpers.ts';

describe('vendor server: customer accounts opened at the till (customer:register)', function () {
  this.timeout(120_000);
  let store: DemoStore;
  let till: { terminalId: string; credential: string; socket: TerminalClient };
  const key = () => `${till.terminalId}:${randomUUID()}`;

  before(async () => {
    store = await startDemoStore();
    till = await store.openTill('Till 1');
  });
  after(async () => store.close());

  it('opens an account on a scanned pre-printed card with consent and contact, journalled with the cashier', async () => {
    const card = makeCardNumber(424_242_424);
    const k = key();
    const view = expectOk(await call<CustomerView>(till.socket, 'customer:register', { key: k, name: 'Zoë Quint', card, consent: true, contact: { email: ' Zoe@Example.org ', phone: '+43 1 234 5678' } }));
    expect(view.card).to.equal(card);
    expect(view.consent).to.equal(true);
    expect(view.balances).to.deep.equal([]);
    const events = await exportJournal(store);
    const e = events.find((x): x is Extract<JournalEvent, { type: 'customer.registered' }> => x.type === 'customer.registered' && x.data.id === view.id);
    expect(e?.data).to.deep.equal({ id: view.id, card, name: 'Zoë Quint', consent: true, contact: { email: 'zoe@example.org', phone: '+43 1 234 5678' } });
    expect(e?.cashier).to.equal('ana');
    expect(e?.terminal).to.equal(till.terminalId);
    expect(e?.key).to.equal(k);

    // A retry of the key answers the same account and journals nothing.
    const before = await journalBytes(store.dir);
    const again = expectOk(await call<CustomerView>(till.socket, 'customer:register', { key: k, name: 'Zoë Quint', card, consent: true, contact: { email: ' Zoe@Example.org ', phone: '+43 1 234 5678' } }));
    expect(again.id).to.equal(view.id);
    expect(await journalBytes(store.dir)).to.equal(before);

    // The lookup by card shows the consent too.
    const looked = expectOk(await call<CustomerView>(till.socket, 'customer:lookup', { card }));
    expect(looked.consent).to.equal(true);
  });

  it('draws a new random card number when none is scanned, and records a refusal of consent', async () => {
    const a = expectOk(await call<CustomerView>(till.socket, 'customer:register', { key: key(), name: 'No Card', card: null, consent: false }));
    const b = expectOk(await call<CustomerView>(till.socket, 'customer:register', { key: key(), name: 'No Card Either', card: null, consent: false }));
    expect(a.card).to.match(/^C[0-9]{10}$/);
    expect(b.card).to.not.equal(a.card);
    expect(a.consent).to.equal(false);
    const e = (await exportJournal(store)).find((x) => x.type === 'customer.registered' && x.data.id === a.id);
    expect(e?.data).to.deep.equal({ id: a.id, card: a.card, name: 'No Card', consent: false });
  });

  it('refuses a card another customer holds, a malformed contact or card, no cashier, and a key replayed with another body, journalling nothing', async () => {
    const demoCard = store.init.demo?.customers[0]?.card as string;
    const used = key();
    expectOk(await call(till.socket, 'customer:register', { key: used, name: 'First', card: makeCardNumber(515_151_515), consent: false }));
    const before = await journalBytes(store.dir);
    const serial = store.server.ledger.state.customerSerial;
    const refusals: [unknown, string][] = [
      [{ key: key(), name: 'Thief', card: demoCard, consent: true }, 'VND_ERR_CARD_IN_USE'],
      [{ key: key(), name: 'Typo', card: 'C0000000001', consent: true }, 'CORE_ERR_CHECK_DIGIT'],
      [{ key: key(), name: 'Odd', card: 'X123', consent: true }, 'CORE_ERR_CODE_MALFORMED'],
      [{ key: key(), name: 'Bad mail', card: null, consent: true, contact: { email: 'not-an-address' } }, 'CORE_ERR_VALIDATION'],
      [{ key: key(), name: 'Bad phone', card: null, consent: true, contact: { phone: '12ab34' } }, 'CORE_ERR_VALIDATION'],
      [{ key: key(), name: 'Short phone', card: null, consent: true, contact: { phone: '+1 2' } }, 'CORE_ERR_VALIDATION'],
      [{ key: key(), name: 'Empty contact', card: null, consent: true, contact: {} }, 'CORE_ERR_VALIDATION'],
      [{ key: key(), name: 'Extra', card: null, consent: true, contact: { email: 'a@b.org', fax: '1' } }, 'CORE_ERR_VALIDATION'],
      [{ key: key(), name: 'No consent field', card: null }, 'CORE_ERR_VALIDATION'],
      [{ key: key(), name: 'Consent as text', card: null, consent: 'yes' }, 'CORE_ERR_VALIDATION'],
      [{ key: `other-till:${randomUUID()}`, name: 'Foreign key', card: null, consent: false }, 'VND_ERR_IDEMPOTENCY_KEY'],
      [{ key: used, name: 'Second', card: makeCardNumber(515_151_515), consent: false }, 'VND_ERR_IDEMPOTENCY_CONFLICT'],
      [{ key: used, name: 'First', card: makeCardNumber(616_161_616), consent: false }, 'VND_ERR_IDEMPOTENCY_CONFLICT'],
    ];
    for (const [payload, expected] of refusals) {
      expect(code(await call(till.socket, 'customer:register', payload)), JSON.stringify(payload)).to.equal(expected);
    }
    // Without a signed-in cashier.
    const paired = await store.pairTerminal('Till 2');
    const anon = await store.connect(paired.credential);
    try {
      expect(code(await call(anon, 'customer:register', { key: `${paired.terminalId}:${randomUUID()}`, name: 'Nobody', card: null, consent: false }))).to.equal('VND_ERR_CASHIER_REQUIRED');
    } finally {
      anon.disconnect();
    }
    expect(await journalBytes(store.dir)).to.equal(before);
    expect(store.server.ledger.state.customerSerial).to.equal(serial);
  });

  it('opens one account when one card is registered ten times at once, and once for ten sends of one key', async () => {
    const card = makeCardNumber(909_090_909);
    const seq0 = store.server.ledger.state.seq;
    const racing = await Promise.all(Array.from({ length: 10 }, (_, i) => call<CustomerView>(till.socket, 'customer:register', { key: key(), name: `Racer ${i}`, card, consent: false })));
    expect(racing.filter((r) => r.ok)).to.have.length(1);
    expect(racing.filter((r) => code(r) === 'VND_ERR_CARD_IN_USE')).to.have.length(9);
    expect(store.server.ledger.state.seq).to.equal(seq0 + 1);
    const k = key();
    const same = await Promise.all(Array.from({ length: 10 }, () => call<CustomerView>(till.socket, 'customer:register', { key: k, name: 'Same Key', card: null, consent: true })));
    const ids = new Set(same.map((r) => expectOk(r).id));
    expect(ids.size).to.equal(1);
    expect(store.server.ledger.state.seq).to.equal(seq0 + 2);
  });

  it('the operator API takes consent and contact too, validated the same way', async () => {
    const ok = await store.operator('POST', '/api/customers', { name: 'Back Office', consent: true, contact: { phone: '+49 30 1234567' } });
    expect(ok.status, ok.text).to.equal(200);
    expect(ok.body.consent).to.equal(true);
    const bad = await store.operator('POST', '/api/customers', { name: 'Back Office', consent: true, contact: { email: 'nope' } });
    expect(bad.status).to.equal(400);
    expect(bad.body.error.code).to.equal('CORE_ERR_VALIDATION');
    const plain = await store.operator('POST', '/api/customers', { name: 'Plain' });
    expect(plain.status, plain.text).to.equal(200);
    expect(plain.body.consent).to.equal(undefined);
  });

  it('keeps accounts, consent and card uniqueness across a restart', async () => {
    const card = makeCardNumber(737_373_737);
    const view = expectOk(await call<CustomerView>(till.socket, 'customer:register', { key: key(), name: 'Restart Test', card, consent: true }));
    await store.restart();
    const t = await store.openTill('Till 3');
    const looked = expectOk(await call<CustomerView>(t.socket, 'customer:lookup', { card }));
    expect(looked.id).to.equal(view.id);
    expect(looked.consent).to.equal(true);
    expect(code(await call(t.socket, 'customer:register', { key: `${t.terminalId}:${randomUUID()}`, name: 'Again', card, consent: false }))).to.equal('VND_ERR_CARD_IN_USE');
  });
});
