// Key pairs (nova/api/openstack/compute/keypairs.py and views/keypairs.py).
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { atLeast } from '../../http/microversion.js';
import type { Keypair, KeypairType } from '../keypairs.js';
import { authorize, callerOf, type ComputeApiDeps } from './common.js';
import { collectionLinks, limitAndMarker } from './collection-links.js';
import { normalizeName, types, validateBody, validateQuery, type Schema } from './jsonschema.js';

const OWNER_OR_ADMIN = '(rule:context_is_admin) or user_id:%(user_id)s';
export const keypairPolicy: Record<string, string> = {
  'os_compute_api:os-keypairs:index': OWNER_OR_ADMIN,
  'os_compute_api:os-keypairs:create': OWNER_OR_ADMIN,
  'os_compute_api:os-keypairs:delete': OWNER_OR_ADMIN,
  'os_compute_api:os-keypairs:show': OWNER_OR_ADMIN,
};

const keypairName: Schema = { allOf: [types.name, { type: 'string', pattern: '^[_\\- a-zA-Z0-9]+$', minLength: 1, maxLength: 255 }] };

function createSchema(request: FastifyRequest): Schema {
  const properties: Record<string, Schema> = { name: keypairName, public_key: { type: 'string' } };
  if (atLeast(request, '2.2')) properties.type = { type: 'string', enum: ['ssh', 'x509'] };
  if (atLeast(request, '2.10')) properties.user_id = { type: 'string' };
  return {
    type: 'object',
    properties: { keypair: { type: 'object', properties, required: ['name'], additionalProperties: false } },
    required: ['keypair'], additionalProperties: false,
  };
}

/** Python's naive isoformat, as Nova renders a key pair's created_at. */
function pyTime(iso: string): string {
  return iso.replace(/Z$/, '').replace(/\.(\d{3})$/, '.$1000');
}

export function keypairRoutes(app: FastifyInstance, deps: ComputeApiDeps): void {
  deps.policy.register(keypairPolicy);
  const keypairs = () => deps.compute.keypairs;

  /** The user the request is about: the caller, or ?user_id= from 2.10 (the policy decides who may). */
  function userOf(request: FastifyRequest, extra: Record<string, Schema> = {}): { userId: string; params: Record<string, string[]> } {
    const properties: Record<string, Schema> = atLeast(request, '2.10') ? { user_id: { type: 'string' }, ...extra } : { ...extra };
    const params = validateQuery(request, properties, !atLeast(request, '2.75'));
    const asked = atLeast(request, '2.10') ? params.user_id?.[0] : undefined;
    return { userId: asked || callerOf(request).userId, params };
  }

  const listEntry = (request: FastifyRequest, k: Keypair) => {
    const view: Record<string, unknown> = { name: k.name, public_key: k.publicKey, fingerprint: k.fingerprint };
    if (atLeast(request, '2.2')) view.type = k.type;
    return { keypair: view };
  };

  app.get('/os-keypairs', async (request) => {
    const paging = atLeast(request, '2.35');
    const { userId, params } = userOf(request, paging ? { limit: types.nonNegativeInteger, marker: { type: 'string' } } : {});
    authorize(deps, request, 'os_compute_api:os-keypairs:index', { user_id: userId });
    const page = paging ? limitAndMarker(params, deps.maxLimit) : {};
    const list = await keypairs().list(userId, page);
    const body: Record<string, unknown> = { keypairs: list.map((k) => listEntry(request, k)) };
    if (paging) {
      const links = collectionLinks(request, list.length, list[list.length - 1]?.name, 'os-keypairs', deps.maxLimit);
      if (links.length) body.keypairs_links = links;
    }
    return body;
  });

  app.post('/os-keypairs', async (request, reply) => {
    validateBody(createSchema(request), request.body);
    const params = (request.body as { keypair: Record<string, string> }).keypair;
    const caller = callerOf(request);
    const userId = (atLeast(request, '2.10') ? params.user_id : undefined) || caller.userId;
    authorize(deps, request, 'os_compute_api:os-keypairs:create', { user_id: userId });
    const name = normalizeName(params.name);
    const type = (params.type ?? 'ssh') as KeypairType;
    let keypair: Keypair;
    let privateKey: string | undefined;
    if (params.public_key !== undefined) {
      keypair = await keypairs().import(caller, userId, name, params.public_key, type);
    } else {
      ({ keypair, privateKey } = await keypairs().create(caller, userId, name, type));
    }
    const view: Record<string, unknown> = {};
    if (privateKey !== undefined) view.private_key = privateKey;
    if (atLeast(request, '2.2')) view.type = keypair.type;
    Object.assign(view, { name: keypair.name, public_key: keypair.publicKey, fingerprint: keypair.fingerprint, user_id: keypair.userId });
    reply.status(atLeast(request, '2.2') ? 201 : 200);
    return { keypair: view };
  });

  app.get<{ Params: { name: string } }>('/os-keypairs/:name', async (request) => {
    const { userId } = userOf(request);
    authorize(deps, request, 'os_compute_api:os-keypairs:show', { user_id: userId });
    const k = await keypairs().get(userId, request.params.name);
    const view: Record<string, unknown> = {
      name: k.name, public_key: k.publicKey, fingerprint: k.fingerprint, user_id: k.userId,
      created_at: pyTime(k.createdAt), deleted: false, deleted_at: null, id: k.id, updated_at: null,
    };
    if (atLeast(request, '2.2')) view.type = k.type;
    return { keypair: view };
  });

  app.delete<{ Params: { name: string } }>('/os-keypairs/:name', async (request, reply) => {
    const { userId } = userOf(request);
    authorize(deps, request, 'os_compute_api:os-keypairs:delete', { user_id: userId });
    await keypairs().delete(userId, request.params.name);
    reply.status(atLeast(request, '2.2') ? 204 : 202).send();
  });
}
