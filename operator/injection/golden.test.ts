// Golden files: test/fixtures/inject/<case>.yaml (the pod, then an InjectionCase document with
// the grants and, optionally, the namespace's labels) → <case>.patch.json (the report and the
// JSON Patch). A stale golden fails; AIRLOCK_UPDATE_GOLDEN=1 rewrites them.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { V1Pod } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import type { Grant } from './hosts.ts';
import { injectedAnnotation, injectionOptions, injectPod } from './inject.ts';
import { applyPatch, diff, jsonEqual } from './patch.ts';

const directory = new URL('../../test/fixtures/inject/', import.meta.url).pathname;
const update = process.env.AIRLOCK_UPDATE_GOLDEN === '1';

export const goldenOptions = injectionOptions({
  image: 'ghcr.io/airlock-dev/airlock:0.1.0',
  version: '0.1.0',
  controlApiUrl: 'https://airlock-operator.airlock-system.svc:8443',
  excludedNamespaces: ['airlock-system', 'kube-system'],
});

interface InjectionCase {
  grants: Grant[];
  namespaceLabels?: Record<string, string>;
}

function load(name: string): { pod: V1Pod; injection: InjectionCase } {
  const documents = parseAllDocuments(readFileSync(join(directory, `${name}.yaml`), 'utf8')).map((d) =>
    d.toJS(),
  );
  const pod = documents.find((d) => d.kind === 'Pod') as V1Pod;
  const injection = (documents.find((d) => d.kind === 'InjectionCase') ?? { grants: [] }) as InjectionCase;
  return { pod, injection };
}

const cases = readdirSync(directory)
  .filter((f) => f.endsWith('.yaml'))
  .map((f) => f.slice(0, -'.yaml'.length))
  .sort();

const expectedOutcomes: Record<string, string> = {
  plain: 'injected/Injected',
  'existing-init-and-volumes': 'injected/Injected',
  'host-aliases': 'injected/Injected',
  'already-injected': 'skipped/AlreadyInjected',
  'annotation-only': 'injected/Injected',
  'opted-out': 'skipped/OptedOut',
  'not-opted-in': 'skipped/NotOptedIn',
  'pod-opt-in': 'injected/Injected',
  'host-network': 'skipped/HostNetwork',
  'uid-1337': 'refused/UidConflict',
  'net-admin': 'refused/NetAdminRequested',
  'no-grants': 'injected/NoGrants',
  'ip-and-external-hosts': 'injected/Injected',
};

describe('injection golden files', () => {
  test('every case is listed with its expected outcome', () => {
    assert.deepEqual(cases, Object.keys(expectedOutcomes).sort());
  });

  for (const name of cases) {
    test(name, () => {
      const { pod, injection } = load(name);
      const original = structuredClone(pod);
      const { pod: injected, report } = injectPod(pod, goldenOptions, injection.grants, {
        ...(injection.namespaceLabels && { namespaceLabels: injection.namespaceLabels }),
      });
      assert.deepEqual(pod, original, 'injectPod must not modify its input');
      assert.equal(`${report.result}/${report.reason}`, expectedOutcomes[name]);
      const patch = diff(pod, injected);
      const actual = `${JSON.stringify({ report, patch }, null, 2)}\n`;
      const file = join(directory, `${name}.patch.json`);
      if (update) writeFileSync(file, actual);
      let expected: string;
      try {
        expected = readFileSync(file, 'utf8');
      } catch {
        assert.fail(`missing golden ${file}; run with AIRLOCK_UPDATE_GOLDEN=1`);
      }
      assert.equal(
        actual,
        expected,
        `stale golden ${file}; run with AIRLOCK_UPDATE_GOLDEN=1 and review the diff`,
      );

      // The patch applies and yields exactly the injected pod.
      assert.ok(jsonEqual(applyPatch(pod, patch), injected));
      if (report.result === 'injected') {
        // Reinvocation: the injected pod is left alone.
        const again = injectPod(injected, goldenOptions, injection.grants);
        assert.equal(again.report.reason, 'AlreadyInjected');
        assert.deepEqual(diff(injected, again.pod), []);
        assert.ok(injected.metadata?.annotations?.[injectedAnnotation]);
      } else {
        assert.deepEqual(patch, []);
      }
    });
  }
});
