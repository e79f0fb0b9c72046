import express, { type Request, type Router } from 'express';
import { route } from '../platform/http.ts';
import { pathParam, vendorParam } from './http-params.ts';
import type { InstrumentService } from './instruments.ts';

/**
 * The HTTP side of bearer instruments (docs/PROTOCOL.md "Bearer instruments"). A store's
 * POST carries the vendor JWT whose `bh` claim is the sha256 hex of the raw body, as the
 * wallet's do; the operator's routes sit on the admin router (admin credential).
 */
export const INSTRUMENT_BODY_BYTES_MAX = 16 * 1024;

export interface InstrumentRouteDeps {
  instruments: InstrumentService;
  vendorAuth: (req: Request, vendor: string, rawBody?: Buffer) => Promise<void>;
  caughtUp: () => Promise<void>;
}

const rawBodies = new WeakMap<object, Buffer>();

export function mountInstrumentRoutes(app: express.Express, admin: Router, deps: InstrumentRouteDeps): void {
  const { instruments } = deps;
  const body = express.json({
    limit: INSTRUMENT_BODY_BYTES_MAX,
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

  app.post('/v1/vendors/:vendor/instruments/reservations', body, route(async (req) => instruments.reserve(await signedPost(req), req.body)));
  app.post(
    '/v1/vendors/:vendor/instruments/reservations/:id/release',
    body,
    route(async (req) => instruments.release(await signedPost(req), pathParam(req, 'id'), req.body)),
  );
  app.post('/v1/vendors/:vendor/instruments/:code/void', body, route(async (req) => instruments.voidByStore(await signedPost(req), pathParam(req, 'code'), req.body)));
  app.get(
    '/v1/vendors/:vendor/instruments/:code',
    route(async (req) => {
      const vendor = vendorParam(req);
      await deps.caughtUp();
      await deps.vendorAuth(req, vendor);
      return instruments.status(pathParam(req, 'code'));
    }),
  );

  admin.post('/instruments', route((req) => instruments.issue(req.body)));
  admin.get('/instruments/double-spent', route(() => instruments.doubleSpent()));
  admin.get('/instruments/:code', route((req) => instruments.status(pathParam(req, 'code'))));
  admin.post('/instruments/:code/void', route((req) => instruments.voidByMall(pathParam(req, 'code'), req.body)));
  admin.get('/instrument-policy', route(() => instruments.policy()));
  admin.put('/instrument-policy', route((req) => instruments.setPolicy(req.body)));
  admin.get('/instrument-keys', route(() => instruments.keys()));
  admin.post('/instrument-keys', route((req) => instruments.addKey(req.body)));
  admin.post('/instrument-keys/:kid/withdraw', route((req) => instruments.withdrawKey(pathParam(req, 'kid'), req.body)));
}
