import type { AddressInfo } from 'node:net';
import type { Ack, CashCount, CashierView, PeriodTotals, ServerStatus, ShiftView, XReport, ZReport } from '../../core/index.ts';
import { doubleStatus, LostAnswers, startDoubleServer, writeDoubleCredential } from './store-double.ts';

/**
 * A stand-in for the store server's side of the cashier's day, for the terminal's own
 * tests: a TLS socket.io server that answers the shift, drawer and report events of
 * core/protocol.ts with plausible figures, and records every request it got. It keeps
 * the rules a terminal relies on: a repeated key answers the first result and changes
 * nothing; a supervisor's PIN is checked; a second shift cannot open on one till. The
 * end-to-end tests against the real store server are in test/e2e/cashier-day.test.ts.
 */
export interface CashierDayDouble {
  url: string;
  caPem: string;
  /** Every request, in order of arrival. */
  requests: { event: string; payload: Record<string, unknown> }[];
  shift(): ShiftView | null;
  noSales(): { key: string; reason: string; supervisor: string }[];
  /** The next `times` answers to `event` are dropped (the request is still applied), as if lost on the network. */
  dropNextAnswer(event: string, times?: number): void;
  /** Writes a credential file that pairs a terminal data directory with this double. */
  pair(dataDir: string): Promise<void>;
  close(): Promise<void>;
}

export const DOUBLE_CREDENTIAL = 'double-access-credential';
const STAFF: Record<string, { pin: string; view: CashierView }> = {
  ana: { pin: '1234', view: { staffId: 'ana', name: 'Ana (cashier)', role: 'cashier' } },
  sam: { pin: '9999', view: { staffId: 'sam', name: 'Sam (supervisor)', role: 'supervisor' } },
};

function sumCount(c: CashCount): number {
  return 'totalMinor' in c ? c.totalMinor : c.denominations.reduce((acc, d) => acc + d.valueMinor * d.count, 0);
}

function totals(shift: ShiftView | null, noSales: number): PeriodTotals {
  return {
    salesCount: 3,
    refundsCount: 1,
    voidsCount: 2,
    noSalesCount: noSales,
    grossMinor: 4200,
    refundsMinor: 450,
    netMinor: 3750,
    byTender: { cash: 1250, ACME: 180 },
    byTokenType: { ACME: 180 },
    byCashier: { 'Ana (cashier)': { salesCount: 3, netMinor: 3750 } },
    paidInMinor: shift?.paidInMinor ?? 0,
    paidOutMinor: shift?.paidOutMinor ?? 0,
    overShortMinor: shift?.overShortMinor ?? 0,
  };
}

