// Tokens: authentication (password, token, application_credential), scoping, Fernet
// issuance, validation and revocation. Validation needs no database round trip on the hot
// path: the token carries who and what scope; users, scopes and roles are cached briefly
// (and dropped at once on any identity change in this process), and revocation events are
// re-read from the database at most once a second so other processes' revocations count.
import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Database } from '../db/index.js';
import { BadRequest, Forbidden, NotFound, Unauthorized } from '../core/errors.js';
import { isoMicro } from '../core/time.js';
import type { AuthContext, TokenValidator } from '../http/auth.js';
import { Fernet, InvalidToken } from './fernet.js';
import { decodePayload, encodePayload, newAuditId, type TokenPayload, type TokenScope } from './token-payload.js';
import type { IdentityChange, IdentityService, Role, User, Domain, Project } from './service.js';

export interface TokenServiceOptions {
  identity: IdentityService;
  database: Database;
  fernet: Fernet;
  /** [token] expiration, seconds. */
  expirationSeconds?: number;
  /** [token] allow_rescope_scoped_token. */
  allowRescopeScopedToken?: boolean;
  /** How long a validated subject (user, scope, roles) may be reused, ms. */
  cacheMs?: number;
}

interface RevocationEvent {
  audit_id: string | null; audit_chain_id: string | null; user_id: string | null; project_id: string | null;
  domain_id: string | null; application_credential_id: string | null; issued_before: number;
}

/** Everything a token means, apart from the token string itself. */
interface Subject {
  user: User; userDomain: Domain; project?: Project; projectDomain?: Domain; domain?: Domain;
  roles: Role[]; appCred?: { id: string; name: string; unrestricted: boolean };
}

export interface AuthRequest {
  identity?: {
    methods?: unknown;
    password?: { user?: { id?: string; name?: string; password?: string; domain?: { id?: string; name?: string } } };
    token?: { id?: string };
    application_credential?: { id?: string; name?: string; secret?: string; user?: { id?: string; name?: string; domain?: { id?: string; name?: string } } };
  };
  scope?: unknown;
}

export class TokenService implements TokenValidator {
  private readonly identity: IdentityService;
  private readonly db: Kysely<any>;
  private readonly fernet: Fernet;
  readonly expirationSeconds: number;
  private readonly allowRescope: boolean;
  private readonly cacheMs: number;
  private readonly subjects = new Map<string, { subject: Subject; generation: number; at: number }>();
  private revocations: RevocationEvent[] = [];
  private revocationsLoadedAt = 0;
  private revocationsGeneration = -1;
  /** When this process last recorded a revocation event (ms): tokens issued after it must not match it. */
  private lastRevocationMs = 0;

  constructor(options: TokenServiceOptions) {
    this.identity = options.identity;
    this.db = options.database.db;
    this.fernet = options.fernet;
    this.expirationSeconds = options.expirationSeconds ?? 3600;
    this.allowRescope = options.allowRescopeScopedToken ?? true;
    this.cacheMs = options.cacheMs ?? 5000;
    this.identity.onChange((change) => this.recordRevocation(change));
  }

