// The Glance v2 REST API, mounted under /image. Thin: validate → authorize → call the
// service → render with views.ts. Errors are rendered in Glance's format.
import { PassThrough, Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { BadRequest, Forbidden, UnsupportedMediaType } from '../../core/errors.js';
import { authOf, requireAuthentication, type TokenValidator } from '../../http/auth.js';
import { useErrorFormat } from '../../http/errors.js';
import { nextPageUrl, pageOf, parsePaging } from '../../http/paging.js';
import type { PolicyEngine } from '../../http/policy.js';
import { IMAGE_POLICY_PREFIX } from '../policy.js';
import { NoContent, SORT_KEYS, type Caller, type Image, type ImageService, type ListFilters, type PatchOperation } from '../service.js';
import { imageSchema, imagesSchema, memberSchema, membersSchema } from './schemas.js';
import { errorView, imageView, imagesView, memberView, membersView } from './views.js';

export interface ImageApiDeps {
  images: ImageService;
  tokens: TokenValidator;
  policy: PolicyEngine;
  /** [api] limit_param_default and api_limit_max. */
  limitDefault: number;
  limitMax: number;
}

export const JSON_PATCH = 'application/openstack-images-v2.1-json-patch';
/** Glance's API versions: the newest CURRENT, the rest SUPPORTED. */
const VERSIONS = ['2.16', '2.15', '2.14', '2.13', '2.12', '2.11', '2.10', '2.9', '2.8', '2.7', '2.6', '2.5', '2.4', '2.3', '2.2', '2.1', '2.0'];

function endpointUrl(request: FastifyRequest): string {
  const proto = (request.headers['x-forwarded-proto'] as string | undefined) ?? request.protocol;
  return `${proto}://${request.headers.host}/image`;
}

function versionsBody(request: FastifyRequest) {
  const href = `${endpointUrl(request)}/v2/`;
  return {
    versions: VERSIONS.map((id, i) => ({ id: `v${id}`, status: i === 0 ? 'CURRENT' : 'SUPPORTED', links: [{ rel: 'self', href }] })),
  };
}

type Query = Record<string, string | string[] | undefined>;
const one = (value: string | string[] | undefined): string | undefined => (Array.isArray(value) ? value[value.length - 1] : value);

function boolParam(name: string, value: string | undefined): boolean | undefined {
  if (value === undefined) return undefined;
  const v = value.toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(v)) return true;
  if (['false', '0', 'no', 'off'].includes(v)) return false;
  throw new BadRequest(`Invalid value for ${name}: '${value}'. It must be a boolean.`);
}

function intParam(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) throw new BadRequest(`${name} must be a non-negative integer, got '${value}'`);
  return Number(value);
}

const TIME_OPERATORS = new Set(['gt', 'gte', 'eq', 'neq', 'lt', 'lte']);
function timeFilter(name: string, raw: string | string[] | undefined): { op: string; value: Date }[] | undefined {
  if (raw === undefined) return undefined;
  return (Array.isArray(raw) ? raw : [raw]).map((text) => {
    const match = /^(?:([a-z]+):)?(.+)$/.exec(text);
    const op = match?.[1] ?? 'eq';
    const value = match?.[2] ?? '';
    if (!TIME_OPERATORS.has(op)) throw new BadRequest(`Invalid operator '${op}' for ${name}: use one of gt, gte, eq, neq, lt, lte.`);
    if (!/^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/.test(value) || Number.isNaN(Date.parse(value))) {
      throw new BadRequest(`Invalid time format for ${name}: '${value}'.`);
    }
    return { op, value: new Date(value) };
  });
}

const LIST_PARAMS = new Set(['limit', 'marker', 'sort', 'sort_key', 'sort_dir', 'name', 'id', 'status', 'visibility', 'owner', 'member_status', 'tag',
  'disk_format', 'container_format', 'size_min', 'size_max', 'created_at', 'updated_at', 'os_hidden', 'protected']);

