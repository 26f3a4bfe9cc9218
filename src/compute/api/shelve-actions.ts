// Server actions that make or use images: shelve, shelveOffload, unshelve (2.77 zone),
// createImage (2.45 body), createBackup, rescue, unrescue, rebuild. Bodies are checked as Nova's
// schemas do; the domain work is ImageActions (src/compute/shelve.ts).
import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { BadRequest } from '../../core/errors.js';
import { atLeast } from '../../http/microversion.js';
import type { RebuildRequest } from '../shelve.js';
import { authorize, serviceUrl, type ComputeApiDeps } from './common.js';
import { registerServerActions, type ActionContext } from './server-actions.js';
import { renderServer } from './servers.js';

const MEMBER = 'rule:project_member_or_admin';
const ADMIN = 'rule:admin_api';

const invalid = (field: string, value: unknown, why: string) =>
  new BadRequest(`Invalid input for field/attribute ${field}. Value: ${typeof value === 'string' ? value : JSON.stringify(value)}. ${why}`);

function objectBody(name: string, body: unknown, nullable = true): Record<string, unknown> {
  if ((body === null || body === undefined) && nullable) return {};
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalid(name, body, `${JSON.stringify(body)} is not of type 'object'${nullable ? ", 'null'" : ''}`);
  return body as Record<string, unknown>;
}

function onlyKeys(name: string, body: Record<string, unknown>, keys: string[]): void {
  const extra = Object.keys(body).filter((k) => !keys.includes(k));
  if (extra.length) throw new BadRequest(`Invalid input for field/attribute ${name}. Additional properties are not allowed ('${extra[0]}' was unexpected)`);
}

function required(name: string, body: Record<string, unknown>, key: string): void {
  if (body[key] === undefined) throw new BadRequest(`Invalid input for field/attribute ${name}. '${key}' is a required property`);
}

/** Nova's name: 1-255 characters, no leading or trailing whitespace. */
function checkName(value: unknown, field = 'name'): string {
  if (typeof value !== 'string') throw invalid(field, value, `${JSON.stringify(value)} is not of type 'string'`);
  if (value.length < 1 || value.length > 255 || /^\s|\s$/.test(value)) throw invalid(field, value, 'It must be 1 to 255 characters without leading or trailing whitespace.');
  return value;
}

/** Nova's metadata: string keys of 1-255 characters, string values of at most 255. */
function checkMetadata(value: unknown): Record<string, string> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid('metadata', value, `${JSON.stringify(value)} is not of type 'object'`);
  for (const [key, v] of Object.entries(value)) {
    if (key.length < 1 || key.length > 255) throw invalid('metadata', value, `Metadata keys must be 1 to 255 characters: '${key.slice(0, 40)}'`);
    if (typeof v !== 'string') throw invalid('metadata', value, `${JSON.stringify(v)} is not of type 'string'`);
    if (v.length > 255) throw invalid('metadata', value, `The value of '${key}' is longer than 255 characters`);
  }
  return value as Record<string, string>;
}

/** Before 2.39 Nova counts image metadata against the metadata_items quota (403 "Image metadata limit exceeded"). */
async function checkImageMetadataQuota(ctx: ActionContext, metadata: Record<string, string>): Promise<void> {
  if (atLeast(ctx.request, '2.39') || Object.keys(metadata).length === 0) return;
  await ctx.deps.compute.quotas.check(ctx.caller.projectId, ctx.caller.userId, { metadata_items: Object.keys(metadata).length }).catch((err) => {
    if ((err as { status?: number }).status === 403) throw Object.assign(err, { message: 'Image metadata limit exceeded' });
    throw err;
  });
}

/** Where an image is, for the Location header of createImage before 2.45: the Image service's URL of it. */
function imageUrl(ctx: ActionContext, imageId: string): string {
  const compute = serviceUrl(ctx.request);
  return `${compute.replace(/\/compute$/, '')}/image/v2/images/${imageId}`;
}

function generatedPassword(ctx: ActionContext): string | null {
  return ctx.deps.compute.enablePasswordGeneration ? randomBytes(9).toString('base64url').slice(0, 12) : null;
}

