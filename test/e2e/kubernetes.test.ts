// An injected agent pod on a real single-node cluster whose kubectl (the real static binary,
// mounted read-only from the node; the agent image has none) uses the kubeconfig the injector
// wrote: the sidecar governs it against the cluster's own API server, reached as
// kubernetes.default.svc with its CA and the token of a ServiceAccount the agent never sees.
// Reads allowed, a namespace delete denied, Secrets masked, a scale held until alice approves
// it with kubectl airlock, exec decided by command (a refused rm -rf /, an allowed cat that the
// real kubelet runs and the sidecar records; the same over SPDY), logs -f streamed from a real container through
// the real kubelet with detected values masked, a port-forward held until approved and then
// carrying requests to a pod's server (one to a pod no rule names refused), and the API server
// unreachable around the sidecar.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type Cluster, images, requiresCluster, startCluster } from '../support/cluster.ts';
import { grantApprovers } from '../support/operator.ts';
import { waitFor } from '../support/process.ts';
import { controlPlaneBin } from '../support/tools.ts';

const password = 'hunter2-correct-horse';
const page = 'served by site through a forwarded port';
const kubectlInPod = '/opt/airlock-test/kubectl';

describe('an injected agent pod on a real cluster: kubectl through the sidecar', requiresCluster(), () => {
  let cluster: Cluster;
  const kubectl = (args: string[], input?: string) =>
    cluster.kubectl(args, input === undefined ? {} : { input });
  const apply = (manifest: object) => kubectl(['apply', '-f', '-'], JSON.stringify(manifest));
  /** The agent's own kubectl, with the injected KUBECONFIG, on the targets namespace. */
  const agent = (args: string[], timeoutMs = 60_000) =>
    cluster.exec('agent-0', [kubectlInPod, '--namespace=targets', ...args], { timeoutMs });
  const airlock = (args: string[]) => cluster.plugin('approver', [...args, '-n', 'agents']);

  before(async () => {
    cluster = await startCluster();
    await cluster.installAirlock();

    // What the agent operates: a pod that logs a customer's email every half second, a
    // Deployment to scale and a Secret to read, in a namespace that is not injected.
    await kubectl(['create', 'namespace', 'targets']);
    await apply({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'web', namespace: 'targets' },
      spec: {
        hostname: 'web',
        containers: [
          {
            name: 'web',
            image: images.agent.name,
            imagePullPolicy: 'IfNotPresent',
            command: [
              'python3',
              '-u',
              '-c',
              'import time\nn = 0\nwhile True:\n    n += 1\n    print(f"order {n} paid by ada@example.com")\n    time.sleep(0.5)',
            ],
          },
        ],
      },
    });
    // A pod serving a page, for the port-forward.
    await apply({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'site', namespace: 'targets' },
      spec: {
        containers: [
          {
            name: 'site',
            image: images.agent.name,
            imagePullPolicy: 'IfNotPresent',
            command: [
              'sh',
              '-c',
              `mkdir -p /tmp/site && echo '${page}' > /tmp/site/index.html && cd /tmp/site && exec python3 -m http.server 8080`,
            ],
          },
        ],
      },
    });
    await apply({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'api', namespace: 'targets' },
      spec: {
        replicas: 1,
        selector: { matchLabels: { app: 'api' } },
        template: {
          metadata: { labels: { app: 'api' } },
          spec: {
            containers: [
              {
                name: 'api',
                image: images.agent.name,
                imagePullPolicy: 'IfNotPresent',
                command: ['sleep', 'infinity'],
              },
            ],
          },
        },
      },
    });
    await apply({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'db', namespace: 'targets' },
      stringData: { password },
    });

    // The Connection's credential: a ServiceAccount's token the sidecar holds.
    await kubectl(['create', 'namespace', 'agents']);
    await kubectl(['label', 'namespace', 'agents', 'airlock.dev/injection=enabled']);
    await kubectl(['create', 'serviceaccount', 'agent', '-n', 'agents']);
    await kubectl(['create', 'serviceaccount', 'cluster-operator', '-n', 'agents']);
    await kubectl([
      'create',
      'clusterrolebinding',
      'cluster-operator',
      '--clusterrole=cluster-admin',
      '--serviceaccount=agents:cluster-operator',
    ]);
    const token = (
      await kubectl(['create', 'token', 'cluster-operator', '-n', 'agents', '--duration=2h'])
    ).trim();
    const ca = JSON.parse(
      await kubectl(['get', 'configmap', 'kube-root-ca.crt', '-n', 'agents', '-o', 'json']),
    ).data['ca.crt'];
    await apply({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'cluster', namespace: 'agents' },
      stringData: { token },
    });
    await apply({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'cluster-ca', namespace: 'agents' },
      stringData: { 'ca.crt': ca },
    });
    await apply({
      apiVersion: 'airlock.dev/v1alpha1',
      kind: 'Connection',
      metadata: { name: 'cluster', namespace: 'agents' },
      spec: {
        protocol: 'kubernetes',
        host: 'kubernetes.default.svc',
        port: 443,
        tls: { mode: 'verify-full', caSecretRef: { name: 'cluster-ca' } },
        credentials: { secretRef: { name: 'cluster' } },
      },
    });
    await apply({
      apiVersion: 'airlock.dev/v1alpha1',
      kind: 'AccessPolicy',
      metadata: { name: 'agent-cluster', namespace: 'agents' },
      spec: {
        subjects: [{ kind: 'ServiceAccount', name: 'agent' }],
        connections: ['cluster'],
        masking: [{ name: 'pii', detectors: ['email'] }],
        rules: [
          {
            name: 'no-namespace-deletes',
            action: 'deny',
            message: 'namespaces are not deleted by agents',
            kubernetes: { verbs: ['delete', 'deletecollection'], resources: ['/namespaces'] },
          },
          {
            name: 'approve-scaling',
            action: 'require-approval',
            kubernetes: { subresources: ['scale'] },
            approval: { approvers: { groups: ['dba-oncall'] }, timeout: '2m' },
          },
          {
            name: 'approve-site-forwarding',
            action: 'require-approval',
            kubernetes: { subresources: ['portforward'], names: ['site'] },
            approval: { approvers: { groups: ['dba-oncall'] }, timeout: '2m' },
          },
          { name: 'no-file-deletion', action: 'deny', ssh: { classes: ['file-deletion'] } },
        ],
      },
    });
    await grantApprovers(cluster, { groups: ['dba-oncall'] });
    await waitFor(
      'the Connection ready',
      async () =>
        (await kubectl([
          'get',
          'conn',
          'cluster',
          '-n',
          'agents',
          '-o',
          'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
        ])) === 'True',
    );
    const bin = controlPlaneBin();
    assert.ok(bin, 'the control plane binaries are built');
    await apply({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'agent-0', namespace: 'agents' },
      spec: {
        serviceAccountName: 'agent',
        terminationGracePeriodSeconds: 30,
        containers: [
          {
            name: 'agent',
            image: images.agent.name,
            imagePullPolicy: 'IfNotPresent',
            command: ['sleep', 'infinity'],
            volumeMounts: [{ name: 'kubectl', mountPath: kubectlInPod, readOnly: true }],
          },
        ],
        volumes: [{ name: 'kubectl', hostPath: { path: join(bin, 'kubectl'), type: 'File' } }],
      },
    });
    await kubectl(['wait', '--for=condition=Ready', 'pod/agent-0', '-n', 'agents', '--timeout=180s']);
    await kubectl(['wait', '--for=condition=Ready', 'pod/web', '-n', 'targets', '--timeout=180s']);
    await kubectl(['wait', '--for=condition=Ready', 'pod/site', '-n', 'targets', '--timeout=180s']);
    await kubectl(['rollout', 'status', 'deployment/api', '-n', 'targets', '--timeout=180s']);
  });
  after(async () => {
    await cluster?.stop();
  });

  test('the injector set KUBECONFIG to a kubeconfig that names the sidecar and holds no credential', async () => {
    const env = await cluster.exec('agent-0', ['printenv', 'KUBECONFIG']);
    assert.equal(env.stdout.trim(), '/etc/airlock/kubeconfig/config');
    const file = await cluster.exec('agent-0', ['cat', '/etc/airlock/kubeconfig/config']);
    const config = JSON.parse(file.stdout);
    assert.match(config.clusters[0].cluster.server, /^http:\/\/240\.240\.0\.\d+:443$/);
    assert.deepEqual(config.users[0].user, {});
  });

  test('kubectl get pods is allowed, with the held token', async () => {
    const pods = await agent(['get', 'pods']);
    assert.equal(pods.code, 0, pods.stderr);
    assert.match(pods.stdout, /^web\s+1\/1\s+Running/m);
    const who = await agent(['auth', 'whoami', '-o', 'jsonpath={.status.userInfo.username}']);
    assert.equal(who.stdout, 'system:serviceaccount:agents:cluster-operator');
  });

  test('kubectl delete namespace is denied by the rule and the namespace stays', async () => {
    const result = await agent(['delete', 'namespace', 'targets']);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /rule "no-namespace-deletes": namespaces are not deleted by agents/);
    await kubectl(['get', 'namespace', 'targets']);
  });

  test('kubectl create token and a node proxy are refused: no rule names them', async () => {
    const token = await agent(['create', 'token', 'default']);
    assert.notEqual(token.code, 0);
    assert.match(
      token.stderr,
      /ServiceAccount token requests are refused unless a rule names the token subresource/,
    );
    const node = (await kubectl(['get', 'nodes', '-o', 'jsonpath={.items[0].metadata.name}'])).trim();
    const run = await agent(['get', '--raw', `/api/v1/nodes/${node}/proxy/runningpods/`]);
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /node proxy \(kubelet API\) requests are refused/);
  });

  test('kubectl get secret -o yaml shows the Secret redacted', async () => {
    const result = await agent(['get', 'secret', 'db', '-o', 'yaml']);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /password:/);
    assert.ok(!result.stdout.includes(Buffer.from(password).toString('base64')), result.stdout);
  });

  test('kubectl scale is held until alice approves it with kubectl airlock, then runs', async () => {
    const scaling = agent(['scale', 'deployment', 'api', '--replicas=2'], 150_000);
    let name = '';
    await waitFor('the AccessRequest', async () => {
      const list = JSON.parse(await kubectl(['get', 'ar', '-n', 'agents', '-o', 'json']));
      name =
        list.items.find((r: { spec: { rule: string } }) => r.spec.rule === 'approve-scaling')?.metadata
          .name ?? '';
      return name !== '';
    });
    const approve = await airlock(['approve', name]);
    assert.equal(approve.code, 0, approve.out + approve.err);
    const result = await scaling;
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /scaled/);
    assert.equal(
      await kubectl(['get', 'deployment', 'api', '-n', 'targets', '-o', 'jsonpath={.spec.replicas}']),
      '2',
    );
  });

  test('kubectl exec -- rm -rf / is refused, and so is an interactive shell under command rules', async () => {
    const result = await agent(['exec', 'web', '--', 'rm', '-rf', '/']);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /AccessPolicy "agent-cluster" rule "no-file-deletion"/);
    const shell = await agent(['exec', '-i', 'web', '--', 'sh']);
    assert.notEqual(shell.code, 0);
    assert.match(shell.stderr, /denied by AccessPolicy "agent-cluster"/);
  });

  test('an allowed kubectl exec runs in the target pod through the real kubelet and is recorded', async () => {
    const result = await agent(['exec', 'web', '--', 'cat', '/etc/hostname']);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.trim(), 'web');
    const failing = await agent(['exec', 'web', '--', 'sh', '-c', 'exit 3']);
    assert.equal(failing.code, 3, failing.stderr);
    await waitFor('the exec recorded', async () =>
      (await cluster.logs('agent-0', 'airlock-sidecar')).includes('-- cat /etc/hostname'),
    );
    const log = await cluster.logs('agent-0', 'airlock-sidecar');
    const line = log.split('\n').find((l) => l.includes('-- cat /etc/hostname') && l.includes('"request"'));
    assert.ok(line, log);
    assert.match(line, /"kind":"kubernetes-stream"/);
    assert.match(line, /"exitStatus":0/);
    assert.match(log, /"stream":"output","at":[\d.]+,"data":"web\\n"/);
  });

  test('an exec kubectl sends over SPDY is governed the same: refused by command, allowed and recorded', async () => {
    const spdy = (args: string[]) =>
      cluster.exec('agent-0', [kubectlInPod, '--namespace=targets', ...args], {
        env: { KUBECTL_REMOTE_COMMAND_WEBSOCKETS: 'false' },
      });
    const refused = await spdy(['exec', 'web', '--', 'rm', '-rf', '/']);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /AccessPolicy "agent-cluster" rule "no-file-deletion"/);
    const result = await spdy([
      'exec',
      'web',
      '--',
      'sh',
      '-c',
      'cat /etc/hostname; echo ops@example.com; exit 4',
    ]);
    assert.equal(result.code, 4, result.stderr);
    assert.equal(result.stdout, 'web\n[REDACTED:email]\n');
    const piped = await cluster.exec('agent-0', [
      'sh',
      '-c',
      `echo through-stdin | KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false ${kubectlInPod} --namespace=targets exec -i web -- cat`,
    ]);
    assert.notEqual(piped.code, 0, 'an interactive exec under command rules is refused over SPDY too');
    assert.match(
      piped.stderr,
      /interactive exec or attach \(stdin\) cannot be checked against command rules/,
    );
  });

  test('kubectl logs -f streams from the real container as it writes, with the email masked', async () => {
    const before = await kubectl(['logs', 'web', '-n', 'targets']);
    const last = Math.max(...[...before.matchAll(/order (\d+)/g)].map((m) => Number(m[1])));
    const result = await cluster.exec('agent-0', [
      'timeout',
      '4',
      kubectlInPod,
      '--namespace=targets',
      'logs',
      '-f',
      '--tail=1',
      'web',
    ]);
    assert.equal(result.code, 124, `still following when stopped: ${result.stderr}`);
    const lines = result.stdout.trim().split('\n');
    assert.ok(lines.length >= 4, result.stdout);
    assert.ok(
      lines.every((l) => /^order \d+ paid by \[REDACTED:email\]$/.test(l)),
      result.stdout,
    );
    const newest = Math.max(...lines.map((l) => Number(/order (\d+)/.exec(l)![1])));
    assert.ok(newest > last + 2, 'lines written after the follow began arrived while it followed');
    // Recorded when the agent leaves, which is how a followed log ends.
    const recorded = () =>
      cluster
        .logs('agent-0', 'airlock-sidecar')
        .then((log) =>
          log.split('\n').find((l) => l.includes('"text":"get pods/log web in namespace targets"')),
        );
    await waitFor('the followed log recorded', async () => (await recorded()) !== undefined);
    const event = JSON.parse((await recorded())!).event;
    assert.equal(event.outcome, 'masked');
    assert.ok(event.masked['pii/email'] >= lines.length, JSON.stringify(event));
  });

  test('kubectl port-forward is held until alice approves it, then carries a request to the pod', async () => {
    // The agent's kubectl forwards in the background (kubectl tunnels SPDY inside WebSocket,
    // SPDY/3.1+portforward.k8s.io, relayed unread); once approved, python3 in the same pod
    // fetches the page twice through the forwarded port, a stream per connection.
    const forwarding = cluster.exec(
      'agent-0',
      [
        'sh',
        '-c',
        `${kubectlInPod} --namespace=targets port-forward pod/site 18080:8080 >/tmp/forward.log 2>&1 & forward=$!
while [ ! -e /tmp/forward-approved ]; do sleep 0.2; done
python3 -c 'import urllib.request
for _ in range(2): print(urllib.request.urlopen("http://127.0.0.1:18080/", timeout=30).read().decode(), end="")'
status=$?
kill $forward
cat /tmp/forward.log >&2
exit $status`,
      ],
      { timeoutMs: 150_000 },
    );
    let name = '';
    await waitFor('the AccessRequest', async () => {
      const list = JSON.parse(await kubectl(['get', 'ar', '-n', 'agents', '-o', 'json']));
      name =
        list.items.find((r: { spec: { rule: string } }) => r.spec.rule === 'approve-site-forwarding')
          ?.metadata.name ?? '';
      return name !== '';
    });
    const approve = await airlock(['approve', name]);
    assert.equal(approve.code, 0, approve.out + approve.err);
    await cluster.exec('agent-0', ['touch', '/tmp/forward-approved']);
    const result = await forwarding;
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, `${page}\n${page}\n`);
    assert.match(result.stderr, /Forwarding from 127\.0\.0\.1:18080 -> 8080/);
    // Recorded when the tunnel closes, with the hold's approval.
    const recorded = () =>
      cluster
        .logs('agent-0', 'airlock-sidecar')
        .then((log) => log.split('\n').find((l) => l.includes('pods/portforward site in namespace targets')));
    await waitFor('the port-forward recorded', async () => (await recorded()) !== undefined);
    const event = JSON.parse((await recorded())!).event;
    assert.equal(event.kind, 'kubernetes-stream', JSON.stringify(event));
    assert.equal(event.status, 101, JSON.stringify(event));
  });

  test('kubectl port-forward to a pod no rule names is refused', async () => {
    const result = await agent(['port-forward', 'pod/web', '18081:8080'], 30_000);
    assert.notEqual(result.code, 0);
    assert.match(
      result.stderr,
      /port-forward requests are refused unless a rule names the portforward subresource/,
    );
  });

  test('bypass: the API server around the sidecar, with the agent’s own token, is refused', async () => {
    const admin = readFileSync(cluster.kubeconfig.admin, 'utf8');
    const node = /server: (https:\/\/[^\s]+)/.exec(admin)![1]!;
    const service = JSON.parse(await kubectl(['get', 'service', 'kubernetes', '-n', 'default', '-o', 'json']))
      .spec.clusterIP as string;
    for (const server of [node, `https://${service}:443`]) {
      const result = await cluster.exec('agent-0', [
        'sh',
        '-c',
        `${kubectlInPod} --kubeconfig=/dev/null --server=${server} --insecure-skip-tls-verify --request-timeout=5s --token="$(cat /var/run/secrets/kubernetes.io/serviceaccount/token)" get pods -n targets`,
      ]);
      assert.notEqual(result.code, 0, server);
      assert.match(result.stderr, /connection refused/, server);
    }
  });

  test("the sidecar's log holds neither the held token nor the Secret's value", async () => {
    const log = await cluster.logs('agent-0', 'airlock-sidecar');
    const token = JSON.parse(await kubectl(['get', 'secret', 'cluster', '-n', 'agents', '-o', 'json'])).data
      .token;
    assert.ok(!log.includes(Buffer.from(token, 'base64').toString()));
    assert.ok(!log.includes(password) && !log.includes('ada@example.com'));
  });
});
