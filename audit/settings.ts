// The audit store's checkpoint key (an HMAC key the operator and `airlock audit` share), and
// the retention period's syntax: read once at the edge, by whichever command takes them.
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';

/** "30d", "12h", "90m", "45s": a duration in milliseconds. */
export function parseRetention(value: string): number {
  const match = /^(\d+)(d|h|m|s)$/.exec(value);
  if (!match) throw new Error(`--retention ${value}: must be a number and a unit, like 30d, 12h or 90m`);
  const unit = { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1000 }[match[2] as 'd' | 'h' | 'm' | 's'];
  return Number(match[1]) * unit;
}

/**
 * Reads the checkpoint key; with `create`, makes one (32 random bytes, mode 0600) when the file
 * does not exist yet, as the operator does on its first start.
 */
export async function loadKey(file: string, create = false): Promise<Buffer> {
  try {
    const text = (await readFile(file, 'utf8')).trim();
    if (text.length < 32) throw new Error(`${file}: the audit key must be at least 32 characters`);
    return Buffer.from(text);
  } catch (error) {
    if (!create || (error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    const key = randomBytes(32).toString('base64url');
    await writeFile(file, `${key}\n`, { mode: 0o600, flag: 'wx' });
    return Buffer.from(key);
  }
}
