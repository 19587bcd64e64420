// `airlock local` as the real CLI serving an MCP Connection from manifests: the official SDK's
// client as the agent against a server built with the official SDK, a denied tool left out and
// refused, a held call approved with `airlock approve`, and the session read back with
// `airlock sessions list`.
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import YAML from 'yaml';
import type { PendingApproval } from '../../local/approvals.ts';
import { startLocal } from '../support/local.ts';
import { connectAgent, type McpUpstream, mcpToken, startMcpServer } from '../support/mcp.ts';
import { freePort, runCommand, type Service, temporaryDirectory, waitFor } from '../support/process.ts';

const cli = new URL('../../bin/airlock.js', import.meta.url).pathname;
const airlock = (args: string[]) => runCommand(process.execPath, [cli, ...args]);
const object = (kind: string, name: string, body: object) => ({
  apiVersion: kind === 'Secret' ? 'v1' : 'airlock.dev/v1alpha1',
  kind,
  metadata: { name, namespace: 'ops' },
  ...body,
});

describe('airlock local with an MCP Connection', () => {
  let server: McpUpstream;
  let work: { path: string; remove(): Promise<void> };
  let local: Service | undefined;
  let store: string;
  let port: number;

  before(async () => {
    server = await startMcpServer();
    work = await temporaryDirectory('mcp-local');
    store = join(work.path, 'store');
    port = await freePort();
    const dir = join(work.path, 'manifests');
    mkdirSync(dir);
    const objects = [
      object('Secret', 'tools', { stringData: { token: mcpToken } }),
      object('Connection', 'tools', {
        spec: {
          protocol: 'mcp',
          host: '127.0.0.1',
          port: server.port,
          mcp: { scheme: 'http' },
          credentials: { secretRef: { name: 'tools' } },
        },
      }),
      object('AccessPolicy', 'agents', {
        spec: {
          subjects: [{ kind: 'ServiceAccount', name: 'agent' }],
          connections: ['tools'],
          masking: [{ name: 'pii', detectors: ['email', 'credit-card'], strategy: 'redact' }],
          rules: [
            { name: 'no-deletes', action: 'deny', mcp: { tools: ['delete_*'] } },
            {
              name: 'approve-echo',
              action: 'require-approval',
              mcp: { tools: ['echo'] },
              approval: { approvers: { groups: ['ops'] }, timeout: '1m' },
            },
          ],
        },
      }),
    ];
    writeFileSync(join(dir, 'airlock.yaml'), objects.map((o) => YAML.stringify(o)).join('---\n'));
    const logFile = join(work.path, 'airlock.log');
    local = (await startLocal({ manifests: dir, logFile, listen: { tools: `127.0.0.1:${port}` }, store }))
      .service;
    assert.match(
      await readFile(logFile, 'utf8'),
      /an MCP client \(streamable HTTP\) at http:\/\/127\.0\.0\.1:\d+\/mcp/,
    );
  });
  after(async () => {
    await local?.stop();
    await server?.close();
    await work?.remove();
  });

  it('governs the agent’s tool calls and records the session', async () => {
    const agent = await connectAgent(`http://127.0.0.1:${port}/mcp`);
    try {
      const { tools } = await agent.client.listTools();
      assert.equal(
        tools.some((t) => t.name === 'delete_file'),
        false,
      );
      const read = await agent.client.callTool({ name: 'read_file', arguments: { path: '/srv/a' } });
      assert.doesNotMatch(JSON.stringify(read.content), /ada@example\.com/);
      await assert.rejects(
        agent.client.callTool({ name: 'delete_file', arguments: { path: '/srv/a' } }),
        /no-deletes/,
      );

      // A held call waits in airlock local's queue until a person approves it.
      const held = agent.client.callTool({ name: 'echo', arguments: { text: 'approved locally' } });
      let pending: PendingApproval[] = [];
      await waitFor('the held call', async () => {
        const list = await airlock(['approvals', 'list', '-o', 'json', '--store', store]);
        pending = JSON.parse(list.stdout || '[]') as PendingApproval[];
        return pending.length > 0;
      });
      assert.match(pending[0]!.request.text, /^tools\/call echo/);
      const approved = await airlock(['approve', pending[0]!.id, '--store', store]);
      assert.equal(approved.code, 0, approved.stderr);
      assert.deepEqual((await held).content, [{ type: 'text', text: 'approved locally' }]);
    } finally {
      await agent.close();
    }
    assert.equal(
      server.calls.some((c) => c.startsWith('delete_file')),
      false,
    );
    await waitFor('the recorded session', async () => {
      const list = await airlock(['sessions', 'list', '-o', 'json', '--store', store]);
      const sessions = JSON.parse(list.stdout || '[]') as { connection: string; requests?: number }[];
      return sessions.some((s) => s.connection === 'tools');
    });
  });
});
