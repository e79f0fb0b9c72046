import type { Router } from 'express';
import { entityId, fail, parse, shiftForceCloseRequest, zCloseRequest, type JournalEvent } from '../../core/index.ts';
import type { AccessStore } from '../access.ts';
import { route } from '../../platform/http.ts';
import type { Logger } from '../../platform/logger.ts';
import type { CashierDayService } from './service.ts';

/** The CSV export's reference column for a cashier's-day event. */
export function cashierDayReference(e: JournalEvent): string {
  switch (e.type) {
    case 'shift.opened':
    case 'cash.moved':
    case 'shift.closed':
      return e.data.shiftId;
    case 'drawer.no-sale':
      return e.data.shiftId ?? 'no shift';
    case 'receipt.reprinted':
      return `${e.data.saleId} reprint ${e.data.reprintCount}`;
    case 'period.closed':
      return e.data.kind === 'Z' ? `Z ${e.data.zNumber} ${e.data.day}` : `${e.data.kind} ${e.data.number} ${e.data.period}`;
    default:
      return '';
  }
}

/**
 * The operator API of the cashier's day: shifts and their counts, a supervisor's
 * force-close of a shift left open, the X report of the open day, the Z (close the day)
 * and the list of closures.
 */
export function cashierDayRoutes(
  api: Router,
  deps: { service: CashierDayService; access: AccessStore; logger: Logger; keyOf: (req: Parameters<Parameters<typeof route>[0]>[0]) => string },
): void {
  const { service, access, logger, keyOf } = deps;
  api.get(
    '/shifts',
    route((req) => {
      const status = req.query['status'];
      if (status !== undefined && status !== 'open' && status !== 'closed') fail('CORE_ERR_VALIDATION', 'status is open or closed');
      const terminal = req.query['terminal'];
      return service.listShifts({ status, terminalId: terminal === undefined ? undefined : parse(entityId, terminal) });
    }),
  );
  api.get('/shifts/:id', route((req) => service.shift(parse(entityId, req.params['id']))));
  api.post(
    '/shifts/:id/force-close',
    route(async (req) => {
      const key = keyOf(req);
      const shiftId = parse(entityId, req.params['id']);
      const body = parse(shiftForceCloseRequest, req.body);
      const staff = await access.authenticateStaff(body.supervisor.staffId, body.supervisor.pin, { terminalId: null, audit: (entry) => logger.warn(entry, 'staff PIN check at a shift force-close') });
      if (staff.role !== 'supervisor') fail('VND_ERR_SUPERVISOR_REQUIRED', `${staff.name} may not force-close a shift: a supervisor must`);
      const view = await service.forceClose(key, shiftId, staff.id, body.reason, body.count ?? null);
      logger.warn({ shift: view.shiftId, supervisor: staff.id, overShortMinor: view.overShortMinor }, 'shift force-closed');
      return view;
    }),
  );
  const tillOf = (raw: unknown): string | null => (raw === undefined || raw === null ? null : parse(entityId, raw));
  api.get(
    '/reports/x',
    route((req) => service.xReport('day', tillOf(req.query['terminal']))),
  );
  api.post(
    '/closures/z',
    route(async (req) => {
      const { terminalId } = parse(zCloseRequest, req.body ?? {});
      const scope = service.zScope(terminalId ?? null);
      const z = await service.closeDay({ terminal: scope, cashier: null }, keyOf(req), scope);
      logger.info({ zNumber: z.zNumber, day: z.day }, 'day closed (Z report) by the operator');
      return z;
    }),
  );
  api.get(
    '/closures',
    route((req) => {
      const kind = req.query['kind'];
      if (kind !== undefined && kind !== 'Z' && kind !== 'month' && kind !== 'year') fail('CORE_ERR_VALIDATION', 'kind is Z, month or year');
      return service.listClosures(kind);
    }),
  );
}
