// /v3/users/{user_id}/application_credentials: self-service credentials bound to a project.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Forbidden } from '../../core/errors.js';
import { authOf, type AuthContext } from '../../http/auth.js';
import { authorize, entitySchema, listBody, nameSchema, queryOf, type IdentityApiDeps } from './common.js';
import { appCredView } from './views.js';

const appCredProps = {
  name: nameSchema, description: { type: ['string', 'null'] }, secret: { type: 'string', minLength: 1 },
  expires_at: { type: ['string', 'null'] }, unrestricted: { type: 'boolean' },
  roles: { type: 'array', items: { type: 'object', properties: { id: { type: 'string' }, name: { type: 'string' } } } },
  access_rules: { type: 'array', maxItems: 0 },
};
type Params = Record<string, string>;
const params = (request: FastifyRequest) => request.params as Params;

export function appCredRoutes(app: FastifyInstance, deps: IdentityApiDeps): void {
  const { identity } = deps;
  // Keystone's rule: a token from a restricted application credential may not manage credentials.
  const refuseRestrictedCredential = async (auth: AuthContext) => {
    if (!auth.applicationCredentialId) return;
    const current = await identity.getApplicationCredential(auth.userId, auth.applicationCredentialId);
    if (!current.unrestricted) {
      throw new Forbidden("You are not authorized to perform the requested action: Using method 'application_credential' is not allowed for managing additional application credentials.");
    }
  };
  const base = '/v3/users/:userId/application_credentials';

  app.post(base, { schema: { body: entitySchema('application_credential', appCredProps, ['name'], false) } }, async (request, reply) => {
    const userId = params(request).userId;
    authorize(deps, request, 'identity:create_application_credential', { user_id: userId });
    const auth = authOf(request);
    if (auth.scope !== 'project' || !auth.projectId) throw new Forbidden('Application credentials are created with a project-scoped token.');
    // A restricted credential's token may not create further credentials (Keystone's rule).
    await refuseRestrictedCredential(auth);
    const input = (request.body as any).application_credential;
    const credential = await identity.createApplicationCredential({
      userId, projectId: auth.projectId, name: input.name, secret: input.secret, description: input.description,
      expires_at: input.expires_at, unrestricted: input.unrestricted, roles: input.roles,
      allowedRoleIds: auth.roles.map((r) => r.id), // never more than the asking token has
    });
    reply.status(201);
    return { application_credential: appCredView(request, credential) };
  });
  app.get(base, async (request) => {
    const userId = params(request).userId;
    authorize(deps, request, 'identity:list_application_credentials', { user_id: userId });
    await identity.getUser(userId);
    const credentials = await identity.listApplicationCredentials(userId, { name: queryOf(request).name });
    return listBody(request, 'application_credentials', credentials.map((c) => appCredView(request, c)));
  });
  app.get(`${base}/:id`, async (request) => {
    authorize(deps, request, 'identity:get_application_credential', { user_id: params(request).userId });
    return { application_credential: appCredView(request, await identity.getApplicationCredential(params(request).userId, params(request).id)) };
  });
  app.delete(`${base}/:id`, async (request, reply) => {
    authorize(deps, request, 'identity:delete_application_credential', { user_id: params(request).userId });
    await refuseRestrictedCredential(authOf(request));
    await identity.deleteApplicationCredential(params(request).userId, params(request).id);
    reply.status(204).send();
  });
}
