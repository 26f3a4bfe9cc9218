// Nova's base policy rules (secure RBAC defaults, as nova/policies/base.py names them). Each
// API area registers its own os_compute_api:* rules on top of these.
export const computeBasePolicy: Record<string, string> = {
  context_is_admin: 'role:admin',
  admin_api: 'role:admin',
  project_member_api: 'role:member and project_id:%(project_id)s',
  project_reader_api: 'role:reader and project_id:%(project_id)s',
  project_member_or_admin: 'rule:project_member_api or rule:context_is_admin',
  project_reader_or_admin: 'rule:project_reader_api or rule:context_is_admin',
};
