// An MCP Connection through the operator and the sidecar on a real API server: the CRDs admit
// the Connection's mcp options and the policy's mcp rules, the operator sends them in the
// bundle, the sidecar serves the server with the Secret's token to the official SDK's client
// (tools/list filtered, a call denied, a result masked), and refuses with an HTTP 503 the MCP
// client can show where no policy grants the Connection.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import type { SessionEvent } from '../../api/events.ts';
import type { Operator } from '../../operator/operator.ts';
import { noApprovals } from '../../sidecar/core/enforcer.ts';
import { Sidecar } from '../../sidecar/sidecar.ts';
import { type ControlPlane, startControlPlane } from '../support/controlplane.ts';
import { connectAgent, type McpUpstream, mcpToken, startMcpServer } from '../support/mcp.ts';
import { startOperatorForAgentPod } from '../support/operator.ts';
import { freePort } from '../support/process.ts';
import { requires } from '../support/tools.ts';

describe(
  'an MCP Connection through the operator and the sidecar',
  requires('etcd', 'kube-apiserver', 'kubectl'),
  () => {
    let cluster: ControlPlane;
    let operator: Operator;
    let server: McpUpstream;
    let sidecar: Sidecar;
    let work: string;
    const events: SessionEvent[] = [];
    const ports = { granted: 0, ungranted: 0 };
    const apply = (manifest: object) =>
      cluster.kubectl(['apply', '-f', '-'], { input: JSON.stringify(manifest) });

    before(async () => {
      work = await mkdtemp(join(tmpdir(), 'airlock-mcp-sidecar-test-'));
      server = await startMcpServer();
      cluster = await startControlPlane();
      await cluster.installCrds();
      await cluster.kubectl(['create', 'namespace', 'airlock-system']);
      await cluster.kubectl(['create', 'namespace', 'agents']);
      await cluster.kubectl(['create', 'serviceaccount', 'agent', '-n', 'agents']);
      await apply({
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: 'tools-token', namespace: 'agents' },
        stringData: { token: mcpToken },
      });
      await apply({
        apiVersion: 'airlock.dev/v1alpha1',
        kind: 'Connection',
        metadata: { name: 'tools', namespace: 'agents' },
        spec: {
          protocol: 'mcp',
          host: '127.0.0.1',
          port: server.port,
          tls: { mode: 'disable' },
          credentials: { secretRef: { name: 'tools-token' } },
          mcp: { scheme: 'http', toolChanges: 'deny' },
        },
      });
      await apply({
        apiVersion: 'airlock.dev/v1alpha1',
        kind: 'AccessPolicy',
        metadata: { name: 'agent-tools', namespace: 'agents' },
        spec: {
          subjects: [{ kind: 'ServiceAccount', name: 'agent' }],
          connections: ['tools'],
          masking: [{ name: 'pii', detectors: ['email', 'credit-card'], strategy: 'redact' }],
          rules: [
            { name: 'no-deletes', action: 'deny', mcp: { tools: ['delete_*'] } },
            {
              name: 'no-system-files',
              action: 'deny',
              mcp: { tools: ['read_file'], arguments: [{ path: '$.path', glob: '/etc/*' }] },
            },
          ],
        },
      });
      const started = await startOperatorForAgentPod(cluster, work);
      operator = started.operator;
      ports.granted = await freePort();
      ports.ungranted = await freePort();
      sidecar = new Sidecar({
        ...started.sidecar,
        listen: [
          { connection: 'tools', host: '127.0.0.1', port: ports.granted, protocol: 'mcp' },
          { connection: 'other-tools', host: '127.0.0.1', port: ports.ungranted, protocol: 'mcp' },
        ],
        events: { emit: (event) => events.push(event) },
        approvals: noApprovals,
        logger: pino({ level: 'warn' }),
      });
      await sidecar.start();
    });
    after(async () => {
      await sidecar?.stop();
      await operator?.stop();
      await cluster?.stop();
      await server?.close();
      await rm(work, { recursive: true, force: true });
    });

    test('the granted MCP Connection is served with its policy and the held token', async () => {
      await sidecar.nextBundle((b) => b.connections.length === 1);
      assert.equal(sidecar.bundle?.connections[0]?.mcp?.toolChanges, 'deny');
      const agent = await connectAgent(`http://127.0.0.1:${ports.granted}/mcp`);
      try {
        const { tools } = await agent.client.listTools();
        assert.equal(
          tools.some((t) => t.name === 'delete_file'),
          false,
        );
        const read = await agent.client.callTool({ name: 'read_file', arguments: { path: '/srv/notes' } });
        assert.doesNotMatch(JSON.stringify(read.content), /ada@example\.com|4111/);
        await assert.rejects(
          agent.client.callTool({ name: 'read_file', arguments: { path: '/etc/passwd' } }),
          /no-system-files/,
        );
      } finally {
        await agent.close();
      }
      assert.ok(server.authorizations.every((a) => a === `Bearer ${mcpToken}`));
      assert.ok(
        events.some((e) => e.type === 'request' && e.outcome === 'blocked' && e.rule === 'no-system-files'),
      );
    });

    test('an MCP Connection no policy grants is refused with an HTTP 503 naming why', async () => {
      await assert.rejects(
        connectAgent(`http://127.0.0.1:${ports.ungranted}/mcp`),
        /503|access to other-tools is closed/,
      );
    });
  },
);
