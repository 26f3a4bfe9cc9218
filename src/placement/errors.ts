// Placement's error codes ({"errors": [{"code": "placement.concurrent_update", ...}]}) carried on
// the one error hierarchy of core/errors.ts: a coded error is still a Conflict, a BadRequest, ...
import { BadRequest, Conflict, NotFound, type NuboError } from '../core/errors.js';

export const CODES = {
  undefined: 'placement.undefined_code',
  concurrentUpdate: 'placement.concurrent_update',
  duplicateName: 'placement.duplicate_name',
  inventoryInUse: 'placement.inventory.inuse',
  providerInUse: 'placement.resource_provider.inuse',
  cannotDeleteParent: 'placement.resource_provider.cannot_delete_parent',
  providerNotFound: 'placement.resource_provider.not_found',
  duplicateKey: 'placement.query.duplicate_key',
  missingValue: 'placement.query.missing_value',
  badValue: 'placement.query.bad_value',
} as const;

export function withCode<E extends NuboError>(error: E, code: string): E {
  (error as E & { code?: string }).code = code;
  return error;
}

export function codeOf(error: unknown): string {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' && code.startsWith('placement.') ? code : CODES.undefined;
}

/** A provider (or consumer) generation that moved under the caller. */
export const generationConflict = (detail = 'resource provider generation conflict') => withCode(new Conflict(detail), CODES.concurrentUpdate);
export const providerNotFound = (uuid: string) => withCode(new NotFound(`No resource provider with uuid ${uuid} found`), CODES.providerNotFound);
export const badQuery = (message: string, code: string = CODES.badValue) => withCode(new BadRequest(message), code);
