import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { policy } from '../policy/fixtures.ts';
import { compileJsonPaths } from '../policy/json-paths.ts';
import { compileMasking, defaultHashKey } from '../policy/masking.ts';
import {
  maskDocument,
  newTally,
  type ObjectMasking,
  parseJson,
  redactedData,
  redactedText,
} from './objects.ts';
import { JsonValueSplitter } from './watch.ts';

const secret = Buffer.from('s3cret-value').toString('base64');
const withPolicies = (...policies: Parameters<typeof policy>[0][]): ObjectMasking => {
  const bundle = policies.map(policy);
  return { plan: compileMasking(bundle), jsonPaths: compileJsonPaths(bundle), hashKey: defaultHashKey };
};
const none = withPolicies();
const mask = (document: unknown, secrets: boolean, masking = none) => {
  const tally = newTally();
  const text = typeof document === 'string' ? document : JSON.stringify(document);
  const masked = maskDocument(parseJson(text), secrets, masking, tally);
  return { text: JSON.stringify(masked), masked, tally };
};

describe('Kubernetes object masking', () => {
  it('redacts Secret data and stringData in an object, a list, a watch event and a table', () => {
    const object = {
      kind: 'Secret',
      metadata: { name: 'db' },
      data: { password: secret },
      stringData: { a: 'b' },
    };
    const shapes = [
      object,
      { kind: 'SecretList', items: [{ metadata: { name: 'db' }, data: { password: secret } }] },
      { type: 'MODIFIED', object },
      { kind: 'Table', rows: [{ cells: ['db', 'Opaque', 1], object }] },
      // kubectl get secrets --watch: events carrying tables.
      {
        type: 'ADDED',
        object: { kind: 'Table', rows: [{ cells: ['db'], object: { data: { password: secret } } }] },
      },
      // A Secret inside another object.
      { kind: 'ExternalSecret', spec: { template: { kind: 'Secret', data: { password: secret } } } },
      // A Secret anywhere, in a response that is not for Secrets.
      { kind: 'List', items: [{ kind: 'ConfigMap', data: { a: 'kept' } }, object] },
    ];
    for (const shape of shapes) {
      const { text, tally } = mask(shape, shape.kind === 'SecretList' || 'type' in shape);
      assert.ok(!text.includes(secret), text);
      assert.ok(text.includes(redactedData), text);
      assert.ok(tally.changed);
    }
    const { masked } = mask(object, false);
    assert.deepEqual((masked as typeof object).stringData, { a: redactedText });
    assert.ok(mask(shapes[6], false).text.includes('"kept"'), 'a ConfigMap is not a Secret');
  });

  it('redacts the Secret kept in the last-applied-configuration annotation', () => {
    const applied = JSON.stringify({ apiVersion: 'v1', kind: 'Secret', data: { password: secret } });
    const object = {
      metadata: { name: 'db', annotations: { 'kubectl.kubernetes.io/last-applied-configuration': applied } },
      data: { password: secret },
    };
    const { text } = mask({ kind: 'SecretList', items: [object] }, true);
    assert.ok(!text.includes(secret), text);
    const broken = {
      ...object,
      metadata: { annotations: { 'kubectl.kubernetes.io/last-applied-configuration': `{${secret}` } },
    };
    assert.ok(
      !mask(broken, true).text.includes(secret),
      'an annotation that cannot be read is redacted whole',
    );
  });

  it('masks detected values and JSON paths from each object root, keeping number source text', () => {
    const masking = withPolicies({
      name: 'p',
      masking: [
        { name: 'pii', detectors: ['email'], strategy: 'redact', indirectUse: 'deny' },
        {
          name: 'env',
          jsonPaths: ['$.spec.containers[*].env[*].value'],
          strategy: 'redact',
          indirectUse: 'deny',
        },
      ],
    });
    const pod = {
      metadata: { name: 'web', annotations: { owner: 'ada@example.com' } },
      spec: { containers: [{ env: [{ name: 'TOKEN', value: 'abc' }] }], big: 0 },
    };
    // An int64 a double cannot hold, as the API server may send it.
    const source = JSON.stringify({ kind: 'PodList', items: [pod] }).replace(
      '"big":0',
      '"big":12345678901234567890',
    );
    const list = mask(source, false, masking);
    assert.ok(!list.text.includes('ada@example.com'));
    assert.ok(!list.text.includes('"abc"'));
    assert.ok(list.text.includes('"TOKEN"'), 'only the selected value is masked');
    assert.ok(list.text.includes('12345678901234567890'), list.text);
    assert.deepEqual(list.tally.counts, { 'pii/email': 1, 'env/$.spec.containers[*].env[*].value': 1 });
  });

  it('leaves an object with nothing to mask unchanged', () => {
    assert.equal(mask({ kind: 'Pod', metadata: { name: 'web' } }, false).tally.changed, false);
  });
});

describe('the watch stream splitter', () => {
  it('splits concatenated events at any chunk boundary, strings with braces included', () => {
    const events = ['{"type":"ADDED","object":{"a":"}{\\"x"}}', '{"type":"DELETED","object":{"b":[1,{}]}}'];
    const stream = Buffer.from(`${events[0]}\n${events[1]}\n`);
    for (let cut = 1; cut < stream.length; cut++) {
      const splitter = new JsonValueSplitter(1024);
      const out = [...splitter.push(stream.subarray(0, cut)), ...splitter.push(stream.subarray(cut))];
      assert.deepEqual(out, events, `cut at ${cut}`);
      assert.equal(splitter.partial, false);
    }
  });

  it('refuses an event larger than its limit, and what is not an object', () => {
    assert.throws(
      () => new JsonValueSplitter(8).push(Buffer.from('{"type":"ADDED","object":{}')),
      /larger than 8/,
    );
    assert.throws(() => new JsonValueSplitter(8).push(Buffer.from('"x"')), /not a JSON object/);
  });
});
