import { randomUUID } from 'node:crypto';
import { fail, makeCardNumber, withGs1CheckDigit, type TokenType } from '../core/index.ts';
import { isPinHashCost, PIN_HASH_COST_RANGE } from '../platform/pin-hash.ts';
import { AccessStore } from './access.ts';
import { createKeys, createStoreTls, dataPaths, defaultConfig, isInitialised, writeConfig, type VendorConfig } from './config.ts';
import { LedgerService } from './ledger/service.ts';
import { openLedger } from './ledger/store.ts';
import { ensureWebhookSecret } from './economy/webhook-secret.ts';

export interface InitOptions {
  dataDir: string;
  vendorId?: string;
  storeName?: string;
  demo?: boolean;
  /**
   * The demo's mall and manufacturer floats come from a mall's allotments (issue them
   * at the mall); only the store's own tokens are seeded here. `false` seeds a local
   * float instead, for a store that never syncs with a mall (the mall pays for no token
   * it did not allot).
   */
  mallFloat?: boolean;
  /** Which demo store to seed: the ACME grocery (default) or the Bella café next door. */
  demoProfile?: DemoProfileName;
  port?: number;
  host?: string;
  /** Extra host names and IP addresses for the store's TLS certificate. */
  tlsNames?: string[];
  /** scrypt's N for the store's PIN hashes (config `pinHashCost`; absent: the default). */
  pinHashCost?: number;
}

export interface InitResult {
  config: VendorConfig;
  kid: string;
  operatorToken: string;
  /** The store's certificate authority (PEM): what terminals pin when they pair. */
  caPem: string;
  demo: DemoSummary | null;
}

/**
 * Creates a vendor server's data directory: config, Ed25519 key pair, an operator
 * credential (returned once, stored as a hash), and with `demo` a believable store.
 */
export async function initVendor(opts: InitOptions): Promise<InitResult> {
  if (await isInitialised(opts.dataDir)) {
    fail('VND_ERR_CONFIG', `${opts.dataDir} already holds a vendor server: choose another --data-dir`);
  }
  const profile = DEMO_PROFILES[opts.demoProfile ?? 'acme'];
  const config = defaultConfig(opts.vendorId ?? (opts.demo === true ? profile.vendorId : 'store'), opts.storeName ?? (opts.demo === true ? profile.storeName : 'My store'));
  if (opts.port !== undefined) config.port = opts.port;
  if (opts.host !== undefined) config.host = opts.host;
  if (opts.demo === true) config.address = profile.address;
  if (opts.pinHashCost !== undefined) {
    if (!isPinHashCost(opts.pinHashCost)) fail('VND_ERR_CONFIG', `the PIN hash cost is ${PIN_HASH_COST_RANGE}, not ${opts.pinHashCost}`);
    config.pinHashCost = opts.pinHashCost;
  }
  const keys = await createKeys(opts.dataDir);
  const caPem = await initStoreTls(opts.dataDir, config, opts.tlsNames);
  const access = await AccessStore.open(dataPaths(opts.dataDir).access, config.pinHashCost);
  const operatorToken = await access.addOperator();
  // The secret payment providers sign online purchases with (vendor-server webhook-secret shows it).
  await ensureWebhookSecret(opts.dataDir);
  const demo = opts.demo === true ? await seedDemo(opts.dataDir, config, access, opts.mallFloat !== false, profile) : null;
  // The config is written last: a directory without it is not a half-made store.
  await writeConfig(opts.dataDir, config);
  return { config, kid: keys.kid, operatorToken, caPem, demo };
}

/** Creates the store's certificate authority and a server certificate for its names. */
async function initStoreTls(dataDir: string, config: VendorConfig, tlsNames: string[] | undefined): Promise<string> {
  if (tlsNames !== undefined) config.tlsNames = tlsNames;
  const tls = await createStoreTls(dataDir, config);
  return tls.caPem;
}

export interface DemoSummary {
  tokenTypes: string[];
  products: { code: string; name: string }[];
  customers: { id: string; card: string; name: string }[];
  staff: { id: string; role: string; pin: string }[];
}

const GTIN = (body: string) => withGs1CheckDigit(body);

