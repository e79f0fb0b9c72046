import { createPrivateKey } from 'node:crypto';
import { expect } from 'chai';
import fc from 'fast-check';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type CryptoKey } from 'jose';
import { MallposError, type ErrorCode } from '../../core/errors.ts';
import {
  checkOfflineAcceptance,
  instrumentCode,
  offlineLimitProblem,
  parseInstrumentCode,
  readInstrument,
  type InstrumentClaims,
  type InstrumentDirectory,
  type InstrumentKey,
  type InstrumentKind,
} from '../../core/instruments.ts';
import type { TokenType } from '../../core/token-types.ts';
import { signInstrument, verifyInstrument } from '../../platform/instruments.ts';
import { expectCode } from './helpers.ts';

interface Signer {
  kid: string;
  privateKey: CryptoKey;
  x: string;
}

async function newSigner(): Promise<Signer> {
  const { privateKey, publicKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
  const jwk = await exportJWK(publicKey);
  return { privateKey, x: jwk.x as string, kid: await calculateJwkThumbprint({ kty: 'OKP', crv: 'Ed25519', x: jwk.x as string }) };
}

function keyEntry(s: Signer, issuer: string, kinds: InstrumentKind[], validFrom = '2020-01-01T00:00:00.000Z', validTo: string | null = null): InstrumentKey {
  return { kid: s.kid, issuer, kinds, jwk: { kty: 'OKP', crv: 'Ed25519', x: s.x }, validFrom, validTo };
}

const POLICY = { offlineInstrumentMaxMinor: 5_000, offlineStoreDailyMaxMinor: 20_000, snapshotMaxAgeHours: 24 };

const TYPES = new Map<string, TokenType>([
  ['MALL', { code: 'MALL', name: 'Mall token', kind: 'mall', issuer: 'mall', faceValueMinor: 10, currency: 'EUR', acceptedBy: '*' }],
  ['ACME', { code: 'ACME', name: 'ACME token', kind: 'vendor', issuer: 'acme', faceValueMinor: 5, currency: 'EUR', acceptedBy: '*' }],
  ['SUNNY', { code: 'SUNNY', name: 'Sunny', kind: 'manufacturer', issuer: 'sunny-foods', faceValueMinor: 10, currency: 'EUR', acceptedBy: '*', products: ['9001001000021'] }],
]);

const NOW = new Date('2027-01-01T00:00:00.000Z');
const NOW_S = NOW.getTime() / 1000;

function claims(over: Partial<InstrumentClaims> = {}): InstrumentClaims {
  return { i: 'mall', s: 'G7K2M9Q4XB', t: 'MALL', u: 2500, a: NOW_S - 86_400, x: NOW_S + 86_400 * 30, ...over };
}

async function refusal(p: Promise<unknown>): Promise<ErrorCode> {
  try {
    await p;
  } catch (err) {
    if (err instanceof MallposError) return err.code;
    throw err;
  }
  throw new Error('expected a refusal, but the instrument was accepted');
}

describe('core/instruments: the bearer instrument format', () => {
  let mallKey: Signer;
  let sunnyKey: Signer;
  let acmeKey: Signer;
  let directory: InstrumentDirectory;

  before(async () => {
    mallKey = await newSigner();
    sunnyKey = await newSigner();
    acmeKey = await newSigner();
    directory = {
      keys: [keyEntry(mallKey, 'mall', ['gift']), keyEntry(sunnyKey, 'sunny-foods', ['coupon']), keyEntry(acmeKey, 'acme', ['gift'])],
      policy: POLICY,
    };
  });

  it('verifies the worked example of docs/PROTOCOL.md byte for byte', async () => {
    // The example key: 32 bytes of 7 as the Ed25519 seed.
    const der = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), Buffer.alloc(32, 7)]);
    const jwk = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }).export({ format: 'jwk' }) as { x: string; d: string };
    expect(jwk.x).to.equal('6kpsY-KcUgq-9VB7Ey7F-ZVHdq6-vnuSQh7qaRRG0iw');
    const kid = await calculateJwkThumbprint({ kty: 'OKP', crv: 'Ed25519', x: jwk.x });
    expect(kid).to.equal('--6IM5l0OosLj9yWskISYhUA3n_3CURQkmrYMSha_ck');
    const privateKey = (await importJWK({ kty: 'OKP', crv: 'Ed25519', x: jwk.x, d: jwk.d }, 'EdDSA')) as CryptoKey;
    const compact = await signInstrument('gift', { i: 'mall', s: 'G7K2M9Q4XB', t: 'MALL', u: 2500, a: 1796083200, x: 1827619200 }, { kid, privateKey });
    expect(compact).to.equal(
      'eyJhbGciOiJFZERTQSIsImtpZCI6Ii0tNklNNWwwT29zTGo5eVdza0lTWWhVQTNuXzNDVVJRa21yWU1TaGFfY2siLCJ0eXAiOiJtcGdjIn0.eyJpIjoibWFsbCIsInMiOiJHN0syTTlRNFhCIiwidCI6Ik1BTEwiLCJ1IjoyNTAwLCJhIjoxNzk2MDgzMjAwLCJ4IjoxODI3NjE5MjAwfQ.G6ix-gRkygjzdw3h4Vk9lWNYFu2vDTDiGn4omy3kNRQN8gbjFjGq4BbCw7KAVmzVpLCbyifz8PajXT12der9BQ',
    );
    const dir: InstrumentDirectory = { keys: [{ kid, issuer: 'mall', kinds: ['gift'], jwk: { kty: 'OKP', crv: 'Ed25519', x: jwk.x }, validFrom: '2026-01-01T00:00:00Z', validTo: null }], policy: POLICY };
    const v = await verifyInstrument(compact, dir, TYPES, NOW);
    expect(v).to.deep.include({ kind: 'gift', issuer: 'mall', serial: 'G7K2M9Q4XB', code: 'MALL-G7K2M9Q4XB-24', token: 'MALL', units: 2500, issuedAt: '2026-12-01T00:00:00.000Z', expiresAt: '2027-12-01T00:00:00.000Z' });
    expect(compact.length).to.be.below(320);
  });

  it('round-trips any gift certificate or coupon: what was signed is what verifies', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.boolean(),
        fc.stringMatching(/^[0-9A-Z]{6,20}$/),
        fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
        fc.integer({ min: 0, max: 86_400 * 365 * 5 }),
        fc.integer({ min: 1, max: 86_400 * 365 * 5 }),
        async (coupon, serial, units, age, life) => {
          const kind: InstrumentKind = coupon ? 'coupon' : 'gift';
          const c = claims({ i: coupon ? 'sunny-foods' : 'mall', s: serial, t: coupon ? 'SUNNY' : 'MALL', u: units, a: NOW_S - age, x: NOW_S + life });
          const compact = await signInstrument(kind, c, coupon ? sunnyKey : mallKey);
          const v = await verifyInstrument(compact, directory, TYPES, NOW);
          expect(v).to.deep.equal({
            kind,
            kid: (coupon ? sunnyKey : mallKey).kid,
            issuer: c.i,
            serial,
            code: instrumentCode(c.i, serial),
            token: c.t,
            units,
            issuedAt: new Date(c.a * 1000).toISOString(),
            expiresAt: new Date(c.x * 1000).toISOString(),
            compact,
          });
          expect(parseInstrumentCode(v.code.toLowerCase())).to.deep.equal({ issuer: c.i, serial, code: v.code });
        },
      ),
      { numRuns: 60 },
    );
  });

  it('refuses an instrument with any one character changed, with a typed error', async () => {
    const compact = await signInstrument('gift', claims(), mallKey);
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ ';
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: compact.length - 1 }), fc.constantFrom(...alphabet), async (at, ch) => {
        fc.pre(compact[at] !== ch);
        const changed = compact.slice(0, at) + ch + compact.slice(at + 1);
        const code = await refusal(verifyInstrument(changed, directory, TYPES, NOW));
        expect(code).to.match(/^CORE_ERR_INSTRUMENT_/);
      }),
      { numRuns: 300 },
    );
    // Every position at least once, with a character that keeps it base64url.
    for (let at = 0; at < compact.length; at++) {
      const ch = compact[at] === 'A' ? 'B' : compact[at] === '.' ? 'A' : 'A';
      const changed = compact.slice(0, at) + ch + compact.slice(at + 1);
      expect(await refusal(verifyInstrument(changed, directory, TYPES, NOW)), `position ${at}`).to.match(/^CORE_ERR_INSTRUMENT_/);
    }
    // Cut or lengthened: refused too.
    expect(await refusal(verifyInstrument(compact.slice(0, -1), directory, TYPES, NOW))).to.match(/^CORE_ERR_INSTRUMENT_/);
    expect(await refusal(verifyInstrument(`${compact}A`, directory, TYPES, NOW))).to.match(/^CORE_ERR_INSTRUMENT_/);
  });

  it('refuses forged, altered, expired, unknown-key and wrong-issuer instruments with their own codes', async () => {
    const good = await signInstrument('gift', claims(), mallKey);
    await verifyInstrument(good, directory, TYPES, NOW);
    // Forged: another key claims the mall key's kid.
    const forger = await newSigner();
    const forged = await signInstrument('gift', claims(), { kid: mallKey.kid, privateKey: forger.privateKey });
    expect(await refusal(verifyInstrument(forged, directory, TYPES, NOW))).to.equal('CORE_ERR_INSTRUMENT_SIGNATURE');
    // Altered: a higher value under the original signature.
    const [h, , s] = good.split('.');
    const richer = Buffer.from(JSON.stringify({ ...claims(), u: 250_000 })).toString('base64url');
    expect(await refusal(verifyInstrument(`${h}.${richer}.${s}`, directory, TYPES, NOW))).to.equal('CORE_ERR_INSTRUMENT_SIGNATURE');
    // Signed by a key the directory does not list.
    expect(await refusal(verifyInstrument(await signInstrument('gift', claims(), forger), directory, TYPES, NOW))).to.equal('CORE_ERR_INSTRUMENT_KEY_UNKNOWN');
    expect(await refusal(verifyInstrument(good, undefined, TYPES, NOW))).to.equal('CORE_ERR_INSTRUMENT_KEY_UNKNOWN');
    // Expired at the verifier's time.
    expect(await refusal(verifyInstrument(good, directory, TYPES, new Date((claims().x + 1) * 1000)))).to.equal('CORE_ERR_INSTRUMENT_EXPIRED');
    // The key's issuer is not the payload's; a store key signing mall tokens; a gift key signing a coupon.
    expect(await refusal(verifyInstrument(await signInstrument('gift', claims({ i: 'acme' }), mallKey), directory, TYPES, NOW))).to.equal('CORE_ERR_INSTRUMENT_ISSUER');
    expect(await refusal(verifyInstrument(await signInstrument('gift', claims({ i: 'acme' }), acmeKey), directory, TYPES, NOW))).to.equal('CORE_ERR_INSTRUMENT_ISSUER');
    // A store key signing its own tokens is fine.
    expect((await verifyInstrument(await signInstrument('gift', claims({ i: 'acme', t: 'ACME' }), acmeKey), directory, TYPES, NOW)).code).to.equal(instrumentCode('acme', 'G7K2M9Q4XB'));
    expect(await refusal(verifyInstrument(await signInstrument('coupon', claims({ i: 'mall' }), mallKey), directory, TYPES, NOW))).to.equal('CORE_ERR_INSTRUMENT_ISSUER');
    // A coupon worth tokens that are not the manufacturer's, and a gift certificate in manufacturer tokens.
    expect(await refusal(verifyInstrument(await signInstrument('coupon', claims({ i: 'sunny-foods', t: 'MALL' }), sunnyKey), directory, TYPES, NOW))).to.equal('CORE_ERR_INSTRUMENT_ISSUER');
    const sunnyGift: InstrumentDirectory = { ...directory, keys: [keyEntry(sunnyKey, 'sunny-foods', ['gift', 'coupon'])] };
    expect(await refusal(verifyInstrument(await signInstrument('gift', claims({ i: 'sunny-foods', t: 'SUNNY' }), sunnyKey), sunnyGift, TYPES, NOW))).to.equal('CORE_ERR_INSTRUMENT_ISSUER');
    // Unknown token type; issued after its key's validity ended, before it began, or in the future.
    expect(await refusal(verifyInstrument(await signInstrument('gift', claims({ t: 'NOPE' }), mallKey), directory, TYPES, NOW))).to.equal('CORE_ERR_INSTRUMENT_ISSUER');
    const retired: InstrumentDirectory = { ...directory, keys: [keyEntry(mallKey, 'mall', ['gift'], '2020-01-01T00:00:00.000Z', new Date((claims().a - 1) * 1000).toISOString())] };
    expect(await refusal(verifyInstrument(good, retired, TYPES, NOW))).to.equal('CORE_ERR_INSTRUMENT_ISSUER');
    const late: InstrumentDirectory = { ...directory, keys: [keyEntry(mallKey, 'mall', ['gift'], NOW.toISOString())] };
    expect(await refusal(verifyInstrument(good, late, TYPES, NOW))).to.equal('CORE_ERR_INSTRUMENT_ISSUER');
    expect(await refusal(verifyInstrument(await signInstrument('gift', claims({ a: NOW_S + 3600, x: NOW_S + 7200 }), mallKey), directory, TYPES, NOW))).to.equal('CORE_ERR_INSTRUMENT_ISSUER');
    expect(await refusal(verifyInstrument(await signInstrument('gift', claims({ x: claims().a }), mallKey), directory, TYPES, NOW))).to.equal('CORE_ERR_INSTRUMENT_ISSUER');
  });

  it('reads only the exact header and canonical base64url, and bounds the size', () => {
    const header = (h: unknown) => Buffer.from(JSON.stringify(h)).toString('base64url');
    const sig = Buffer.alloc(64, 1).toString('base64url');
    const payload = Buffer.from('{}').toString('base64url');
    const kid = 'A'.repeat(43);
    expect(readInstrument(`${header({ alg: 'EdDSA', kid, typ: 'mpcp' })}.${payload}.${sig}`).kind).to.equal('coupon');
    for (const h of [{ alg: 'none', kid, typ: 'mpgc' }, { alg: 'EdDSA', kid, typ: 'JWT' }, { alg: 'EdDSA', kid, typ: 'mpgc', crit: ['b64'] }, { alg: 'EdDSA', typ: 'mpgc' }, { alg: 'EdDSA', kid: 'short', typ: 'mpgc' }]) {
      expectCode(() => readInstrument(`${header(h)}.${payload}.${sig}`), 'CORE_ERR_INSTRUMENT_MALFORMED');
    }
    expectCode(() => readInstrument(`${header({ alg: 'EdDSA', kid, typ: 'mpgc' })}.${payload}.${Buffer.alloc(63).toString('base64url')}`), 'CORE_ERR_INSTRUMENT_MALFORMED');
    expectCode(() => readInstrument(`${header({ alg: 'EdDSA', kid, typ: 'mpgc' })}.${payload}=.${sig}`), 'CORE_ERR_INSTRUMENT_MALFORMED');
    expectCode(() => readInstrument('x'.repeat(5000)), 'CORE_ERR_INSTRUMENT_MALFORMED');
    expectCode(() => readInstrument(42 as unknown as string), 'CORE_ERR_INSTRUMENT_MALFORMED');
  });
});

