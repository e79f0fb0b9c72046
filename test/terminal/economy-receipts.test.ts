import { expect } from 'chai';
import { quoteExchange, type CustomerView, type ExchangeAck, type ReceiptData, type TokenSaleAck, type TokenType, type WalletMoveAck } from '../../core/index.ts';
import { checkReceipt, COLUMNS, layoutReceipt, type Receipt } from '../../hardware/printer/index.ts';
import { exchangeReceipt, formatBps, registrationSlip, tokenSaleReceipt, walletMoveReceipt, type EconomyReceiptContext } from '../../terminal/economy-receipts.ts';
import { toReceipt } from '../../terminal/receipts.ts';
import { commandSchema } from '../../terminal/screen-server.ts';

const ctx: EconomyReceiptContext = { store: { name: 'ACME Market', address: ['Mall Street 1'] }, terminalName: 'Till 1', cashierName: 'Ana', tokenNames: { ACME: 'ACME token', BETA: 'Beta token', MALL: 'Mall token' } };
const CARD = 'C0000000018';
const customer = (balances: [string, number][]): CustomerView => ({
  id: 'cust-1',
  card: CARD,
  name: 'Anna Berger',
  consent: true,
  balances: balances.map(([token, units]) => ({ token, name: token, kind: 'vendor', units, spendable: true })),
});
const acme: TokenType = { code: 'ACME', name: 'ACME token', kind: 'vendor', issuer: 'acme', faceValueMinor: 100, currency: 'EUR', acceptedBy: '*' };
const beta: TokenType = { code: 'BETA', name: 'Beta token', kind: 'vendor', issuer: 'beta', faceValueMinor: 300, currency: 'EUR', acceptedBy: '*' };

/** Every width a printer may have: the slip checks and lays out; the text of the 32-column layout. */
function laidOut(r: Receipt): string {
  const check = checkReceipt(r);
  expect(check.ok, check.ok ? '' : check.problem).to.equal(true);
  for (const columns of COLUMNS) layoutReceipt(r, columns);
  return layoutReceipt(r, 32).map((l) => l.text).join('\n');
}

describe('terminal: slips of tokens between stores', () => {
  it('a token sale: tokens, unit price, cash with change, the balances after; by card, the approval reference', () => {
    const ack: TokenSaleAck = { seq: 42, at: '2026-11-30T10:00:00.000Z', token: 'ACME', units: 15, priceMinor: 1500, currency: 'EUR', payment: { method: 'cash', tenderedMinor: 2000, changeMinor: 500 }, customer: customer([['ACME', 65]]) };
    const text = laidOut(tokenSaleReceipt(ack, ctx));
    expect(text).to.include('TOKENS BOUGHT').and.include('Token sale').and.include('15 x €1.00').and.include('€15.00');
    expect(text).to.include('Cash tendered').and.include('€20.00').and.include('€5.00').and.include('65 ACME');
    expect(text).to.not.include(CARD);
    const card = laidOut(tokenSaleReceipt({ ...ack, payment: { method: 'card', approvalRef: 'APP-1' } }, ctx));
    expect(card).to.include('Card approval ref APP-1').and.not.include('Cash tendered');
  });

  it('an exchange: given, charge, received, remainder and the wallet after', () => {
    const quote = quoteExchange(acme, 10, beta, 200);
    const ack: ExchangeAck = { quote, source: 'wallet', offline: false, snapshotIssuedAt: '2026-11-30T09:00:00.000Z', exchangeId: 'X7', seq: 7, at: '2026-11-30T10:00:00.000Z', customer: customer([['BETA', 3]]), wallet: { card: CARD, balances: [{ token: 'ACME', name: 'ACME token', kind: 'vendor', units: 5, spendable: true }], asOf: '2026-11-30T10:00:00.000Z' } };
    const text = laidOut(exchangeReceipt(ack, ctx));
    expect(text).to.include('TOKEN EXCHANGE').and.include('Given (wallet)').and.include('10 ACME').and.include('Service charge (2%)').and.include('€0.20');
    expect(text).to.include('3 BETA').and.include('Remainder').and.include('€0.80').and.include('Mall wallet after').and.include('5 ACME');
  });

  it('a wallet move, and a registration slip whose barcode is the card while its text masks it', () => {
    const move: WalletMoveAck = { moveId: 'W9', seq: 9, at: '2026-11-30T10:00:00.000Z', direction: 'to-wallet', token: 'ACME', units: 6, customer: customer([['ACME', 59]]), wallet: { card: CARD, balances: [], asOf: '2026-11-30T10:00:00.000Z' } };
    expect(laidOut(walletMoveReceipt(move, ctx))).to.include('MOVED TO THE MALL WALLET').and.include('6 ACME').and.include('Empty');
    const slip = registrationSlip(customer([]), ctx, '2026-11-30T10:00:00.000Z');
    expect(slip.barcode).to.equal(CARD);
    const text = laidOut(slip);
    expect(text).to.include('WELCOME').and.include('Anna Berger').and.not.include(CARD);
  });

  it('says a service charge rate from basis points without fractions of a number', () => {
    expect([0, 1, 25, 200, 250, 1234, 10_000].map(formatBps)).to.deep.equal(['0%', '0.01%', '0.25%', '2%', '2.5%', '12.34%', '100%']);
  });

  it('a sale receipt shows the tokens earned and those from the mall wallet; its refund says the earned ones are taken back', () => {
    const data: ReceiptData = {
      store: { vendorId: 'acme', name: 'ACME Market', address: [] },
      sale: {
        saleId: 'S0000000061', seq: 61, at: '2026-11-30T10:00:00.000Z', terminal: 't001', cashier: 'ana', customer: { id: 'cust-1', name: 'Anna', card: CARD }, refunded: false,
        currency: 'EUR', lines: [{ lineNo: 1, gtin: '4006381333931', name: 'Pen', qty: 2, unitPriceMinor: 300, totalMinor: 600, unitTokenPrices: { MALL: 2 } }],
        allocations: [{ lineNo: 1, token: 'MALL', units: 2, coversMinor: 300 }], debits: { MALL: 2 }, totalMinor: 600,
        cash: { dueMinor: 300, tenderedMinor: 500, changeMinor: 200 }, balancesAfter: { ACME: 3 }, earned: { ACME: 3 }, wallet: [{ authorisation: 'A1', token: 'MALL', units: 2 }],
      },
      refund: null,
    };
    const text = laidOut(toReceipt(data, { kind: 'sale', terminalName: 'Till 1', cashierName: 'Ana', tokenNames: ctx.tokenNames }));
    expect(text).to.include('From the mall wallet').and.include('2 MALL').and.include('Tokens earned').and.include('3 ACME');
    const refunded = laidOut(toReceipt({ ...data, refund: { refundId: 'S0000000062', seq: 62, at: data.sale.at, saleId: data.sale.saleId, credited: { MALL: 2 }, cashRefundMinor: 300, balancesAfter: { ACME: 0 } } }, { kind: 'refund', terminalName: 'Till 1', cashierName: 'Ana', tokenNames: ctx.tokenNames }));
    expect(refunded).to.include('Tokens earned, taken back');
  });
});

