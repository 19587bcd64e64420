import assert from 'node:assert/strict';
import { test } from 'node:test';
import { customResourceDefinitions, syncCrds } from './crds.ts';

test('crds/ matches the schemas (run `make crds` after changing api/)', async () => {
  assert.deepEqual(await syncCrds(true), []);
});

type Node = { [key: string]: unknown };

function undescribed(node: Node, path: string, out: string[], top = true) {
  for (const [name, child] of Object.entries((node.properties as Record<string, Node>) ?? {})) {
    const here = `${path}.${name}`;
    // The API server allows nothing under the root's metadata, not even a description.
    if (top && name === 'metadata') continue;
    if (typeof child.description !== 'string' || child.description.length < 8) out.push(here);
    undescribed(child, here, out, false);
  }
  if (node.items) undescribed(node.items as Node, `${path}[]`, out, false);
}

test('every field has a description for kubectl explain', () => {
  for (const crd of customResourceDefinitions()) {
    const version = (crd.spec as { versions: { schema: { openAPIV3Schema: Node } }[] }).versions[0]!;
    const missing: string[] = [];
    undescribed(version.schema.openAPIV3Schema, (crd.metadata as { name: string }).name, missing);
    assert.deepEqual(missing, []);
  }
});

test('the schemas are structural: every node has a type, no unsupported keywords', () => {
  const bad: string[] = [];
  const walk = (node: Node, path: string) => {
    if (!('type' in node) && !('x-kubernetes-int-or-string' in node)) bad.push(`${path}: no type`);
    for (const keyword of ['anyOf', 'oneOf', 'allOf', '$ref', 'const', 'additionalProperties']) {
      if (keyword in node && !(keyword === 'additionalProperties' && !('properties' in node)))
        bad.push(`${path}: ${keyword}`);
    }
    for (const [name, child] of Object.entries((node.properties as Record<string, Node>) ?? {}))
      walk(child, `${path}.${name}`);
    if (node.items) walk(node.items as Node, `${path}[]`);
  };
  for (const crd of customResourceDefinitions()) {
    const version = (crd.spec as { versions: { schema: { openAPIV3Schema: Node } }[] }).versions[0]!;
    walk(version.schema.openAPIV3Schema, (crd.metadata as { name: string }).name);
  }
  assert.deepEqual(bad, []);
});