describe('core/instruments: the short code', () => {
  it('round-trips, and never reads a code with one character changed or two neighbours swapped as the same instrument', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,12}$/), fc.stringMatching(/^[0-9A-Z]{6,20}$/), (issuer, serial) => {
        const code = instrumentCode(issuer, serial);
        expect(parseInstrumentCode(` ${code.toLowerCase()} `)).to.deep.equal({ issuer, serial, code });
        const alphabet = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-';
        for (let at = 0; at < code.length; at++) {
          for (const ch of alphabet) {
            if (ch === code[at]) continue;
            const changed = code.slice(0, at) + ch + code.slice(at + 1);
            let parsed: { issuer: string; serial: string } | null = null;
            try {
              parsed = parseInstrumentCode(changed);
            } catch (err) {
              expect((err as MallposError).code).to.equal('CORE_ERR_INSTRUMENT_CODE');
            }
            // A `-` moved inside the issuer part can reread the same text as another split; never as this instrument.
            if (parsed !== null) expect(`${parsed.issuer}/${parsed.serial}`).to.not.equal(`${issuer}/${serial}`);
          }
        }
        for (let at = 0; at + 1 < code.length; at++) {
          if (code[at] === code[at + 1]) continue;
          const swapped = code.slice(0, at) + code[at + 1] + code[at] + code.slice(at + 2);
          let parsed: { issuer: string; serial: string } | null = null;
          try {
            parsed = parseInstrumentCode(swapped);
          } catch {
            parsed = null;
          }
          if (parsed !== null) expect(`${parsed.issuer}/${parsed.serial}`).to.not.equal(`${issuer}/${serial}`);
        }
      }),
      { numRuns: 40 },
    );
    expectCode(() => parseInstrumentCode('MALL-G7K2M9Q4XB-25'), 'CORE_ERR_INSTRUMENT_CODE');
    expectCode(() => parseInstrumentCode('__PROTO__-G7K2M9Q4XB-24'), 'CORE_ERR_INSTRUMENT_CODE');
    expectCode(() => parseInstrumentCode('x'.repeat(100)), 'CORE_ERR_INSTRUMENT_CODE');
    expect(parseInstrumentCode('mall-g7k2m9q4xb-24').code).to.equal('MALL-G7K2M9Q4XB-24');
  });
});

