import { join } from 'node:path';
import { z } from 'zod';
import { MallposError, type CatalogView, type OfflineLimits, type ProductView } from '../core/index.ts';
import { DurableJSONFile } from '../platform/storage/index.ts';

/** A catalog larger than this is refused rather than held in memory and written on every change. */
export const CATALOG_PRODUCTS_MAX = 50_000;

const limitsSchema = z
  .object({
    maxSales: z.int().min(0).max(1_000_000),
    maxTotalMinor: z.int().min(0).max(Number.MAX_SAFE_INTEGER),
    maxOutageS: z.int().min(0).max(365 * 24 * 3600),
    catalogMaxAgeS: z.int().min(0).max(365 * 24 * 3600),
  })
  .strict();

const productSchema = z.object({
  gtin: z.string().min(1).max(64),
  name: z.string().min(1).max(200),
  priceMinor: z.int().min(0).max(Number.MAX_SAFE_INTEGER),
  currency: z.string().min(1).max(8),
  tokenPrices: z.record(z.string().max(32), z.int().min(0).max(Number.MAX_SAFE_INTEGER)),
});

/** The store's answer to `catalog:get`, checked before it replaces the copy. */
export const catalogViewSchema = z.object({
  version: z.int().min(0).max(Number.MAX_SAFE_INTEGER),
  at: z.string().min(1).max(40),
  currency: z.string().min(1).max(8),
  products: z.array(productSchema).max(CATALOG_PRODUCTS_MAX),
  offlineLimits: limitsSchema,
});

/** The copy as it sits on disk: the catalog and when the store last confirmed it current. */
interface StoredCatalog {
  catalog: CatalogView;
  /** The till's clock when the store last answered `catalog:get` (the copy was current then). */
  checkedAt: string;
}

export interface CatalogCopyStatus {
  version: number;
  checkedAt: string;
  ageS: number;
  /** Older than the store's `catalogMaxAgeS`: the screen warns that prices may have changed. */
  stale: boolean;
  products: number;
}

/**
 * The till's durable copy of its store's catalog. The store server stays the authority
 * for prices: the copy is used for lookups only while the server cannot be reached, and
 * an offline sale forwarded later has any price difference reported by the server, never
 * silently changed. The copy is replaced whole, durably (temp file, fsync, rename), so a
 * crash leaves the old copy or the new one.
 */
export class CatalogCopy {
  private byGtin = new Map<string, ProductView>();

  private constructor(
    private readonly file: DurableJSONFile<StoredCatalog>,
    private stored: StoredCatalog | null,
  ) {
    this.index();
  }

  static async open(dataDir: string): Promise<CatalogCopy> {
    const file = new DurableJSONFile<StoredCatalog>(join(dataDir, 'catalog-copy.json'));
    let stored: StoredCatalog | null;
    try {
      stored = await file.read();
    } catch (err) {
      throw new MallposError('POS_ERR_CONFIG', `the till's catalog copy cannot be read: ${(err as Error).message}`);
    }
    if (stored !== null) {
      const parsed = catalogViewSchema.safeParse(stored.catalog);
      if (!parsed.success || typeof stored.checkedAt !== 'string') throw new MallposError('POS_ERR_CONFIG', `the till's catalog copy ${file.path} is not valid: remove it and connect to the store server`);
    }
    return new CatalogCopy(file, stored);
  }

  private index(): void {
    this.byGtin = new Map((this.stored?.catalog.products ?? []).map((p) => [p.gtin, p]));
  }

  /** The version of the copy, or null when the till has none yet. */
  get version(): number | null {
    return this.stored?.catalog.version ?? null;
  }

  get limits(): OfflineLimits | null {
    return this.stored?.catalog.offlineLimits ?? null;
  }

  get currency(): string | null {
    return this.stored?.catalog.currency ?? null;
  }

  lookup(gtin: string): ProductView | null {
    return this.byGtin.get(gtin) ?? null;
  }

  status(nowMs = Date.now()): CatalogCopyStatus | null {
    if (this.stored === null) return null;
    const ageS = Math.max(0, Math.floor((nowMs - Date.parse(this.stored.checkedAt)) / 1000));
    return { version: this.stored.catalog.version, checkedAt: this.stored.checkedAt, ageS, stale: ageS > this.stored.catalog.offlineLimits.catalogMaxAgeS, products: this.byGtin.size };
  }

  /**
   * Takes the store's answer to `catalog:get`. A newer version replaces the copy; the same
   * version only refreshes the limits and when it was confirmed current; an older one
   * (a late answer) is ignored. Returns whether the products changed.
   */
  async accept(answer: unknown, nowMs = Date.now()): Promise<boolean> {
    const parsed = catalogViewSchema.safeParse(answer);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new MallposError('POS_ERR_OFFLINE', `the store server sent a catalog the till cannot use (${issue?.path.join('.') ?? ''} ${issue?.message ?? ''}); the old copy is kept`);
    }
    const view = parsed.data as CatalogView;
    const current = this.stored?.catalog;
    if (current !== undefined && view.version < current.version) return false;
    const replaced = current === undefined || view.version > current.version;
    const catalog = replaced ? view : { ...current, offlineLimits: view.offlineLimits, at: view.at };
    const next: StoredCatalog = { catalog, checkedAt: new Date(nowMs).toISOString() };
    await this.file.write(next);
    this.stored = next;
    if (replaced) this.index();
    return replaced;
  }
}
