import type { Express, Request, Router } from 'express';
import { route } from '../platform/http.ts';
import type { CustomerDataService } from './customer-data.ts';
import { directoryEntry, walletCheck } from './directory.ts';
import { pathParam, signedPostRoutes, vendorParam } from './http-params.ts';
import type { MallStore } from './store/store.ts';
import type { WalletService } from './wallet.ts';

/**
 * The vendor -> mall requests of tokens that travel between stores (docs/PROTOCOL.md):
 * the wallet's authorisations and balances, and customer data requests; plus the admin
 * reads of the directory, the data request audit trail and the wallet check.
 *
 * A POST carries the vendor JWT whose `bh` claim is the sha256 hex of the raw body: a
 * token seen once cannot carry another body.
 */
export const ECONOMY_BODY_BYTES_MAX = 16 * 1024;

export interface EconomyRouteDeps {
  store: MallStore;
  wallet: WalletService;
  customerData: CustomerDataService;
  /** Checks the vendor JWT; with a raw body, also its `bh` claim. */
  vendorAuth: (req: Request, vendor: string, rawBody?: Buffer) => Promise<void>;
  caughtUp: () => Promise<void>;
}

export function mountEconomyRoutes(app: Express, admin: Router, deps: EconomyRouteDeps): void {
  const { body, signedPost } = signedPostRoutes(ECONOMY_BODY_BYTES_MAX, deps);

  app.post(
    '/v1/vendors/:vendor/wallet/authorisations',
    body,
    route(async (req) => deps.wallet.authorise(await signedPost(req), req.body)),
  );
  app.post(
    '/v1/vendors/:vendor/wallet/authorisations/:id/release',
    body,
    route(async (req) => deps.wallet.release(await signedPost(req), pathParam(req, 'id'), req.body)),
  );
  app.post(
    '/v1/vendors/:vendor/wallet/authorisations/:id/capture',
    body,
    route(async (req) => deps.wallet.capture(await signedPost(req), pathParam(req, 'id'), req.body)),
  );
  app.post(
    '/v1/vendors/:vendor/wallet/pin',
    body,
    route(async (req) => deps.wallet.setPin(await signedPost(req), req.body)),
  );
  app.get(
    '/v1/vendors/:vendor/wallet/:card',
    route(async (req) => {
      const vendor = vendorParam(req);
      await deps.caughtUp();
      await deps.vendorAuth(req, vendor);
      return deps.wallet.view(pathParam(req, 'card'));
    }),
  );
  app.post(
    '/v1/vendors/:vendor/customer-data',
    body,
    route(async (req) => deps.customerData.request(await signedPost(req), req.body)),
  );

  admin.get('/customers/:card', route((req) => directoryEntry(deps.store.state, pathParam(req, 'card'))));
  admin.get(
    '/customer-data-requests',
    route((req) => {
      const requester = typeof req.query['requester'] === 'string' ? req.query['requester'] : undefined;
      return deps.store.state.dataRequests.filter((r) => requester === undefined || r.requester === requester);
    }),
  );
  admin.get('/wallet-check', route(() => walletCheck(deps.store.state)));
  admin.get(
    '/wallets/:card/pin',
    route(async (req) => {
      await deps.caughtUp();
      return deps.wallet.pinStatus(pathParam(req, 'card'));
    }),
  );
  admin.post(
    '/wallets/:card/unlock',
    route(async (req) => {
      await deps.caughtUp();
      return deps.wallet.unlock(pathParam(req, 'card'));
    }),
  );
}
