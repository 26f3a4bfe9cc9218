// Nova's error body: {"itemNotFound": {"code": 404, "message": "..."}} with the key named by the status.
import type { NuboError } from '../../core/errors.js';

const KEYS: Record<number, string> = {
  400: 'badRequest', 401: 'unauthorized', 403: 'forbidden', 404: 'itemNotFound', 405: 'badMethod', 406: 'notAcceptable',
  409: 'conflict', 413: 'overLimit', 415: 'badMediaType', 429: 'overLimit', 501: 'notImplemented', 503: 'serviceUnavailable',
};

export function novaErrorBody(err: NuboError): Record<string, { code: number; message: string }> {
  const key = KEYS[err.status] ?? 'computeFault';
  return { [key]: { code: err.status, message: err.message } };
}
