// The startup phase of a session, up to the first ReadyForQuery: SSLRequest and GSSENCRequest,
// CancelRequest, the startup packet checked as the server checks it, its settings filtered,
// the upstream connected and authenticated with the held credential, and the client welcomed
// with the server's parameters and the enforcer's own cancel key. On a Connection with endUser
// the enforcer first asks the client for a cleartext password, which is the end user's token:
// verified, it picks the session's policies; the server never sees it.
import { TLSSocket } from 'node:tls';
import { AirlockError, sqlStates } from '../core/errors.ts';
import { type ActingFor, actingFor } from '../identity/session.ts';
import type { Frame } from './frames.ts';
import type { SessionGate } from './gate.ts';
import { maskFields, maskNotice } from './masking.ts';
import {
  authenticationCleartextPassword,
  authenticationOk,
  backendKeyData,
  cancelRequestCode,
  decodePassword,
  decodeStartup,
  encodeFields,
  gssEncRequestCode,
  legacyErrorResponse,
  negotiateProtocolVersion,
  ProtocolViolation,
  parameterStatus,
  readyForQuery,
  type StartupMessage,
  sslRequestCode,
  terminate,
} from './messages.ts';
import type { Masker } from './policy.ts';
import type { Relay } from './relay.ts';
import type { SessionOptions } from './session.ts';
import { filterOptions, type ServerReading, settingRefusal } from './settings.ts';
import { connectUpstream, type Upstream, type UpstreamError, type UpstreamTarget } from './upstream.ts';

/** The session as its startup phase sees it. */
export interface StartupHost {
  readonly options: SessionOptions;
  readonly relay: Relay;
  readonly gate: SessionGate;
  /** Sends a FATAL error to the client and ends the session. */
  fatal(code: string, message: string): void;
  close(reason: string): void;
  /** The upstream is authenticated and accepted: the session takes it over and returns the client's cancel key. */
  adopt(upstream: Upstream, target: UpstreamTarget): { pid: number; secret: number };
  /** How the server reads the client's text, as it reports it. */
  readonly reading: ServerReading;
  /** The masker of the session's policies (the end user's, once verified). */
  readonly masker: Masker | undefined;
  /** Set while the enforcer waits for the client's PasswordMessage: what reads it. */
  passwordStep: ((frame: Frame) => Promise<void> | undefined) | undefined;
  /** The session acts for the verified end user, under the policies that apply to them. */
  actFor(acting: ActingFor): Promise<void>;
}

/** A message of the startup phase; a promise while the upstream is being connected or a cancel sent. */
export function onStartupFrame(frame: Frame, host: StartupHost): Promise<void> | undefined {
  const { relay, options } = host;
  const code = frame.body.readInt32BE(0);
  // As the server: SSLRequest and GSSENCRequest are answered whatever their length; a
  // CancelRequest of the wrong length is dropped without an answer.
  if (code === sslRequestCode) {
    if (relay.client instanceof TLSSocket)
      throw new ProtocolViolation('SSLRequest on an encrypted connection');
    if (relay.clientReader.buffered > 0) {
      // Bytes sent before the handshake would be taken as if they came over TLS.
      host.gate.protocolError('plaintext-before-tls', 'client sent unencrypted data after SSLRequest');
      host.fatal('08P01', 'received unencrypted data after SSL request');
      return undefined;
    }
    if (!options.tls) {
      relay.client.write('N');
      return undefined;
    }
    relay.client.write('S');
    relay.upgradeClient(options.tls);
    return undefined;
  }
  if (code === gssEncRequestCode) {
    relay.client.write('N');
    return undefined;
  }
  if (code === cancelRequestCode) {
    if (frame.body.length !== 12) {
      host.gate.protocolError('protocol-violation', 'invalid CancelRequest length');
      host.close('invalid CancelRequest length');
      return undefined;
    }
    const pid = frame.body.readInt32BE(4);
    const secret = frame.body.readInt32BE(8);
    return options.cancels.cancel(pid, secret).then(() => relay.hangUp());
  }
  return onStartupPacket(frame, host);
}

async function onStartupPacket(frame: Frame, host: StartupHost): Promise<void> {
  const { relay, options, gate } = host;
  // The server's checks, in its order: protocol version, packet layout, user name.
  const version = frame.body.readUInt32BE(0);
  const major = version >>> 16;
  if (major !== 3) {
    const message = `unsupported frontend protocol ${major}.${version & 0xffff}: server supports 3.0 to 3.0`;
    gate.protocolError('unsupported-protocol', message);
    if (major < 3) {
      // An older client reads only the protocol-2 error format.
      relay.client.end(legacyErrorResponse(message));
      host.close(message);
    } else host.fatal('0A000', message);
    return;
  }
  let startup: StartupMessage;
  try {
    startup = decodeStartup(frame.body);
  } catch (error) {
    if (!(error instanceof ProtocolViolation)) throw error;
    gate.protocolError(error.code, error.message);
    host.fatal('08P01', error.message);
    return;
  }
  const params = startup.parameters;
  if (!params.get('user')) {
    host.fatal('28000', 'no PostgreSQL user name specified in startup packet');
    return;
  }
  const unrecorded = gate.refusal();
  if (unrecorded) {
    host.fatal(sqlStates['audit-unavailable'], unrecorded);
    return;
  }
  const unrecognized = [...params.keys()].filter((name) => name.startsWith('_pq_.'));
  if (startup.minor > 0 || unrecognized.length > 0) {
    // We speak 3.0 upstream; newer clients (PG18's 3.2) fall back when told so.
    relay.client.write(negotiateProtocolVersion(0, unrecognized));
  }
  if (options.endUser) {
    // The token is the password: asked for in cleartext, read from the next message.
    relay.client.write(authenticationCleartextPassword());
    relay.clientReader.startup = false;
    host.passwordStep = (message) => {
      host.passwordStep = undefined;
      return onPassword(message, startup, host);
    };
    return;
  }
  return afterAuthentication(startup, host);
}

