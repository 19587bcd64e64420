import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ToolPins, toolFingerprint } from './fingerprints.ts';

describe('tool fingerprints', () => {
  it('do not depend on key order, and change with the description or schema', () => {
    const tool = {
      name: 't',
      description: 'd',
      inputSchema: { type: 'object', properties: { a: {}, b: {} } },
    };
    const reordered = {
      inputSchema: { properties: { b: {}, a: {} }, type: 'object' },
      description: 'd',
      name: 't',
    };
    assert.equal(toolFingerprint(tool), toolFingerprint(reordered));
    assert.notEqual(toolFingerprint(tool), toolFingerprint({ ...tool, description: 'd2' }));
    assert.notEqual(toolFingerprint(tool), toolFingerprint({ ...tool, inputSchema: { type: 'object' } }));
    // What does not tell the model anything (_meta, icons) is not part of it.
    assert.equal(toolFingerprint(tool), toolFingerprint({ ...tool, _meta: { x: 1 } }));
  });

  it('pin a tool at first sight; a change stands until accepted, or until the old definition returns', () => {
    const pins = new ToolPins();
    assert.equal(pins.see('t', 'a'), undefined);
    assert.deepEqual(pins.see('t', 'b'), { tool: 't', pinned: 'a', seen: 'b' });
    assert.deepEqual(pins.change('t'), { tool: 't', pinned: 'a', seen: 'b' });
    assert.equal(pins.see('t', 'a'), undefined);
    assert.equal(pins.change('t'), undefined);
    const change = pins.see('t', 'c')!;
    // An approval of an older change does not pin a newer one.
    pins.see('t', 'd');
    pins.accept(change);
    assert.deepEqual(pins.change('t'), { tool: 't', pinned: 'a', seen: 'd' });
    pins.accept(pins.change('t')!);
    assert.equal(pins.see('t', 'd'), undefined);
  });
});
