// The Airlock API, group airlock.dev, version v1alpha1. These zod schemas are the single
// source: TypeScript types are inferred from them and crds/*.yaml is generated from them
// (api/crds.ts). Every field carries a description, which `kubectl explain` shows. The names
// they enumerate (protocols, detectors, statement kinds...) are plain data in names.ts.
import { z } from 'zod';
import {
  detectors,
  endUserProtocols,
  kubernetesVerbs,
  mcpServerRequests,
  protocols,
  redisCommandClasses,
  sqlClasses,
  sqlStatementKinds,
  sshCommandClasses,
  tlsModes,
} from './names.ts';

export const group = 'airlock.dev';
export const version = 'v1alpha1';
export const apiVersion = `${group}/${version}`;

const describe = <T extends z.ZodType>(schema: T, description: string): T => schema.meta({ description });
/**
 * A cross-field rule, stated once: as CEL for the API server (x-kubernetes-validations) and
 * as a check for everything that validates without it (`airlock local`, the operator).
 */
interface CrossFieldRule<T> {
  rule: string;
  message: string;
  holds: (value: T) => boolean;
}
const cel = <T>(rule: string, message: string, holds: (value: T) => boolean): CrossFieldRule<T> => ({
  rule,
  message,
  holds,
});
function validated<T extends z.ZodType>(schema: T, rules: CrossFieldRule<z.output<T>>[]): T {
  return schema
    .superRefine((value, ctx) => {
      for (const { holds, message } of rules) if (!holds(value)) ctx.addIssue({ code: 'custom', message });
    })
    .meta({ 'x-kubernetes-validations': rules.map(({ rule, message }) => ({ rule, message })) }) as T;
}

const dnsLabel = z
  .string()
  .min(1)
  .max(63)
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
const objectName = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/);
const glob = z.string().min(1).max(512);

/** A Go-style duration such as 90s, 15m or 1h30m. */
export const duration = z
  .string()
  .max(32)
  .regex(/^([0-9]+(ms|s|m|h))+$/, 'must be a duration such as 90s, 15m or 1h30m');

export const conditionSchema = describe(
  z.object({
    type: describe(z.string().min(1).max(316), 'Type of condition in CamelCase, such as Ready.'),
    status: describe(
      z.enum(['True', 'False', 'Unknown']),
      'Status of the condition: True, False or Unknown.',
    ),
    reason: describe(
      z.string().min(1).max(1024),
      'A CamelCase, machine-readable reason for the last transition.',
    ),
    message: describe(z.string().max(32768), 'A human-readable message about the last transition.'),
    observedGeneration: describe(
      z.number().int().min(0).optional(),
      'The .metadata.generation the condition was computed from.',
    ),
    lastTransitionTime: describe(
      z.string(),
      'When the condition last changed status (RFC 3339); unchanged while only the reason or message changes.',
    ),
  }),
  'One aspect of the current state of the object, following the Kubernetes conventions.',
);
export type Condition = z.infer<typeof conditionSchema>;

const statusSchema = (what: string) =>
  describe(
    z.object({
      observedGeneration: describe(
        z.number().int().min(0).optional(),
        'The .metadata.generation that the operator last reconciled.',
      ),
      conditions: describe(
        z.array(conditionSchema).max(16).optional(),
        `Conditions of the ${what}: Ready and the conditions that explain it.`,
      ).meta({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['type'] }),
    }),
    `Observed state of the ${what}, written by the operator.`,
  );

const secretRef = (what: string) =>
  describe(
    z.object({
      name: describe(objectName, `Name of a Secret in the same namespace that holds ${what}.`),
    }),
    `Reference to the Secret that holds ${what}.`,
  );

// ---------------------------------------------------------------------------------------
// Connection

/** A Secret in the Connection's namespace and the key of the PEM bundle of CA certificates in it. */
const caSecretRefSchema = z.object({
  name: describe(objectName, 'Name of a Secret in the same namespace.'),
  key: describe(z.string().min(1).max(253).default('ca.crt'), 'Key in the Secret holding the PEM bundle.'),
});

