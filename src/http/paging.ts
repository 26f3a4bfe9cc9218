// limit/marker paging as the OpenStack APIs do it: `limit` caps a page (and the service's
// max_limit caps `limit`), `marker` is the id of the last item of the previous page, and a
// `next` link is given when the page is full.
import { BadRequest } from '../core/errors.js';

export interface PageRequest { limit: number; marker?: string }

export function parsePaging(query: Record<string, unknown>, maxLimit: number): PageRequest {
  let limit = maxLimit;
  if (query.limit !== undefined) {
    const parsed = Number(query.limit);
    if (!Number.isInteger(parsed) || parsed < 0) throw new BadRequest(`limit must be a non-negative integer, got "${String(query.limit)}"`);
    limit = Math.min(parsed, maxLimit);
  }
  const marker = typeof query.marker === 'string' && query.marker !== '' ? query.marker : undefined;
  return { limit, marker };
}

/** One page of an already sorted list; a marker that names no item is a 400, as in Nova and Glance. */
export function pageOf<T>(items: T[], idOf: (item: T) => string, page: PageRequest): { items: T[]; next?: string } {
  let start = 0;
  if (page.marker !== undefined) {
    const index = items.findIndex((item) => idOf(item) === page.marker);
    if (index < 0) throw new BadRequest(`marker ${page.marker} could not be found.`);
    start = index + 1;
  }
  const slice = items.slice(start, start + page.limit);
  const full = slice.length === page.limit && start + page.limit < items.length;
  return { items: slice, next: full ? idOf(slice[slice.length - 1]) : undefined };
}

/** The URL of the next page: the request URL (absolute, or a path with its query) with marker replaced. */
export function nextPageUrl(requestUrl: string, marker: string): string {
  const [path, query = ''] = requestUrl.split('?', 2);
  const params = new URLSearchParams(query);
  params.set('marker', marker);
  return `${path}?${params.toString()}`;
}
