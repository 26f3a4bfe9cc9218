// Renders image domain objects into Glance v2's JSON. Links are relative to the endpoint
// (`/v2/images/<id>`), as Glance writes them.
import { glanceTime, type Image, type Member } from '../service.js';

export function imageView(image: Image): Record<string, unknown> {
  return {
    ...image.properties,
    id: image.id,
    name: image.name,
    status: image.status,
    visibility: image.visibility,
    protected: image.protected,
    os_hidden: image.os_hidden,
    checksum: image.checksum,
    os_hash_algo: image.os_hash_algo,
    os_hash_value: image.os_hash_value,
    owner: image.owner,
    size: image.size,
    virtual_size: image.virtual_size,
    min_ram: image.min_ram,
    min_disk: image.min_disk,
    disk_format: image.disk_format,
    container_format: image.container_format,
    created_at: glanceTime(image.created_at),
    updated_at: glanceTime(image.updated_at),
    tags: image.tags,
    self: `/v2/images/${image.id}`,
    file: `/v2/images/${image.id}/file`,
    schema: '/v2/schemas/image',
  };
}

export function imagesView(images: Image[], next: string | undefined): Record<string, unknown> {
  const body: Record<string, unknown> = { images: images.map(imageView), first: '/v2/images', schema: '/v2/schemas/images' };
  if (next !== undefined) body.next = next;
  return body;
}

export function memberView(member: Member): Record<string, unknown> {
  return {
    image_id: member.image_id,
    member_id: member.member_id,
    status: member.status,
    created_at: glanceTime(member.created_at),
    updated_at: glanceTime(member.updated_at),
    schema: '/v2/schemas/member',
  };
}

export function membersView(members: Member[]): Record<string, unknown> {
  return { members: members.map(memberView), schema: '/v2/schemas/members' };
}

/** Glance's error body for JSON clients (webob's JSON formatter): code is "404 Not Found". */
export function errorView(status: number, title: string, message: string): Record<string, unknown> {
  return { message, code: `${status} ${title}`, title };
}
