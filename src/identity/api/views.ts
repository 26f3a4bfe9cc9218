// Render identity domain objects as the Keystone v3 API shows them.
import type { FastifyRequest } from 'fastify';
import type { Domain, Project, User, Group, Role, Region, Service, Endpoint, ApplicationCredential } from '../service.js';
import { v3Url, withLinks } from './common.js';

export const domainView = (r: FastifyRequest, d: Domain) =>
  withLinks(r, 'domains', { ...d.extra, id: d.id, name: d.name, description: d.description, enabled: d.enabled, tags: d.tags, options: d.options });

export const projectView = (r: FastifyRequest, p: Project) =>
  withLinks(r, 'projects', { ...p.extra, id: p.id, name: p.name, domain_id: p.domain_id, parent_id: p.parent_id ?? p.domain_id, description: p.description, enabled: p.enabled, is_domain: false, tags: p.tags, options: p.options });

export const userView = (r: FastifyRequest, u: User) =>
  withLinks(r, 'users', {
    ...u.extra, id: u.id, name: u.name, domain_id: u.domain_id, enabled: u.enabled, password_expires_at: u.password_expires_at, options: u.options,
    ...(u.default_project_id ? { default_project_id: u.default_project_id } : {}),
    ...(u.description !== null ? { description: u.description } : {}),
  });

export const groupView = (r: FastifyRequest, g: Group) =>
  withLinks(r, 'groups', { ...g.extra, id: g.id, name: g.name, domain_id: g.domain_id, description: g.description });

export const roleView = (r: FastifyRequest, role: Role) =>
  withLinks(r, 'roles', { ...role.extra, id: role.id, name: role.name, domain_id: role.domain_id, description: role.description, options: role.options });

/** The short role form used inside implied-role documents. */
export const roleRef = (r: FastifyRequest, role: Role) => ({ id: role.id, name: role.name, links: { self: v3Url(r, `/roles/${role.id}`) } });

export const regionView = (r: FastifyRequest, region: Region) =>
  withLinks(r, 'regions', { ...region.extra, id: region.id, description: region.description, parent_region_id: region.parent_region_id });

export const serviceView = (r: FastifyRequest, s: Service) =>
  withLinks(r, 'services', { ...s.extra, id: s.id, type: s.type, name: s.name, description: s.description, enabled: s.enabled });

export const endpointView = (r: FastifyRequest, e: Endpoint) =>
  withLinks(r, 'endpoints', { ...e.extra, id: e.id, service_id: e.service_id, interface: e.interface, url: e.url, region_id: e.region_id, region: e.region_id, enabled: e.enabled });

export const appCredView = (r: FastifyRequest, c: ApplicationCredential & { secret?: string }) => ({
  id: c.id, name: c.name, description: c.description, user_id: c.user_id, project_id: c.project_id, expires_at: c.expires_at,
  unrestricted: c.unrestricted, roles: c.roles, access_rules: [], ...(c.secret !== undefined ? { secret: c.secret } : {}),
  links: { self: v3Url(r, `/users/${c.user_id}/application_credentials/${c.id}`) },
});
