// The session-event schema as data, for the collector's ingest (operator/collector.ts): a zod
// schema of the types in events.ts, kept apart from them so the sidecar, which only emits
// events, never loads zod.
import { z } from 'zod';
import { errorCodes, type SessionEvent, sessionEventVersion } from './events.ts';

/**
 * Every field the types name is checked, and unknown fields are rejected so a sidecar cannot
 * smuggle data past the schema.
 */
const base = {
  version: z.literal(sessionEventVersion),
  id: z.string().min(1).max(200),
  sessionId: z.string().min(1).max(200),
  seq: z.number().int().min(0),
  time: z.iso.datetime({ offset: true }),
  connection: z.strictObject({ name: z.string(), namespace: z.string(), protocol: z.string() }),
  identity: z.strictObject({
    namespace: z.string(),
    serviceAccount: z.string(),
    pod: z.string().optional(),
    user: z.string().optional(),
    groups: z.array(z.string()).optional(),
  }),
};
const outcome = z.enum(['allowed', 'masked', 'blocked', 'approved', 'denied', 'expired', 'error']);

export const sessionEventSchema = z.discriminatedUnion('type', [
  z.strictObject({
    ...base,
    type: z.literal('session.start'),
    client: z.strictObject({
      address: z.string(),
      user: z.string().optional(),
      application: z.string().optional(),
    }),
  }),
  z.strictObject({
    ...base,
    type: z.literal('session.end'),
    reason: z.string(),
    bytesIn: z.number(),
    bytesOut: z.number(),
  }),
  z.strictObject({
    ...base,
    type: z.literal('request'),
    text: z.string(),
    kind: z.string().optional(),
    outcome,
    policy: z.string().optional(),
    rule: z.string().optional(),
    reasons: z.array(z.string()).optional(),
    wouldHave: z
      .array(
        z.strictObject({
          action: z.string(),
          policy: z.string(),
          rule: z.string().optional(),
          reason: z.string(),
        }),
      )
      .optional(),
    approval: z.strictObject({ request: z.string(), decidedBy: z.string().optional() }).optional(),
    rows: z.number().optional(),
    exitStatus: z.union([z.number(), z.string()]).optional(),
    status: z.number().optional(),
    bytes: z.number().optional(),
    masked: z.record(z.string(), z.number()).optional(),
    durationMs: z.number(),
    error: z
      .strictObject({ code: z.enum(errorCodes), message: z.string(), wire: z.string().optional() })
      .optional(),
  }),
  z.strictObject({
    ...base,
    type: z.literal('data'),
    stream: z.enum(['input', 'output']),
    at: z.number(),
    data: z.string(),
  }),
  z.strictObject({ ...base, type: z.literal('protocol.error'), code: z.string(), message: z.string() }),
]);

// The schema and the types describe the same events: a drift is a type error here.
type Parsed = z.infer<typeof sessionEventSchema>;
const _schemaMatchesTypes: [
  Parsed extends SessionEvent ? true : false,
  SessionEvent extends Parsed ? true : false,
] = [true, true];
void _schemaMatchesTypes;
