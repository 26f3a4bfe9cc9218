// Neutron's standard-attr-tag: any tagged resource (network, subnet, port, subnetpool,
// security_group, router, floatingip) keeps its tags in network_tags.
import type { Kysely } from 'kysely';
import { BadRequest } from '../core/errors.js';
import { neutronError } from './api/errors.js';

export type TaggedResource = 'networks' | 'subnets' | 'ports' | 'subnetpools' | 'security-groups' | 'routers' | 'floatingips';

export const MAX_TAG_LENGTH = 60;

export function validateTag(tag: unknown): string {
  if (typeof tag !== 'string' || tag.length === 0 || tag.length > MAX_TAG_LENGTH || tag.includes(',')) {
    throw neutronError(new BadRequest(`Invalid input for operation: '${String(tag)}' is not a valid tag (1 to ${MAX_TAG_LENGTH} characters, no comma).`), 'InvalidInput');
  }
  return tag;
}

/** Tags of many resources of one type at once: id → sorted tags. */
export async function tagsOf(db: Kysely<any>, type: TaggedResource, ids: string[]): Promise<Map<string, string[]>> {
  const result = new Map<string, string[]>(ids.map((id) => [id, []]));
  for (let i = 0; i < ids.length; i += 500) {
    const rows = await db.selectFrom('network_tags').select(['resource_id', 'tag'])
      .where('resource_type', '=', type).where('resource_id', 'in', ids.slice(i, i + 500)).execute();
    for (const row of rows) result.get(row.resource_id as string)?.push(row.tag as string);
  }
  for (const tags of result.values()) tags.sort();
  return result;
}

export async function replaceTags(db: Kysely<any>, type: TaggedResource, id: string, tags: string[]): Promise<void> {
  await db.deleteFrom('network_tags').where('resource_type', '=', type).where('resource_id', '=', id).execute();
  const unique = [...new Set(tags.map(validateTag))];
  if (unique.length > 0) await db.insertInto('network_tags').values(unique.map((tag) => ({ resource_type: type, resource_id: id, tag }))).execute();
}

export async function addTag(db: Kysely<any>, type: TaggedResource, id: string, tag: string): Promise<void> {
  validateTag(tag);
  const existing = await db.selectFrom('network_tags').select('tag').where('resource_type', '=', type).where('resource_id', '=', id).where('tag', '=', tag).executeTakeFirst();
  if (!existing) await db.insertInto('network_tags').values({ resource_type: type, resource_id: id, tag }).execute();
}

export async function removeTags(db: Kysely<any>, type: TaggedResource, id: string, tag?: string): Promise<number> {
  let query = db.deleteFrom('network_tags').where('resource_type', '=', type).where('resource_id', '=', id);
  if (tag !== undefined) query = query.where('tag', '=', tag);
  const result = await query.executeTakeFirst();
  return Number(result.numDeletedRows ?? 0);
}
