// /v2.0/{collection}/{id}/tags (standard-attr-tag) for any tagged collection: list, replace all,
// add one, check one, remove one, remove all. A tag change bumps the resource's revision.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Kysely } from 'kysely';
import { NotFound } from '../../core/errors.js';
import { transaction } from '../../db/index.js';
import { addTag, removeTags, replaceTags, tagsOf, validateTag, type TaggedResource } from '../tags.js';
import { nowStamp } from '../transactions.js';
import { authorize, type NetworkApiDeps } from './common.js';
import { badInput } from './body.js';
import { neutronError } from './errors.js';

export interface TaggedCollection {
  collection: TaggedResource;
  /** Singular resource name for policy rules (network → get_network / update_network). */
  resource: string;
  table: string;
  /** The resource as a policy target; throws the resource's 404 when it does not exist or is hidden. */
  target(request: FastifyRequest, id: string): Promise<Record<string, unknown>>;
}

export function tagRoutes(app: FastifyInstance, deps: NetworkApiDeps, tagged: TaggedCollection): void {
  const base = `/v2.0/${tagged.collection}/:id/tags`;
  const database = () => deps.database;
  const writable = async (request: FastifyRequest) => {
    const { id } = request.params as { id: string };
    const target = await tagged.target(request, id);
    authorize(deps, request, `update_${tagged.resource}`, target);
    return id;
  };
  const bump = async (trx: Kysely<any>, id: string) => {
    const row = await trx.selectFrom(tagged.table).select('revision_number').where('id', '=', id).executeTakeFirst();
    if (row) await trx.updateTable(tagged.table).set({ revision_number: Number(row.revision_number) + 1, updated_at: nowStamp() }).where('id', '=', id).execute();
  };
  const tagNotFound = (tag: string) => neutronError(new NotFound(`Tag ${tag} could not be found.`), 'TagNotFound');

  app.get(base, async (request) => {
    const { id } = request.params as { id: string };
    await tagged.target(request, id);
    return { tags: (await tagsOf(database().db, tagged.collection, [id])).get(id) ?? [] };
  });
  app.put(base, async (request) => {
    const id = await writable(request);
    const tags = (request.body as { tags?: unknown } | null)?.tags;
    if (!Array.isArray(tags)) throw badInput('tags', `'${JSON.stringify(tags)}' is not a list`);
    tags.forEach(validateTag);
    await transaction(database(), async (trx) => { await replaceTags(trx, tagged.collection, id, tags as string[]); await bump(trx, id); });
    return { tags: (await tagsOf(database().db, tagged.collection, [id])).get(id) ?? [] };
  });
  app.delete(base, async (request, reply) => {
    const id = await writable(request);
    await transaction(database(), async (trx) => { await removeTags(trx, tagged.collection, id); await bump(trx, id); });
    return reply.code(204).send();
  });
  app.get(`${base}/:tag`, async (request, reply) => {
    const { id, tag } = request.params as { id: string; tag: string };
    await tagged.target(request, id);
    if (!((await tagsOf(database().db, tagged.collection, [id])).get(id) ?? []).includes(tag)) throw tagNotFound(tag);
    return reply.code(204).send();
  });
  app.put(`${base}/:tag`, async (request, reply) => {
    const id = await writable(request);
    const { tag } = request.params as { tag: string };
    await transaction(database(), async (trx) => { await addTag(trx, tagged.collection, id, tag); await bump(trx, id); });
    return reply.code(201).send();
  });
  app.delete(`${base}/:tag`, async (request, reply) => {
    const id = await writable(request);
    const { tag } = request.params as { tag: string };
    await transaction(database(), async (trx) => {
      if ((await removeTags(trx, tagged.collection, id, tag)) === 0) throw tagNotFound(tag);
      await bump(trx, id);
    });
    return reply.code(204).send();
  });
}
