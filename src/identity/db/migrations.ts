// Identity tables. Conventions (src/db): varchar ids, integer 0/1 booleans, ISO timestamps, JSON as text.
import type { Kysely, Migration } from 'kysely';

const id = 'varchar(64)';
const name = 'varchar(255)';

async function createSchema(db: Kysely<any>): Promise<void> {
  await db.schema.createTable('identity_domains')
    .addColumn('id', id, (c) => c.primaryKey())
    .addColumn('name', name, (c) => c.notNull().unique())
    .addColumn('description', 'text')
    .addColumn('enabled', 'integer', (c) => c.notNull().defaultTo(1))
    .addColumn('tags', 'text', (c) => c.notNull())
    .addColumn('options', 'text', (c) => c.notNull())
    .addColumn('extra', 'text', (c) => c.notNull())
    .execute();

  await db.schema.createTable('identity_projects')
    .addColumn('id', id, (c) => c.primaryKey())
    .addColumn('name', name, (c) => c.notNull())
    .addColumn('domain_id', id, (c) => c.notNull().references('identity_domains.id'))
    .addColumn('parent_id', id)
    .addColumn('description', 'text')
    .addColumn('enabled', 'integer', (c) => c.notNull().defaultTo(1))
    .addColumn('tags', 'text', (c) => c.notNull())
    .addColumn('options', 'text', (c) => c.notNull())
    .addColumn('extra', 'text', (c) => c.notNull())
    .addUniqueConstraint('identity_projects_domain_name', ['domain_id', 'name'])
    .execute();

  await db.schema.createTable('identity_users')
    .addColumn('id', id, (c) => c.primaryKey())
    .addColumn('name', name, (c) => c.notNull())
    .addColumn('domain_id', id, (c) => c.notNull().references('identity_domains.id'))
    .addColumn('enabled', 'integer', (c) => c.notNull().defaultTo(1))
    .addColumn('password_hash', 'varchar(255)')
    .addColumn('password_expires_at', 'varchar(32)')
    .addColumn('default_project_id', id)
    .addColumn('description', 'text')
    .addColumn('options', 'text', (c) => c.notNull())
    .addColumn('extra', 'text', (c) => c.notNull())
    .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
    .addColumn('password_changed_at', 'varchar(32)')
    .addUniqueConstraint('identity_users_domain_name', ['domain_id', 'name'])
    .execute();

  await db.schema.createTable('identity_groups')
    .addColumn('id', id, (c) => c.primaryKey())
    .addColumn('name', name, (c) => c.notNull())
    .addColumn('domain_id', id, (c) => c.notNull().references('identity_domains.id'))
    .addColumn('description', 'text')
    .addColumn('extra', 'text', (c) => c.notNull())
    .addUniqueConstraint('identity_groups_domain_name', ['domain_id', 'name'])
    .execute();

  await db.schema.createTable('identity_group_members')
    .addColumn('group_id', id, (c) => c.notNull().references('identity_groups.id').onDelete('cascade'))
    .addColumn('user_id', id, (c) => c.notNull().references('identity_users.id').onDelete('cascade'))
    .addPrimaryKeyConstraint('identity_group_members_pk', ['group_id', 'user_id'])
    .execute();

  // domain_id '' marks a global role: a NULL would not take part in the unique constraint.
  await db.schema.createTable('identity_roles')
    .addColumn('id', id, (c) => c.primaryKey())
    .addColumn('name', name, (c) => c.notNull())
    .addColumn('domain_id', id, (c) => c.notNull().defaultTo(''))
    .addColumn('description', 'text')
    .addColumn('options', 'text', (c) => c.notNull())
    .addColumn('extra', 'text', (c) => c.notNull())
    .addUniqueConstraint('identity_roles_domain_name', ['domain_id', 'name'])
    .execute();

  await db.schema.createTable('identity_implied_roles')
    .addColumn('prior_role_id', id, (c) => c.notNull().references('identity_roles.id').onDelete('cascade'))
    .addColumn('implied_role_id', id, (c) => c.notNull().references('identity_roles.id').onDelete('cascade'))
    .addPrimaryKeyConstraint('identity_implied_roles_pk', ['prior_role_id', 'implied_role_id'])
    .execute();

  // One row per grant. actor_type user|group, target_type project|domain|system (target_id 'all' for system).
  await db.schema.createTable('identity_assignments')
    .addColumn('actor_type', 'varchar(16)', (c) => c.notNull())
    .addColumn('actor_id', id, (c) => c.notNull())
    .addColumn('target_type', 'varchar(16)', (c) => c.notNull())
    .addColumn('target_id', id, (c) => c.notNull())
    .addColumn('role_id', id, (c) => c.notNull().references('identity_roles.id').onDelete('cascade'))
    .addColumn('inherited', 'integer', (c) => c.notNull().defaultTo(0))
    .addPrimaryKeyConstraint('identity_assignments_pk', ['actor_type', 'actor_id', 'target_type', 'target_id', 'role_id', 'inherited'])
    .execute();
  await db.schema.createIndex('identity_assignments_target').on('identity_assignments').columns(['target_type', 'target_id']).execute();

  await db.schema.createTable('identity_regions')
    .addColumn('id', name, (c) => c.primaryKey())
    .addColumn('description', 'text')
    .addColumn('parent_region_id', name)
    .addColumn('extra', 'text', (c) => c.notNull())
    .execute();

  await db.schema.createTable('identity_services')
    .addColumn('id', id, (c) => c.primaryKey())
    .addColumn('type', name, (c) => c.notNull())
    .addColumn('name', name)
    .addColumn('description', 'text')
    .addColumn('enabled', 'integer', (c) => c.notNull().defaultTo(1))
    .addColumn('extra', 'text', (c) => c.notNull())
    .execute();

  await db.schema.createTable('identity_endpoints')
    .addColumn('id', id, (c) => c.primaryKey())
    .addColumn('service_id', id, (c) => c.notNull().references('identity_services.id'))
    .addColumn('interface', 'varchar(16)', (c) => c.notNull())
    .addColumn('url', 'text', (c) => c.notNull())
    .addColumn('region_id', name)
    .addColumn('enabled', 'integer', (c) => c.notNull().defaultTo(1))
    .addColumn('extra', 'text', (c) => c.notNull())
    .execute();

  await db.schema.createTable('identity_application_credentials')
    .addColumn('id', id, (c) => c.primaryKey())
    .addColumn('name', name, (c) => c.notNull())
    .addColumn('user_id', id, (c) => c.notNull().references('identity_users.id').onDelete('cascade'))
    .addColumn('project_id', id, (c) => c.notNull())
    .addColumn('secret_hash', 'varchar(255)', (c) => c.notNull())
    .addColumn('description', 'text')
    .addColumn('expires_at', 'varchar(32)')
    .addColumn('unrestricted', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('roles', 'text', (c) => c.notNull())
    .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
    .addUniqueConstraint('identity_app_creds_user_name', ['user_id', 'name'])
    .execute();

  // Revocation events, as Keystone keeps them: a token is revoked when an event matches it
  // and the token was issued at or before `issued_before`.
  await db.schema.createTable('identity_revocation_events')
    .addColumn('id', 'varchar(64)', (c) => c.primaryKey())
    .addColumn('audit_id', 'varchar(64)')
    .addColumn('audit_chain_id', 'varchar(64)')
    .addColumn('user_id', id)
    .addColumn('project_id', id)
    .addColumn('domain_id', id)
    .addColumn('application_credential_id', id)
    .addColumn('issued_before', 'varchar(32)', (c) => c.notNull())
    .addColumn('revoked_at', 'varchar(32)', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('identity_revocation_events_revoked_at').on('identity_revocation_events').column('revoked_at').execute();
}

export const identityMigrations: Record<string, Migration> = {
  '0001_identity_schema': { up: createSchema },
};
