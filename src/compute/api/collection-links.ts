// Nova's collection paging links (common.ViewBuilder._get_collection_links): a "next" link
// when the page is as long as the limit asked (or max_limit), carrying the request's query
// sorted by name with the marker replaced.
import type { FastifyRequest } from 'fastify';
import { BadRequest } from '../../core/errors.js';
import { serviceUrl } from './common.js';
import { queryLists } from './jsonschema.js';

export function collectionLinks(request: FastifyRequest, count: number, lastId: string | undefined, collection: string, maxLimit: number): { rel: string; href: string }[] {
  const params = queryLists(request);
  const asked = params.limit?.[0];
  const maxItems = Math.min(asked !== undefined && /^\d+$/.test(asked) ? Number(asked) : maxLimit, maxLimit);
  if (!maxItems || maxItems !== count || lastId === undefined) return [];
  const query = new URLSearchParams();
  for (const key of Object.keys(params).sort()) {
    if (key === 'marker') continue;
    for (const value of params[key]) query.append(key, value);
  }
  query.set('marker', lastId);
  const sorted = new URLSearchParams([...query.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  return [{ rel: 'next', href: `${serviceUrl(request)}/v2.1/${collection}?${sorted.toString()}` }];
}

/** common.get_limit_and_marker: limit (0 < limit ≤ max_limit, default max_limit) and marker. */
export function limitAndMarker(params: Record<string, string[]>, maxLimit: number): { limit: number; marker?: string } {
  let limit = maxLimit;
  const raw = params.limit?.[0];
  if (raw !== undefined) {
    if (!/^-?\d+$/.test(raw.trim())) throw new BadRequest(`Invalid input received: limit must be an integer`);
    const n = Number(raw);
    if (n < 0) throw new BadRequest(`Invalid input received: limit must be >= 0`);
    limit = Math.min(n, maxLimit);
  }
  return { limit, marker: params.marker?.[0] };
}