describe('terminal screen commands: tokens between stores', () => {
  const ok = (cmd: unknown) => commandSchema.safeParse(cmd).success;

  it('takes the economy commands the page sends', () => {
    expect(ok({ type: 'registerCustomer', name: 'Dora', consent: true, card: null, email: 'd@example.org', phone: '' })).to.equal(true);
    expect(ok({ type: 'sellTokens', token: 'ACME', units: 10, payment: { method: 'cash', tenderedMinor: 2000 } })).to.equal(true);
    expect(ok({ type: 'sellTokens', token: 'ACME', units: 10, payment: { method: 'card', approvalRef: 'APP-1' } })).to.equal(true);
    expect(ok({ type: 'exchangeQuote', fromToken: 'ACME', units: 10, source: 'wallet', toToken: 'BETA' })).to.equal(true);
    expect(ok({ type: 'walletMove', direction: 'from-wallet', token: 'ACME', units: 1 })).to.equal(true);
    expect(ok({ type: 'setTenders', tenders: [{ token: 'MALL', units: 2, source: 'wallet' }] })).to.equal(true);
    for (const type of ['exchangeConfirm', 'exchangeCancel', 'walletBalance', 'closeEconomy']) expect(ok({ type }), type).to.equal(true);
  });

  it('refuses units that are not whole and positive, a card payment without its reference, a page that names the key, and unknown sources', () => {
    for (const units of [0, -1, 1.5, '10', Number.MAX_SAFE_INTEGER + 2]) {
      expect(ok({ type: 'sellTokens', token: 'ACME', units, payment: { method: 'cash', tenderedMinor: 2000 } }), String(units)).to.equal(false);
      expect(ok({ type: 'walletMove', direction: 'to-wallet', token: 'ACME', units }), String(units)).to.equal(false);
    }
    expect(ok({ type: 'sellTokens', token: 'ACME', units: 1, payment: { method: 'card', approvalRef: '  ' } })).to.equal(false);
    expect(ok({ type: 'sellTokens', token: 'ACME', units: 1, payment: { method: 'online', paymentId: 'p' } })).to.equal(false);
    expect(ok({ type: 'sellTokens', token: 'ACME', units: 1, payment: { method: 'cash', tenderedMinor: 100 }, key: 'T1:chosen-by-the-page' })).to.equal(false);
    expect(ok({ type: 'exchangeConfirm', expectUnits: 99 })).to.equal(false);
    expect(ok({ type: 'exchangeQuote', fromToken: 'ACME', units: 1, source: 'bank', toToken: 'BETA' })).to.equal(false);
    expect(ok({ type: 'setTenders', tenders: [{ token: 'MALL', units: 2, source: 'card-of-someone-else' }] })).to.equal(false);
    expect(ok({ type: 'registerCustomer', name: '   ', consent: true, card: null })).to.equal(false);
    expect(ok({ type: 'registerCustomer', name: 'Dora', card: null })).to.equal(false);
  });
});
