// The names the Airlock API is written in, as plain data: protocols, credential keys, TLS
// modes, detectors, statement kinds and command classes. v1alpha1.ts builds its schemas from
// them; the data path (the sidecar's enforcers, metrics, bundle checks) reads them from here,
// so a process that never validates an API object never loads zod (bench/README.md "Memory").

// Connection

export const protocols = ['postgres', 'ssh', 'http', 'tcp', 'redis', 'mcp', 'kubernetes'] as const;
export type Protocol = (typeof protocols)[number];

/** The keys a Connection's credentials Secret must hold, by protocol. */
export const credentialKeys: Record<Protocol, readonly (readonly string[])[]> = {
  postgres: [['username', 'password']],
  ssh: [['username', 'privateKey']],
  http: [['token'], ['header', 'value']],
  tcp: [],
  // An ACL user and its password, or the default user's password (requirepass).
  redis: [['username', 'password'], ['password']],
  // A bearer token, a header and its value (an API key), or an OAuth client (mcp.oauth).
  mcp: [['token'], ['header', 'value'], ['clientId', 'clientSecret']],
  // A bearer token the API server authenticates (a ServiceAccount token).
  kubernetes: [['token']],
};

export const tlsModes = ['disable', 'require', 'verify-full'] as const;

/** What an MCP server may ask of the agent when a Connection allows it. */
export const mcpServerRequests = ['sampling', 'elicitation', 'roots'] as const;
export type McpServerRequest = (typeof mcpServerRequests)[number];

/** The protocols on which an agent can present its end user's token. */
export const endUserProtocols: readonly Protocol[] = ['postgres', 'http', 'ssh'];

// AccessPolicy

export const detectors = [
  'credit-card',
  'email',
  'us-ssn',
  'iban',
  'phone',
  'ipv4',
  'ipv6',
  'jwt',
  'aws-access-key',
  'private-key',
  'bearer-token',
] as const;
export type Detector = (typeof detectors)[number];

export const sqlStatementKinds = [
  'SELECT',
  'INSERT',
  'UPDATE',
  'DELETE',
  'MERGE',
  'COPY',
  'TRUNCATE',
  'CREATE',
  'ALTER',
  'DROP',
  'GRANT',
  'REVOKE',
  'COMMENT',
  'CALL',
  'DO',
  'EXPLAIN',
  'PREPARE',
  'EXECUTE',
  'DEALLOCATE',
  'SET',
  'RESET',
  'SHOW',
  'BEGIN',
  'COMMIT',
  'ROLLBACK',
  'SAVEPOINT',
  'LOCK',
  'VACUUM',
  'ANALYZE',
  'CLUSTER',
  'REINDEX',
  'REFRESH',
  'LISTEN',
  'NOTIFY',
  'UNLISTEN',
  'DISCARD',
  'FETCH',
  'DECLARE',
  'CLOSE',
  'CHECKPOINT',
  'LOAD',
  'IMPORT',
  'SECURITY LABEL',
  'REASSIGN',
] as const;
export type SqlStatementKind = (typeof sqlStatementKinds)[number];

export const sqlClasses = ['read', 'write', 'ddl', 'dcl', 'admin'] as const;
export type SqlClass = (typeof sqlClasses)[number];

export const redisCommandClasses = ['read', 'write', 'admin', 'dangerous', 'scripting', 'pubsub'] as const;
export type RedisCommandClass = (typeof redisCommandClasses)[number];

export const sshCommandClasses = ['file-deletion', 'interpreter', 'privilege', 'network'] as const;
export type SshCommandClass = (typeof sshCommandClasses)[number];

/** What the API server reads a request as doing (its request info); proxy is the /proxy/ path prefix. */
export const kubernetesVerbs = [
  'get',
  'list',
  'watch',
  'create',
  'update',
  'patch',
  'delete',
  'deletecollection',
  'proxy',
] as const;
export type KubernetesVerb = (typeof kubernetesVerbs)[number];
