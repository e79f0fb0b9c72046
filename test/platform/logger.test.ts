import { PassThrough } from 'node:stream';
import { expect } from 'chai';
import { createLogger, SECRET_FIELDS } from '../../platform/logger.ts';

function capture() {
  const out = new PassThrough();
  let text = '';
  out.on('data', (d: Buffer) => (text += d.toString()));
  return { logger: createLogger({ level: 'trace', destination: out }), text: () => text };
}

describe('platform/logger: an explicit redaction list', () => {
  it('redacts every listed secret field at the top level and nested, and nothing else', async () => {
    const { logger, text } = capture();
    for (const field of SECRET_FIELDS) {
      logger.info({ [field]: `top-${field}-s3cr3t` }, 'top');
      logger.info({ req: { [field]: `one-${field}-s3cr3t` } }, 'one level');
      logger.info({ req: { headers: { [field]: `two-${field}-s3cr3t` } } }, 'two levels');
    }
    await new Promise((r) => setImmediate(r));
    expect(text()).to.not.include('s3cr3t');
    expect(text().match(/\[redacted\]/g)).to.have.length(SECRET_FIELDS.length * 3);
  });

  it('keeps error codes readable: ENOSPC and typed codes are what an operator acts on', async () => {
    const { logger, text } = capture();
    logger.error({ err: Object.assign(new Error('no space left on device, write'), { code: 'ENOSPC' }) }, 'checkpoint failed');
    logger.info({ code: 'MALL_ERR_BATCH_GAP', detail: { code: 'VND_ERR_PIN' } }, 'batch refused');
    await new Promise((r) => setImmediate(r));
    expect(text()).to.include('"code":"ENOSPC"').and.include('MALL_ERR_BATCH_GAP').and.include('VND_ERR_PIN');
  });
});
