import type { Request } from 'express';
import { entityId, fail } from '../core/index.ts';

/** A path parameter, bounded before it is looked at further. */
export function pathParam(req: Request, name: string): string {
  const v = req.params[name];
  if (typeof v !== 'string' || v.length === 0 || v.length > 128) fail('MALL_ERR_VALIDATION', `missing or over-long ${name}`);
  return v;
}

/** A vendor id from the path: one that cannot be a vendor's is answered like an unknown one. */
export function vendorParam(req: Request): string {
  const v = pathParam(req, 'vendor');
  if (!entityId.safeParse(v).success) fail('MALL_ERR_VENDOR_UNKNOWN', 'no such vendor at this mall');
  return v;
}