  // ------------------------------------------------------------ authentication
  /** POST /v3/auth/tokens: checks the credentials, resolves the scope, issues a token. */
  async authenticate(auth: AuthRequest): Promise<AuthContext> {
    const methods = auth.identity?.methods;
    if (!Array.isArray(methods) || methods.length === 0 || !methods.every((m) => typeof m === 'string')) {
      throw new BadRequest("Invalid input for field 'identity/methods': expected a non-empty list of method names.");
    }
    for (const method of methods) {
      if (!['password', 'token', 'application_credential'].includes(method)) throw new Unauthorized(`Attempted to authenticate with an unsupported method: ${method}.`);
    }
    let user: User | undefined;
    let expiresAt = new Date(Date.now() + this.expirationSeconds * 1000);
    let auditChain: string | undefined;
    let appCred: { id: string; projectId: string } | undefined;
    let previous: TokenPayload | undefined;

    if (methods.includes('token')) {
      const tokenId = auth.identity?.token?.id;
      if (typeof tokenId !== 'string') throw new BadRequest("Invalid input for field 'identity/token/id': a token id is required.");
      const context = await this.validateToken(tokenId).catch(() => { throw new Unauthorized('The request you have made requires authentication.'); });
      previous = this.decode(tokenId);
      if (previous.appCredId) throw new Forbidden('Application credential tokens cannot be rescoped.');
      const wanted = auth.scope && typeof auth.scope === 'object' ? auth.scope as Record<string, unknown> : {};
      if (context.scope === 'system' && (wanted.project !== undefined || wanted.domain !== undefined)) {
        throw new Forbidden('You are not authorized to perform the requested action: Using a system-scoped token to create a project-scoped or domain-scoped token is not allowed.');
      }
      if (context.scope !== 'unscoped' && !this.allowRescope) throw new Forbidden('You are not authorized to perform the requested action: rescope a scoped token.');
      user = await this.identity.getUser(context.userId);
      expiresAt = previous.expiresAt; // a rescoped token never outlives the one it came from
      auditChain = previous.auditIds[previous.auditIds.length - 1];
    }
    if (methods.includes('password')) {
      const ref = auth.identity?.password?.user;
      if (!ref || typeof ref.password !== 'string') throw new BadRequest("Invalid input for field 'identity/password/user': 'password' is a required property");
      // An unknown user is the same 401 as a wrong password; a malformed reference stays a 400.
      const found = await this.findUser(ref).catch((err) => { throw err instanceof NotFound ? new Unauthorized('The request you have made requires authentication.') : err; });
      const checked = await this.identity.checkPassword(found.id, ref.password);
      if (user && user.id !== checked.id) throw new Unauthorized('The methods name different users.');
      user = checked;
    }
    if (methods.includes('application_credential')) {
      const ref = auth.identity?.application_credential;
      if (!ref || typeof ref.secret !== 'string') throw new BadRequest("Invalid input for field 'identity/application_credential': 'secret' is a required property");
      let userId: string | undefined;
      if (!ref.id) {
        if (!ref.user) throw new BadRequest("Invalid input for field 'identity/application_credential': 'id', or 'name' and 'user', are required");
        userId = (await this.findUser(ref.user).catch((err) => { throw err instanceof NotFound ? new Unauthorized('Invalid application credential.') : err; })).id;
      }
      const credential = await this.identity.verifyApplicationCredential({ id: ref.id, name: ref.name, userId }, ref.secret);
      if (user && user.id !== credential.user_id) throw new Unauthorized('The methods name different users.');
      user = await this.identity.getUser(credential.user_id);
      appCred = { id: credential.id, projectId: credential.project_id };
      if (credential.expires_at && new Date(credential.expires_at) < expiresAt) expiresAt = new Date(credential.expires_at);
    }
    if (!user) throw new Unauthorized();
    if (!user.enabled) throw new Unauthorized(`User ${user.id} is disabled.`);
    const userDomain = await this.identity.getDomain(user.domain_id);
    if (!userDomain.enabled) throw new Unauthorized(`Domain ${userDomain.id} is disabled.`);

    // An application credential always scopes to its own project and, as in Keystone, may not ask for any scope.
    if (appCred && auth.scope !== undefined) throw new Unauthorized('Error authenticating with application credential: Application credentials cannot request a scope.');
    let scope: TokenScope = appCred ? { kind: 'project', id: appCred.projectId } : await this.resolveScope(auth.scope, user);
    if (!appCred && auth.scope === undefined && previous) {
      scope = previous.scope.kind === 'unscoped' ? scope : previous.scope;
    }

    const payload: TokenPayload = {
      userId: user.id,
      methods: [...new Set([...(previous?.methods ?? []), ...methods])],
      scope,
      expiresAt,
      // A revocation matches tokens issued at or before its instant; a token issued right after
      // one (a login just after a password change, in the same millisecond) must not be caught.
      issuedAt: new Date(Math.max(Date.now(), this.lastRevocationMs + 1)),
      auditIds: auditChain ? [newAuditId(), auditChain] : [newAuditId()],
      appCredId: appCred?.id,
    };
    const subject = await this.loadSubject(payload);
    if (scope.kind !== 'unscoped' && subject.roles.length === 0) {
      const target = scope.kind === 'system' ? 'the system' : `${scope.kind} ${scope.id}`;
      throw new Unauthorized(`User ${user.id} has no access to ${target}.`);
    }
    return this.contextOf(this.fernet.encrypt(encodePayload(payload)), payload, subject);
  }

