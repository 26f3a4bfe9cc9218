// Neutron's policy defaults (the legacy project-scoped rules operators know from policy.yaml).
// The base rules every area builds on are here; each API area registers its own per-resource
// rules (create_network, get_port:binding:host_id, ...) through NetworkApiArea.policy.
// Targets are the rendered resource plus `network:tenant_id` / `network:project_id` for
// resources on a network, so `admin_or_network_owner` works as in Neutron. oslo's
// `field:networks:shared=True` checks are written as `'True':%(shared)s` on that target.

export const BASE_POLICY: Record<string, string> = {
  context_is_admin: 'role:admin',
  context_is_advsvc: 'role:advsvc',
  // Neutron calls this rule `owner`; identity already has an `owner` rule in the one policy engine.
  resource_owner: 'project_id:%(project_id)s',
  admin_or_owner: 'rule:context_is_admin or rule:resource_owner',
  admin_only: 'rule:context_is_admin',
  regular_user: '',
  network_owner: 'project_id:%(network:project_id)s',
  admin_or_network_owner: 'rule:context_is_admin or rule:network_owner',
  admin_owner_or_network_owner: 'rule:resource_owner or rule:admin_or_network_owner',
  admin_or_data_plane_int: 'rule:context_is_admin or role:data_plane_integrator',
  shared: "'True':%(shared)s",
  external: "'True':%(router:external)s",
  shared_subnetpools: "'True':%(shared)s",
  default: 'rule:admin_or_owner',
};

/** Rules of the form `<action>_<resource>:<attribute>` for attributes only an admin may set or see. */
export function adminOnlyAttributes(actions: string[], resource: string, attributes: string[]): Record<string, string> {
  const rules: Record<string, string> = {};
  for (const action of actions) for (const attribute of attributes) rules[`${action}_${resource}:${attribute}`] = 'rule:admin_only';
  return rules;
}
