// The enforcer's own answers as the API server gives its errors: a metav1.Status, so kubectl and
// client-go print "Error from server (Forbidden): airlock: ..." as they print the API server's.
// The status is the one every HTTP client gets for the code (core/errors.ts).
import type { ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { ErrorCode } from '../../api/events.ts';
import { httpProblems } from '../core/errors.ts';

/** metav1.StatusReason by HTTP status, as the API server names them. */
const reasons: Record<number, string> = {
  400: 'BadRequest',
  403: 'Forbidden',
  499: 'Unknown',
  502: 'InternalError',
  503: 'ServiceUnavailable',
};

export function statusBody(code: ErrorCode, message: string): { status: number; body: string } {
  const { status } = httpProblems[code];
  const body = JSON.stringify({
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message,
    reason: reasons[status] ?? 'Unknown',
    details: { causes: [{ reason: `airlock:${code}`, message }] },
    code: status,
  });
  return { status, body };
}

export function writeStatus(res: ServerResponse, code: ErrorCode, message: string): number {
  const { status, body } = statusBody(code, message);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'x-airlock': code,
  });
  res.end(body);
  return status;
}

/** The same answer on a socket that asked to upgrade (exec, attach, port-forward), then closed. */
export function writeStatusToSocket(socket: Duplex, code: ErrorCode, message: string): number {
  const { status, body } = statusBody(code, message);
  const text = `${status} ${status === 403 ? 'Forbidden' : status === 400 ? 'Bad Request' : 'Error'}`;
  socket.end(
    `HTTP/1.1 ${text}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nX-Airlock: ${code}\r\nConnection: close\r\n\r\n${body}`,
  );
  return status;
}