  private async findUser(ref: { id?: string; name?: string; domain?: { id?: string; name?: string } }): Promise<User> {
    // The HTTP schema checks these types; callers in-process get the same 400 instead of a driver error.
    for (const [field, value] of [['id', ref.id], ['name', ref.name], ['domain/id', ref.domain?.id], ['domain/name', ref.domain?.name]] as const) {
      if (value !== undefined && typeof value !== 'string') throw new BadRequest(`Invalid input for field user/${field}: expected a string.`);
    }
    if (ref.id) return this.identity.getUser(ref.id);
    if (!ref.name) throw new BadRequest('Invalid input for field user: id or name must be present.');
    if (!ref.domain || (!ref.domain.id && !ref.domain.name)) {
      throw new BadRequest('Expecting to find domain in user. The server could not comply with the request since it is either malformed or otherwise incorrect. The client is assumed to be in error.');
    }
    const domain = ref.domain.id ? await this.identity.getDomain(ref.domain.id) : await this.identity.findDomainByName(ref.domain.name!);
    return this.identity.findUserByName(ref.name, domain.id);
  }

  private async resolveScope(scope: unknown, user: User): Promise<TokenScope> {
    if (scope === undefined || scope === null) {
      // Keystone scopes to the user's default project when no scope is asked and the user has a role there.
      if (user.default_project_id) {
        const project = await this.identity.getProject(user.default_project_id).catch(() => undefined);
        if (project?.enabled && (await this.identity.rolesOnTarget(user.id, 'project', project.id)).length) return { kind: 'project', id: project.id };
      }
      return { kind: 'unscoped' };
    }
    if (typeof scope === 'string' && scope === 'unscoped') return { kind: 'unscoped' };
    if (typeof scope !== 'object') throw new BadRequest("Invalid input for field 'scope': expected an object.");
    const s = scope as { project?: any; domain?: any; system?: any; unscoped?: unknown; 'OS-TRUST:trust'?: { id?: string } };
    const given = ['project', 'domain', 'system', 'unscoped', 'OS-TRUST:trust'].filter((k) => k in s);
    if (given.length !== 1) {
      throw new BadRequest('Expecting to find system, project, domain, OS-TRUST:trust or unscoped in scope. The server could not comply with the request since it is either malformed or otherwise incorrect. The client is assumed to be in error.');
    }
    // Older keystoneauth sends {"unscoped": {}} for "scope": "unscoped".
    if (given[0] === 'unscoped') return { kind: 'unscoped' };
    // Trusts are not implemented: no trust can be found.
    if (given[0] === 'OS-TRUST:trust') throw new NotFound(`Could not find trust: ${s['OS-TRUST:trust']?.id ?? ''}.`);
    const notFound = (what: string) => () => { throw new Unauthorized(`Could not find ${what} in the requested scope.`); };
    if (s.project) {
      let project: Project;
      if (s.project.id) project = await this.identity.getProject(s.project.id).catch(notFound('project'));
      else if (s.project.name && s.project.domain && (s.project.domain.id || s.project.domain.name)) {
        const domain = s.project.domain.id ? await this.identity.getDomain(s.project.domain.id).catch(notFound('domain'))
          : await this.identity.findDomainByName(s.project.domain.name).catch(notFound('domain'));
        project = await this.identity.findProjectByName(s.project.name, domain.id).catch(notFound('project'));
      } else throw new BadRequest("Invalid input for field 'scope/project': an 'id', or a 'name' and a 'domain', are required.");
      return { kind: 'project', id: project.id };
    }
    if (s.domain) {
      let domain: Domain;
      if (s.domain.id) domain = await this.identity.getDomain(s.domain.id).catch(notFound('domain'));
      else if (s.domain.name) domain = await this.identity.findDomainByName(s.domain.name).catch(notFound('domain'));
      else throw new BadRequest("Invalid input for field 'scope/domain': an 'id' or a 'name' is required.");
      return { kind: 'domain', id: domain.id };
    }
    if (s.system?.all !== true) throw new BadRequest("Invalid input for field 'scope/system': only {\"all\": true} is supported.");
    return { kind: 'system' };
  }

  // ------------------------------------------------------------ validation
  private decode(token: string): TokenPayload {
    try {
      return decodePayload(this.fernet.decrypt(token));
    } catch (err) {
      if (err instanceof InvalidToken) throw new NotFound('Failed to validate token');
      throw err;
    }
  }

  /** Validates a token: decrypts it, checks expiry and revocation, and loads who and what it is for. */
  async validateToken(token: string): Promise<AuthContext> {
    const payload = this.decode(token);
    if (payload.expiresAt.getTime() <= Date.now()) throw new NotFound('Failed to validate token');
    await this.refreshRevocations();
    if (this.isRevoked(payload)) throw new NotFound('Failed to validate token');
    const subject = await this.loadSubject(payload).catch(() => { throw new NotFound('Failed to validate token'); });
    return this.contextOf(token, payload, subject);
  }