export async function startCashierDayDouble(): Promise<CashierDayDouble> {
  const { ca, https, io } = await startDoubleServer('cashier-day double');
  const requests: CashierDayDouble['requests'] = [];
  const answered = new Map<string, unknown>();
  const drops = new LostAnswers();
  const noSales: { key: string; reason: string; supervisor: string }[] = [];
  let current: ShiftView | null = null;
  let shiftSeq = 0;
  let zNumber = 0;
  let cashier: CashierView | null = null;

  const status = (): ServerStatus => doubleStatus(requests.length);
  const refuse = (code: string, message: string): Ack<never> => ({ ok: false, error: { code, message } });
  const supervisorOk = (s: unknown): s is { staffId: string; pin: string } => {
    const sup = s as { staffId?: string; pin?: string } | undefined;
    const who = STAFF[sup?.staffId ?? ''];
    return who !== undefined && who.pin === sup?.pin && who.view.role === 'supervisor';
  };

  io.use((socket, next) => {
    const token = (socket.handshake.auth as { token?: unknown }).token;
    if (token === DOUBLE_CREDENTIAL) next();
    else next(Object.assign(new Error('unauthenticated'), { data: { code: 'VND_ERR_UNAUTHENTICATED', message: 'unknown terminal' } }));
  });

  io.on('connection', (socket) => {
    (socket as unknown as { emit: (e: string, s: ServerStatus) => void }).emit('server:status', status());
    /** Answers an event: money events by key, once; the answer may be dropped on request. */
    const handle = (event: string, work: (p: Record<string, unknown>) => Ack<unknown>) => {
      socket.on(event as never, ((payload: Record<string, unknown>, ack: (a: Ack<unknown>) => void) => {
        requests.push({ event, payload });
        const key = typeof payload['key'] === 'string' ? `${event}|${payload['key']}` : null;
        let answer: Ack<unknown>;
        if (key !== null && answered.has(key)) answer = answered.get(key) as Ack<unknown>;
        else {
          answer = work(payload);
          if (key !== null && answer.ok) answered.set(key, answer);
        }
        if (!drops.take(event)) ack(answer);
      }) as never);
    };
    handle('cashier:login', (p) => {
      const who = STAFF[String(p['staffId'])];
      if (who === undefined || who.pin !== p['pin']) return refuse('VND_ERR_PIN_WRONG', 'wrong staff id or PIN');
      cashier = who.view;
      return { ok: true, data: who.view };
    });
    handle('cashier:logout', () => {
      cashier = null;
      return { ok: true, data: null };
    });
    handle('shift:current', () => ({ ok: true, data: current }));
    handle('shift:open', (p) => {
      if (cashier === null) return refuse('VND_ERR_CASHIER_REQUIRED', 'a cashier must sign in first');
      if (current !== null) return refuse('VND_ERR_SHIFT_OPEN', 'a shift is already open on this till');
      shiftSeq += 1;
      current = {
        shiftId: `SH${String(shiftSeq).padStart(6, '0')}`,
        terminalId: 'T-DOUBLE',
        staffId: cashier.staffId,
        cashierName: cashier.name,
        status: 'open',
        openedAt: new Date().toISOString(),
        closedAt: null,
        openingFloatMinor: sumCount(p['count'] as CashCount),
        // Figures of sales made during the shift, as the store would have them.
        cashSalesMinor: 1250,
        changeGivenMinor: 250,
        cashRefundsMinor: 0,
        paidInMinor: 0,
        paidOutMinor: 0,
        countedMinor: null,
        expectedMinor: null,
        overShortMinor: null,
        forcedBy: null,
      };
      return { ok: true, data: current };
    });
    handle('shift:cash-move', (p) => {
      if (current === null) return refuse('VND_ERR_NO_SHIFT', 'no shift is open on this till');
      const amount = Number(p['amountMinor']);
      current = p['kind'] === 'paid-in' ? { ...current, paidInMinor: current.paidInMinor + amount } : { ...current, paidOutMinor: current.paidOutMinor + amount };
      return { ok: true, data: current };
    });
    handle('shift:close', (p) => {
      if (current === null) return refuse('VND_ERR_NO_SHIFT', 'no shift is open on this till');
      const s = current;
      const expected = s.openingFloatMinor + s.cashSalesMinor - s.changeGivenMinor - s.cashRefundsMinor + s.paidInMinor - s.paidOutMinor;
      const counted = sumCount(p['count'] as CashCount);
      const closed: ShiftView = { ...s, status: 'closed', closedAt: new Date().toISOString(), countedMinor: counted, expectedMinor: expected, overShortMinor: counted - expected };
      current = null;
      return { ok: true, data: closed };
    });
    handle('drawer:no-sale', (p) => {
      if (!supervisorOk(p['supervisor'])) return refuse('VND_ERR_SUPERVISOR_REQUIRED', 'a supervisor id and PIN are needed to open the drawer');
      noSales.push({ key: String(p['key']), reason: String(p['reason']), supervisor: (p['supervisor'] as { staffId: string }).staffId });
      return { ok: true, data: null };
    });
    handle('report:x', (p) => {
      const at = new Date().toISOString();
      const x: XReport = {
        kind: 'X',
        scope: p['scope'] === 'day' ? 'day' : 'shift',
        storeName: 'Double Store',
        terminalId: 'T-DOUBLE',
        shiftId: current?.shiftId ?? null,
        day: at.slice(0, 10),
        from: current?.openedAt ?? at,
        at,
        totals: totals(current, noSales.length),
      };
      return { ok: true, data: x };
    });
    handle('report:z', (p) => {
      if (!supervisorOk(p['supervisor'])) return refuse('VND_ERR_SUPERVISOR_REQUIRED', 'a supervisor must approve the Z report');
      zNumber += 1;
      const at = new Date().toISOString();
      const z: ZReport = {
        kind: 'Z',
        zNumber,
        storeName: 'Double Store',
        vendorId: 'V-DOUBLE',
        terminalId: null,
        day: at.slice(0, 10),
        closedAt: at,
        fromSeq: 1,
        toSeq: requests.length,
        totals: totals(current, noSales.length),
        grandTotalMinor: 3750 * zNumber,
        prevHash: '0'.repeat(64),
        signature: 'eyJhbGciOiJFZERTQSJ9.e30.c2lnbmF0dXJlLW9mLXRoZS16',
      };
      return { ok: true, data: z };
    });
  });

  await new Promise<void>((resolve) => https.listen(0, '127.0.0.1', resolve));
  const url = `https://127.0.0.1:${(https.address() as AddressInfo).port}`;
  return {
    url,
    caPem: ca.certPem,
    requests,
    shift: () => current,
    noSales: () => [...noSales],
    dropNextAnswer: (event, times = 1) => drops.lose(event, times),
    pair: (dataDir) => writeDoubleCredential(dataDir, { url, caPem: ca.certPem, terminalId: 'T-DOUBLE', name: 'Till 9', device: 'double-device-credential', credential: DOUBLE_CREDENTIAL }),
    async close() {
      io.disconnectSockets(true);
      await new Promise<void>((resolve) => io.close(() => resolve()));
    },
  };
}
