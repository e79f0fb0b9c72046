import type { Express, Request, Router } from 'express';
import { route } from '../platform/http.ts';
import { pathParam, signedPostRoutes, vendorParam } from './http-params.ts';
import type { MallLotService } from './lots.ts';

/**
 * The routes of mall-wide lots (docs/PROTOCOL.md "Mall lots"): stores read the lots and
 * forward bids (a signed POST whose vendor JWT carries the body's hash in `bh`); the
 * operator lists, reads and cancels lots under /admin.
 */
export const LOT_BID_BODY_BYTES_MAX = 4 * 1024;

export interface LotRouteDeps {
  lots: MallLotService;
  vendorAuth: (req: Request, vendor: string, rawBody?: Buffer) => Promise<void>;
  caughtUp: () => Promise<void>;
}

export function mountLotRoutes(app: Express, admin: Router, deps: LotRouteDeps): void {
  const { lots } = deps;
  const { body, signedPost } = signedPostRoutes(LOT_BID_BODY_BYTES_MAX, deps);
  const vendorRead = async (req: Request): Promise<string> => {
    const vendor = vendorParam(req);
    await deps.caughtUp();
    await deps.vendorAuth(req, vendor);
    return vendor;
  };

  app.get(
    '/v1/vendors/:vendor/lots',
    route(async (req) => {
      await vendorRead(req);
      return { lots: lots.views() };
    }),
  );
  app.get(
    '/v1/vendors/:vendor/lots/:lot',
    route(async (req) => lots.viewFor(await vendorRead(req), pathParam(req, 'lot'))),
  );
  app.post(
    '/v1/vendors/:vendor/lots/:lot/bids',
    body,
    route(async (req) => lots.bid(await signedPost(req), pathParam(req, 'lot'), req.body)),
  );

  admin.post('/lots', route((req) => lots.create(req.body)));
  admin.get(
    '/lots',
    route(async () => {
      await deps.caughtUp();
      return lots.list();
    }),
  );
  admin.get(
    '/lots/:lot',
    route(async (req) => {
      await deps.caughtUp();
      return lots.detail(pathParam(req, 'lot'));
    }),
  );
  admin.post('/lots/:lot/cancel', route((req) => lots.cancel(pathParam(req, 'lot'), req.body)));
}