  /** The user, scope and roles a payload names, checked to be enabled; cached briefly. */
  private async loadSubject(payload: TokenPayload): Promise<Subject> {
    const scopeId = payload.scope.kind === 'project' || payload.scope.kind === 'domain' ? payload.scope.id : '';
    const key = `${payload.userId}|${payload.scope.kind}|${scopeId}|${payload.appCredId ?? ''}`;
    const cached = this.subjects.get(key);
    if (cached && cached.generation === this.identity.generation && Date.now() - cached.at < this.cacheMs) return cached.subject;

    const user = await this.identity.getUser(payload.userId);
    const userDomain = await this.identity.getDomain(user.domain_id);
    if (!user.enabled || !userDomain.enabled) throw new Unauthorized('The user or its domain is disabled.');
    const subject: Subject = { user, userDomain, roles: [] };
    if (payload.scope.kind === 'project') {
      subject.project = await this.identity.getProject(payload.scope.id);
      subject.projectDomain = await this.identity.getDomain(subject.project.domain_id);
      if (!subject.project.enabled || !subject.projectDomain.enabled) throw new Unauthorized(`Project ${payload.scope.id} is disabled.`);
      subject.roles = await this.identity.rolesOnTarget(user.id, 'project', payload.scope.id);
    } else if (payload.scope.kind === 'domain') {
      subject.domain = await this.identity.getDomain(payload.scope.id);
      if (!subject.domain.enabled) throw new Unauthorized(`Domain ${payload.scope.id} is disabled.`);
      subject.roles = await this.identity.rolesOnTarget(user.id, 'domain', payload.scope.id);
    } else if (payload.scope.kind === 'system') {
      subject.roles = await this.identity.rolesOnTarget(user.id, 'system', 'all');
    }
    if (payload.appCredId) {
      const credential = await this.identity.getApplicationCredential(user.id, payload.appCredId);
      // An application credential never grants more than its own roles, nor more than the user still has.
      const allowed = new Set(await this.identity.expandImplied(credential.roles.map((r) => r.id)));
      subject.roles = subject.roles.filter((r) => allowed.has(r.id));
      subject.appCred = { id: credential.id, name: credential.name, unrestricted: credential.unrestricted };
    }
    if (payload.scope.kind !== 'unscoped' && subject.roles.length === 0) throw new Unauthorized('No roles on the token scope.');
    this.subjects.set(key, { subject, generation: this.identity.generation, at: Date.now() });
    if (this.subjects.size > 10_000) this.subjects.clear();
    return subject;
  }

  private contextOf(token: string, payload: TokenPayload, subject: Subject): AuthContext {
    const roleNames = subject.roles.map((r) => r.name.toLowerCase());
    const scope = payload.scope.kind;
    return {
      token,
      userId: subject.user.id,
      userName: subject.user.name,
      userDomainId: subject.userDomain.id,
      userDomainName: subject.userDomain.name,
      methods: payload.methods,
      scope,
      projectId: subject.project?.id,
      projectName: subject.project?.name,
      projectDomainId: subject.projectDomain?.id,
      projectDomainName: subject.projectDomain?.name,
      domainId: subject.domain?.id,
      domainName: subject.domain?.name,
      roles: subject.roles.map((r) => ({ id: r.id, name: r.name })),
      issuedAt: payload.issuedAt,
      expiresAt: payload.expiresAt,
      auditIds: payload.auditIds,
      applicationCredentialId: subject.appCred?.id,
      credentials: {
        user_id: subject.user.id,
        user_domain_id: subject.userDomain.id,
        project_id: subject.project?.id,
        project_domain_id: subject.projectDomain?.id,
        domain_id: subject.domain?.id,
        system_scope: scope === 'system' ? 'all' : undefined,
        roles: roleNames,
      },
    };
  }

  /** The token document of GET/POST /v3/auth/tokens. */
  async tokenBody(context: AuthContext, includeCatalog: boolean): Promise<object> {
    const token: Record<string, unknown> = {
      methods: context.methods,
      user: { domain: { id: context.userDomainId, name: context.userDomainName }, id: context.userId, name: context.userName, password_expires_at: null },
      audit_ids: context.auditIds,
      expires_at: isoMicro(context.expiresAt),
      issued_at: isoMicro(context.issuedAt),
    };
    if (context.scope === 'project') {
      token.project = { domain: { id: context.projectDomainId, name: context.projectDomainName }, id: context.projectId, name: context.projectName };
      token.is_domain = false;
    } else if (context.scope === 'domain') {
      token.domain = { id: context.domainId, name: context.domainName };
    } else if (context.scope === 'system') {
      token.system = { all: true };
    }
    if (context.scope !== 'unscoped') {
      token.roles = context.roles;
      if (includeCatalog) token.catalog = await this.identity.catalog();
    }
    if (context.applicationCredentialId) {
      const credential = await this.identity.getApplicationCredential(context.userId, context.applicationCredentialId);
      token.application_credential = { id: credential.id, name: credential.name, restricted: !credential.unrestricted };
    }
    return { token };
  }

