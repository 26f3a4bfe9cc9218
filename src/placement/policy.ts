// Placement's default policy (placement/policies/*.py): almost everything is for admins and
// services (role:service, what Nova's and Neutron's service users hold); GET /usages is also
// open to readers of the project asked about. A policy file ([oslo_policy] policy_file) can
// override any rule.
export const PLACEMENT_POLICY_PREFIX = 'placement:';

const ADMIN_OR_SERVICE = 'rule:placement:admin_or_service_api';

const ACTIONS = [
  'resource_providers:list', 'resource_providers:create', 'resource_providers:show', 'resource_providers:update', 'resource_providers:delete',
  'resource_providers:inventories:list', 'resource_providers:inventories:create', 'resource_providers:inventories:show',
  'resource_providers:inventories:update', 'resource_providers:inventories:delete',
  'resource_providers:aggregates:list', 'resource_providers:aggregates:update',
  'resource_providers:usages',
  'resource_providers:traits:list', 'resource_providers:traits:update', 'resource_providers:traits:delete',
  'resource_providers:allocations:list',
  'resource_classes:list', 'resource_classes:create', 'resource_classes:show', 'resource_classes:update', 'resource_classes:delete',
  'traits:list', 'traits:show', 'traits:update', 'traits:delete',
  'allocations:list', 'allocations:manage', 'allocations:update', 'allocations:delete',
  'allocation_candidates:list',
  'reshaper:reshape',
];

export const placementPolicyRules: Record<string, string> = {
  'placement:admin_api': 'role:admin',
  'placement:service_api': 'role:service',
  'placement:admin_or_service_api': 'rule:placement:admin_api or rule:placement:service_api',
  'placement:project_reader_or_admin_or_service': 'rule:placement:admin_or_service_api or (role:reader and project_id:%(project_id)s)',
  ...Object.fromEntries(ACTIONS.map((action) => [`${PLACEMENT_POLICY_PREFIX}${action}`, ADMIN_OR_SERVICE])),
  'placement:usages': 'rule:placement:project_reader_or_admin_or_service',
};
