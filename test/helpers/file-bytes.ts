import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Every byte of every file under a directory, with the payloads of JWS documents decoded
 * (a signed batch or registry entry carries its content base64url-encoded): what a test
 * searches for a secret that must never be written anywhere.
 */
export async function bytesUnder(dir: string): Promise<string> {
  let out = '';
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    // A running process may remove a file (a batch sent) between the listing and the read.
    const text = await readFile(join(entry.parentPath, entry.name), 'latin1').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return '';
      throw err;
    });
    out += text;
    for (const m of text.matchAll(/"payload":"([A-Za-z0-9_-]+)"/g)) out += Buffer.from(m[1] as string, 'base64url').toString('latin1');
  }
  return out;
}
