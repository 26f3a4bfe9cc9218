// Server actions for resize and cold migration: resize, confirmResize, revertResize (servers.py)
// and migrate (migrate_server.py). Registered in the action registry at module load.
import { atLeast } from '../../http/microversion.js';
import { authorize } from './common.js';
import { types, validateBody, type Schema } from './jsonschema.js';
import { registerServerActions } from './server-actions.js';

const MEMBER = 'rule:project_member_or_admin';
const ADMIN = 'rule:admin_api';

/** Nova's resize schema (OS-DCF:diskConfig from the disk_config extension, merged in 2.1). */
const RESIZE: Schema = {
  type: 'object',
  properties: {
    resize: {
      type: 'object',
      properties: {
        flavorRef: { type: ['string', 'integer'], minLength: 1 },
        'OS-DCF:diskConfig': { type: 'string', enum: ['AUTO', 'MANUAL'] },
      },
      required: ['flavorRef'],
      additionalProperties: false,
    },
  },
  required: ['resize'],
  additionalProperties: false,
} as Schema;

/** migrate_v2_56: null, or an object with an optional host. */
const MIGRATE_256: Schema = {
  type: 'object',
  properties: { migrate: { type: ['object', 'null'], properties: { host: types.fqdn }, additionalProperties: false } },
  required: ['migrate'],
  additionalProperties: false,
} as Schema;

registerServerActions({
  resize: {
    policy: 'os_compute_api:servers:resize', rule: MEMBER,
    run: async (ctx) => {
      validateBody(RESIZE, { resize: ctx.body });
      const body = ctx.body as { flavorRef: string | number };
      await ctx.deps.compute.resize.resize(ctx.caller, ctx.instance, { flavorRef: String(body.flavorRef) });
    },
  },
  confirmResize: {
    policy: 'os_compute_api:servers:confirm_resize', rule: MEMBER,
    run: async (ctx) => {
      await ctx.deps.compute.resize.confirm(ctx.caller, ctx.instance);
      ctx.reply.status(204);
    },
  },
  revertResize: {
    policy: 'os_compute_api:servers:revert_resize', rule: MEMBER,
    run: async (ctx) => {
      await ctx.deps.compute.resize.revert(ctx.caller, ctx.instance);
    },
  },
  migrate: {
    policy: 'os_compute_api:os-migrate-server:migrate', rule: ADMIN,
    run: async (ctx) => {
      let host: string | undefined;
      // Before 2.56 the body is not checked and a host is not taken.
      if (atLeast(ctx.request, '2.56')) {
        validateBody(MIGRATE_256, { migrate: ctx.body });
        host = (ctx.body as { host?: string } | null)?.host ?? undefined;
      }
      if (host !== undefined) authorize(ctx.deps, ctx.request, 'os_compute_api:os-migrate-server:migrate:host', { project_id: ctx.instance.projectId });
      await ctx.deps.compute.resize.resize(ctx.caller, ctx.instance, { host });
    },
  },
});

/** Rules that are not an action's own (registered with the os-migrations routes). */
export const RESIZE_POLICY_RULES: Record<string, string> = {
  'os_compute_api:os-migrate-server:migrate:host': ADMIN,
};