const endUserSchema = z.object({
  issuer: describe(
    z
      .string()
      .max(2048)
      .regex(/^https:\/\/[^\s?#]+$/, 'must be an https URL without query or fragment'),
    "The OpenID issuer URL of the organisation's identity provider, exactly as its tokens' iss claim has it. The sidecar reads its discovery document (/.well-known/openid-configuration) and verifies signatures with the keys its jwks_uri publishes.",
  ),
  audiences: describe(
    z.array(z.string().min(1).max(1024)).min(1).max(16),
    "Audiences a token must be issued for (its aud claim names at least one): the client id of the agent's application at the identity provider.",
  ),
  usernameClaim: describe(
    z.string().min(1).max(256).default('sub'),
    "Claim that names the person, as the API server's --oidc-username-claim.",
  ),
  usernamePrefix: describe(
    z.string().max(256).optional(),
    "Prefix put before the username, as the API server's --oidc-username-prefix (oidc: makes sub 42 the user oidc:42). AccessPolicy User subjects and events name the prefixed user.",
  ),
  groupsClaim: describe(
    z.string().min(1).max(256).default('groups'),
    "Claim that lists the person's groups (a string or a list of strings), as the API server's --oidc-groups-claim.",
  ),
  groupsPrefix: describe(
    z.string().max(256).optional(),
    "Prefix put before each group, as the API server's --oidc-groups-prefix. AccessPolicy Group subjects name the prefixed group.",
  ),
  required: describe(
    z.boolean().default(true),
    'Whether every session must present a valid token. When false, a session without one (or with a credential not shaped as a JWT, such as the password an agent always sent) is served as the workload alone, and policies granted for end users never apply to it; a JWT that is presented and fails is refused either way.',
  ),
  header: describe(
    z
      .string()
      .min(1)
      .max(256)
      .regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'must be an HTTP header name')
      .optional(),
    'HTTP only: the request header that carries the token, Authorization when omitted. Authorization carries it as a Bearer token, any other header as its whole value. The sidecar removes it before forwarding and sends the held credential instead.',
  ),
  caSecretRef: describe(
    caSecretRefSchema.optional(),
    "Secret holding the CA certificates that verify the identity provider's HTTPS certificate (its discovery document and keys), for a provider with a private CA. They replace the system roots, as tls.caSecretRef does for the target: then only that CA can vouch for the provider that says whom the agent acts for. The system roots when omitted.",
  ),
});
const endUserDescription =
  "The person an agent acts for, proven by an OIDC token from the organisation's identity provider (an ID token or a JWT access token). PostgreSQL: the token is the password the agent gives (PGPASSWORD); HTTP: the header named by header; SSH: the password of password authentication or the answer to Airlock's keyboard-interactive prompt. The sidecar verifies issuer, audience, signature, expiry and not-before, records the person on every event, and picks the AccessPolicies whose User, Group or actingFor subjects name them.";

export const connectionSpecSchema = describe(
  validated(
    z.object({
      protocol: describe(
        z.enum(protocols),
        'Protocol the agent speaks to the target: postgres, ssh, http, tcp, redis, mcp or kubernetes. It selects the enforcer.',
      ),
      host: describe(
        z
          .string()
          .min(1)
          .max(253)
          .regex(/^[A-Za-z0-9]([-A-Za-z0-9.:]*[A-Za-z0-9])?$/, 'must be a DNS name or an IP address'),
        'DNS name or IP address of the target. Agents keep using this name; the sidecar captures it.',
      ),
      port: describe(z.number().int().min(1).max(65535), 'TCP port of the target.'),
      tls: describe(
        z
          .object({
            mode: describe(
              z.enum(tlsModes).default('verify-full'),
              'Upstream TLS: disable (plaintext), require (encrypted, certificate not checked) or verify-full (encrypted, certificate and name verified).',
            ),
            caSecretRef: describe(
              caSecretRefSchema.optional(),
              'Secret holding the CA certificates that verify the target; the system roots when omitted.',
            ),
            serverName: describe(
              z.string().min(1).max(253).optional(),
              'Name to verify in the target certificate (and to send as SNI); the host when omitted.',
            ),
          })
          .default({ mode: 'verify-full' }),
        'How the sidecar secures the connection to the target.',
      ),
      credentials: describe(
        z
          .object({
            secretRef: secretRef(
              'the credential: postgres username and password; ssh username and privateKey; http token, or header and value; redis password, and username for an ACL user; mcp token, or header and value, or clientId and clientSecret (with mcp.oauth); kubernetes token, a bearer token the API server authenticates',
            ),
          })
          .optional(),
        'The credential the sidecar presents to the target. The agent never sees it. Required unless protocol is tcp, redis (a Redis without AUTH) or mcp (an MCP server without authorization).',
      ),
      postgres: describe(
        z
          .object({
            database: describe(
              z.string().min(1).max(63).optional(),
              'Database to connect to, whatever the agent asks for; the username when omitted.',
            ),
          })
          .optional(),
        'PostgreSQL options. Only for protocol postgres.',
      ),
      ssh: describe(
        z
          .object({
            knownHosts: describe(
              z.array(z.string().min(1).max(16384)).min(1).max(64),
              'Host keys of the target, as lines in known_hosts format. The sidecar refuses any other key.',
            ),
          })
          .optional(),
        'SSH options. Required for protocol ssh.',
      ),
      http: describe(
        z
          .object({
            scheme: describe(
              z.enum(['http', 'https']).default('https'),
              'Scheme the sidecar uses toward the target: http or https.',
            ),
            caseInsensitivePaths: describe(
              z.boolean().optional(),
              'Whether the target serves paths without regard to case (Express, IIS, ASP.NET). By default it is taken to, so rules match paths in any case; false for a target known to tell /Admin from /admin, where rules then match the case written.',
            ),
          })
          .optional(),
        'HTTP options. Only for protocol http.',
      ),
      mcp: describe(
        z
          .object({
            scheme: describe(
              z.enum(['http', 'https']).default('https'),
              'Scheme the sidecar uses toward the MCP server: http or https.',
            ),
            transport: describe(
              z.enum(['streamable-http', 'sse']).default('streamable-http'),
              'Transport the server speaks: streamable-http, or sse, the deprecated HTTP+SSE transport (a GET event stream that names where to post) of servers that still use it.',
            ),
            path: describe(
              z
                .string()
                .max(1024)
                .regex(/^\/[^\s?#]*$/, 'must be an absolute path')
                .default('/mcp'),
              "Path of the server's endpoint: the streamable HTTP endpoint, or the event stream of the sse transport (often /sse). Agents use the same path on the sidecar.",
            ),
            serverRequests: describe(
              z.array(z.enum(mcpServerRequests)).max(3).optional(),
              "Requests the server may send the agent: sampling (sampling/createMessage, the agent's model), elicitation (elicitation/create, questions to its user) or roots (roots/list). Any other is answered with an error and never reaches the agent.",
            ),
            toolChanges: describe(
              z.enum(['require-approval', 'deny']).default('require-approval'),
              "What happens to a tool whose description, input schema or annotations changed since the sidecar first saw it (a rug pull): it is left out of tools/list and its calls are held for a person's approval (which accepts the new definition) or denied.",
            ),
            maxMessageBytes: describe(
              z
                .number()
                .int()
                .min(1024)
                .max(64 * 1024 * 1024)
                .default(4 * 1024 * 1024),
              'Largest JSON-RPC message (or batch) the sidecar reads, either way; a larger one is refused.',
            ),
            oauth: describe(
              z
                .object({
                  tokenUrl: describe(
                    z
                      .string()
                      .max(2048)
                      .regex(/^https:\/\/[^\s#]+$/, 'must be an https URL without fragment'),
                    "The authorization server's token endpoint. The sidecar verifies it with the Connection's CA (tls.caSecretRef) when it has one, else the system roots.",
                  ),
                  scopes: describe(
                    z
                      .array(
                        z
                          .string()
                          .min(1)
                          .max(256)
                          .regex(/^[^\s"\\]+$/, 'must be a scope token'),
                      )
                      .max(32)
                      .optional(),
                    'Scopes to ask for (the scope parameter).',
                  ),
                  audience: describe(
                    z.string().min(1).max(2048).optional(),
                    'The audience parameter, for authorization servers that take one.',
                  ),
                  resource: describe(
                    z.string().min(1).max(2048).optional(),
                    'The resource parameter (RFC 8707): the MCP server the token is for.',
                  ),
                })
                .optional(),
              "OAuth client credentials (RFC 6749 §4.4): the sidecar exchanges the Secret's clientId and clientSecret at the token endpoint, presents the access token as a bearer token, refreshes it before it expires and once when the server answers 401. The agent never sees it.",
            ),
          })
          .optional(),
        'MCP options. Only for protocol mcp.',
      ),
      kubernetes: describe(
        z
          .object({
            dryRun: describe(
              z.boolean().default(false),
              'Let dry-run requests (dryRun=All) through, decided as the writes they stand for. Off by default: a dry run still calls admission webhooks, which may act on it.',
            ),
            fieldManagers: describe(
              z.array(glob).max(64).default(['kubectl', 'kubectl-*']),
              "Field managers a write may name (fieldManager), as globs; a write naming another is refused, so the agent cannot take over fields another manager owns (a controller's, Helm's) in server-side apply.",
            ),
            impersonation: describe(
              z.boolean().default(false),
              "Let requests with Impersonate-* headers through, acting as whoever the Connection's token may impersonate. Off by default: they are refused.",
            ),
          })
          .optional(),
        'Kubernetes API options. Only for protocol kubernetes.',
      ),
      endUser: describe(endUserSchema.optional(), endUserDescription),
    }),
    [
      cel(
        "self.protocol == 'tcp' || self.protocol == 'redis' || self.protocol == 'mcp' || has(self.credentials)",
        'credentials.secretRef is required unless protocol is tcp, redis or mcp',
        (s) =>
          s.protocol === 'tcp' ||
          s.protocol === 'redis' ||
          s.protocol === 'mcp' ||
          s.credentials !== undefined,
      ),
      cel(
        "self.protocol == 'ssh' || !has(self.ssh)",
        'ssh options are only valid for protocol ssh',
        (s) => s.protocol === 'ssh' || !s.ssh,
      ),
      cel(
        "self.protocol != 'ssh' || has(self.ssh)",
        'ssh.knownHosts is required for protocol ssh',
        (s) => s.protocol !== 'ssh' || !!s.ssh,
      ),
      cel(
        "self.protocol == 'postgres' || !has(self.postgres)",
        'postgres options are only valid for protocol postgres',
        (s) => s.protocol === 'postgres' || !s.postgres,
      ),
      cel(
        "self.protocol == 'http' || !has(self.http)",
        'http options are only valid for protocol http',
        (s) => s.protocol === 'http' || !s.http,
      ),
      cel(
        "self.protocol == 'mcp' || !has(self.mcp)",
        'mcp options are only valid for protocol mcp',
        (s) => s.protocol === 'mcp' || !s.mcp,
      ),
      cel(
        "self.protocol == 'kubernetes' || !has(self.kubernetes)",
        'kubernetes options are only valid for protocol kubernetes',
        (s) => s.protocol === 'kubernetes' || !s.kubernetes,
      ),
      cel(
        "!has(self.endUser) || self.protocol in ['postgres', 'http', 'ssh']",
        'endUser is only valid for protocol postgres, http or ssh',
        (s) => !s.endUser || endUserProtocols.includes(s.protocol),
      ),
      cel(
        "!has(self.endUser) || !has(self.endUser.header) || self.protocol == 'http'",
        'endUser.header is only valid for protocol http',
        (s) => s.endUser?.header === undefined || s.protocol === 'http',
      ),
    ],
  ),
  'One governed target: a database, host or internal API, and how the sidecar reaches it.',
);
export type ConnectionSpec = z.infer<typeof connectionSpecSchema>;
export type ConnectionSpecInput = z.input<typeof connectionSpecSchema>;

// ---------------------------------------------------------------------------------------
// AccessPolicy

const actingForSchema = describe(
  z.object({
    users: describe(
      z.array(z.string().min(1).max(253)).max(64).optional(),
      "End users, as the Connection's endUser names them (with its usernamePrefix).",
    ),
    groups: describe(
      z.array(z.string().min(1).max(253)).max(64).optional(),
      "Groups of end users, as the Connection's endUser names them (with its groupsPrefix).",
    ),
  }),
  'Only while the ServiceAccount acts for one of these people, proven by a token the sidecar verified (Connection endUser): a user named in users or a member of a group in groups.',
);

const subjectSchema = describe(
  validated(
    z.object({
      kind: describe(
        z.enum(['ServiceAccount', 'User', 'Group']),
        "ServiceAccount (an agent pod identity); User or Group (the person an agent in the AccessPolicy's namespace acts for, or that person's group, from the token the sidecar verified; see Connection endUser).",
      ),
      name: describe(
        z.string().min(1).max(253),
        "Name of the ServiceAccount, user or group; users and groups with the Connection's endUser prefixes.",
      ),
      namespace: describe(
        z.string().min(1).max(63).optional(),
        "Namespace of the ServiceAccount; the AccessPolicy's own namespace when omitted.",
      ),
      actingFor: describe(
        actingForSchema.optional(),
        'ServiceAccount only: the policy applies to it only while it acts for one of these end users.',
      ),
    }),
    [
      cel(
        "self.kind == 'ServiceAccount' || !has(self.namespace)",
        'namespace is only valid for ServiceAccount subjects',
        (s) => s.kind === 'ServiceAccount' || s.namespace === undefined,
      ),
      cel(
        "self.kind == 'ServiceAccount' || !has(self.actingFor)",
        'actingFor is only valid for ServiceAccount subjects',
        (s) => s.kind === 'ServiceAccount' || s.actingFor === undefined,
      ),
      cel(
        '!has(self.actingFor) || (has(self.actingFor.users) && size(self.actingFor.users) > 0) || (has(self.actingFor.groups) && size(self.actingFor.groups) > 0)',
        'actingFor needs users or groups',
        (s) => !s.actingFor || (s.actingFor.users?.length ?? 0) + (s.actingFor.groups?.length ?? 0) > 0,
      ),
    ],
  ),
  'An identity the policy applies to.',
);
export type Subject = z.infer<typeof subjectSchema>;

const maskingSchema = describe(
  validated(
    z.object({
      name: describe(
        dnsLabel,
        'Name of the masking rule, unique in the policy; events count masked values under it.',
      ),
      detectors: describe(
        z.array(z.enum(detectors)).max(16).optional(),
        'Built-in detectors applied to every value whose column is not known to be safe. Detectors validate what they find (Luhn for cards, MOD-97 for IBANs).',
      ),
      columns: describe(
        z.array(glob).max(256).optional(),
        'Columns masked whatever they hold, as globs over [schema.]table.column, such as public.customers.email or *.ssn.',
      ),
      jsonPaths: describe(
        z.array(z.string().min(1).max(512)).max(256).optional(),
        'JSON paths masked in JSON values and HTTP bodies, such as $.customer.email or $..card.',
      ),
      keys: describe(
        z.array(glob).max(256).optional(),
        'Redis keys whose values are masked whatever they hold, as globs over the key name such as session:*; key#field globs such as user:*#ssn mask only the matching fields of a hash.',
      ),
      patterns: describe(
        z
          .array(
            describe(
              z.object({
                name: describe(dnsLabel, 'Name of the pattern, reported in events.'),
                regex: describe(
                  z.string().min(1).max(4096),
                  'Regular expression in RE2 syntax; matched in linear time, so it can never stall the data path.',
                ),
              }),
              'A custom pattern to mask.',
            ),
          )
          .max(64)
          .optional(),
        'Custom patterns, each masked where it matches.',
      ),
      strategy: describe(
        z.enum(['redact', 'partial', 'hash']).default('redact'),
        'redact replaces the value; partial keeps the last 4 characters; hash replaces it with a stable keyed hash, so joins and group-bys still work.',
      ),
      indirectUse: describe(
        z.enum(['deny', 'require-approval', 'allow']).default('deny'),
        "What happens when a statement uses a masked column inside an expression or a predicate (encode(email,'hex'), WHERE ssn LIKE '1%'), or a Redis command copies a masked key to another key, runs a script or touches keys it cannot name while keys are masked, which could reveal it.",
      ),
    }),
    [
      cel(
        'has(self.detectors) || has(self.columns) || has(self.jsonPaths) || has(self.patterns) || has(self.keys)',
        'a masking rule needs at least one of detectors, columns, jsonPaths, patterns or keys',
        (s) => Boolean(s.detectors || s.columns || s.jsonPaths || s.patterns || s.keys),
      ),
    ],
  ),
  'What to mask in responses, and how.',
);

const ruleSchema = describe(
  validated(
    z.object({
      name: describe(dnsLabel, 'Name of the rule, unique in the policy; shown to the agent when it blocks.'),
      action: describe(
        z.enum(['deny', 'require-approval']),
        'deny refuses what the rule matches; require-approval holds it until a person approves it.',
      ),
      message: describe(z.string().max(1024).optional(), 'Text added to the error the agent sees.'),
      sql: describe(
        z
          .object({
            statements: describe(
              z.array(z.enum(sqlStatementKinds)).max(64).optional(),
              'Statement kinds to match, such as DROP, TRUNCATE, ALTER, GRANT, DELETE or COPY.',
            ),
            classes: describe(
              z.array(z.enum(sqlClasses)).max(5).optional(),
              'Statement classes to match: read, write, ddl, dcl or admin (DO blocks, functions, COPY PROGRAM, roles, settings).',
            ),
            unboundedWrites: describe(
              z.boolean().optional(),
              'Match writes that provably touch every row: TRUNCATE; UPDATE and DELETE without a WHERE clause or with one that always holds or never names the target; MERGE that can update or delete every row; INSERT … SELECT … ON CONFLICT DO UPDATE without a limiting WHERE.',
            ),
            tables: describe(
              z.array(glob).max(256).optional(),
              'Match statements touching these tables, as globs over [schema.]table.',
            ),
            functions: describe(
              z.array(glob).max(256).optional(),
              'Match statements calling these functions, as globs over [schema.]function.',
            ),
          })
          .optional(),
        'SQL criteria. All the criteria given must match.',
      ),
      ssh: describe(
        z
          .object({
            commands: describe(
              z.array(glob).max(256).optional(),
              'Commands to match, as globs over the argument vector, such as "rm *" or "systemctl restart *". A glob names one program: "rm *" matches rm however it is wrapped or spelled, not other programs that delete files (use classes).',
            ),
            classes: describe(
              z.array(z.enum(sshCommandClasses)).max(4).optional(),
              'Command classes to match: file-deletion (rm, unlink, shred, find -delete, rsync --delete, tar --remove-files, ...), interpreter (inline or unreadable code: perl -e, python -c, awk system(), sed e, ...), privilege (sudo, su, doas, setpriv, chmod +s, ...) or network (curl, wget, nc, ssh, /dev/tcp, ...).',
            ),
            interactive: describe(
              z.boolean().optional(),
              'Match interactive shells and subsystems such as sftp.',
            ),
          })
          .optional(),
        'SSH criteria.',
      ),
      http: describe(
        z
          .object({
            methods: describe(
              z
                .array(
                  z
                    .string()
                    .regex(/^[A-Z]+$/)
                    .max(16),
                )
                .max(16)
                .optional(),
              'HTTP methods to match, in capitals.',
            ),
            paths: describe(
              z.array(glob).max(256).optional(),
              'Paths to match, as globs over the normalized path, such as /admin/**.',
            ),
          })
          .optional(),
        'HTTP criteria.',
      ),
      redis: describe(
        z
          .object({
            commands: describe(
              z.array(glob).max(256).optional(),
              'Commands to match, as case-insensitive globs over the command name, such as FLUSHALL, CONFIG SET or CONFIG (every CONFIG subcommand). A script (EVAL, FCALL) matches every command it could call.',
            ),
            classes: describe(
              z.array(z.enum(redisCommandClasses)).max(6).optional(),
              "Command classes to match, from Redis's own ACL categories: read, write, admin, dangerous (KEYS, FLUSHALL, CONFIG, DEBUG, MODULE, ...), scripting or pubsub. A script has every class of the commands it could call; a command Redis does not know has every class.",
            ),
            keys: describe(
              z.array(glob).max(256).optional(),
              'Match commands touching these keys, as globs over key names such as session:*, from the key specs of the command. A command whose keys cannot all be named (scripts, FLUSHALL, SORT … GET) matches.',
            ),
          })
          .optional(),
        'Redis criteria. All the criteria given must match.',
      ),
      mcp: describe(
        z
          .object({
            tools: describe(
              z.array(glob).max(256).optional(),
              'Tool calls (tools/call) to match, as case-insensitive globs over the tool name, such as delete_* or github.create_*. A tool denied whatever its arguments is left out of tools/list.',
            ),
            arguments: describe(
              z
                .array(
                  describe(
                    validated(
                      z.object({
                        path: describe(
                          z.string().min(1).max(512),
                          'JSON path into the arguments, such as $.path, $.files[*] or $..url; every value at or under it is tested.',
                        ),
                        glob: describe(
                          glob.optional(),
                          'Glob the value must match, such as /etc/** or *.internal.example.com.',
                        ),
                        regex: describe(
                          z.string().min(1).max(4096).optional(),
                          'Regular expression in RE2 syntax the value must contain a match of.',
                        ),
                      }),
                      [
                        cel(
                          'has(self.glob) != has(self.regex)',
                          'an argument matcher needs exactly one of glob or regex',
                          (s) => (s.glob === undefined) !== (s.regex === undefined),
                        ),
                      ],
                    ),
                    'A matcher over the tool call arguments.',
                  ),
                )
                .max(64)
                .optional(),
              'Match tool calls whose arguments match every one of these matchers (strings as they are and in Unicode NFKC form; numbers and booleans as JSON).',
            ),
            resources: describe(
              z.array(glob).max(256).optional(),
              'Resource reads and subscriptions (resources/read, resources/subscribe) to match, as globs over the URI such as file:///etc/*.',
            ),
            prompts: describe(
              z.array(glob).max(256).optional(),
              'Prompts (prompts/get) to match, as case-insensitive globs over the prompt name.',
            ),
          })
          .optional(),
        'MCP criteria: tools and arguments match tool calls, resources resource reads, prompts prompt gets; a rule with none of them matches every call, read and get.',
      ),
      kubernetes: describe(
        z
          .object({
            verbs: describe(
              z.array(z.enum(kubernetesVerbs)).max(9).optional(),
              'Verbs to match, as the API server reads the request: get, list, watch, create, update, patch, delete, deletecollection, or proxy (the /proxy/ path prefix). kubectl exec and attach are create or get on the exec or attach subresource.',
            ),
            resources: describe(
              z.array(glob).max(256).optional(),
              'Resources to match, as globs: group/resource such as apps/deployments or *.k8s.io/*, with an empty group for the core API (/pods); a glob without a slash, such as secrets, matches that resource in every group.',
            ),
            namespaces: describe(
              z.array(glob).max(256).optional(),
              'Namespaces to match, as globs. A request that names no namespace (a list across namespaces, a cluster-scoped resource) matches.',
            ),
            names: describe(
              z.array(glob).max(256).optional(),
              'Object names to match, as globs. A request that names no object (list, watch and deletecollection without a metadata.name field selector, create) matches.',
            ),
            subresources: describe(
              z.array(glob).max(64).optional(),
              "Subresources to match, such as exec, attach, portforward, proxy, log, eviction, scale, token or status; proxy also matches the /proxy/ path prefix. A request for no subresource does not match. An exec's command is also decided by the policy's ssh rules, as an SSH exec is, and an exec or attach that sends stdin as an SSH interactive shell. portforward, token (a ServiceAccount TokenRequest), proxy (a node's: the kubelet's API; a pod's or service's: HTTP into the cluster) and ephemeralcontainers (kubectl debug) pass only through a require-approval rule that lists them as spelled here; a glob does not name them.",
            ),
          })
          .optional(),
        'Kubernetes API criteria, on the request as the API server reads it. All the criteria given must match; a rule with none of them matches every request, including non-resource URLs such as /version.',
      ),
      approval: describe(
        z
          .object({
            approvers: describe(
              z.object({
                groups: describe(
                  z.array(z.string().min(1).max(253)).max(64).optional(),
                  'Groups whose members may decide.',
                ),
                users: describe(
                  z.array(z.string().min(1).max(253)).max(64).optional(),
                  'Users who may decide.',
                ),
              }),
              'Who may approve or deny. Nobody may decide their own request.',
            ),
            timeout: describe(
              duration.default('15m'),
              'How long a request waits for a decision before it expires.',
            ),
            scope: describe(
              z.enum(['statement', 'session']).default('statement'),
              "statement approves the one held request; session also lets the rest of that session's matching requests through.",
            ),
          })
          .optional(),
        'Approval settings. Required when action is require-approval.',
      ),
    }),
    [
      cel(
        'has(self.sql) || has(self.ssh) || has(self.http) || has(self.redis) || has(self.mcp) || has(self.kubernetes)',
        'a rule needs sql, ssh, http, redis, mcp or kubernetes criteria',
        (s) => Boolean(s.sql || s.ssh || s.http || s.redis || s.mcp || s.kubernetes),
      ),
      cel(
        "self.action != 'require-approval' || has(self.approval)",
        'approval is required when action is require-approval',
        (s) => s.action !== 'require-approval' || s.approval !== undefined,
      ),
      cel(
        "self.action == 'require-approval' || !has(self.approval)",
        'approval is only valid when action is require-approval',
        (s) => s.action === 'require-approval' || s.approval === undefined,
      ),
    ],
  ),
  'A rule that denies or holds for approval what it matches. The most restrictive decision wins.',
);

export const accessPolicySpecSchema = describe(
  z.object({
    subjects: describe(z.array(subjectSchema).min(1).max(64), 'Identities the policy grants access to.'),
    connections: describe(
      z.array(objectName).min(1).max(64),
      'Names of Connections in the same namespace that the subjects may use.',
    ),
    mode: describe(
      z.enum(['enforce', 'audit']).default('enforce'),
      'enforce applies the policy; audit lets everything through and records what would have been blocked or masked.',
    ),
    recording: describe(
      z
        .object({
          enabled: describe(z.boolean().default(true), 'Record every session for audit and replay.'),
          results: describe(
            z.enum(['none', 'summary']).default('summary'),
            'What of the results to record: none, or a summary (row counts, masked counts).',
          ),
        })
        .default({ enabled: true, results: 'summary' }),
      'Session recording.',
    ),
    masking: describe(z.array(maskingSchema).max(32).optional(), 'What to mask in responses.').meta({
      'x-kubernetes-list-type': 'map',
      'x-kubernetes-list-map-keys': ['name'],
    }),
    rules: describe(z.array(ruleSchema).max(64).optional(), 'Rules that deny or hold requests.').meta({
      'x-kubernetes-list-type': 'map',
      'x-kubernetes-list-map-keys': ['name'],
    }),
  }),
  'Who may use which Connections, and how: masking, rules and recording.',
);
export type AccessPolicySpec = z.infer<typeof accessPolicySpecSchema>;
export type AccessPolicySpecInput = z.input<typeof accessPolicySpecSchema>;
export type MaskingRule = z.infer<typeof maskingSchema>;
export type PolicyRule = z.infer<typeof ruleSchema>;

// ---------------------------------------------------------------------------------------
// AccessRequest

export const accessRequestPhases = ['Pending', 'Approved', 'Denied', 'Expired'] as const;
export type AccessRequestPhase = (typeof accessRequestPhases)[number];

/** What the operator tells the notification receivers about an AccessRequest. */
export const accessRequestNotificationTypes = [
  'accessrequest.created',
  'accessrequest.approved',
  'accessrequest.denied',
  'accessrequest.expired',
] as const;

// Transition rules compare with the stored object: only the API server can check them.
const transition = (rule: string, message: string) => ({ rule, message });
const immutable = (field: string) => transition(`self.${field} == oldSelf.${field}`, `${field} is immutable`);

export const accessRequestSpecSchema = describe(
  z
    .object({
      connection: describe(objectName, 'The Connection the held request is for.'),
      policy: describe(objectName, 'The AccessPolicy whose rule requires approval.'),
      rule: describe(dnsLabel, 'The rule that requires approval.'),
      requester: describe(
        z.object({
          pod: describe(z.string().min(1).max(253), 'The agent pod that made the request.'),
          serviceAccount: describe(z.string().min(1).max(253), 'The ServiceAccount of that pod.'),
          user: describe(
            z.string().min(1).max(253).optional(),
            'The OIDC subject the agent acted for, when it presented one.',
          ),
        }),
        'Who asked.',
      ),
      request: describe(
        z.string().min(1).max(65536),
        'The statement, command or HTTP request that is held, with parameters redacted.',
      ),
      reasons: describe(
        z.array(z.string().max(1024)).max(32).optional(),
        'Why the request is held: the matching rules and criteria.',
      ),
      decision: describe(
        z
          .object({
            action: describe(z.enum(['approve', 'deny']), 'approve or deny.'),
            reason: describe(z.string().max(1024).optional(), 'Why, for the audit trail and the agent.'),
          })
          .optional(),
        'The decision, written once by an approver. Who decided is taken from the API server, never from this field.',
      ),
    })
    .meta({
      'x-kubernetes-validations': [
        immutable('connection'),
        immutable('policy'),
        immutable('rule'),
        immutable('requester'),
        immutable('request'),
        transition(
          '!has(oldSelf.decision) || (has(self.decision) && self.decision == oldSelf.decision)',
          'a decision cannot be changed',
        ),
      ],
    }),
  'A request held by a rule until a person decides it. Created by the operator.',
);
export type AccessRequestSpec = z.infer<typeof accessRequestSpecSchema>;

export const accessRequestStatusSchema = describe(
  z.object({
    phase: describe(z.enum(accessRequestPhases).optional(), 'Pending, Approved, Denied or Expired.'),
    decidedBy: describe(z.string().max(253).optional(), 'The user who decided, from the API server.'),
    decidedAt: describe(z.string().optional(), 'When the decision was made (RFC 3339).'),
    expiresAt: describe(z.string().optional(), 'When a pending request expires (RFC 3339).'),
    notified: describe(
      z.array(z.enum(accessRequestNotificationTypes)).max(accessRequestNotificationTypes.length).optional(),
      'The notifications every configured receiver has acknowledged; the others are sent (again) until they are.',
    ),
  }),
  'Lifecycle of the request, written by the operator.',
);

// ---------------------------------------------------------------------------------------
// Kinds

export const connectionStatusSchema = statusSchema('Connection');
export const accessPolicyStatusSchema = statusSchema('AccessPolicy');

interface Kind {
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  description: string;
  spec: z.ZodType;
  status: z.ZodType;
  printerColumns: { name: string; type: string; jsonPath: string; description: string; priority?: number }[];
}

const readyColumn = {
  name: 'Ready',
  type: 'string',
  jsonPath: '.status.conditions[?(@.type=="Ready")].status',
  description: 'Whether the operator found the object usable.',
};
const ageColumn = {
  name: 'Age',
  type: 'date',
  jsonPath: '.metadata.creationTimestamp',
  description: 'Time since creation.',
};

export const kinds: Kind[] = [
  {
    kind: 'Connection',
    plural: 'connections',
    singular: 'connection',
    shortNames: ['conn'],
    description: 'A governed target (database, host or API) and the credential the sidecar holds for it.',
    spec: connectionSpecSchema,
    status: connectionStatusSchema,
    printerColumns: [
      {
        name: 'Protocol',
        type: 'string',
        jsonPath: '.spec.protocol',
        description: 'Protocol of the target.',
      },
      { name: 'Host', type: 'string', jsonPath: '.spec.host', description: 'Host of the target.' },
      { name: 'Port', type: 'integer', jsonPath: '.spec.port', description: 'Port of the target.' },
      readyColumn,
      ageColumn,
    ],
  },
  {
    kind: 'AccessPolicy',
    plural: 'accesspolicies',
    singular: 'accesspolicy',
    shortNames: ['ap'],
    description: 'Who may use which Connections, with what masking, rules and recording.',
    spec: accessPolicySpecSchema,
    status: accessPolicyStatusSchema,
    printerColumns: [
      { name: 'Mode', type: 'string', jsonPath: '.spec.mode', description: 'enforce or audit.' },
      {
        name: 'Connections',
        type: 'string',
        jsonPath: '.spec.connections',
        description: 'Granted Connections.',
      },
      readyColumn,
      ageColumn,
    ],
  },
  {
    kind: 'AccessRequest',
    plural: 'accessrequests',
    singular: 'accessrequest',
    shortNames: ['ar'],
    description: 'A request held for approval, and its decision.',
    spec: accessRequestSpecSchema,
    status: accessRequestStatusSchema,
    printerColumns: [
      { name: 'Requester', type: 'string', jsonPath: '.spec.requester.pod', description: 'The agent pod.' },
      { name: 'Connection', type: 'string', jsonPath: '.spec.connection', description: 'The Connection.' },
      { name: 'Request', type: 'string', jsonPath: '.spec.request', description: 'What is held.' },
      {
        name: 'Phase',
        type: 'string',
        jsonPath: '.status.phase',
        description: 'Pending, Approved, Denied or Expired.',
      },
      ageColumn,
    ],
  },
];

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  creationTimestamp?: string;
}

export interface Resource<Spec, Status = unknown> {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  spec: Spec;
  status?: Status;
}

export type Connection = Resource<ConnectionSpec, z.infer<typeof connectionStatusSchema>>;
export type AccessPolicy = Resource<AccessPolicySpec, z.infer<typeof accessPolicyStatusSchema>>;
export type AccessRequest = Resource<AccessRequestSpec, z.infer<typeof accessRequestStatusSchema>>;
