import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { heldValues, hideHeld } from '../policy/held.ts';
import { HeldFilter } from './held.ts';

/** What the filter sends for `text` cut into pieces of `size` bytes. */
async function filtered(held: string[], text: string, size: number): Promise<string> {
  const filter = new HeldFilter(held.map((v) => Buffer.from(v)));
  const out: Buffer[] = [];
  filter.on('data', (chunk: Buffer) => out.push(chunk));
  const bytes = Buffer.from(text);
  for (let i = 0; i < bytes.length; i += size) filter.write(bytes.subarray(i, i + size));
  filter.end();
  await new Promise((resolve) => filter.on('end', resolve));
  return Buffer.concat(out).toString();
}

describe('held credential', () => {
  it('overwrites every occurrence, however the stream is cut, and leaves the rest byte for byte', async () => {
    const token = 'aab-s3cret-token';
    const text = `x aaab-s3cret-token y aab-s3cret-tok z aab-s3cret-tokenaab-s3cret-token é`;
    const want = `x a${'*'.repeat(16)} y aab-s3cret-tok z ${'*'.repeat(32)} é`;
    for (const size of [1, 2, 3, 7, 16, 17, 1000])
      assert.equal(await filtered([token], text, size), want, `${size}`);
    assert.equal(hideHeld([token], text), want);
  });

  it('holds the token or the header value, never a value short enough to be ordinary data', () => {
    assert.deepEqual(heldValues({ token: 'long-enough' }), ['long-enough']);
    assert.deepEqual(heldValues({ header: 'X-Api-Key', value: 'k3y-v4lue' }), ['k3y-v4lue']);
    assert.deepEqual(heldValues({ token: 'short' }), []);
  });
});
