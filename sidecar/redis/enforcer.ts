// The Redis enforcer: a RESP server for the agent that holds the Connection's credential,
// decides every command (and every MULTI … EXEC as a whole) by the granting policies, masks
// replies and records each command. One upstream connection per agent connection, so the
// agent's connection state (database, protocol, subscriptions, WATCH) is the target's.
import { type AddressInfo, createServer, type Socket } from 'node:net';
import type { Enforcer, EnforcerOptions } from '../core/enforcer.ts';
import { AirlockError } from '../core/errors.ts';
import { ApprovalGate } from '../core/gate.ts';
import { settle, stopAccepting } from '../core/listen.ts';
import { SessionRecorder } from '../core/recorder.ts';
import { compileMasking } from '../policy/masking.ts';
import { keyMaskRules } from '../policy/redis-masking.ts';
import { errorReply } from './replies.ts';
import { type RedisLimits, RedisSession } from './session.ts';
import { connectUpstream } from './upstream.ts';

export interface RedisEnforcerOptions extends EnforcerOptions {
  limits?: Partial<RedisLimits>;
  connectTimeoutMs?: number;
}

export const defaultRedisLimits: RedisLimits = {
  maxCommandBytes: 64 * 1024 * 1024,
  maxMaskedReplyBytes: 64 * 1024 * 1024,
  maxTransactionCommands: 10_000,
};

export async function serveRedis(options: RedisEnforcerOptions): Promise<Enforcer> {
  const { connection } = options;
  const policies = connection.policies;
  const plan = compileMasking(policies);
  const keyRules = keyMaskRules(policies);
  const limits = { ...defaultRedisLimits, ...options.limits };
  const sockets = new Set<Socket>();
  const sessions = new Set<RedisSession>();

  const server = createServer({ pauseOnConnect: true, noDelay: true }, (agent) => {
    sockets.add(agent);
    agent.once('close', () => sockets.delete(agent));
    agent.on('error', () => agent.destroy());
    void open(agent);
  });

  async function open(agent: Socket): Promise<void> {
    // Fail closed on the audit trail: no upstream connect, and no event (there is no room).
    const refusal = options.events.refusal?.();
    if (refusal) {
      agent.end(errorReply(`ERR ${refusal}`));
      return;
    }
    const recorder = new SessionRecorder(connection, options.identity, options.events);
    recorder.start({ address: agent.remoteAddress ?? '' });
    if (policies.length === 0) {
      const reason = 'no AccessPolicy grants this Connection';
      recorder.request({
        text: 'connect',
        kind: 'redis',
        outcome: 'blocked',
        reasons: [reason],
        durationMs: 0,
      });
      recorder.end('denied');
      agent.end(errorReply(`NOPERM airlock: ${reason}`));
      return;
    }
    let upstream: Socket;
    const started = Date.now();
    try {
      upstream = await connectUpstream(connection, {
        timeoutMs: options.connectTimeoutMs ?? 20_000,
        ...(options.lookup && { lookup: options.lookup }),
      });
    } catch (error) {
      const failure =
        error instanceof AirlockError ? error : new AirlockError('upstream-unreachable', String(error));
      recorder.request({
        text: `connect ${connection.host}:${connection.port}`,
        kind: 'redis',
        outcome: 'error',
        error: failure.event('ERR'),
        durationMs: Date.now() - started,
      });
      recorder.end(`upstream error: ${failure.message}`);
      agent.end(errorReply(`ERR airlock: the target is unreachable: ${failure.message}`));
      return;
    }
    if (agent.destroyed) {
      upstream.destroy();
      recorder.end('closed');
      return;
    }
    sockets.add(upstream);
    const session = new RedisSession(
      {
        options,
        policies,
        plan,
        keyRules,
        limits,
        recorder,
        gate: new ApprovalGate({
          sessionId: recorder.id,
          connection: connection.name,
          approvals: options.approvals,
          unrecorded: () => options.events.refusal?.(),
        }),
      },
      agent,
      upstream,
    );
    sessions.add(session);
    let ended = false;
    const finish = (reason: string) => {
      if (ended) return;
      ended = true;
      sessions.delete(session);
      recorder.end(reason);
    };
    upstream.on('error', (error) => {
      agent.destroy();
      finish(`upstream error: ${error.message}`);
    });
    upstream.once('close', () => {
      sockets.delete(upstream);
      agent.end();
      finish('closed by the target');
    });
    agent.on('error', (error) => {
      upstream.destroy();
      finish(`agent error: ${error.message}`);
    });
    agent.once('close', () => {
      upstream.destroy();
      finish('closed');
    });
    session.start();
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.listen.port, options.listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const socket of sockets) socket.destroy();
    });
  return {
    address: server.address() as AddressInfo,
    close,
    async drain(deadlineMs) {
      stopAccepting(server);
      await settle(() => [...sessions].some((s) => s.busy()), deadlineMs);
      await close();
    },
  };
}
