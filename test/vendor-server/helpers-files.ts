import { createHash } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { PassThrough } from 'node:stream';
import { createLogger, type Logger } from '../../platform/logger.ts';

/** Every file under `root` with its size, sha256 and modification time: equal snapshots mean no byte changed. */
export async function treeSnapshot(root: string, dir = root): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      for (const [k, v] of await treeSnapshot(root, path)) out.set(k, v);
    } else {
      const data = await readFile(path);
      const st = await stat(path);
      out.set(relative(root, path), `${data.length} ${createHash('sha256').update(data).digest('hex')} ${st.mtimeMs} ${(st.mode & 0o777).toString(8)}`);
    }
  }
  return out;
}

/** A JSON logger whose every line is kept, to read back what a run logged. */
export function capturedLogger(level = 'info'): { logger: Logger; text: () => string } {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (d: Buffer) => (text += d.toString()));
  return { logger: createLogger({ level, destination: stream }), text: () => text };
}
