// Tables for networks, segments, subnets, subnet pools, ports, fixed IPs (IP allocations),
// allowed address pairs, extra DHCP options, port ↔ security group bindings, tags, quotas, agents.
// Every resource row carries Neutron's standard attributes: project_id, description,
// created_at, updated_at, revision_number.
import type { CreateTableBuilder, Kysely, Migration } from 'kysely';

const uuid = 'varchar(64)';
const name = 'varchar(255)';
const time = 'varchar(32)';
const address = 'varchar(64)';

function standard<T extends string>(table: CreateTableBuilder<T, any>): CreateTableBuilder<T, any> {
  return table
    .addColumn('id', uuid, (c) => c.primaryKey())
    .addColumn('project_id', uuid, (c) => c.notNull())
    .addColumn('name', name, (c) => c.notNull().defaultTo(''))
    .addColumn('description', name, (c) => c.notNull().defaultTo(''))
    .addColumn('revision_number', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('created_at', time, (c) => c.notNull())
    .addColumn('updated_at', time, (c) => c.notNull());
}

export const coreMigration: Migration = {
  async up(db: Kysely<any>): Promise<void> {
    await standard(db.schema.createTable('network_networks'))
      .addColumn('admin_state_up', 'integer', (c) => c.notNull().defaultTo(1))
      .addColumn('shared', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('external', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('is_default', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('mtu', 'integer', (c) => c.notNull())
      .addColumn('port_security_enabled', 'integer', (c) => c.notNull().defaultTo(1))
      .addColumn('dns_domain', name, (c) => c.notNull().defaultTo(''))
      .addColumn('availability_zone_hints', 'text', (c) => c.notNull())
      .addColumn('status', 'varchar(16)', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('network_networks_project').on('network_networks').column('project_id').execute();

    // One segment per network. The key columns are never NULL so the unique index also holds on
    // PostgreSQL/MariaDB (where NULLs never collide): a flat network on a physnet has segmentation_key 0.
    await db.schema.createTable('network_segments')
      .addColumn('id', uuid, (c) => c.primaryKey())
      .addColumn('network_id', uuid, (c) => c.notNull())
      .addColumn('network_type', 'varchar(16)', (c) => c.notNull())
      .addColumn('physical_network', name)
      .addColumn('segmentation_id', 'integer')
      .addColumn('physnet_key', name, (c) => c.notNull())
      .addColumn('segmentation_key', 'integer', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('network_segments_network').on('network_segments').column('network_id').execute();
    await db.schema.createIndex('network_segments_unique').on('network_segments').columns(['network_type', 'physnet_key', 'segmentation_key']).unique().execute();

    await standard(db.schema.createTable('network_subnet_pools'))
      .addColumn('ip_version', 'integer', (c) => c.notNull())
      .addColumn('default_prefixlen', 'integer', (c) => c.notNull())
      .addColumn('min_prefixlen', 'integer', (c) => c.notNull())
      .addColumn('max_prefixlen', 'integer', (c) => c.notNull())
      .addColumn('default_quota', 'integer')
      .addColumn('is_default', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('shared', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('address_scope_id', uuid)
      .execute();
    await db.schema.createTable('network_subnet_pool_prefixes')
      .addColumn('subnetpool_id', uuid, (c) => c.notNull())
      .addColumn('cidr', address, (c) => c.notNull())
      .addPrimaryKeyConstraint('network_subnet_pool_prefixes_pk', ['subnetpool_id', 'cidr'])
      .execute();

    await standard(db.schema.createTable('network_subnets'))
      .addColumn('network_id', uuid, (c) => c.notNull())
      .addColumn('ip_version', 'integer', (c) => c.notNull())
      .addColumn('cidr', address, (c) => c.notNull())
      .addColumn('gateway_ip', address)
      .addColumn('enable_dhcp', 'integer', (c) => c.notNull().defaultTo(1))
      .addColumn('allocation_pools', 'text', (c) => c.notNull())
      .addColumn('dns_nameservers', 'text', (c) => c.notNull())
      .addColumn('host_routes', 'text', (c) => c.notNull())
      .addColumn('ipv6_ra_mode', 'varchar(32)')
      .addColumn('ipv6_address_mode', 'varchar(32)')
      .addColumn('subnetpool_id', uuid)
      .execute();
    await db.schema.createIndex('network_subnets_network').on('network_subnets').column('network_id').execute();

    await standard(db.schema.createTable('network_ports'))
      .addColumn('network_id', uuid, (c) => c.notNull())
      .addColumn('mac_address', 'varchar(32)', (c) => c.notNull())
      .addColumn('admin_state_up', 'integer', (c) => c.notNull().defaultTo(1))
      .addColumn('status', 'varchar(16)', (c) => c.notNull())
      .addColumn('device_id', name, (c) => c.notNull().defaultTo(''))
      .addColumn('device_owner', name, (c) => c.notNull().defaultTo(''))
      .addColumn('port_security_enabled', 'integer', (c) => c.notNull().defaultTo(1))
      .addColumn('binding_host_id', name, (c) => c.notNull().defaultTo(''))
      .addColumn('binding_vnic_type', 'varchar(32)', (c) => c.notNull().defaultTo('normal'))
      .addColumn('binding_vif_type', 'varchar(32)', (c) => c.notNull().defaultTo('unbound'))
      .addColumn('binding_vif_details', 'text', (c) => c.notNull())
      .addColumn('binding_profile', 'text', (c) => c.notNull())
      .addColumn('dns_name', name, (c) => c.notNull().defaultTo(''))
      .execute();
    await db.schema.createIndex('network_ports_mac').on('network_ports').columns(['network_id', 'mac_address']).unique().execute();
    await db.schema.createIndex('network_ports_device').on('network_ports').column('device_id').execute();
    await db.schema.createIndex('network_ports_project').on('network_ports').column('project_id').execute();

    // A port's fixed IPs. The unique index is what keeps concurrent creates from sharing an address.
    await db.schema.createTable('network_ip_allocations')
      .addColumn('port_id', uuid, (c) => c.notNull())
      .addColumn('subnet_id', uuid, (c) => c.notNull())
      .addColumn('network_id', uuid, (c) => c.notNull())
      .addColumn('ip_address', address, (c) => c.notNull())
      .execute();
    await db.schema.createIndex('network_ip_allocations_unique').on('network_ip_allocations').columns(['subnet_id', 'ip_address']).unique().execute();
    await db.schema.createIndex('network_ip_allocations_port').on('network_ip_allocations').column('port_id').execute();

    await db.schema.createTable('network_port_security_groups')
      .addColumn('port_id', uuid, (c) => c.notNull())
      .addColumn('security_group_id', uuid, (c) => c.notNull())
      .addPrimaryKeyConstraint('network_port_security_groups_pk', ['port_id', 'security_group_id'])
      .execute();
    await db.schema.createIndex('network_port_security_groups_group').on('network_port_security_groups').column('security_group_id').execute();

    await db.schema.createTable('network_allowed_address_pairs')
      .addColumn('port_id', uuid, (c) => c.notNull())
      .addColumn('ip_address', address, (c) => c.notNull())
      .addColumn('mac_address', 'varchar(32)', (c) => c.notNull())
      .addPrimaryKeyConstraint('network_allowed_address_pairs_pk', ['port_id', 'ip_address', 'mac_address'])
      .execute();

    await db.schema.createTable('network_extra_dhcp_opts')
      .addColumn('port_id', uuid, (c) => c.notNull())
      .addColumn('opt_name', 'varchar(64)', (c) => c.notNull())
      .addColumn('opt_value', name, (c) => c.notNull())
      .addColumn('ip_version', 'integer', (c) => c.notNull())
      .addPrimaryKeyConstraint('network_extra_dhcp_opts_pk', ['port_id', 'opt_name', 'ip_version'])
      .execute();

    await db.schema.createTable('network_tags')
      .addColumn('resource_type', 'varchar(32)', (c) => c.notNull())
      .addColumn('resource_id', uuid, (c) => c.notNull())
      .addColumn('tag', 'varchar(60)', (c) => c.notNull())
      .addPrimaryKeyConstraint('network_tags_pk', ['resource_type', 'resource_id', 'tag'])
      .execute();

    await db.schema.createTable('network_quotas')
      .addColumn('project_id', uuid, (c) => c.notNull())
      .addColumn('resource', 'varchar(32)', (c) => c.notNull())
      .addColumn('hard_limit', 'integer', (c) => c.notNull())
      .addPrimaryKeyConstraint('network_quotas_pk', ['project_id', 'resource'])
      .execute();

    await db.schema.createTable('network_agents')
      .addColumn('id', uuid, (c) => c.primaryKey())
      .addColumn('agent_type', 'varchar(64)', (c) => c.notNull())
      .addColumn('binary', 'varchar(64)', (c) => c.notNull())
      .addColumn('host', name, (c) => c.notNull())
      .addColumn('topic', name, (c) => c.notNull())
      .addColumn('availability_zone', name)
      .addColumn('admin_state_up', 'integer', (c) => c.notNull().defaultTo(1))
      .addColumn('configurations', 'text', (c) => c.notNull())
      .addColumn('description', name)
      .addColumn('created_at', time, (c) => c.notNull())
      .addColumn('started_at', time, (c) => c.notNull())
      .addColumn('heartbeat_timestamp', time, (c) => c.notNull())
      .execute();
    await db.schema.createIndex('network_agents_unique').on('network_agents').columns(['agent_type', 'host']).unique().execute();
  },
};