  // ------------------------------------------------------------ revocation
  /** DELETE /v3/auth/tokens: revokes this one token (by its audit id). */
  async revokeToken(token: string): Promise<void> {
    const payload = this.decode(token);
    await this.insertRevocation({ audit_id: payload.auditIds[0] });
  }

  private async recordRevocation(change: IdentityChange): Promise<void> {
    switch (change.kind) {
      case 'user-disabled': case 'user-deleted': case 'password-changed':
        return this.insertRevocation({ user_id: change.userId });
      case 'role-revoked': {
        const a = change.assignment;
        if (a.actor_type !== 'user') return;
        if (a.target_type === 'project') return this.insertRevocation({ user_id: a.actor_id, project_id: a.inherited ? null : a.target_id });
        if (a.target_type === 'domain') return this.insertRevocation({ user_id: a.actor_id, domain_id: a.inherited ? null : a.target_id });
        return this.insertRevocation({ user_id: a.actor_id });
      }
      case 'project-disabled': case 'project-deleted':
        return this.insertRevocation({ project_id: change.projectId });
      case 'domain-disabled': case 'domain-deleted':
        return this.insertRevocation({ domain_id: change.domainId });
      case 'app-cred-deleted':
        return this.insertRevocation({ application_credential_id: change.appCredId });
      default:
    }
  }

  private async insertRevocation(event: Partial<Omit<RevocationEvent, 'issued_before'>>): Promise<void> {
    const now = new Date();
    this.lastRevocationMs = Math.max(this.lastRevocationMs, now.getTime());
    await this.db.insertInto('identity_revocation_events').values({
      id: randomUUID(), audit_id: event.audit_id ?? null, audit_chain_id: event.audit_chain_id ?? null, user_id: event.user_id ?? null,
      project_id: event.project_id ?? null, domain_id: event.domain_id ?? null, application_credential_id: event.application_credential_id ?? null,
      issued_before: now.toISOString(), revoked_at: now.toISOString(),
    }).execute();
    // Events older than the longest token lifetime can match nothing any more.
    const horizon = new Date(now.getTime() - (this.expirationSeconds + 3600) * 1000).toISOString();
    await this.db.deleteFrom('identity_revocation_events').where('revoked_at', '<', horizon).execute();
    this.revocationsLoadedAt = 0;
    this.subjects.clear();
  }

  private async refreshRevocations(): Promise<void> {
    const now = Date.now();
    if (now - this.revocationsLoadedAt < 1000 && this.revocationsGeneration === this.identity.generation) return;
    const rows = await this.db.selectFrom('identity_revocation_events').selectAll().execute();
    this.revocations = rows.map((r) => ({
      audit_id: r.audit_id ?? null, audit_chain_id: r.audit_chain_id ?? null, user_id: r.user_id ?? null, project_id: r.project_id ?? null,
      domain_id: r.domain_id ?? null, application_credential_id: r.application_credential_id ?? null, issued_before: Date.parse(r.issued_before),
    }));
    this.revocationsLoadedAt = now;
    this.revocationsGeneration = this.identity.generation;
  }

  private isRevoked(payload: TokenPayload): boolean {
    const issued = payload.issuedAt.getTime();
    const scopeProject = payload.scope.kind === 'project' ? payload.scope.id : undefined;
    const scopeDomain = payload.scope.kind === 'domain' ? payload.scope.id : undefined;
    return this.revocations.some((e) => issued <= e.issued_before
      && (e.audit_id === null || e.audit_id === payload.auditIds[0])
      && (e.audit_chain_id === null || e.audit_chain_id === payload.auditIds[payload.auditIds.length - 1])
      && (e.user_id === null || e.user_id === payload.userId)
      && (e.project_id === null || e.project_id === scopeProject)
      // A disabled or deleted domain also fails the enabled checks of loadSubject for its users and projects.
      && (e.domain_id === null || e.domain_id === scopeDomain)
      && (e.application_credential_id === null || e.application_credential_id === payload.appCredId));
  }
}