registerServerActions({
  shelve: {
    policy: 'os_compute_api:os-shelve:shelve', rule: MEMBER,
    run: async (ctx) => { await ctx.deps.compute.imageActions.shelve(ctx.caller, ctx.instance); },
  },
  shelveOffload: {
    policy: 'os_compute_api:os-shelve:shelve_offload', rule: ADMIN,
    run: async (ctx) => { await ctx.deps.compute.imageActions.shelveOffload(ctx.caller, ctx.instance); },
  },
  unshelve: {
    policy: 'os_compute_api:os-shelve:unshelve', rule: MEMBER,
    run: async (ctx) => {
      let zone: string | undefined;
      // Before 2.77 the body is not checked (it is null); from 2.77 null or {"availability_zone": "<zone>"}.
      if (atLeast(ctx.request, '2.77') && ctx.body !== null) {
        const body = objectBody('unshelve', ctx.body);
        onlyKeys('unshelve', body, ['availability_zone']);
        required('unshelve', body, 'availability_zone');
        if (typeof body.availability_zone !== 'string') throw invalid('availability_zone', body.availability_zone, `${JSON.stringify(body.availability_zone)} is not of type 'string'`);
        zone = body.availability_zone;
      }
      await ctx.deps.compute.imageActions.unshelve(ctx.caller, ctx.instance, zone);
    },
  },
  createImage: {
    policy: 'os_compute_api:servers:create_image', rule: MEMBER,
    run: async (ctx) => {
      const body = objectBody('createImage', ctx.body, false);
      onlyKeys('createImage', body, ['name', 'metadata']);
      required('createImage', body, 'name');
      const name = checkName(body.name);
      const metadata = body.metadata === undefined ? {} : checkMetadata(body.metadata);
      await checkImageMetadataQuota(ctx, metadata);
      const imageId = await ctx.deps.compute.imageActions.snapshot(ctx.caller, ctx.instance, name, metadata);
      if (atLeast(ctx.request, '2.45')) return { image_id: imageId };
      ctx.reply.header('Location', imageUrl(ctx, imageId));
      return undefined;
    },
  },
  createBackup: {
    policy: 'os_compute_api:os-create-backup', rule: MEMBER,
    run: async (ctx) => {
      const body = objectBody('createBackup', ctx.body, false);
      onlyKeys('createBackup', body, ['name', 'backup_type', 'rotation', 'metadata']);
      for (const key of ['name', 'backup_type', 'rotation']) required('createBackup', body, key);
      const name = checkName(body.name);
      if (typeof body.backup_type !== 'string') throw invalid('backup_type', body.backup_type, `${JSON.stringify(body.backup_type)} is not of type 'string'`);
      const rotation = typeof body.rotation === 'string' && /^\d+$/.test(body.rotation) ? Number(body.rotation) : body.rotation;
      if (typeof rotation !== 'number' || !Number.isInteger(rotation) || rotation < 0) {
        throw invalid('rotation', body.rotation, `${JSON.stringify(body.rotation)} is not a non-negative integer`);
      }
      const metadata = body.metadata === undefined ? {} : checkMetadata(body.metadata);
      await checkImageMetadataQuota(ctx, metadata);
      const imageId = await ctx.deps.compute.imageActions.backup(ctx.caller, ctx.instance, name, body.backup_type, rotation, metadata);
      if (atLeast(ctx.request, '2.45')) return { image_id: imageId };
      // Nova points at the compute API's images/{id}, and only when a backup is kept.
      if (rotation > 0) ctx.reply.header('Location', `${serviceUrl(ctx.request)}/v2.1/images/${imageId}`);
      return undefined;
    },
  },
  rescue: {
    policy: 'os_compute_api:os-rescue', rule: MEMBER,
    run: async (ctx) => {
      const body = objectBody('rescue', ctx.body);
      onlyKeys('rescue', body, ['adminPass', 'rescue_image_ref']);
      if (body.adminPass !== undefined && typeof body.adminPass !== 'string') throw invalid('adminPass', body.adminPass, `${JSON.stringify(body.adminPass)} is not of type 'string'`);
      if (body.rescue_image_ref !== undefined && (typeof body.rescue_image_ref !== 'string' || !/^[0-9a-fA-F-]{32,36}$/.test(body.rescue_image_ref))) {
        throw invalid('rescue_image_ref', body.rescue_image_ref, `${JSON.stringify(body.rescue_image_ref)} is not a 'uuid'`);
      }
      const password = (body.adminPass as string | undefined) ?? randomBytes(9).toString('base64url').slice(0, 12);
      await ctx.deps.compute.imageActions.rescue(ctx.caller, ctx.instance, password, body.rescue_image_ref as string | undefined);
      ctx.reply.status(200);
      return ctx.deps.compute.enablePasswordGeneration ? { adminPass: password } : {};
    },
  },
  unrescue: {
    policy: 'os_compute_api:os-unrescue', rule: MEMBER,
    run: async (ctx) => {
      if (ctx.body !== null && ctx.body !== undefined) throw invalid('unrescue', ctx.body, "It must be null");
      await ctx.deps.compute.imageActions.unrescue(ctx.caller, ctx.instance);
    },
  },
  rebuild: {
    policy: 'os_compute_api:servers:rebuild', rule: MEMBER,
    run: async (ctx) => {
      const request = parseRebuild(ctx);
      const instance = await ctx.deps.compute.imageActions.rebuild(ctx.caller, ctx.instance, request);
      const server: Record<string, unknown> = await renderServer(ctx.deps, ctx.request, instance);
      if (request.adminPass !== null) server.adminPass = request.adminPass;
      if (atLeast(ctx.request, '2.57')) server.user_data = instance.userData;
      return { server };
    },
  },
});