describe('core/instruments: the offline acceptance policy', () => {
  const at = '2027-01-01T12:00:00.000Z';
  const fresh = '2027-01-01T06:00:00.000Z';
  it('allows up to each limit and refuses one unit beyond, or with a stale snapshot', () => {
    expect(offlineLimitProblem(POLICY, { valueMinor: 5_000, takenTodayMinor: 15_000, snapshotIssuedAt: fresh, at })).to.equal(null);
    expect(offlineLimitProblem(POLICY, { valueMinor: 5_001, takenTodayMinor: 0, snapshotIssuedAt: fresh, at })).to.match(/one instrument/);
    expect(offlineLimitProblem(POLICY, { valueMinor: 1, takenTodayMinor: 20_000, snapshotIssuedAt: fresh, at })).to.match(/in one day/);
    expect(offlineLimitProblem(POLICY, { valueMinor: 1, takenTodayMinor: 0, snapshotIssuedAt: '2026-12-31T11:59:59.000Z', at })).to.match(/older than 24 hours/);
    expect(offlineLimitProblem(POLICY, { valueMinor: 1, takenTodayMinor: 0, snapshotIssuedAt: 'garbage', at })).to.match(/older than/);
    expectCode(() => checkOfflineAcceptance(POLICY, { valueMinor: 5_001, takenTodayMinor: 0, snapshotIssuedAt: fresh, at }), 'CORE_ERR_INSTRUMENT_OFFLINE_LIMIT');
  });
});
