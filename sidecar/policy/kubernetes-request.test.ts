// The request reading against the API server's own parser: the golden file holds how
// k8s.io/apiserver's RequestInfoFactory reads every form of the corpus (written by
// test/fixtures/kubernetes-requestinfo/main.go). Each form is refused, read the same, or read
// the same with no name where the parser's name is not certain (which every names rule matches).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { corpus } from '../../test/fixtures/kubernetes-requestinfo/corpus.ts';
import { parseKubernetesRequest } from './kubernetes-request.ts';

const golden = gunzipSync(
  readFileSync(new URL('../../test/fixtures/kubernetes-requestinfo/golden.txt.gz', import.meta.url)),
)
  .toString()
  .trimEnd()
  .split('\n');

describe('the Kubernetes request reading against k8s.io/apiserver', () => {
  it('reads every form of the corpus as the API server does, or refuses it', () => {
    assert.equal(golden.length, corpus.length);
    const differences: string[] = [];
    let same = 0;
    let unnamed = 0;
    for (const [i, line] of corpus.entries()) {
      const space = line.indexOf(' ');
      const parsed = parseKubernetesRequest(line.slice(0, space), line.slice(space + 1) || '/');
      if (!parsed.ok) continue;
      const r = parsed.request;
      const mine = [r.resourceRequest, r.verb, r.group, r.version, r.namespace, r.resource, r.subresource];
      const theirs = golden[i]!.split('|');
      if (mine.join('|') !== theirs.slice(0, 7).join('|')) differences.push(`${line}: ${mine} vs ${theirs}`);
      else if (r.name === theirs[7]) same++;
      else if (r.name === '') unnamed++;
      else differences.push(`${line}: name ${r.name} vs ${theirs[7]}`);
    }
    assert.deepEqual(differences.slice(0, 10), []);
    assert.ok(same > corpus.length * 0.9, `${same} of ${corpus.length} read the same`);
    assert.ok(unnamed < corpus.length * 0.01);
  });
});
