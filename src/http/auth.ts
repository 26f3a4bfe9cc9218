// Authentication of API requests: every service validates X-Auth-Token in-process through
// a TokenValidator (the identity service provides it; no HTTP call to Keystone).
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Unauthorized } from '../core/errors.js';
import type { Credentials } from './policy.js';

export interface AuthContext {
  token: string;
  userId: string;
  userName: string;
  userDomainId: string;
  userDomainName: string;
  methods: string[];
  scope: 'unscoped' | 'project' | 'domain' | 'system';
  projectId?: string;
  projectName?: string;
  projectDomainId?: string;
  projectDomainName?: string;
  domainId?: string;
  domainName?: string;
  roles: { id: string; name: string }[];
  issuedAt: Date;
  expiresAt: Date;
  auditIds: string[];
  applicationCredentialId?: string;
  /** What the policy engine checks rules against. */
  credentials: Credentials;
}

export interface TokenValidator {
  /** Resolves the token's context or throws Unauthorized / NotFound. */
  validateToken(token: string): Promise<AuthContext>;
}

declare module 'fastify' {
  interface FastifyRequest { auth?: AuthContext }
  interface FastifyContextConfig { public?: boolean }
}

/** Requires a valid X-Auth-Token on every route of this scope except those marked `config: { public: true }`. */
export function requireAuthentication(app: FastifyInstance, validator: TokenValidator): void {
  app.decorateRequest('auth', undefined);
  app.addHook('preHandler', async (request) => {
    if (request.routeOptions.config?.public) return;
    const token = request.headers['x-auth-token'];
    if (typeof token !== 'string' || token === '') throw new Unauthorized();
    try {
      request.auth = await validator.validateToken(token);
    } catch {
      throw new Unauthorized('The request you have made requires authentication.');
    }
  });
}

/** The authenticated context of a request on a route that requires authentication. */
export function authOf(request: FastifyRequest): AuthContext {
  if (!request.auth) throw new Unauthorized();
  return request.auth;
}

/** Who is asking, as the services need it: the user, the project the token is scoped to, admin or not. */
export interface Caller {
  userId: string;
  projectId: string;
  isAdmin: boolean;
  requestId: string;
}

export function callerOf(request: FastifyRequest): Caller {
  const auth = authOf(request);
  return {
    userId: auth.userId,
    projectId: auth.projectId ?? '',
    isAdmin: auth.roles.some((r) => r.name.toLowerCase() === 'admin'),
    requestId: request.id,
  };
}
