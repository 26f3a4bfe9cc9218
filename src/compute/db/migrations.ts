// Compute tables. Conventions (src/db): varchar ids, integer 0/1 booleans, ISO timestamps, JSON as text.
import type { Kysely, Migration } from 'kysely';

const uuid = 'varchar(64)';
const name = 'varchar(255)';
const time = 'varchar(32)';

async function createSchema(db: Kysely<any>): Promise<void> {
  // Flavors are keyed by their API id ("flavorid" in Nova); `auto` and other strings are valid ids.
  await db.schema.createTable('compute_flavors')
    .addColumn('id', name, (c) => c.primaryKey())
    .addColumn('name', name, (c) => c.notNull().unique())
    .addColumn('vcpus', 'integer', (c) => c.notNull())
    .addColumn('memory_mb', 'integer', (c) => c.notNull())
    .addColumn('root_gb', 'integer', (c) => c.notNull())
    .addColumn('ephemeral_gb', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('swap', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('rxtx_factor', 'double precision', (c) => c.notNull().defaultTo(1))
    .addColumn('is_public', 'integer', (c) => c.notNull().defaultTo(1))
    .addColumn('disabled', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('description', 'text')
    .addColumn('created_at', time, (c) => c.notNull())
    .addColumn('updated_at', time)
    .execute();
  await db.schema.createTable('compute_flavor_extra_specs')
    .addColumn('flavor_id', name, (c) => c.notNull())
    .addColumn('key', name, (c) => c.notNull())
    .addColumn('value', name, (c) => c.notNull())
    .addPrimaryKeyConstraint('compute_flavor_extra_specs_pk', ['flavor_id', 'key'])
    .execute();
  await db.schema.createTable('compute_flavor_projects')
    .addColumn('flavor_id', name, (c) => c.notNull())
    .addColumn('project_id', uuid, (c) => c.notNull())
    .addPrimaryKeyConstraint('compute_flavor_projects_pk', ['flavor_id', 'project_id'])
    .execute();

  await db.schema.createTable('compute_keypairs')
    /** Nova's integer keypair id (shown by GET /os-keypairs/{name}); allocated max(id)+1. */
    .addColumn('id', 'integer', (c) => c.notNull().unique())
    .addColumn('user_id', uuid, (c) => c.notNull())
    .addColumn('name', name, (c) => c.notNull())
    .addColumn('type', 'varchar(16)', (c) => c.notNull())
    .addColumn('public_key', 'text', (c) => c.notNull())
    .addColumn('fingerprint', name, (c) => c.notNull())
    .addColumn('created_at', time, (c) => c.notNull())
    .addPrimaryKeyConstraint('compute_keypairs_pk', ['user_id', 'name'])
    .execute();

  // Quota limits set by an admin; unset resources fall back to [quota] defaults. user_id '' = the project's own limit.
  await db.schema.createTable('compute_quotas')
    .addColumn('project_id', uuid, (c) => c.notNull())
    .addColumn('user_id', uuid, (c) => c.notNull())
    .addColumn('resource', name, (c) => c.notNull())
    .addColumn('hard_limit', 'integer', (c) => c.notNull())
    .addPrimaryKeyConstraint('compute_quotas_pk', ['project_id', 'user_id', 'resource'])
    .execute();

  // Quota class limits (os-quota-class-sets); the "default" class overrides the [quota] defaults.
  await db.schema.createTable('compute_quota_classes')
    .addColumn('class_name', name, (c) => c.notNull())
    .addColumn('resource', name, (c) => c.notNull())
    .addColumn('hard_limit', 'integer', (c) => c.notNull())
    .addPrimaryKeyConstraint('compute_quota_classes_pk', ['class_name', 'resource'])
    .execute();

  // One row per service process (nova-compute, nova-conductor, nova-scheduler): heartbeats go to updated_at.
  await db.schema.createTable('compute_services')
    .addColumn('id', uuid, (c) => c.primaryKey())
    .addColumn('host', name, (c) => c.notNull())
    .addColumn('binary', name, (c) => c.notNull())
    .addColumn('topic', name, (c) => c.notNull())
    .addColumn('disabled', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('disabled_reason', name)
    .addColumn('forced_down', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('report_count', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('version', 'integer', (c) => c.notNull().defaultTo(1))
    .addColumn('last_seen_up', time)
    .addColumn('created_at', time, (c) => c.notNull())
    .addColumn('updated_at', time)
    .addUniqueConstraint('compute_services_host_binary', ['host', 'binary'])
    .execute();

  // A hypervisor. Its uuid is also its resource provider's uuid in Placement.
  await db.schema.createTable('compute_nodes')
    .addColumn('id', uuid, (c) => c.primaryKey())
    .addColumn('service_id', uuid, (c) => c.notNull())
    .addColumn('host', name, (c) => c.notNull())
    .addColumn('hypervisor_hostname', name, (c) => c.notNull().unique())
    .addColumn('hypervisor_type', name, (c) => c.notNull())
    .addColumn('hypervisor_version', 'integer', (c) => c.notNull())
    .addColumn('host_ip', name)
    .addColumn('vcpus', 'integer', (c) => c.notNull())
    .addColumn('memory_mb', 'integer', (c) => c.notNull())
    .addColumn('local_gb', 'integer', (c) => c.notNull())
    .addColumn('cpu_allocation_ratio', 'double precision', (c) => c.notNull())
    .addColumn('ram_allocation_ratio', 'double precision', (c) => c.notNull())
    .addColumn('disk_allocation_ratio', 'double precision', (c) => c.notNull())
    .addColumn('reserved_host_memory_mb', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('reserved_host_disk_mb', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('reserved_host_cpus', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('cpu_info', 'text', (c) => c.notNull())
    /** JSON: [[arch, hypervisor_type, vm_mode], ...] for ImagePropertiesFilter. */
    .addColumn('supported_instances', 'text', (c) => c.notNull())
    /** JSON: driver capabilities and traits the host reports. */
    .addColumn('capabilities', 'text', (c) => c.notNull())
    /** JSON list of the provider's traits as last reported (the scheduler's ComputeCapabilitiesFilter reads them). */
    .addColumn('traits', 'text', (c) => c.notNull())
    /** Builds that failed on this host since its last success (BuildFailureWeigher). */
    .addColumn('failed_builds', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('created_at', time, (c) => c.notNull())
    .addColumn('updated_at', time)
    .execute();

  await db.schema.createTable('compute_aggregates')
    .addColumn('id', 'integer', (c) => c.primaryKey())
    .addColumn('uuid', uuid, (c) => c.notNull().unique())
    .addColumn('name', name, (c) => c.notNull().unique())
    .addColumn('created_at', time, (c) => c.notNull())
    .addColumn('updated_at', time)
    .execute();
  await db.schema.createTable('compute_aggregate_hosts')
    .addColumn('aggregate_id', 'integer', (c) => c.notNull())
    .addColumn('host', name, (c) => c.notNull())
    .addPrimaryKeyConstraint('compute_aggregate_hosts_pk', ['aggregate_id', 'host'])
    .execute();
  // availability_zone is metadata key "availability_zone", as in Nova.
  await db.schema.createTable('compute_aggregate_metadata')
    .addColumn('aggregate_id', 'integer', (c) => c.notNull())
    .addColumn('key', name, (c) => c.notNull())
    .addColumn('value', name, (c) => c.notNull())
    .addPrimaryKeyConstraint('compute_aggregate_metadata_pk', ['aggregate_id', 'key'])
    .execute();

  await db.schema.createTable('compute_server_groups')
    .addColumn('id', uuid, (c) => c.primaryKey())
    .addColumn('name', name, (c) => c.notNull())
    .addColumn('project_id', uuid, (c) => c.notNull())
    .addColumn('user_id', uuid, (c) => c.notNull())
    .addColumn('policy', 'varchar(32)', (c) => c.notNull())
    .addColumn('rules', 'text', (c) => c.notNull())
    .addColumn('created_at', time, (c) => c.notNull())
    .execute();
  await db.schema.createTable('compute_server_group_members')
    .addColumn('group_id', uuid, (c) => c.notNull())
    .addColumn('instance_uuid', uuid, (c) => c.notNull().unique())
    .addPrimaryKeyConstraint('compute_server_group_members_pk', ['group_id', 'instance_uuid'])
    .execute();

  // Servers. Deleted servers keep their row (deleted_at set) so admins can list them and changes-since sees them.
  await db.schema.createTable('compute_instances')
    .addColumn('id', uuid, (c) => c.primaryKey())
    .addColumn('name', name, (c) => c.notNull())
    .addColumn('description', 'text')
    .addColumn('project_id', uuid, (c) => c.notNull())
    .addColumn('user_id', uuid, (c) => c.notNull())
    .addColumn('hostname', name, (c) => c.notNull())
    .addColumn('host', name)
    .addColumn('node', name)
    /** The zone asked for at create (null = any), and the zone of the host it landed on. */
    .addColumn('requested_availability_zone', name)
    .addColumn('availability_zone', name)
    .addColumn('flavor_id', name, (c) => c.notNull())
    /** JSON snapshot of the flavor at create time (Nova embeds it; later flavor edits do not change servers). */
    .addColumn('flavor', 'text', (c) => c.notNull())
    .addColumn('image_ref', uuid)
    .addColumn('key_name', name)
    .addColumn('key_data', 'text')
    .addColumn('user_data', 'text')
    .addColumn('config_drive', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('vm_state', 'varchar(32)', (c) => c.notNull())
    .addColumn('task_state', 'varchar(32)')
    .addColumn('power_state', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('progress', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('locked', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('locked_by', 'varchar(16)')
    .addColumn('locked_reason', 'text')
    .addColumn('reservation_id', name, (c) => c.notNull())
    .addColumn('launch_index', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('access_ip_v4', name)
    .addColumn('access_ip_v6', name)
    .addColumn('admin_pass', name)
    /** JSON: the request's networks, security groups, scheduler hints, personality files. */
    .addColumn('request', 'text', (c) => c.notNull())
    .addColumn('launched_at', time)
    .addColumn('terminated_at', time)
    .addColumn('created_at', time, (c) => c.notNull())
    .addColumn('updated_at', time, (c) => c.notNull())
    .addColumn('deleted_at', time)
    .execute();
  await db.schema.createIndex('compute_instances_project').on('compute_instances').columns(['project_id', 'deleted_at']).execute();
  // (host, deleted_at): the scheduler counts live instances per host from the index alone.
  await db.schema.createIndex('compute_instances_host').on('compute_instances').columns(['host', 'deleted_at']).execute();
  await db.schema.createIndex('compute_instances_updated').on('compute_instances').column('updated_at').execute();

  await db.schema.createTable('compute_instance_metadata')
    .addColumn('instance_id', uuid, (c) => c.notNull())
    .addColumn('key', name, (c) => c.notNull())
    .addColumn('value', name, (c) => c.notNull())
    .addPrimaryKeyConstraint('compute_instance_metadata_pk', ['instance_id', 'key'])
    .execute();
  await db.schema.createTable('compute_instance_tags')
    .addColumn('instance_id', uuid, (c) => c.notNull())
    .addColumn('tag', 'varchar(60)', (c) => c.notNull())
    .addPrimaryKeyConstraint('compute_instance_tags_pk', ['instance_id', 'tag'])
    .execute();
  await db.schema.createTable('compute_instance_faults')
    .addColumn('instance_id', uuid, (c) => c.primaryKey())
    .addColumn('code', 'integer', (c) => c.notNull())
    .addColumn('message', 'text', (c) => c.notNull())
    .addColumn('details', 'text')
    .addColumn('created_at', time, (c) => c.notNull())
    .execute();
  await db.schema.createTable('compute_block_device_mappings')
    .addColumn('id', uuid, (c) => c.primaryKey())
    .addColumn('instance_id', uuid, (c) => c.notNull())
    .addColumn('boot_index', 'integer')
    .addColumn('source_type', 'varchar(16)', (c) => c.notNull())
    .addColumn('destination_type', 'varchar(16)', (c) => c.notNull())
    .addColumn('uuid', uuid)
    .addColumn('volume_size', 'integer')
    .addColumn('delete_on_termination', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('device_name', name)
    .addColumn('device_type', 'varchar(16)')
    .addColumn('disk_bus', 'varchar(16)')
    .addColumn('guest_format', 'varchar(16)')
    .execute();
  await db.schema.createIndex('compute_bdm_instance').on('compute_block_device_mappings').column('instance_id').execute();

  await db.schema.createTable('compute_instance_actions')
    .addColumn('id', uuid, (c) => c.primaryKey())
    .addColumn('instance_id', uuid, (c) => c.notNull())
    .addColumn('action', 'varchar(64)', (c) => c.notNull())
    .addColumn('request_id', name, (c) => c.notNull())
    .addColumn('user_id', uuid, (c) => c.notNull())
    .addColumn('project_id', uuid, (c) => c.notNull())
    .addColumn('message', 'text')
    .addColumn('start_time', time, (c) => c.notNull())
    .addColumn('updated_at', time, (c) => c.notNull())
    .execute();
  await db.schema.createIndex('compute_instance_actions_instance').on('compute_instance_actions').columns(['instance_id', 'request_id']).execute();
  await db.schema.createTable('compute_instance_action_events')
    .addColumn('id', uuid, (c) => c.primaryKey())
    .addColumn('action_id', uuid, (c) => c.notNull())
    .addColumn('event', 'varchar(64)', (c) => c.notNull())
    .addColumn('host', name)
    .addColumn('result', 'varchar(16)')
    .addColumn('traceback', 'text')
    .addColumn('details', 'text')
    .addColumn('start_time', time, (c) => c.notNull())
    .addColumn('finish_time', time)
    .execute();
  await db.schema.createIndex('compute_instance_action_events_action').on('compute_instance_action_events').column('action_id').execute();

  // A persisted multi-step operation (build, and later resize, migrate, shelve...). `step` is the last step reached;
  // a conductor that starts finds unfinished workflows and resumes or rolls each back.
  await db.schema.createTable('compute_workflows')
    .addColumn('id', uuid, (c) => c.primaryKey())
    .addColumn('kind', 'varchar(32)', (c) => c.notNull())
    .addColumn('instance_id', uuid, (c) => c.notNull())
    .addColumn('step', 'varchar(32)', (c) => c.notNull())
    .addColumn('status', 'varchar(16)', (c) => c.notNull())
    .addColumn('data', 'text', (c) => c.notNull())
    .addColumn('owner', name)
    .addColumn('lease_until', time)
    .addColumn('created_at', time, (c) => c.notNull())
    .addColumn('updated_at', time, (c) => c.notNull())
    .execute();
  await db.schema.createIndex('compute_workflows_status').on('compute_workflows').column('status').execute();
}

/**
 * Migrations of instances between hosts (resize, cold and live migration, evacuation), as os-migrations lists them.
 * Not `compute_migrations`: that is the name of this service's schema-migration table (src/db migrateService).
 */
async function createMigrations(db: Kysely<any>): Promise<void> {
  await db.schema.createTable('compute_instance_migrations')
    .addColumn('id', 'integer', (c) => c.primaryKey())
    .addColumn('uuid', uuid, (c) => c.notNull().unique())
    .addColumn('instance_id', uuid, (c) => c.notNull())
    .addColumn('migration_type', 'varchar(32)', (c) => c.notNull())
    .addColumn('status', 'varchar(32)', (c) => c.notNull())
    .addColumn('source_compute', name)
    .addColumn('source_node', name)
    .addColumn('dest_compute', name)
    .addColumn('dest_node', name)
    .addColumn('dest_host', name)
    .addColumn('old_flavor_id', name)
    .addColumn('new_flavor_id', name)
    /** JSON: the flavors before and after (a resize), so a revert or a resumed workflow knows both. */
    .addColumn('old_flavor', 'text')
    .addColumn('new_flavor', 'text')
    .addColumn('project_id', uuid, (c) => c.notNull())
    .addColumn('user_id', uuid, (c) => c.notNull())
    .addColumn('memory_total', 'bigint')
    .addColumn('memory_processed', 'bigint')
    .addColumn('memory_remaining', 'bigint')
    .addColumn('disk_total', 'bigint')
    .addColumn('disk_processed', 'bigint')
    .addColumn('disk_remaining', 'bigint')
    .addColumn('created_at', time, (c) => c.notNull())
    .addColumn('updated_at', time)
    .execute();
  await db.schema.createIndex('compute_instance_migrations_instance').on('compute_instance_migrations').column('instance_id').execute();
}

/** Nova's instance system_metadata: what the service itself remembers of an instance (shelved_image_id, shelved_at, ...). */
async function createSystemMetadata(db: Kysely<any>): Promise<void> {
  await db.schema.createTable('compute_instance_system_metadata')
    .addColumn('instance_id', uuid, (c) => c.notNull())
    .addColumn('key', name, (c) => c.notNull())
    .addColumn('value', 'text')
    .addPrimaryKeyConstraint('compute_instance_system_metadata_pk', ['instance_id', 'key'])
    .execute();
}

/**
 * Remote console tokens (Nova's console_auth_tokens: only the token's SHA-256 is kept), and two small per-instance
 * records the extras need: the encrypted password the metadata service stores (os-server-password; Nova keeps it in
 * system_metadata) and when a server was soft-deleted (what the reclaim task ages; Nova uses deleted_at, which here
 * means the row is really deleted).
 */
async function createConsoleTokens(db: Kysely<any>): Promise<void> {
  await db.schema.createTable('compute_console_tokens')
    .addColumn('id', uuid, (c) => c.primaryKey())
    .addColumn('token_hash', 'varchar(64)', (c) => c.notNull().unique())
    .addColumn('console_type', 'varchar(32)', (c) => c.notNull())
    .addColumn('instance_id', uuid, (c) => c.notNull())
    .addColumn('host', name, (c) => c.notNull())
    /** The VNC server's TCP port on the host, or null when the driver serves a unix socket (internal_access_path). */
    .addColumn('port', 'integer')
    .addColumn('internal_access_path', 'text')
    .addColumn('access_url_base', 'text', (c) => c.notNull())
    .addColumn('expires_at', time, (c) => c.notNull())
    .addColumn('created_at', time, (c) => c.notNull())
    .execute();
  await db.schema.createIndex('compute_console_tokens_instance').on('compute_console_tokens').column('instance_id').execute();
  await db.schema.createTable('compute_server_passwords')
    .addColumn('instance_id', uuid, (c) => c.primaryKey())
    .addColumn('password', 'text', (c) => c.notNull())
    .addColumn('updated_at', time, (c) => c.notNull())
    .execute();
  await db.schema.createTable('compute_soft_deletes')
    .addColumn('instance_id', uuid, (c) => c.primaryKey())
    /** The instance action of the soft delete: the reclaim's terminate event is recorded under it. */
    .addColumn('action_id', uuid, (c) => c.notNull())
    .addColumn('soft_deleted_at', time, (c) => c.notNull())
    .execute();
}

/** Nova's network info cache: the ports of each instance in device order, and which the user brought (kept on delete). */
async function createInstancePorts(db: Kysely<any>): Promise<void> {
  await db.schema.createTable('compute_instance_ports')
    .addColumn('port_id', uuid, (c) => c.primaryKey())
    .addColumn('instance_id', uuid, (c) => c.notNull())
    .addColumn('network_id', uuid, (c) => c.notNull())
    .addColumn('preserve_on_delete', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('tag', name)
    .addColumn('position', 'integer', (c) => c.notNull())
    .addColumn('created_at', time, (c) => c.notNull())
    .execute();
  await db.schema.createIndex('compute_instance_ports_instance').on('compute_instance_ports').column('instance_id').execute();
}

export const computeMigrations: Record<string, Migration> = {
  '0001_compute_schema': { up: createSchema },
  '0002_instance_migrations': { up: createMigrations },
  '0003_compute_system_metadata': { up: createSystemMetadata },
  '0004_console_tokens': { up: createConsoleTokens },
  '0005_instance_ports': { up: createInstancePorts },
};