export const DEMO_PRODUCTS: { code: string; name: string; priceMinor: number; tokens: Record<string, number> }[] = [
  { code: '4006381333931', name: 'Stabilo pen, 4 colours', priceMinor: 450, tokens: { ACME: 90, MALL: 45 } },
  { code: '5901234123457', name: 'Baltic rye bread', priceMinor: 289, tokens: { ACME: 58, MALL: 29 } },
  { code: GTIN('900100100001'), name: 'Müsli Classic 750 g', priceMinor: 399, tokens: { ACME: 80, MALL: 40, SUNNY: 40 } },
  { code: GTIN('900100100002'), name: 'Sunny orange juice 1 l', priceMinor: 249, tokens: { ACME: 50, MALL: 25, SUNNY: 25 } },
  { code: GTIN('900100100003'), name: 'Sunny oat drink 1 l', priceMinor: 229, tokens: { ACME: 46, MALL: 23, SUNNY: 23 } },
  { code: GTIN('900100100004'), name: 'Crème fraîche 200 g', priceMinor: 139, tokens: { ACME: 28, MALL: 14 } },
  { code: GTIN('900100100005'), name: 'Smørrebrød rye slices', priceMinor: 319, tokens: { ACME: 64, MALL: 32 } },
  { code: GTIN('900100100006'), name: 'Jalapeño salsa 300 g', priceMinor: 259, tokens: { ACME: 52, MALL: 26 } },
  { code: GTIN('900100100007'), name: 'Café crème beans 500 g', priceMinor: 899, tokens: { ACME: 180, MALL: 90 } },
  { code: GTIN('900100100008'), name: 'Pâté de campagne 180 g', priceMinor: 349, tokens: { ACME: 70, MALL: 35 } },
  { code: GTIN('900100100009'), name: 'Gâteau au chocolat', priceMinor: 1290, tokens: { ACME: 258, MALL: 129 } },
  { code: GTIN('900100100010'), name: 'Äpfel Gala 1 kg', priceMinor: 299, tokens: { ACME: 60, MALL: 30 } },
  { code: GTIN('900100100011'), name: 'Bananas 1 kg', priceMinor: 179, tokens: { ACME: 36, MALL: 18 } },
  { code: GTIN('900100100012'), name: 'Free-range eggs x10', priceMinor: 389, tokens: { ACME: 78, MALL: 39 } },
  { code: GTIN('900100100013'), name: 'Whole milk 1 l', priceMinor: 129, tokens: { ACME: 26, MALL: 13 } },
  { code: GTIN('900100100014'), name: 'Señorío olive oil 500 ml', priceMinor: 749, tokens: { ACME: 150, MALL: 75 } },
  { code: GTIN('900100100015'), name: 'Gruyère AOP 200 g', priceMinor: 529, tokens: { ACME: 106, MALL: 53 } },
  { code: GTIN('9001001'), name: 'Chewing gum mint', priceMinor: 99, tokens: { ACME: 20 } },
  { code: '036000291452', name: 'Paper tissues x10', priceMinor: 159, tokens: { ACME: 32, MALL: 16 } },
  { code: GTIN('900100100016'), name: 'Sunny granola bar', priceMinor: 119, tokens: { ACME: 24, MALL: 12, SUNNY: 12 } },
];

export const DEMO_CUSTOMERS = [
  'Anna Berger', 'Bülent Yılmaz', 'Chloé Martin', 'David Novák', 'Eva Lindqvist',
  'François Dubois', 'Grete Müller', 'Hiroshi Tanaka', 'Inés García', 'Jonas Weber',
];

/** A café next door, for the demo's second store: its own BELLA tokens, priced in BELLA and mall tokens. */
export const BELLA_PRODUCTS: { code: string; name: string; priceMinor: number; tokens: Record<string, number> }[] = [
  { code: GTIN('900200100001'), name: 'Cappuccino', priceMinor: 320, tokens: { BELLA: 32, MALL: 32 } },
  { code: GTIN('900200100002'), name: 'Espresso', priceMinor: 220, tokens: { BELLA: 22, MALL: 22 } },
  { code: GTIN('900200100003'), name: 'Croissant', priceMinor: 180, tokens: { BELLA: 18, MALL: 18 } },
  { code: GTIN('900200100004'), name: 'Apfelstrudel', priceMinor: 450, tokens: { BELLA: 45, MALL: 45 } },
  { code: GTIN('900200100005'), name: 'Sunny orange juice 0.3 l', priceMinor: 290, tokens: { BELLA: 29, MALL: 29 } },
];

export type DemoProfileName = 'acme' | 'bella';

export interface DemoProfile {
  vendorId: string;
  storeName: string;
  address: string[];
  ownToken: { code: string; name: string; faceValueMinor: number };
  ownTokenReward: (i: number) => number;
  products: typeof DEMO_PRODUCTS;
  /** How many of DEMO_CUSTOMERS hold an account here; their cards are the same at every demo store. */
  customers: number;
}

export const DEMO_PROFILES: Record<DemoProfileName, DemoProfile> = {
  acme: {
    vendorId: 'acme',
    storeName: 'ACME Market',
    address: ['Mall Street 1, Unit 12', '1010 Vienna'],
    ownToken: { code: 'ACME', name: 'ACME token', faceValueMinor: 5 },
    ownTokenReward: (i) => 200 + 150 * i,
    products: DEMO_PRODUCTS,
    customers: DEMO_CUSTOMERS.length,
  },
  bella: {
    vendorId: 'bella',
    storeName: 'Bella Café',
    address: ['Mall Street 1, Unit 14', '1010 Vienna'],
    ownToken: { code: 'BELLA', name: 'Bella café token', faceValueMinor: 10 },
    // Anna, Bülent and Chloé already have an account here too; the others join at the till.
    ownTokenReward: () => 0,
    products: BELLA_PRODUCTS,
    customers: 3,
  },
};

