import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  applyPatch,
  diff,
  escapePointer,
  type JsonValue,
  jsonEqual,
  PatchError,
  unescapePointer,
} from './patch.ts';

describe('JSON Patch differ', () => {
  test('escapes ~ and / in paths', () => {
    assert.equal(escapePointer('a/b~c'), 'a~1b~0c');
    assert.equal(unescapePointer('a~1b~0c'), 'a/b~c');
    assert.equal(unescapePointer(escapePointer('~1')), '~1');
    const patch = diff(
      { metadata: { annotations: {} } },
      { metadata: { annotations: { 'airlock.dev/injected': '{}', '~x': 'y' } } },
    );
    assert.deepEqual(patch, [
      { op: 'add', path: '/metadata/annotations/airlock.dev~1injected', value: '{}' },
      { op: 'add', path: '/metadata/annotations/~0x', value: 'y' },
    ]);
  });

  test('equal documents yield an empty patch', () => {
    assert.deepEqual(diff({ a: [1, { b: 2 }] }, { a: [1, { b: 2 }] }), []);
    assert.deepEqual(diff({ a: 1, b: undefined }, { a: 1 }), []);
  });

  test('prepending to an array adds at the front, leaving the rest alone', () => {
    const from = { spec: { initContainers: [{ name: 'migrate' }] } };
    const to = {
      spec: { initContainers: [{ name: 'airlock-init' }, { name: 'airlock-sidecar' }, { name: 'migrate' }] },
    };
    assert.deepEqual(diff(from, to), [
      { op: 'add', path: '/spec/initContainers/0', value: { name: 'airlock-init' } },
      { op: 'add', path: '/spec/initContainers/1', value: { name: 'airlock-sidecar' } },
    ]);
  });

  test('a changed element is patched in place; removals go from the end', () => {
    assert.deepEqual(diff([{ a: 1 }, 2, 3, 4], [{ a: 2 }, 4]), [
      { op: 'replace', path: '/0/a', value: 2 },
      { op: 'remove', path: '/2' },
      { op: 'remove', path: '/1' },
    ]);
  });

  test('type changes and the root are replaced', () => {
    assert.deepEqual(diff({ a: [1] }, { a: { b: 1 } }), [{ op: 'replace', path: '/a', value: { b: 1 } }]);
    assert.deepEqual(diff([1], { a: 1 }), [{ op: 'replace', path: '', value: { a: 1 } }]);
  });

  test('the applier refuses bad paths', () => {
    assert.throws(() => applyPatch({ a: [] }, [{ op: 'remove', path: '/a/0' }]), PatchError);
    assert.throws(() => applyPatch({ a: [] }, [{ op: 'add', path: '/a/01', value: 1 }]), PatchError);
    assert.throws(() => applyPatch({}, [{ op: 'replace', path: '/x', value: 1 }]), PatchError);
    assert.deepEqual(applyPatch({ a: [1] }, [{ op: 'add', path: '/a/-', value: 2 }]), { a: [1, 2] });
  });

  // Keys drawn from a small alphabet that includes the characters JSON Pointer escapes, so
  // objects share keys and arrays share elements often enough to exercise every branch.
  const key = fc.constantFrom('a', 'b', 'c/d', '~e', 'f~1', '', '0', '-');
  const json: fc.Arbitrary<JsonValue> = fc.letrec<{ value: JsonValue }>((tie) => ({
    value: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      fc.constantFrom<JsonValue>(null, true, false, 0, 1, 'x', 'y'),
      fc.array(tie('value'), { maxLength: 5 }),
      fc.dictionary(key, tie('value'), { maxKeys: 4 }),
    ),
  })).value;

  test('property: applying diff(a, b) to a yields b', () => {
    fc.assert(
      fc.property(json, json, (a, b) => {
        assert.ok(jsonEqual(applyPatch(a, diff(a, b)), b));
      }),
      { numRuns: 3000 },
    );
  });

  test('property: small edits of a document give patches that apply', () => {
    const pair = json.chain((a) =>
      fc.tuple(fc.constant(a), fc.array(fc.tuple(fc.nat(), json), { maxLength: 3 })).map(([doc, edits]) => {
        const copy = structuredClone(doc);
        for (const [at, value] of edits) {
          if (Array.isArray(copy)) copy.splice(at % (copy.length + 1), at % 2, value);
          else if (copy && typeof copy === 'object') copy[Object.keys(copy)[at % 4] ?? 'z'] = value;
        }
        return [doc, copy] as const;
      }),
    );
    fc.assert(
      fc.property(pair, ([a, b]) => {
        assert.ok(jsonEqual(applyPatch(a, diff(a, b)), b));
      }),
      { numRuns: 3000 },
    );
  });
});
