// First-start bootstrap, safe to run on every start: the default domain, the three
// default roles (admin implies member implies reader), the region, the admin and demo
// projects and users, and a catalog entry with three interfaces for every service.
import { randomBytes } from 'node:crypto';
import { NotFound } from '../core/errors.js';
import { DEFAULT_DOMAIN_ID, type IdentityService, type Role } from './service.js';

export interface CatalogService { type: string; name: string; url: string; description?: string }
export interface BootstrapOptions {
  region: string;
  adminPassword?: string;
  demoPassword?: string;
  services: CatalogService[];
}
export interface BootstrapResult {
  /** Passwords set by this run (new users, or passwords given explicitly); absent when unchanged. */
  passwords: { admin?: string; demo?: string };
}

async function ensure<T>(find: () => Promise<T>, create: () => Promise<T>): Promise<{ value: T; created: boolean }> {
  try {
    return { value: await find(), created: false };
  } catch (err) {
    if (!(err instanceof NotFound)) throw err;
    return { value: await create(), created: true };
  }
}

export async function bootstrapIdentity(identity: IdentityService, options: BootstrapOptions): Promise<BootstrapResult> {
  await ensure(() => identity.getDomain(DEFAULT_DOMAIN_ID), () => identity.createDomain({ id: DEFAULT_DOMAIN_ID, name: 'Default', description: 'The default domain' }));
  const roles: Record<string, Role> = {};
  for (const name of ['admin', 'member', 'reader']) {
    roles[name] = (await ensure(() => identity.findRoleByName(name), () => identity.createRole({ name }))).value;
  }
  await identity.createImpliedRole(roles.admin.id, roles.member.id);
  await identity.createImpliedRole(roles.member.id, roles.reader.id);
  await ensure(() => identity.getRegion(options.region), () => identity.createRegion({ id: options.region }));

  const passwords: BootstrapResult['passwords'] = {};
  for (const [persona, roleName, given] of [['admin', 'admin', options.adminPassword], ['demo', 'member', options.demoPassword]] as const) {
    const project = (await ensure(() => identity.findProjectByName(persona, DEFAULT_DOMAIN_ID),
      () => identity.createProject({ name: persona, domain_id: DEFAULT_DOMAIN_ID, description: `Bootstrap project ${persona}` }))).value;
    const password = given ?? randomBytes(12).toString('hex');
    const user = await ensure(() => identity.findUserByName(persona, DEFAULT_DOMAIN_ID),
      () => identity.createUser({ name: persona, domain_id: DEFAULT_DOMAIN_ID, password, default_project_id: project.id }));
    if (user.created) passwords[persona] = password;
    else if (given) {
      // An explicitly given password wins over the stored one, as keystone-manage bootstrap does.
      await identity.checkPassword(user.value.id, given).catch(async () => { await identity.updateUser(user.value.id, { password: given }); });
      passwords[persona] = given;
    }
    await identity.grantRole({ actor_type: 'user', actor_id: user.value.id, target_type: 'project', target_id: project.id, role_id: roles[roleName].id, inherited: false });
    if (persona === 'admin') {
      await identity.grantRole({ actor_type: 'user', actor_id: user.value.id, target_type: 'system', target_id: 'all', role_id: roles.admin.id, inherited: false });
    }
  }

  // The catalog follows where the services are served now (host and port may change between starts).
  for (const wanted of options.services) {
    const service = (await identity.listServices({ type: wanted.type })).find((s) => s.name === wanted.name)
      ?? await identity.createService({ type: wanted.type, name: wanted.name, description: wanted.description });
    const endpoints = await identity.listEndpoints({ service_id: service.id });
    for (const iface of ['public', 'internal', 'admin']) {
      const existing = endpoints.find((e) => e.interface === iface && e.region_id === options.region);
      if (!existing) await identity.createEndpoint({ service_id: service.id, interface: iface, url: wanted.url, region_id: options.region });
      else if (existing.url !== wanted.url) await identity.updateEndpoint(existing.id, { url: wanted.url });
    }
  }
  return { passwords };
}
