// API microversions as Nova and Placement negotiate them: the client asks with
// `OpenStack-API-Version: <service> X.Y` (Nova also reads the legacy
// `X-OpenStack-Nova-API-Version`), `latest` means the maximum, no header means the minimum.
// The answer names the version used and says the response varies on those headers.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { BadRequest, NuboError } from '../core/errors.js';

export interface Microversion { major: number; minor: number }

export interface MicroversionOptions {
  /** Service type in the header, e.g. 'compute' or 'placement'. */
  service: string;
  min: string;
  max: string;
  /** A legacy header read when OpenStack-API-Version names no version for this service (Nova's). */
  legacyHeader?: string;
}

declare module 'fastify' {
  interface FastifyRequest { microversion: Microversion }
}

export function parseMicroversion(text: string): Microversion | undefined {
  const match = /^(\d+)\.(\d+)$/.exec(text.trim());
  return match ? { major: Number(match[1]), minor: Number(match[2]) } : undefined;
}

export function compareMicroversions(a: Microversion, b: Microversion): number {
  return a.major - b.major || a.minor - b.minor;
}

export const formatMicroversion = (v: Microversion) => `${v.major}.${v.minor}`;

/** True when the request's negotiated microversion is at least `version` ('2.53'). */
export function atLeast(request: FastifyRequest, version: string): boolean {
  return compareMicroversions(request.microversion, parseMicroversion(version)!) >= 0;
}

/** 406 for a well-formed version outside the supported range, as Nova and Placement answer it. */
export class NotAcceptable extends NuboError {
  constructor(message: string) { super(406, 'Not Acceptable', message); }
}

/** Negotiates the microversion of every request in this plugin scope. */
export function useMicroversions(app: FastifyInstance, options: MicroversionOptions): void {
  const min = parseMicroversion(options.min)!;
  const max = parseMicroversion(options.max)!;
  const varyOn = ['OpenStack-API-Version', options.legacyHeader].filter(Boolean).join(', ');
  app.decorateRequest('microversion', null as unknown as Microversion);
  app.addHook('onRequest', async (request, reply) => {
    request.microversion = min;
    reply.header('OpenStack-API-Version', `${options.service} ${options.min}`);
    if (options.legacyHeader) reply.header(options.legacyHeader, options.min);
    reply.header('Vary', varyOn);
    const asked = requestedVersion(request, options);
    if (asked === undefined) return;
    let version: Microversion;
    if (asked.toLowerCase() === 'latest') {
      version = max;
    } else {
      const parsed = parseMicroversion(asked);
      if (!parsed) throw new BadRequest(`API Version String ${asked} is of invalid format. Must be of format MajorNum.MinorNum.`);
      if (compareMicroversions(parsed, min) < 0 || compareMicroversions(parsed, max) > 0) {
        throw new NotAcceptable(`Version ${asked} is not supported by the API. Minimum is ${options.min} and maximum is ${options.max}.`);
      }
      version = parsed;
    }
    request.microversion = version;
    reply.header('OpenStack-API-Version', `${options.service} ${formatMicroversion(version)}`);
    if (options.legacyHeader) reply.header(options.legacyHeader, formatMicroversion(version));
  });
}

/** The version asked for this service, from `OpenStack-API-Version: compute 2.1, placement 1.2` or the legacy header. */
function requestedVersion(request: FastifyRequest, options: MicroversionOptions): string | undefined {
  const header = request.headers['openstack-api-version'];
  const values = (Array.isArray(header) ? header : header ? [header] : []).flatMap((h) => h.split(','));
  for (const value of values) {
    const [service, version] = value.trim().split(/\s+/, 2);
    if (service?.toLowerCase() === options.service && version) return version;
  }
  if (options.legacyHeader) {
    const legacy = request.headers[options.legacyHeader.toLowerCase()];
    const value = Array.isArray(legacy) ? legacy[0] : legacy;
    if (value) return value;
  }
  return undefined;
}
