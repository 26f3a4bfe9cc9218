// Tables for routers, router ports (interfaces and the gateway), static routes, floating IPs
// and port forwardings. Standard attributes on routers and floating IPs as on every resource.
import type { Kysely, Migration } from 'kysely';

const uuid = 'varchar(64)';
const name = 'varchar(255)';
const time = 'varchar(32)';
const address = 'varchar(64)';

export const l3Migration: Migration = {
  async up(db: Kysely<any>): Promise<void> {
    await db.schema.createTable('network_routers')
      .addColumn('id', uuid, (c) => c.primaryKey())
      .addColumn('project_id', uuid, (c) => c.notNull())
      .addColumn('name', name, (c) => c.notNull().defaultTo(''))
      .addColumn('description', name, (c) => c.notNull().defaultTo(''))
      .addColumn('admin_state_up', 'integer', (c) => c.notNull().defaultTo(1))
      .addColumn('status', 'varchar(16)', (c) => c.notNull())
      // The gateway port (network:router_gateway) on an external network, and ext-gw-mode's SNAT flag.
      .addColumn('gw_port_id', uuid)
      .addColumn('enable_snat', 'integer', (c) => c.notNull().defaultTo(1))
      .addColumn('availability_zone_hints', 'varchar(255)', (c) => c.notNull().defaultTo('[]'))
      .addColumn('revision_number', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('created_at', time, (c) => c.notNull())
      .addColumn('updated_at', time, (c) => c.notNull())
      .execute();
    await db.schema.createIndex('network_routers_project').on('network_routers').column('project_id').execute();

    // Each port belongs to at most one router (the primary key).
    await db.schema.createTable('network_router_ports')
      .addColumn('port_id', uuid, (c) => c.primaryKey())
      .addColumn('router_id', uuid, (c) => c.notNull())
      .addColumn('port_type', 'varchar(64)', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('network_router_ports_router').on('network_router_ports').column('router_id').execute();

    await db.schema.createTable('network_router_routes')
      .addColumn('router_id', uuid, (c) => c.notNull())
      .addColumn('destination', address, (c) => c.notNull())
      .addColumn('nexthop', address, (c) => c.notNull())
      .addPrimaryKeyConstraint('network_router_routes_pk', ['router_id', 'destination', 'nexthop'])
      .execute();

    await db.schema.createTable('network_floating_ips')
      .addColumn('id', uuid, (c) => c.primaryKey())
      .addColumn('project_id', uuid, (c) => c.notNull())
      .addColumn('description', name, (c) => c.notNull().defaultTo(''))
      .addColumn('floating_network_id', uuid, (c) => c.notNull())
      .addColumn('floating_port_id', uuid, (c) => c.notNull())
      .addColumn('floating_ip_address', address, (c) => c.notNull())
      .addColumn('fixed_port_id', uuid)
      .addColumn('fixed_ip_address', address)
      .addColumn('router_id', uuid)
      .addColumn('status', 'varchar(16)', (c) => c.notNull())
      .addColumn('revision_number', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('created_at', time, (c) => c.notNull())
      .addColumn('updated_at', time, (c) => c.notNull())
      .execute();
    await db.schema.createIndex('network_floating_ips_project').on('network_floating_ips').column('project_id').execute();
    await db.schema.createIndex('network_floating_ips_fixed_port').on('network_floating_ips').column('fixed_port_id').execute();
    // One floating IP per fixed address and external network, even under concurrent associations
    // (unassociated rows hold NULLs, which never collide on any engine).
    await db.schema.createIndex('network_floating_ips_fixed_unique').on('network_floating_ips')
      .columns(['floating_network_id', 'fixed_port_id', 'fixed_ip_address']).unique().execute();

    await db.schema.createTable('network_port_forwardings')
      .addColumn('id', uuid, (c) => c.primaryKey())
      .addColumn('floatingip_id', uuid, (c) => c.notNull())
      .addColumn('protocol', 'varchar(8)', (c) => c.notNull())
      .addColumn('external_port', 'integer', (c) => c.notNull())
      .addColumn('internal_port_id', uuid, (c) => c.notNull())
      .addColumn('internal_ip_address', address, (c) => c.notNull())
      .addColumn('internal_port', 'integer', (c) => c.notNull())
      .addColumn('description', name, (c) => c.notNull().defaultTo(''))
      .execute();
    // Neutron's two unique constraints: an external (fip, protocol, port) once, an internal socket once.
    await db.schema.createIndex('network_port_forwardings_external').on('network_port_forwardings')
      .columns(['floatingip_id', 'protocol', 'external_port']).unique().execute();
    await db.schema.createIndex('network_port_forwardings_internal').on('network_port_forwardings')
      .columns(['internal_port_id', 'internal_ip_address', 'internal_port', 'protocol']).unique().execute();
  },
};
