import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { policy } from '../policy/fixtures.ts';
import { compileMasking } from '../policy/masking.ts';
import { compileJsonPaths, maskJson, parseJsonPath } from './json.ts';

describe('JSON masking', () => {
  it('parses the supported JSON path subset', () => {
    assert.deepEqual(parseJsonPath('$.a.b'), [
      { descendant: false, key: 'a' },
      { descendant: false, key: 'b' },
    ]);
    assert.deepEqual(parseJsonPath("$..card[*]['x y'][2]"), [
      { descendant: true, key: 'card' },
      { descendant: false, key: '*' },
      { descendant: false, key: 'x y' },
      { descendant: false, key: 2 },
    ]);
    assert.equal(parseJsonPath('a.b'), undefined);
    assert.equal(parseJsonPath('$[?(@.x)]'), undefined);
  });

  const policies = [
    policy({
      name: 'enforced',
      masking: [
        { name: 'cards', detectors: ['credit-card'], strategy: 'redact', indirectUse: 'deny' },
        {
          name: 'paths',
          jsonPaths: ['$.customer.email', '$..secret', '$.list[*].ssn'],
          strategy: 'redact',
          indirectUse: 'deny',
        },
      ],
    }),
    policy({
      name: 'dry-run',
      mode: 'audit',
      masking: [{ name: 'names', jsonPaths: ['$.customer.name'], strategy: 'redact', indirectUse: 'deny' }],
    }),
  ];
  const plan = compileMasking(policies);
  const paths = compileJsonPaths(policies);

  it('masks values at paths, under selected objects, and by detectors', () => {
    const document = {
      customer: { name: 'Alice', email: 'a@b.c', card: 4111111111111111 },
      deep: { x: { secret: { k: 'v', n: 1 } } },
      list: [{ ssn: '1' }, { ssn: '2', other: 'keep' }],
      note: 'pay with 4111 1111 1111 1111 today',
    };
    const { value, counts, wouldMask } = maskJson(document, plan, paths);
    assert.deepEqual(value, {
      customer: { name: 'Alice', email: '[REDACTED]', card: '[REDACTED:credit-card]' },
      deep: { x: { secret: { k: '[REDACTED]', n: '[REDACTED]' } } },
      list: [{ ssn: '[REDACTED]' }, { ssn: '[REDACTED]', other: 'keep' }],
      note: 'pay with [REDACTED:credit-card] today',
    });
    assert.equal(counts['paths/$.customer.email'], 1);
    assert.equal(counts['paths/$..secret'], 2);
    assert.equal(counts['paths/$.list[*].ssn'], 2);
    assert.deepEqual(wouldMask, { 'names/$.customer.name': 1 });
  });

  it('masks every leaf for a path it cannot read (fail closed)', () => {
    const odd = compileJsonPaths([
      policy({
        name: 'p',
        masking: [{ name: 'weird', jsonPaths: ['$[?(@.x)]'], strategy: 'redact', indirectUse: 'deny' }],
      }),
    ]);
    assert.deepEqual(maskJson({ a: 'x', b: [1] }, compileMasking([]), odd).value, {
      a: '[REDACTED]',
      b: ['[REDACTED]'],
    });
  });
});
