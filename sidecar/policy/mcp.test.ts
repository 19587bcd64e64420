import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { policy } from './fixtures.ts';
import { decideMcp, isPlainToolName, toolOffered } from './mcp.ts';

const tools = policy({
  name: 'tools',
  rules: [
    { name: 'no-deletes', action: 'deny', mcp: { tools: ['delete_*', 'github.delete_*'] } },
    {
      name: 'no-system-paths',
      action: 'deny',
      mcp: { tools: ['read_*', 'write_*'], arguments: [{ path: '$..path', glob: '/etc/*' }] },
    },
    {
      name: 'prod-needs-approval',
      action: 'require-approval',
      mcp: { arguments: [{ path: '$.env', regex: '^prod' }] },
      approval: { approvers: { groups: ['ops'] }, timeout: '5m', scope: 'statement' },
    },
    { name: 'no-secrets', action: 'deny', mcp: { resources: ['secret://**'] } },
    { name: 'no-admin-prompt', action: 'deny', mcp: { prompts: ['admin*'] } },
  ],
});
const tool = (name: string, args: unknown = {}) =>
  decideMcp([tools], { kind: 'tool', name, arguments: args });

describe('MCP decisions', () => {
  it('decides tool calls by name globs, in any case and in NFKC form', () => {
    assert.equal(tool('delete_file').action, 'deny');
    assert.equal(tool('Delete_File').rule, 'no-deletes');
    assert.equal(tool('\uff44elete_file').action, 'deny');
    assert.equal(tool('github.delete_repo').action, 'deny');
    assert.equal(tool('list_files').action, 'allow');
  });

  it('matches arguments at or under a path, nested and in arrays', () => {
    assert.equal(tool('read_file', { path: '/etc/passwd' }).rule, 'no-system-paths');
    assert.equal(tool('write_file', { target: { path: '/etc/hosts' } }).rule, 'no-system-paths');
    assert.equal(tool('read_file', { path: ['/srv/a', '/etc/shadow'] }).rule, 'no-system-paths');
    assert.equal(tool('read_file', { path: '/srv/a' }).action, 'allow');
    // Another tool with the same argument is not the rule's.
    assert.equal(tool('stat_file', { path: '/etc/passwd' }).action, 'allow');
  });

  it('reads a path argument as a file system resolves it', () => {
    for (const path of [
      '//etc/passwd',
      '/./etc/passwd',
      '/tmp/../etc/passwd',
      '/srv/../../../etc/passwd',
      'file:///etc/passwd',
      'file://localhost/etc/%70asswd',
      ' /etc/passwd\n',
      '／etc／passwd',
      // Relative paths that climb out of the server's directory or a home, backslashes and case
      // as Windows and macOS servers read them.
      '../../../../etc/passwd',
      '~/../etc/passwd',
      '~root/../../etc/passwd',
      '\\etc\\passwd',
      '/ETC/passwd',
      'file:///Etc/passwd',
    ])
      assert.equal(tool('read_file', { path }).rule, 'no-system-paths', path);
    for (const path of ['/srv/etc/passwd', '/srv/app/../data/x', 'etc/passwd', 'file:///srv/x', 'file://%zz'])
      assert.equal(tool('read_file', { path }).action, 'allow', path);
  });

  it('reads a resource URI as a URL parser does', () => {
    const read = (uri: string) => decideMcp([tools], { kind: 'resource', uri });
    for (const uri of [
      'secret://db/password',
      'SECRET://db/password',
      'Secret://DB/password',
      'ｓecret://db',
    ])
      assert.equal(read(uri).rule, 'no-secrets', uri);
    assert.equal(read('file:///srv/secret://x').action, 'allow');
    // A file: URL by its path, whatever host it names, and in any case.
    const files = policy({
      name: 'files',
      rules: [{ name: 'no-etc', action: 'deny', mcp: { resources: ['file:///etc/*'] } }],
    });
    for (const uri of ['file://127.0.0.1/etc/passwd', 'file:///ETC/passwd', 'file://host/tmp/../etc/passwd'])
      assert.equal(decideMcp([files], { kind: 'resource', uri }).rule, 'no-etc', uri);
    assert.equal(decideMcp([files], { kind: 'resource', uri: 'file://host/srv/etc/passwd' }).action, 'allow');
  });

  it('holds calls whose arguments match an RE2 expression, for any tool', () => {
    const held = tool('deploy', { env: 'production' });
    assert.equal(held.action, 'require-approval');
    assert.equal(held.approval?.timeoutMs, 5 * 60_000);
    assert.equal(tool('deploy', { env: 'staging' }).action, 'allow');
    // Numbers and booleans are matched as JSON.
    assert.equal(tool('deploy', { env: 1 }).action, 'allow');
  });

  it('decides resource reads by URI and prompts by name, and nothing else by them', () => {
    assert.equal(decideMcp([tools], { kind: 'resource', uri: 'secret://db/password' }).action, 'deny');
    assert.equal(decideMcp([tools], { kind: 'resource', uri: 'file:///srv/a' }).action, 'allow');
    assert.equal(decideMcp([tools], { kind: 'prompt', name: 'Admin-reset' }).rule, 'no-admin-prompt');
    assert.equal(tool('admin_tool').action, 'allow');
  });

  it('matches every call, read and get with empty criteria, and denies without a granting policy', () => {
    const all = policy({ name: 'all', rules: [{ name: 'closed', action: 'deny', mcp: {} }] });
    assert.equal(decideMcp([all], { kind: 'tool', name: 'x', arguments: {} }).action, 'deny');
    assert.equal(decideMcp([all], { kind: 'resource', uri: 'a://b' }).action, 'deny');
    assert.equal(decideMcp([], { kind: 'tool', name: 'x', arguments: {} }).action, 'deny');
  });

  it('reads an unreadable path or regex as matching everything, never nothing', () => {
    const odd = policy({
      name: 'odd',
      rules: [
        { name: 'bad-path', action: 'deny', mcp: { tools: ['a'], arguments: [{ path: 'path', glob: '*' }] } },
        {
          name: 'bad-regex',
          action: 'deny',
          mcp: { tools: ['b'], arguments: [{ path: '$.x', regex: '(?<' }] },
        },
      ],
    });
    assert.equal(decideMcp([odd], { kind: 'tool', name: 'a', arguments: { deep: { v: 1 } } }).action, 'deny');
    assert.equal(decideMcp([odd], { kind: 'tool', name: 'b', arguments: { x: 'y' } }).action, 'deny');
  });

  it('offers in tools/list only the tools not denied whatever their arguments', () => {
    assert.equal(toolOffered([tools], 'delete_file'), false);
    assert.equal(toolOffered([tools], 'read_file'), true);
    assert.equal(toolOffered([tools], 'deploy'), true);
    assert.equal(toolOffered([], 'anything'), false);
    const audit = { ...tools, mode: 'audit' as const };
    assert.equal(toolOffered([audit], 'delete_file'), true);
  });

  it('knows the plain tool names', () => {
    assert.ok(isPlainToolName('github.create_issue'));
    assert.ok(isPlainToolName('fs/read-file'));
    assert.equal(isPlainToolName('delete_f\u0456le'), false);
    assert.equal(isPlainToolName('a b'), false);
    assert.equal(isPlainToolName(''), false);
    assert.equal(isPlainToolName('x'.repeat(129)), false);
  });
});
