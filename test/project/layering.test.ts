import { expect } from 'chai';
import { ESLint } from 'eslint';

/** The import rule of DESIGN.md is enforced by the linter: a forbidden import fails `npm test`. */
describe('imports flow one way (eslint)', function () {
  this.timeout(60_000);
  const eslint = new ESLint({ cwd: process.cwd() });

  async function restricted(filePath: string, specifier: string): Promise<boolean> {
    const [result] = await eslint.lintText(`import { x } from '${specifier}';\nexport const y = x;\n`, { filePath });
    return (result?.messages ?? []).some((m) => m.ruleId === 'no-restricted-imports');
  }

  const forbidden: Array<[string, string]> = [
    ['core/x.ts', '../platform/logger.ts'],
    ['core/x.ts', '../vendor-server/server.ts'],
    ['platform/x.ts', '../hardware/printer/index.ts'],
    ['platform/storage/x.ts', '../../vendor-server/ledger/service.ts'],
    ['hardware/printer/x.ts', '../../terminal/app.ts'],
    ['terminal/x.ts', '../vendor-server/server.ts'],
    ['terminal/x.ts', '../mall-sync/service.ts'],
    ['vendor-server/x.ts', '../mall-sync/judge.ts'],
    ['vendor-server/ledger/x.ts', '../../hardware/printer/index.ts'],
    ['mall-sync/store/x.ts', '../../vendor-server/config.ts'],
    ['mall-sync/x.ts', '../terminal/cart.ts'],
    ['vendor-server/x.ts', '../test/helpers/temp.ts'],
    ['core/x.ts', '../bench/vendor/run.ts'],
  ];
  for (const [file, spec] of forbidden) {
    it(`refuses ${spec} from ${file}`, async () => {
      expect(await restricted(file, spec)).to.equal(true);
    });
  }

  const allowed: Array<[string, string]> = [
    ['core/x.ts', './money.ts'],
    ['platform/storage/x.ts', '../../core/index.ts'],
    ['platform/x.ts', './storage/index.ts'],
    ['hardware/printer/x.ts', '../../platform/storage/index.ts'],
    ['terminal/x.ts', '../hardware/printer/index.ts'],
    ['vendor-server/ledger/x.ts', '../../platform/storage/index.ts'],
    ['mall-sync/x.ts', '../core/index.ts'],
    ['test/x.ts', '../vendor-server/server.ts'],
  ];
  for (const [file, spec] of allowed) {
    it(`allows ${spec} from ${file}`, async () => {
      expect(await restricted(file, spec)).to.equal(false);
    });
  }
});
