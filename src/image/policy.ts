// Glance's default policy with secure RBAC (project scope): readers read what they can see,
// members of the owning project change it, admins do anything. `publicize_image`,
// deactivate/reactivate stay admin-only as in Glance. The target of an image rule is
// { project_id: owner, member_id: the caller's project when it is a member, visibility }.
// A policy file ([oslo_policy] policy_file) can override any rule.
export const imagePolicyDefaults: Record<string, string> = {
  admin: 'role:admin',
  context_is_admin: 'role:admin',
  project_member: 'role:member and project_id:%(project_id)s',
  project_reader: 'role:reader and project_id:%(project_id)s',
  admin_or_project_member: 'rule:admin or rule:project_member',
  admin_or_project_reader: 'rule:admin or rule:project_reader',
  // Readers of the owner's project, of a member project, or anyone for public/community/shared images
  // (visibility to the caller is decided before policy, as Glance does).
  image_reader: "rule:admin or (role:reader and (project_id:%(project_id)s or project_id:%(member_id)s or 'community':%(visibility)s or 'public':%(visibility)s or 'shared':%(visibility)s))",

  add_image: 'rule:admin_or_project_member',
  delete_image: 'rule:admin_or_project_member',
  get_image: 'rule:image_reader',
  get_images: 'role:admin or (role:reader and project_id:%(project_id)s)',
  modify_image: 'rule:admin_or_project_member',
  publicize_image: 'rule:admin',
  communitize_image: 'rule:admin_or_project_member',
  download_image: 'rule:image_reader',
  upload_image: 'rule:admin_or_project_member',
  deactivate: 'rule:admin',
  reactivate: 'rule:admin',
  copy_image: 'rule:admin',

  add_member: 'rule:admin_or_project_member',
  delete_member: 'rule:admin_or_project_member',
  get_member: 'rule:admin or (role:reader and (project_id:%(project_id)s or project_id:%(member_id)s))',
  get_members: 'rule:admin or (role:reader and (project_id:%(project_id)s or project_id:%(member_id)s))',
  modify_member: 'rule:admin or (role:member and project_id:%(member_id)s)',

  stage_image: 'rule:admin_or_project_member',
  import_image: 'rule:admin_or_project_member',
  get_stores: 'role:reader',
};

/** Glance's rule names are unprefixed; ours live beside other services' in one engine. */
export const IMAGE_POLICY_PREFIX = 'image:';
export const imagePolicyRules: Record<string, string> = Object.fromEntries(
  Object.entries(imagePolicyDefaults).map(([name, rule]) => [
    `${IMAGE_POLICY_PREFIX}${name}`,
    rule.replace(/rule:([a-z_]+)/g, `rule:${IMAGE_POLICY_PREFIX}$1`),
  ]),
);