async function onPassword(frame: Frame, startup: StartupMessage, host: StartupHost): Promise<void> {
  const { options, gate } = host;
  if (frame.type !== 0x70) {
    const message = `expected a password response, got message type "${String.fromCharCode(frame.type)}"`;
    gate.protocolError('protocol-violation', message);
    host.fatal('08P01', message);
    return;
  }
  const token = decodePassword(frame.body);
  let acting: ActingFor;
  try {
    acting = await actingFor(options.connection, options.identity, options.endUser?.verifier, token);
  } catch (error) {
    if (!(error instanceof AirlockError)) throw error;
    // Recorded as a session that was refused: who asked, and why (never the token).
    startSession(startup, host);
    const wire = error.code === 'unauthenticated' ? '28P01' : '28000';
    gate.recorder.request({
      text: 'end-user authentication',
      kind: 'authentication',
      outcome: 'denied',
      reasons: [error.message],
      durationMs: 0,
      error: error.event(wire),
    });
    host.fatal(wire, `airlock: ${error.message}`);
    return;
  }
  if (host.relay.closed) return;
  await host.actFor(acting);
  return afterAuthentication(startup, host);
}

function startSession(startup: StartupMessage, host: StartupHost): void {
  const params = startup.parameters;
  host.gate.start({
    address: host.options.clientAddress,
    ...(params.has('user') && { user: params.get('user') }),
    ...(params.has('application_name') && { application: params.get('application_name') }),
  });
}

/** The rest of the startup once the client is who it says: its settings checked, the upstream connected. */
async function afterAuthentication(startup: StartupMessage, host: StartupHost): Promise<void> {
  const { relay, options, gate } = host;
  const params = startup.parameters;
  startSession(startup, host);
  if (
    params.has('replication') &&
    params.get('replication') !== 'false' &&
    params.get('replication') !== '0'
  ) {
    host.fatal('42501', 'Airlock does not allow replication connections through the enforcer');
    return;
  }
  const forwarded: [string, string][] = [];
  for (const [name, value] of params) {
    const lower = name.toLowerCase();
    if (name.startsWith('_pq_.')) continue;
    else if (lower === 'user' || lower === 'database' || lower === 'replication') continue;
    else {
      const result =
        lower === 'options' ? filterOptions(value) : { options: value, refused: settingRefusal(name, value) };
      if (result.refused) {
        host.fatal('42501', result.refused);
        return;
      }
      if (result.options) forwarded.push([name, result.options]);
    }
  }
  const connection = options.connection;
  const username = connection.credentials.username;
  const password = connection.credentials.password;
  if (!username || password === undefined) {
    host.fatal('28000', `Airlock has no credential for Connection ${connection.name}`);
    return;
  }
  const target: UpstreamTarget = {
    host: connection.host,
    port: connection.port,
    tls: connection.tls,
    username,
    password,
    database: connection.postgres?.database ?? username,
    ...(options.lookup && { lookup: options.lookup }),
  };
  let upstream: Upstream;
  try {
    upstream = await connectUpstream(target, forwarded);
  } catch (error) {
    const e = error as UpstreamError;
    gate.protocolError(e.code ?? 'upstream-error', e.message);
    const fields = e.fields;
    if (fields && e.code === 'upstream-rejected') {
      // The server refused the session itself (database missing, too many connections): relay it.
      fields.set('S', 'FATAL');
      fields.set('V', 'FATAL');
      relay.client.end(encodeFields('E', maskFields(host.masker, fields)));
      host.close(e.message);
      return;
    }
    host.fatal(
      e.code === 'upstream-auth' ? '28000' : '08006',
      `Airlock could not connect to ${connection.name}: ${e.message}`,
    );
    return;
  }
  if (relay.closed) {
    upstream.socket.destroy();
    return;
  }
  // All of them first: client_encoding is reported before server_encoding.
  for (const [name, value] of upstream.parameters) host.reading.note(name, value);
  const refused = host.reading.refusal();
  if (refused) {
    upstream.socket.end(terminate());
    host.fatal('42501', refused);
    return;
  }
  const key = host.adopt(upstream, target);
  const out = [authenticationOk()];
  for (const [name, value] of upstream.parameters) {
    // The client sees the held user, as it is what the server reports.
    out.push(parameterStatus(name, value));
  }
  out.push(...upstream.notices.map((n) => maskNotice(host.masker, n)));
  out.push(backendKeyData(key.pid, key.secret), readyForQuery(upstream.status));
  relay.clientReader.startup = false;
  relay.writeClient(out);
  relay.attachUpstream(upstream);
}
