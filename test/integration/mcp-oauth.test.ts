// An MCP Connection that holds an OAuth client: the sidecar exchanges the client id and secret
// at a real authorization server (the `oidc-provider` package, client_credentials grant, JWT
// access tokens for the MCP server as resource) and the SDK's MCP server verifies each token
// with the provider's JWKS. The agent never sees the secret or the token; the token is renewed
// before it expires, and once when the server refuses it; a client the provider refuses, an
// endpoint whose certificate cannot be verified and a half-configured client fail closed.
import assert from 'node:assert/strict';
import { get } from 'node:https';
import { after, before, describe, it } from 'node:test';
import { createLocalJWKSet, type JSONWebKeySet, jwtVerify } from 'jose';
import type { BundlePolicy } from '../../api/bundle.ts';
import { policy } from '../../sidecar/policy/fixtures.ts';
import {
  connectAgent,
  type EnforcedMcp,
  enforceMcp,
  type McpUpstream,
  startMcpServer,
} from '../support/mcp.ts';
import { type ClientCredentialsProvider, startClientCredentialsProvider } from '../support/oidc-provider.ts';

const resource = 'https://tools.example/mcp';
const ttlSeconds = 3;
const agents: BundlePolicy = policy({ name: 'tool-agents', rules: [] });

function fetchJwks(url: string, ca: string): Promise<JSONWebKeySet> {
  return new Promise((resolve, reject) => {
    get(url, { ca }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
      });
      res.on('end', () => resolve(JSON.parse(body)));
    }).on('error', reject);
  });
}

describe('MCP Connection with OAuth client credentials', () => {
  let provider: ClientCredentialsProvider;
  let server: McpUpstream;
  let enforced: EnforcedMcp;
  /** Tokens the server takes no longer (revoked), and the ones it accepted, in order. */
  const revoked = new Set<string>();
  const accepted: string[] = [];
  const refusedAt: string[] = [];

  const enforce = (
    overrides: { credentials?: Record<string, string>; ca?: string | null; oauth?: boolean } = {},
  ) =>
    enforceMcp(server, [agents], {
      credentials: overrides.credentials ?? {
        clientId: provider.clientId,
        clientSecret: provider.clientSecret,
      },
      tls: {
        mode: 'disable',
        ...(overrides.ca !== null && { ca: overrides.ca ?? provider.ca }),
      },
      mcp: {
        ...(overrides.oauth !== false && {
          oauth: { tokenUrl: provider.tokenUrl, scopes: ['tools:call'], resource },
        }),
      },
    });

  before(async () => {
    provider = await startClientCredentialsProvider({ resource, scopes: ['tools:call'], ttlSeconds });
    const jwks = createLocalJWKSet(await fetchJwks(`${provider.issuer}/jwks`, provider.ca));
    server = await startMcpServer({
      authorize: async (authorization) => {
        const token = /^Bearer (\S+)$/.exec(authorization ?? '')?.[1];
        if (!token || revoked.has(token)) {
          refusedAt.push(token ?? '');
          return false;
        }
        try {
          const { payload } = await jwtVerify(token, jwks, { issuer: provider.issuer, audience: resource });
          if (!String(payload.scope).split(' ').includes('tools:call')) return false;
        } catch {
          refusedAt.push(token);
          return false;
        }
        accepted.push(token);
        return true;
      },
    });
    enforced = await enforce();
  });
  after(async () => {
    await enforced?.enforcer.close();
    await server?.close();
    await provider?.stop();
  });

  it("calls tools with the provider's token for the MCP server, never the agent's credential or the secret", async () => {
    const agent = await connectAgent(enforced.url, { headers: { authorization: 'Bearer the-agents-own' } });
    try {
      const [first, second] = await Promise.all([
        agent.client.callTool({ name: 'echo', arguments: { text: 'one' } }),
        agent.client.callTool({ name: 'echo', arguments: { text: 'two' } }),
      ]);
      assert.deepEqual(first.content, [{ type: 'text', text: 'one' }]);
      assert.deepEqual(second.content, [{ type: 'text', text: 'two' }]);
    } finally {
      await agent.close();
    }
    // One exchange served every request of the session, however many waited for it.
    assert.equal(provider.issued(), 1);
    assert.ok(accepted.length >= 3);
    assert.equal(new Set(accepted).size, 1);
    assert.ok(server.authorizations.every((a) => a !== 'Bearer the-agents-own'));
    const recorded = JSON.stringify(enforced.events);
    assert.ok(!recorded.includes(accepted[0]!), 'no event carries the access token');
    assert.ok(!recorded.includes(provider.clientSecret), 'no event carries the client secret');
  });

  it('renews the token before it expires', async () => {
    const before = provider.issued();
    const first = accepted.at(-1);
    await new Promise((resolve) => setTimeout(resolve, ttlSeconds * 1000));
    const agent = await connectAgent(enforced.url);
    try {
      await agent.client.callTool({ name: 'echo', arguments: { text: 'later' } });
    } finally {
      await agent.close();
    }
    assert.equal(provider.issued(), before + 1);
    assert.notEqual(accepted.at(-1), first);
    // The expired token was never presented: nothing was refused.
    assert.deepEqual(refusedAt, []);
  });

  it('exchanges again, once, when the server refuses the token (401), and the call goes through', async () => {
    const current = accepted.at(-1)!;
    revoked.add(current);
    const before = provider.issued();
    const agent = await connectAgent(enforced.url);
    try {
      const result = await agent.client.callTool({ name: 'echo', arguments: { text: 'after revocation' } });
      assert.deepEqual(result.content, [{ type: 'text', text: 'after revocation' }]);
    } finally {
      await agent.close();
    }
    assert.deepEqual(refusedAt, [current]);
    assert.equal(provider.issued(), before + 1);
    assert.ok(server.calls.includes('echo {"text":"after revocation"}'));
  });

  it('refuses the agent, without the secret, when the provider refuses the client', async () => {
    const wrong = await enforce({
      credentials: { clientId: provider.clientId, clientSecret: 'not-the-secret' },
    });
    const before = server.authorizations.length;
    try {
      await assert.rejects(connectAgent(wrong.url), (error: Error) => {
        assert.match(
          error.message,
          /OAuth token endpoint refused the client credentials \(401 invalid_client/,
        );
        assert.ok(!error.message.includes('not-the-secret'));
        return true;
      });
      assert.equal(server.authorizations.length, before, 'nothing reached the MCP server');
    } finally {
      await wrong.enforcer.close();
    }
  });

  it('refuses a token endpoint whose certificate it cannot verify (it would be given the secret)', async () => {
    const unverified = await enforce({ ca: null });
    const before = provider.issued();
    try {
      await assert.rejects(
        connectAgent(unverified.url),
        /OAuth token endpoint is unreachable: .*certificate/,
      );
      assert.equal(provider.issued(), before);
    } finally {
      await unverified.enforcer.close();
    }
  });

  it('will not serve a half-configured client: a Secret with clientId and clientSecret but no mcp.oauth', async () => {
    await assert.rejects(
      enforce({ oauth: false }),
      /needs both mcp.oauth and the Secret's clientId and clientSecret/,
    );
    await assert.rejects(
      enforce({ credentials: { token: 'static' } }),
      /needs both mcp.oauth and the Secret's clientId and clientSecret/,
    );
  });
});
