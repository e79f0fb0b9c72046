import express, { type Request, type RequestHandler } from 'express';
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

export interface SignedPostDeps {
  /** Checks the vendor JWT; with a raw body, also its `bh` claim. */
  vendorAuth: (req: Request, vendor: string, rawBody?: Buffer) => Promise<void>;
  caughtUp: () => Promise<void>;
}

/**
 * A store's signed POST: the JSON body parser, keeping the raw bytes, and `signedPost`,
 * which checks the vendor JWT whose `bh` claim is the sha256 hex of those bytes (a token
 * seen once cannot carry another body) after the state has caught up, and returns the
 * vendor of the path.
 */
export function signedPostRoutes(limit: number, deps: SignedPostDeps): { body: RequestHandler; signedPost: (req: Request) => Promise<string> } {
  const rawBodies = new WeakMap<object, Buffer>();
  const body = express.json({
    limit,
    strict: true,
    type: () => true,
    verify: (req, _res, buf) => {
      rawBodies.set(req, Buffer.from(buf));
    },
  });
  const signedPost = async (req: Request): Promise<string> => {
    const vendor = vendorParam(req);
    const raw = rawBodies.get(req) ?? Buffer.alloc(0);
    rawBodies.delete(req);
    await deps.caughtUp();
    await deps.vendorAuth(req, vendor, raw);
    return vendor;
  };
  return { body, signedPost };
}
