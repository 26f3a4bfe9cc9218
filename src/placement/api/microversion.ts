// Placement microversions: `OpenStack-API-Version: placement 1.x` (or `latest`); absent means
// the minimum, 1.0. Every response says which version it is and that it varies on the header.
import type { FastifyRequest } from 'fastify';
import { NuboError, BadRequest } from '../../core/errors.js';

export const MIN_VERSION = '1.0';
export const MAX_VERSION = '1.39';

export interface Version { major: number; minor: number }

export const parseVersion = (text: string): Version | undefined => {
  const m = /^(\d+)\.(\d+)$/.exec(text.trim());
  return m ? { major: Number(m[1]), minor: Number(m[2]) } : undefined;
};
const MIN = parseVersion(MIN_VERSION)!;
const MAX = parseVersion(MAX_VERSION)!;
const compare = (a: Version, b: Version) => (a.major - b.major) || (a.minor - b.minor);

class NotAcceptable extends NuboError {
  constructor(message: string) { super(406, 'Not Acceptable', message); }
}

/** The version a request asked for; throws 400 for a malformed header and 406 outside [MIN, MAX]. */
export function negotiate(request: FastifyRequest): Version {
  const header = request.headers['openstack-api-version'];
  const text = Array.isArray(header) ? header.join(',') : header;
  if (!text) return MIN;
  let asked: string | undefined;
  for (const part of text.split(',')) {
    const [service, value] = part.trim().split(/\s+/, 2);
    if (service?.toLowerCase() === 'placement') asked = value ?? '';
  }
  if (asked === undefined) return MIN;
  if (asked.toLowerCase() === 'latest') return MAX;
  const version = parseVersion(asked);
  if (!version) throw new BadRequest(`invalid version string: ${asked}`);
  if (compare(version, MIN) < 0 || compare(version, MAX) > 0) throw new NotAcceptable(`Unacceptable version header: ${asked}`);
  return version;
}

declare module 'fastify' {
  interface FastifyRequest { placementVersion?: Version }
}

export function versionOf(request: FastifyRequest): Version {
  return request.placementVersion ?? MIN;
}

/** True when the request's microversion is at least `minor` (1.<minor>). */
export function atLeast(request: FastifyRequest, minor: number): boolean {
  const v = versionOf(request);
  return v.major > 1 || (v.major === 1 && v.minor >= minor);
}

export const versionString = (v: Version) => `${v.major}.${v.minor}`;
