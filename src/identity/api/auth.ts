// /v3/auth: tokens (issue, validate, check, revoke) and what a token may be scoped to.
import type { FastifyInstance } from 'fastify';
import { BadRequest, Forbidden, NotFound } from '../../core/errors.js';
import { authOf } from '../../http/auth.js';
import { authorize, listBody, queryOf, v3Url, type IdentityApiDeps } from './common.js';
import { domainView, projectView } from './views.js';

// Keystone's token_issue schema (keystone/auth/schema.py), with the application_credential
// method's fields: every id, name, secret and password is a string.
const str = { type: 'string' };
const domainRef = { type: 'object', properties: { id: str, name: str } };
const tokenRequestSchema = {
  type: 'object',
  required: ['auth'],
  properties: {
    auth: {
      type: 'object',
      required: ['identity'],
      properties: {
        identity: {
          type: 'object',
          required: ['methods'],
          properties: {
            methods: { type: 'array', minItems: 1, items: str },
            password: { type: 'object', properties: { user: { type: 'object', properties: { id: str, name: str, password: str, domain: domainRef } } } },
            token: { type: 'object', required: ['id'], properties: { id: str } },
            application_credential: {
              type: 'object',
              properties: { id: str, name: str, secret: str, user: { type: 'object', properties: { id: str, name: str, domain: domainRef } } },
            },
          },
        },
        scope: {
          type: ['object', 'string'],
          properties: {
            project: { type: 'object', properties: { id: str, name: str, domain: domainRef } },
            domain: domainRef,
            system: { type: 'object', properties: { all: { type: 'boolean' } } },
            'OS-TRUST:trust': { type: 'object', properties: { id: str } },
          },
        },
      },
    },
  },
};

/** The checks Keystone makes after the schema (validate_issue_token_auth): an id or a name wherever an entity is named. */
function checkTokenRequest(auth: any): void {
  const named = (ref: any, field: string) => {
    if (ref !== undefined && ref !== null && ref.id === undefined && ref.name === undefined) {
      throw new BadRequest(`Invalid input for field ${field}: id or name must be present.`);
    }
  };
  const user = auth.identity?.password?.user;
  named(user, 'identity/password/user');
  named(user?.domain, 'identity/password/user/domain');
  named(auth.identity?.application_credential?.user, 'identity/application_credential/user');
  named(auth.identity?.application_credential?.user?.domain, 'identity/application_credential/user/domain');
  if (auth.scope && typeof auth.scope === 'object') {
    named(auth.scope.project, 'scope/project');
    named(auth.scope.project?.domain, 'scope/project/domain');
    named(auth.scope.domain, 'scope/domain');
  }
}

export function authRoutes(app: FastifyInstance, deps: IdentityApiDeps): void {
  const { tokens, identity } = deps;
  const wantsCatalog = (query: Record<string, string | undefined>) => query.nocatalog === undefined;

  app.post('/v3/auth/tokens', { config: { public: true }, schema: { body: tokenRequestSchema } }, async (request, reply) => {
    const body = request.body as { auth: Parameters<typeof tokens.authenticate>[0] };
    checkTokenRequest(body.auth);
    const context = await tokens.authenticate(body.auth);
    reply.header('X-Subject-Token', context.token).status(201);
    return tokens.tokenBody(context, wantsCatalog(queryOf(request)));
  });

  const subjectOf = async (headers: Record<string, unknown>) => {
    const subject = headers['x-subject-token'];
    // Keystone answers 404 for a missing subject token as for an invalid one.
    if (typeof subject !== 'string' || subject === '') throw new NotFound('No token in the request');
    return tokens.validateToken(subject).catch(() => { throw new NotFound(`Could not find token: ${subject}.`); });
  };

  app.get('/v3/auth/tokens', async (request, reply) => {
    const subject = await subjectOf(request.headers);
    authorize(deps, request, 'identity:validate_token', { token: { user_id: subject.userId } });
    reply.header('X-Subject-Token', subject.token);
    return tokens.tokenBody(subject, wantsCatalog(queryOf(request)));
  });

  app.head('/v3/auth/tokens', async (request, reply) => {
    const subject = await subjectOf(request.headers);
    authorize(deps, request, 'identity:check_token', { token: { user_id: subject.userId } });
    reply.header('X-Subject-Token', subject.token).status(200).send();
  });

  app.delete('/v3/auth/tokens', async (request, reply) => {
    const subject = await subjectOf(request.headers);
    authorize(deps, request, 'identity:revoke_token', { token: { user_id: subject.userId } });
    await tokens.revokeToken(subject.token);
    reply.status(204).send();
  });

  app.get('/v3/auth/catalog', async (request) => {
    authorize(deps, request, 'identity:get_auth_catalog');
    if (authOf(request).scope !== 'project') throw new Forbidden('A project-scoped token is required to produce a service catalog.');
    return { catalog: await identity.catalog(), links: { self: v3Url(request, '/auth/catalog'), previous: null, next: null } };
  });

  app.get('/v3/auth/projects', async (request) => {
    authorize(deps, request, 'identity:get_auth_projects');
    const projects = (await identity.projectsOfUser(authOf(request).userId)).filter((p) => p.enabled);
    return listBody(request, 'projects', projects.map((p) => projectView(request, p)));
  });

  app.get('/v3/auth/domains', async (request) => {
    authorize(deps, request, 'identity:get_auth_domains');
    const domains = (await identity.domainsOfUser(authOf(request).userId)).filter((d) => d.enabled);
    return listBody(request, 'domains', domains.map((d) => domainView(request, d)));
  });

  app.get('/v3/auth/system', async (request) => {
    authorize(deps, request, 'identity:get_auth_system');
    const roles = await identity.rolesOnTarget(authOf(request).userId, 'system', 'all');
    return { system: roles.length ? [{ all: true }] : [], links: { self: v3Url(request, '/auth/system'), previous: null, next: null } };
  });
}