export function demoTokenTypes(vendorId: string, products: string[] = demoSunnyProducts(), own: DemoProfile['ownToken'] = DEMO_PROFILES.acme.ownToken): TokenType[] {
  return [
    { code: 'MALL', name: 'Mall token', kind: 'mall', issuer: 'mall', faceValueMinor: 10, currency: 'EUR', acceptedBy: '*' },
    { code: own.code, name: own.name, kind: 'vendor', issuer: vendorId, faceValueMinor: own.faceValueMinor, currency: 'EUR', acceptedBy: [vendorId] },
    { code: 'SUNNY', name: 'Sunny Foods coupon', kind: 'manufacturer', issuer: 'sunny-foods', faceValueMinor: 10, currency: 'EUR', acceptedBy: '*', products },
  ];
}

/** The token type a demo store issues, as the mall lists it. */
export function demoOwnTokenType(profile: DemoProfileName, vendorId = DEMO_PROFILES[profile].vendorId): TokenType {
  return demoTokenTypes(vendorId, demoSunnyProducts(), DEMO_PROFILES[profile].ownToken)[1] as TokenType;
}

/** The GTINs the demo's manufacturer coupon may buy. */
export function demoSunnyProducts(): string[] {
  return DEMO_PRODUCTS.filter((p) => p.tokens['SUNNY'] !== undefined).map((p) => (p.code.length === 12 ? `0${p.code}` : p.code));
}

async function seedDemo(dataDir: string, config: VendorConfig, access: AccessStore, mallFloat: boolean, profile: DemoProfile): Promise<DemoSummary> {
  const opened = await openLedger({ dataDir: dataPaths(dataDir).ledgerDir, vendorId: config.vendorId, segmentBytesMax: config.segmentBytesMax });
  const ledger = new LedgerService(
    { vendorId: config.vendorId, name: config.storeName, address: config.address, currency: config.currency },
    opened.state,
    opened.journal,
  );
  const op = { terminal: null, cashier: null };
  const own = profile.ownToken.code;
  const types = demoTokenTypes(config.vendorId, demoSunnyProducts(), profile.ownToken);
  for (const tt of types) await ledger.upsertTokenType(op, tt);
  for (const p of profile.products) await ledger.upsertProduct(op, { code: p.code, name: p.name, priceMinor: p.priceMinor, tokenPrices: p.tokens });
  await ledger.recordAllotment(op, `op:seed-${randomUUID()}`, { token: own, units: 500_000, reference: 'own tokens minted for loyalty' });
  if (!mallFloat) {
    await ledger.recordAllotment(op, `op:seed-${randomUUID()}`, { token: 'MALL', units: 200_000, reference: 'opening allotment from the mall' });
    await ledger.recordAllotment(op, `op:seed-${randomUUID()}`, { token: 'SUNNY', units: 20_000, reference: 'Sunny Foods spring campaign' });
  }
  const customers: DemoSummary['customers'] = [];
  for (const [i, name] of DEMO_CUSTOMERS.slice(0, profile.customers).entries()) {
    // The demo's customers hold fixed cards so that its walkthrough can name them; every
    // card registered later is drawn at random.
    const c = await ledger.registerCustomer(op, { name, card: makeCardNumber(i + 1) });
    customers.push({ id: c.id, card: c.card, name: c.name });
    const reward = profile.ownTokenReward(i);
    if (reward > 0) await ledger.issueTokens(op, `op:seed-${randomUUID()}`, { customerId: c.id, token: own, units: reward, reason: 'reward' });
    if (!mallFloat) {
      await ledger.issueTokens(op, `op:seed-${randomUUID()}`, { customerId: c.id, token: 'MALL', units: 100 + 40 * i, reason: 'purchase' });
      if (i % 3 === 0) await ledger.issueTokens(op, `op:seed-${randomUUID()}`, { customerId: c.id, token: 'SUNNY', units: 60, reason: 'reward' });
    }
  }
  const staff = [
    { id: 'ana', name: 'Ana (cashier)', role: 'cashier' as const, pin: '1234' },
    { id: 'sam', name: 'Sam (supervisor)', role: 'supervisor' as const, pin: '9999' },
  ];
  for (const s of staff) await access.upsertStaff(s);
  await opened.checkpoints.now();
  await opened.journal.close();
  return {
    tokenTypes: types.map((t) => t.code),
    products: profile.products.map((p) => ({ code: p.code, name: p.name })),
    customers,
    staff: staff.map((s) => ({ id: s.id, role: s.role, pin: s.pin })),
  };
}
