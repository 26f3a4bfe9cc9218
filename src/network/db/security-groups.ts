// Tables for security groups and rules. Port bindings (network_port_security_groups) belong to
// the core migration; these tables only hold the groups and their rules.
import type { Kysely, Migration } from 'kysely';

const uuid = 'varchar(64)';
const name = 'varchar(255)';
const time = 'varchar(32)';

export const securityGroupMigration: Migration = {
  async up(db: Kysely<any>): Promise<void> {
    await db.schema.createTable('network_security_groups')
      .addColumn('id', uuid, (c) => c.primaryKey())
      .addColumn('project_id', uuid, (c) => c.notNull())
      .addColumn('name', name, (c) => c.notNull())
      .addColumn('description', name, (c) => c.notNull().defaultTo(''))
      .addColumn('stateful', 'integer', (c) => c.notNull().defaultTo(1))
      // The project whose `default` group this is, else null. Unique, so two requests that both make a
      // project's default group at once cannot both succeed (Neutron's default_security_group table).
      .addColumn('default_for_project', uuid, (c) => c.unique())
      .addColumn('created_at', time, (c) => c.notNull())
      .addColumn('updated_at', time, (c) => c.notNull())
      .addColumn('revision_number', 'integer', (c) => c.notNull().defaultTo(0))
      .execute();
    await db.schema.createIndex('network_security_groups_project').on('network_security_groups').column('project_id').execute();

    await db.schema.createTable('network_security_group_rules')
      .addColumn('id', uuid, (c) => c.primaryKey())
      .addColumn('project_id', uuid, (c) => c.notNull())
      .addColumn('security_group_id', uuid, (c) => c.notNull())
      .addColumn('direction', 'varchar(16)', (c) => c.notNull())
      .addColumn('ethertype', 'varchar(8)', (c) => c.notNull())
      // Neutron keeps the protocol as given (a name or a number's decimal string), null = any.
      .addColumn('protocol', 'varchar(40)')
      .addColumn('port_range_min', 'integer')
      .addColumn('port_range_max', 'integer')
      .addColumn('remote_ip_prefix', name)
      .addColumn('remote_group_id', uuid)
      .addColumn('description', name, (c) => c.notNull().defaultTo(''))
      // What makes two rules the same (Neutron's _rule_to_key): unique, so concurrent creates of one
      // rule cannot both succeed.
      .addColumn('dedup_key', name, (c) => c.notNull().unique())
      .addColumn('created_at', time, (c) => c.notNull())
      .addColumn('updated_at', time, (c) => c.notNull())
      .addColumn('revision_number', 'integer', (c) => c.notNull().defaultTo(0))
      .execute();
    await db.schema.createIndex('network_security_group_rules_group').on('network_security_group_rules').column('security_group_id').execute();
    await db.schema.createIndex('network_security_group_rules_remote').on('network_security_group_rules').column('remote_group_id').execute();
    await db.schema.createIndex('network_security_group_rules_project').on('network_security_group_rules').column('project_id').execute();
  },
};