function parseSort(query: Query): ListFilters['sort'] {
  const sort = one(query.sort);
  const keys = query.sort_key === undefined ? [] : (Array.isArray(query.sort_key) ? query.sort_key : [query.sort_key]);
  const dirs = query.sort_dir === undefined ? [] : (Array.isArray(query.sort_dir) ? query.sort_dir : [query.sort_dir]);
  const checkKey = (key: string) => { if (!SORT_KEYS.has(key)) throw new BadRequest(`Invalid sort key: ${key}. It must be one of the following: ${[...SORT_KEYS].join(', ')}.`); };
  const checkDir = (dir: string): 'asc' | 'desc' => {
    if (dir !== 'asc' && dir !== 'desc') throw new BadRequest(`Invalid sort direction: ${dir}`);
    return dir;
  };
  if (sort !== undefined) {
    if (keys.length || dirs.length) throw new BadRequest('The \'sort\' argument is not supported with \'sort_key\' or \'sort_dir\'.');
    const out: ListFilters['sort'] = [];
    for (const part of sort.split(',').map((p) => p.trim()).filter(Boolean)) {
      const [key, dir] = part.split(':');
      checkKey(key);
      out.push({ key, dir: dir === undefined ? 'desc' : checkDir(dir) });
    }
    return out.length ? out : [{ key: 'created_at', dir: 'desc' }];
  }
  if (dirs.length > 1 && dirs.length !== keys.length) throw new BadRequest('Number of sort dirs does not match the number of sort keys');
  if (keys.length === 0) return [{ key: 'created_at', dir: dirs[0] ? checkDir(dirs[0]) : 'desc' }];
  return keys.map((key, i) => {
    checkKey(key);
    return { key, dir: checkDir(dirs[i] ?? dirs[0] ?? 'desc') };
  });
}

function parseFilters(query: Query): ListFilters {
  const visibility = one(query.visibility);
  if (visibility !== undefined && !['public', 'private', 'shared', 'community', 'all'].includes(visibility)) {
    throw new BadRequest(`Invalid visibility value: ${visibility}`);
  }
  const memberStatus = one(query.member_status);
  if (memberStatus !== undefined && !['pending', 'accepted', 'rejected', 'all'].includes(memberStatus)) {
    throw new BadRequest(`Invalid status value: ${memberStatus}`);
  }
  const properties: Record<string, string> = {};
  for (const [key, value] of Object.entries(query)) if (!LIST_PARAMS.has(key) && value !== undefined) properties[key] = one(value)!;
  const tags = query.tag === undefined ? undefined : (Array.isArray(query.tag) ? query.tag : [query.tag]);
  return {
    name: one(query.name), id: one(query.id), status: one(query.status), visibility, owner: one(query.owner), member_status: memberStatus,
    tags, disk_format: one(query.disk_format), container_format: one(query.container_format),
    size_min: intParam('size_min', one(query.size_min)), size_max: intParam('size_max', one(query.size_max)),
    created_at: timeFilter('created_at', query.created_at), updated_at: timeFilter('updated_at', query.updated_at),
    os_hidden: boolParam('os_hidden', one(query.os_hidden)), protected: boolParam('protected', one(query.protected)),
    properties, sort: parseSort(query),
  };
}