function parseRebuild(ctx: ActionContext): RebuildRequest {
  const { request } = ctx;
  const body = objectBody('rebuild', ctx.body, false);
  const keys = ['imageRef', 'name', 'metadata', 'adminPass', 'preserve_ephemeral', 'accessIPv4', 'accessIPv6', 'OS-DCF:diskConfig'];
  if (!atLeast(request, '2.57')) keys.push('personality');
  if (atLeast(request, '2.19')) keys.push('description');
  if (atLeast(request, '2.54')) keys.push('key_name');
  if (atLeast(request, '2.57')) keys.push('user_data');
  if (atLeast(request, '2.63')) keys.push('trusted_image_certificates');
  onlyKeys('rebuild', body, keys);
  required('rebuild', body, 'imageRef');
  if (typeof body.imageRef !== 'string' || body.imageRef === '') throw invalid('imageRef', body.imageRef, `${JSON.stringify(body.imageRef)} is not a valid image reference`);
  const out: RebuildRequest = { imageRef: body.imageRef, adminPass: null, preserveEphemeral: false };
  if (body.name !== undefined) out.name = checkName(body.name);
  if (body.metadata !== undefined) out.metadata = checkMetadata(body.metadata);
  if (body.adminPass !== undefined) {
    if (typeof body.adminPass !== 'string') throw invalid('adminPass', body.adminPass, `${JSON.stringify(body.adminPass)} is not of type 'string'`);
    out.adminPass = body.adminPass;
  } else {
    out.adminPass = generatedPassword(ctx);
  }
  if (body.preserve_ephemeral !== undefined) {
    if (typeof body.preserve_ephemeral !== 'boolean') throw invalid('preserve_ephemeral', body.preserve_ephemeral, `${JSON.stringify(body.preserve_ephemeral)} is not of type 'boolean'`);
    out.preserveEphemeral = body.preserve_ephemeral;
  }
  for (const [field, key, pattern] of [['accessIPv4', 'accessIpV4', /^(\d{1,3}\.){3}\d{1,3}$/], ['accessIPv6', 'accessIpV6', /^[0-9a-fA-F:.]+$/]] as const) {
    const value = body[field];
    if (value === undefined) continue;
    if (typeof value !== 'string' || (value !== '' && !pattern.test(value))) throw invalid(field, value, `${JSON.stringify(value)} is not a '${field === 'accessIPv4' ? 'ipv4' : 'ipv6'}'`);
    out[key] = value === '' ? null : value;
  }
  const disk = body['OS-DCF:diskConfig'];
  if (disk !== undefined && disk !== 'AUTO' && disk !== 'MANUAL') throw invalid('OS-DCF:diskConfig', disk, `${JSON.stringify(disk)} is not one of ['AUTO', 'MANUAL']`);
  if (body.description !== undefined) {
    if (body.description !== null && (typeof body.description !== 'string' || body.description.length > 255)) throw invalid('description', body.description, 'It must be a string of at most 255 characters or null.');
    out.description = body.description as string | null;
  }
  if (body.key_name !== undefined) {
    if (body.key_name !== null && (typeof body.key_name !== 'string' || body.key_name.length < 1 || body.key_name.length > 255)) throw invalid('key_name', body.key_name, 'It must be a string of 1 to 255 characters or null.');
    out.keyName = body.key_name as string | null;
  }
  if (body.user_data !== undefined) {
    if (body.user_data !== null && (typeof body.user_data !== 'string' || body.user_data.length > 65535 || !/^[A-Za-z0-9+/]*={0,2}$/.test(body.user_data.replace(/\s/g, '')))) {
      throw new BadRequest('User data needs to be valid base 64.');
    }
    out.userData = body.user_data as string | null;
  }
  if (body.personality !== undefined && !Array.isArray(body.personality)) throw invalid('personality', body.personality, `${JSON.stringify(body.personality)} is not of type 'array'`);
  if (body.trusted_image_certificates !== undefined) {
    authorize(ctx.deps, request, 'os_compute_api:servers:rebuild:trusted_certs', { project_id: ctx.instance.projectId, user_id: ctx.instance.userId });
    const certs = body.trusted_image_certificates;
    if (certs !== null && (!Array.isArray(certs) || certs.some((c) => typeof c !== 'string'))) throw invalid('trusted_image_certificates', certs, "It must be null or a list of strings.");
    // Image signatures are not verified on this cloud: refuse rather than pretend.
    if (Array.isArray(certs) && certs.length > 0) throw new BadRequest('Image certificate validation is not supported by this cloud: trusted_image_certificates must be empty or null.');
  }
  return out;
}

/** Policy rules these actions check beyond their own (registered with the routes). */
export function imageActionRoutes(_app: FastifyInstance, deps: ComputeApiDeps): void {
  deps.policy.register({ 'os_compute_api:servers:rebuild:trusted_certs': MEMBER });
}
