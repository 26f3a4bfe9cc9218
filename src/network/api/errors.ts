// Neutron's error body: {"NeutronError": {"type": "NetworkNotFound", "message": "...", "detail": ""}}.
// A NuboError may carry Neutron's exception name (`neutronError`); otherwise the type follows the status.
import { NuboError } from '../../core/errors.js';

const TYPES: Record<number, string> = {
  400: 'HTTPBadRequest', 401: 'HTTPUnauthorized', 403: 'HTTPForbidden', 404: 'HTTPNotFound', 405: 'HTTPMethodNotAllowed',
  409: 'HTTPConflict', 413: 'HTTPRequestEntityTooLarge', 415: 'HTTPUnsupportedMediaType', 503: 'HTTPServiceUnavailable',
};

/** Names an error the way Neutron's exception class does (NetworkNotFound, IpAddressAlreadyAllocated, OverQuota...). */
export function neutronError<E extends NuboError>(error: E, type: string): E {
  (error as E & { neutronType?: string }).neutronType = type;
  return error;
}

export function neutronErrorBody(err: NuboError): { NeutronError: { type: string; message: string; detail: string } } {
  const type = (err as NuboError & { neutronType?: string }).neutronType ?? TYPES[err.status] ?? 'HTTPInternalServerError';
  return { NeutronError: { type, message: err.message, detail: '' } };
}