/** JSON-patch body (Glance's media type) → operations on top-level properties. */
function parsePatch(request: FastifyRequest): PatchOperation[] {
  const type = String(request.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (type !== JSON_PATCH) throw new UnsupportedMediaType(`Unsupported Content-Type: ${type || '(none)'}. Use ${JSON_PATCH}.`);
  const body = request.body;
  if (!Array.isArray(body)) throw new BadRequest('Request body must be a JSON array of operation objects.');
  return body.map((raw) => {
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new BadRequest('Operations must be JSON objects.');
    const op = (raw as Record<string, unknown>).op;
    const path = (raw as Record<string, unknown>).path;
    if (op !== 'add' && op !== 'replace' && op !== 'remove') throw new BadRequest(`Operation objects must contain exactly one member named "add", "remove", or "replace".`);
    if (typeof path !== 'string') throw new BadRequest('Unable to find \'path\' in JSON Schema change');
    const pointer = /^\/([^/]+)$/.exec(path);
    if (!pointer) throw new BadRequest(`Invalid JSON pointer for this resource: '${path}'`);
    const name = pointer[1].replace(/~1/g, '/').replace(/~0/g, '~');
    if (op !== 'remove' && !('value' in (raw as object))) throw new BadRequest(`Operation "${op}" requires a member named "value".`);
    return { op, name, value: (raw as Record<string, unknown>).value };
  });
}

/**
 * The raw request body as a stream of its own: a failure downstream destroys this stream, not
 * the socket, so the server can still answer (413, 400); a client abort fails it.
 */
function bodyStream(request: FastifyRequest): Readable {
  const type = String(request.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (type !== 'application/octet-stream' || !(request.body instanceof Readable)) {
    throw new UnsupportedMediaType(`Unsupported Content-Type: ${type || '(none)'}. Image data must be sent as application/octet-stream.`);
  }
  const raw = request.body;
  const pass = new PassThrough({ highWaterMark: 1024 * 1024 });
  const abort = () => { if (!request.raw.complete) pass.destroy(Object.assign(new Error('aborted'), { code: 'ECONNRESET' })); };
  raw.on('error', (err) => pass.destroy(err));
  request.raw.on('aborted', abort);
  request.raw.on('close', abort);
  raw.pipe(pass);
  pass.on('close', () => raw.unpipe(pass));
  return pass;
}

/** After a failed upload the rest of the body is not read: close the connection once answered. */
function closeIfUnread(request: FastifyRequest, reply: FastifyReply): void {
  if (!request.raw.complete) reply.header('Connection', 'close');
}

function parseRange(header: string | undefined, size: number): { start: number; end: number } | 'unsatisfiable' | undefined {
  if (!header) return undefined;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match || (match[1] === '' && match[2] === '')) return undefined; // not a single byte range: ignore, send all
  let start: number;
  let end: number;
  if (match[1] === '') {
    const suffix = Number(match[2]);
    if (suffix === 0) return 'unsatisfiable';
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(match[1]);
    end = match[2] === '' ? size - 1 : Math.min(Number(match[2]), size - 1);
  }
  if (start >= size || start > end) return 'unsatisfiable';
  return { start, end };
}

export function imageApi(deps: ImageApiDeps) {
  const { images, policy } = deps;
  const rule = (action: string) => `${IMAGE_POLICY_PREFIX}${action}`;

  function callerOf(request: FastifyRequest): Caller {
    const auth = authOf(request);
    return { projectId: auth.projectId, isAdmin: policy.enforce(rule('context_is_admin'), {}, auth.credentials) };
  }
  function allowed(request: FastifyRequest, action: string, target: Record<string, unknown>): boolean {
    return policy.enforce(rule(action), target, authOf(request).credentials);
  }
  function authorize(request: FastifyRequest, action: string, target: Record<string, unknown>): void {
    if (!allowed(request, action, target)) throw new Forbidden(`You are not authorized to complete ${action} action.`);
  }
  /** Loads a visible image (404 otherwise) and checks `action` on it with Glance's target. */
  async function imageFor(request: FastifyRequest, id: string, action: string): Promise<{ caller: Caller; image: Image; target: Record<string, unknown> }> {
    const caller = callerOf(request);
    const image = await images.getImage(caller, id);
    const membership = await images.membershipOf(caller, id);
    const target = { project_id: image.owner, member_id: membership?.member_id, visibility: image.visibility };
    authorize(request, action, target);
    return { caller, image, target };
  }

  return async function imagePlugin(app: FastifyInstance): Promise<void> {
    useErrorFormat(app, (err) => errorView(err.status, err.title, err.message));
    requireAuthentication(app, deps.tokens);
    // Image data streams through untouched: no buffering, and the JSON bodyLimit does not apply.
    app.addContentTypeParser('application/octet-stream', (_request, payload, done) => done(null, payload));

    app.get('/', { config: { public: true } }, async (request, reply) => {
      reply.status(300);
      return versionsBody(request);
    });
    app.get('/versions', { config: { public: true } }, async (request) => versionsBody(request));
    app.get('/v2', { config: { public: true } }, async (request) => versionsBody(request));

    app.get('/v2/schemas/image', async () => imageSchema);
    app.get('/v2/schemas/images', async () => imagesSchema);
    app.get('/v2/schemas/member', async () => memberSchema);
    app.get('/v2/schemas/members', async () => membersSchema);

    app.get('/v2/info/import', async () => ({
      'import-methods': {
        description: 'Import methods available. (web-download is not offered: this cloud does not reach outside networks.)',
        type: 'array',
        value: ['glance-direct'],
      },
    }));
    app.get('/v2/info/stores', async (request) => {
      authorize(request, 'get_stores', {});
      return { stores: [{ id: images.store.id, description: images.store.description, default: true }] };
    });

    app.post('/v2/images', async (request, reply) => {
      const body = request.body;
      if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new BadRequest('Body expected in request.');
      const caller = callerOf(request);
      const fields = body as Record<string, unknown>;
      const owner = fields.owner === undefined ? caller.projectId : fields.owner;
      authorize(request, 'add_image', { project_id: owner, visibility: fields.visibility ?? 'shared' });
      if (fields.visibility === 'public') authorize(request, 'publicize_image', { project_id: owner, visibility: 'public' });
      if (fields.visibility === 'community') authorize(request, 'communitize_image', { project_id: owner, visibility: 'community' });
      const image = await images.createImage(caller, fields);
      reply.status(201).header('Location', `${endpointUrl(request)}/v2/images/${image.id}`).header('OpenStack-image-import-methods', 'glance-direct');
      return imageView(image);
    });

    app.get('/v2/images', async (request) => {
      const caller = callerOf(request);
      authorize(request, 'get_images', { project_id: caller.projectId });
      const query = request.query as Query;
      const page = parsePaging({ limit: one(query.limit) ?? String(deps.limitDefault), marker: one(query.marker) }, deps.limitMax);
      const all = await images.listImages(caller, parseFilters(query));
      const { items, next } = pageOf(all, (i) => i.id, page);
      // Glance's next link is relative to the service root.
      const nextLink = next === undefined ? undefined : nextPageUrl(`/v2/images?${request.url.split('?')[1] ?? ''}`, next);
      return imagesView(items, nextLink);
    });

    app.get<{ Params: { id: string } }>('/v2/images/:id', async (request) => {
      const { image } = await imageFor(request, request.params.id, 'get_image');
      return imageView(image);
    });

    app.patch<{ Params: { id: string } }>('/v2/images/:id', async (request) => {
      const { caller, target } = await imageFor(request, request.params.id, 'modify_image');
      const ops = parsePatch(request);
      const image = await images.updateImage(caller, request.params.id, ops, {
        publicize: allowed(request, 'publicize_image', { ...target, visibility: 'public' }),
        communitize: allowed(request, 'communitize_image', { ...target, visibility: 'community' }),
      });
      return imageView(image);
    });

    app.delete<{ Params: { id: string } }>('/v2/images/:id', async (request, reply) => {
      const { caller } = await imageFor(request, request.params.id, 'delete_image');
      await images.deleteImage(caller, request.params.id);
      reply.status(204).send();
    });

    app.post<{ Params: { id: string } }>('/v2/images/:id/actions/deactivate', async (request, reply) => {
      const { caller } = await imageFor(request, request.params.id, 'deactivate');
      await images.deactivate(caller, request.params.id);
      reply.status(204).send();
    });
    app.post<{ Params: { id: string } }>('/v2/images/:id/actions/reactivate', async (request, reply) => {
      const { caller } = await imageFor(request, request.params.id, 'reactivate');
      await images.reactivate(caller, request.params.id);
      reply.status(204).send();
    });

    app.put<{ Params: { id: string; tag: string } }>('/v2/images/:id/tags/:tag', async (request, reply) => {
      const { caller } = await imageFor(request, request.params.id, 'modify_image');
      await images.addTag(caller, request.params.id, request.params.tag);
      reply.status(204).send();
    });
    app.delete<{ Params: { id: string; tag: string } }>('/v2/images/:id/tags/:tag', async (request, reply) => {
      const { caller } = await imageFor(request, request.params.id, 'modify_image');
      await images.removeTag(caller, request.params.id, request.params.tag);
      reply.status(204).send();
    });

    app.put<{ Params: { id: string } }>('/v2/images/:id/file', async (request, reply) => {
      try {
        const { caller } = await imageFor(request, request.params.id, 'upload_image');
        await images.upload(caller, request.params.id, bodyStream(request));
      } catch (err) {
        closeIfUnread(request, reply);
        throw err;
      }
      reply.status(204).send();
    });

    app.get<{ Params: { id: string } }>('/v2/images/:id/file', async (request, reply) => {
      const { caller, image } = await imageFor(request, request.params.id, 'download_image');
      const size = image.size ?? 0;
      const range = image.size !== null ? parseRange(request.headers.range, size) : undefined;
      if (range === 'unsatisfiable') {
        reply.header('Content-Range', `bytes */${size}`);
        reply.status(416).type('application/json').send(errorView(416, 'Requested Range Not Satisfiable', `Requested range not satisfiable: ${request.headers.range}`));
        return reply;
      }
      let result;
      try {
        result = await images.download(caller, request.params.id, range);
      } catch (err) {
        if (err instanceof NoContent) return reply.status(204).send();
        throw err;
      }
      reply.header('Content-Type', 'application/octet-stream');
      if (result.image.checksum) reply.header('Content-MD5', result.image.checksum);
      if (range) {
        reply.status(206).header('Content-Range', `bytes ${range.start}-${range.end}/${size}`).header('Content-Length', String(range.end - range.start + 1));
      } else {
        reply.status(200).header('Content-Length', String(size));
      }
      return reply.send(result.stream);
    });

    app.put<{ Params: { id: string } }>('/v2/images/:id/stage', async (request, reply) => {
      try {
        const { caller } = await imageFor(request, request.params.id, 'stage_image');
        await images.stage(caller, request.params.id, bodyStream(request));
      } catch (err) {
        closeIfUnread(request, reply);
        throw err;
      }
      reply.status(204).send();
    });

    app.post<{ Params: { id: string } }>('/v2/images/:id/import', async (request, reply) => {
      const { caller } = await imageFor(request, request.params.id, 'import_image');
      const body = request.body as { method?: { name?: unknown } } | undefined;
      const method = body?.method?.name;
      if (typeof method !== 'string') throw new BadRequest('Import request requires a \'method\' field with a \'name\'.');
      if (method === 'web-download') throw new BadRequest('Import method web-download is not available: this cloud does not reach outside networks.');
      await images.startImport(caller, request.params.id, method);
      reply.status(202).send();
    });

    app.get<{ Params: { id: string } }>('/v2/images/:id/members', async (request) => {
      const { caller } = await imageFor(request, request.params.id, 'get_members');
      return membersView(await images.listMembers(caller, request.params.id));
    });
    app.post<{ Params: { id: string } }>('/v2/images/:id/members', async (request) => {
      const { caller } = await imageFor(request, request.params.id, 'add_member');
      const body = request.body as { member?: unknown } | undefined;
      if (typeof body?.member !== 'string' || body.member === '') throw new BadRequest('Member to be added not specified');
      return memberView(await images.addMember(caller, request.params.id, body.member));
    });
    app.get<{ Params: { id: string; member: string } }>('/v2/images/:id/members/:member', async (request) => {
      const caller = callerOf(request);
      const image = await images.getImage(caller, request.params.id);
      authorize(request, 'get_member', { project_id: image.owner, member_id: request.params.member, visibility: image.visibility });
      return memberView(await images.getMember(caller, request.params.id, request.params.member));
    });
    app.put<{ Params: { id: string; member: string } }>('/v2/images/:id/members/:member', async (request) => {
      const caller = callerOf(request);
      const image = await images.getImage(caller, request.params.id);
      const body = request.body as { status?: unknown } | undefined;
      if (typeof body?.status !== 'string') throw new BadRequest('Status not specified');
      if (!allowed(request, 'modify_member', { project_id: image.owner, member_id: request.params.member, visibility: image.visibility })) {
        throw new Forbidden(`You are not permitted to modify 'status' on this image member.`);
      }
      return memberView(await images.updateMember(caller, request.params.id, request.params.member, body.status));
    });
    app.delete<{ Params: { id: string; member: string } }>('/v2/images/:id/members/:member', async (request, reply) => {
      const { caller } = await imageFor(request, request.params.id, 'delete_member');
      await images.deleteMember(caller, request.params.id, request.params.member);
      reply.status(204).send();
    });
  };
}
