// Moving a server between hosts while it runs, or away from a failed host: live migration
// (os-migrateLive), its force-complete and abort (server migrations), and evacuate. The API
// checks of Nova's compute API live here; the work is a persisted workflow in the conductor
// (conductor/live-migrate.ts, conductor/evacuate.ts) with a migration record as its checkpoint.
import { randomBytes } from 'node:crypto';
import { BadRequest, Conflict, NotFound } from '../core/errors.js';
import type { Database } from '../db/index.js';
import type { Bus } from '../bus/types.js';
import type { InstanceActionStore } from './actions.js';
import type { EvacuateData } from './conductor/evacuate.js';
import { LIVE_MIGRATION_TASK, type LiveMigrateData } from './conductor/live-migrate.js';
import type { HostService } from './hosts.js';
import { VmState, type Instance, type InstanceStore } from './instances.js';
import type { ServerActions } from './lifecycle.js';
import type { Migration, MigrationStore } from './migrations.js';
import { agentClient } from './rpc.js';
import type { Caller } from './servers.js';

export interface ServerMoveDeps {
  database: Database;
  bus: Bus;
  instances: InstanceStore;
  actions: InstanceActionStore;
  hosts: HostService;
  migrations: MigrationStore;
  lifecycle: ServerActions;
  rpcTimeoutMs: number;
}

/** Live migrations GET /servers/{id}/migrations shows (Nova's in-progress statuses for them). */
export const LIVE_IN_PROGRESS = ['queued', 'preparing', 'running', 'post-migrating'];

export class ServerMoves {
  constructor(private readonly deps: ServerMoveDeps) {}

  /**
   * os-migrateLive. The quick checks answer at once (400/409); scheduling and the transfer run in the
   * workflow. Callers before 2.34 (`waitForPrechecks`) get the pre-checks' and the scheduler's refusal as a 400.
   */
  async liveMigrate(caller: Caller, instance: Instance, options: { host: string | null; blockMigration: boolean | null; force: boolean; waitForPrechecks: boolean }): Promise<Migration> {
    const spec = { apiName: 'os-migrateLive', action: 'live-migration', vmStates: [VmState.ACTIVE, VmState.PAUSED], taskState: LIVE_MIGRATION_TASK };
    const { lifecycle, hosts } = this.deps;
    lifecycle.checkLock(caller, instance);
    lifecycle.checkState(instance, spec, spec.apiName);
    const source = instance.host;
    if (!source) throw new Conflict(`Instance ${instance.id} is not ready`);
    if (options.host !== null) {
      if (!(await hosts.hostExists(options.host))) throw new BadRequest(`Compute host ${options.host} could not be found.`);
      if (options.host === source) throw new BadRequest(`Unable to migrate instance (${instance.id}) to current host (${source}).`);
      if (!(await hosts.isHostUp(options.host))) throw new BadRequest(`Compute service of ${options.host} is unavailable at this time.`);
    }
    if (!(await hosts.isHostUp(source))) throw new BadRequest(`Compute service of ${source} is unavailable at this time.`);
    const data = await lifecycle.startTaskWith<LiveMigrateData>(caller, instance, spec, 'live-migrate', async (actionId, trx) => {
      const migration = await this.deps.migrations.create({
        instanceId: instance.id, migrationType: 'live-migration', status: 'accepted', projectId: caller.projectId, userId: caller.userId,
        sourceCompute: source, sourceNode: instance.node, destCompute: options.host,
      }, trx);
      return { actionId, migrationId: migration.id, requestedHost: options.host, force: options.force, blockMigration: options.blockMigration };
    });
    let migration = await this.deps.migrations.get(data.migrationId);
    if (options.waitForPrechecks) {
      const deadline = Date.now() + this.deps.rpcTimeoutMs;
      while (migration.status === 'accepted' && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
        migration = await this.deps.migrations.get(data.migrationId);
      }
      if (migration.status === 'error') {
        const now = await this.deps.instances.get(instance.id);
        throw new BadRequest(now.fault?.message ?? 'Migration pre-check error');
      }
    }
    return migration;
  }

  /** The instance's migration `id`, or the caller's error (`notFound` builds it: a 400 or a 404 depending on the call). */
  private async migrationOf(instance: Instance, id: string, notFound: (message: string) => Error): Promise<Migration> {
    const message = `Migration ${id} not found for instance ${instance.id}`;
    if (!/^\d+$/.test(id)) throw notFound(message);
    const migration = await this.deps.migrations.get(Number(id)).catch(() => undefined);
    if (!migration || migration.instanceId !== instance.id) throw notFound(message);
    return migration;
  }

  private checkMigrating(caller: Caller, instance: Instance, apiName: string): void {
    this.deps.lifecycle.checkLock(caller, instance);
    this.deps.lifecycle.checkState(instance, { vmStates: [instance.vmState], taskStates: [LIVE_MIGRATION_TASK] }, apiName);
  }

  /** POST /servers/{id}/migrations/{mid}/action force_complete (2.22): the source finishes the transfer now. */
  async forceComplete(caller: Caller, instance: Instance, migrationId: string): Promise<void> {
    this.checkMigrating(caller, instance, 'force_complete');
    const migration = await this.migrationOf(instance, migrationId, (m) => new BadRequest(m));
    if (migration.status !== 'running') throw invalidState(migration, 'force complete');
    const action = await this.deps.actions.start(instance.id, 'live_migration_force_complete', caller);
    const source = migration.sourceCompute!;
    await this.deps.actions.withEvent(action.id, 'compute_live_migration_force_complete', source,
      () => this.agent(source).forceCompleteLiveMigration({ uuid: instance.id }).catch((err) => {
        throw new Conflict(`Cannot force complete the live migration of ${instance.id}: ${(err as Error).message}`);
      }));
  }

  /**
   * DELETE /servers/{id}/migrations/{mid} (2.24): a running transfer is cancelled on the source; from 2.65 a
   * queued or preparing one is cancelled before it starts. The workflow then rolls back: the instance stays ACTIVE where it was.
   */
  async abort(caller: Caller, instance: Instance, migrationId: string, inQueueToo: boolean): Promise<void> {
    this.checkMigrating(caller, instance, 'abort live migration');
    const migration = await this.migrationOf(instance, migrationId, (m) => new NotFound(m));
    if (migration.migrationType !== 'live-migration') throw invalidState(migration, 'abort live migration');
    const queued = ['queued', 'preparing'];
    const allowed = inQueueToo ? [...queued, 'running'] : ['running'];
    if (!allowed.includes(migration.status)) throw invalidState(migration, 'abort live migration');
    const action = await this.deps.actions.start(instance.id, 'live_migration_cancel', caller);
    const source = migration.sourceCompute!;
    await this.deps.actions.withEvent(action.id, 'compute_live_migration_abort', source, async () => {
      if (queued.includes(migration.status) && await this.deps.migrations.updateIf(migration.id, queued, { status: 'cancelled' })) return;
      // Running (or it started meanwhile): the source cancels the job; the workflow sees it and rolls back.
      await this.agent(source).abortLiveMigration({ uuid: instance.id }).catch((err) => {
        throw new BadRequest(`Migration ${migration.id} of instance ${instance.id} cannot be aborted: ${(err as Error).message}`);
      });
    });
  }

  /** GET /servers/{id}/migrations: its live migrations in progress. */
  inProgress(instance: Instance): Promise<Migration[]> {
    return this.deps.migrations.list({ instanceId: instance.id, migrationType: 'live-migration', status: LIVE_IN_PROGRESS });
  }

  /** GET /servers/{id}/migrations/{mid}: 404 in Nova's words unless it is an in-progress live migration of this server. */
  async showInProgress(instance: Instance, id: string): Promise<Migration> {
    const notFound = new NotFound(`In-progress live migration ${id} is not found for server ${instance.id}.`);
    if (!/^\d+$/.test(id)) throw notFound;
    const migration = await this.deps.migrations.get(Number(id)).catch(() => undefined);
    if (!migration || migration.instanceId !== instance.id) throw notFound;
    if (migration.migrationType !== 'live-migration') throw new NotFound(`Migration ${id} for server ${instance.id} is not live-migration.`);
    if (!LIVE_IN_PROGRESS.includes(migration.status)) throw new NotFound(`Live migration ${id} for server ${instance.id} is not in progress.`);
    return migration;
  }

  /**
   * evacuate (admin): only when the source's compute service is down or forced down. Rebuilds the instance on
   * another host (the scheduler's, or the given one, checked unless forced). Resolves with the guest's password.
   */
  async evacuate(caller: Caller, instance: Instance, options: { host: string | null; force: boolean; adminPass: string | null }): Promise<{ adminPass: string | null }> {
    const spec = { apiName: 'evacuate', action: 'evacuate', vmStates: [VmState.ACTIVE, VmState.STOPPED, VmState.ERROR], taskState: 'rebuilding' };
    const { lifecycle, hosts } = this.deps;
    lifecycle.checkState(instance, spec, spec.apiName);
    const source = instance.host;
    if (!source) throw new Conflict(`Instance ${instance.id} is not ready`);
    if (await hosts.isHostUp(source)) throw new BadRequest(`Compute service of ${source} is still in use.`);
    const adminPass = options.adminPass;
    // Evacuate is an admin's action on a locked server too (Nova checks no lock for it).
    const asAdmin = { ...caller, isAdmin: true };
    await lifecycle.startTaskWith<EvacuateData>(asAdmin, instance, spec, 'evacuate', async (actionId, trx) => {
      const migration = await this.deps.migrations.create({
        instanceId: instance.id, migrationType: 'evacuation', status: 'accepted', projectId: caller.projectId, userId: caller.userId,
        sourceCompute: source, sourceNode: instance.node, destCompute: options.host,
      }, trx);
      return { actionId, migrationId: migration.id, requestedHost: options.host, force: options.force, adminPass, vmState: instance.vmState };
    });
    return { adminPass };
  }

  private agent(host: string) {
    return agentClient(this.deps.bus, host, this.deps.rpcTimeoutMs);
  }
}

/** Nova's InvalidMigrationState (a 400). */
function invalidState(migration: Migration, method: string): BadRequest {
  return new BadRequest(`Migration ${migration.id} state of instance ${migration.instanceId} is ${migration.status}. Cannot ${method} while the migration is in this state.`);
}

/** A password as Nova's utils.generate_password makes them (12 characters, no look-alikes). */
export function generatePassword(length = 12): string {
  const symbols = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789';
  const bytes = randomBytes(length);
  return Array.from(bytes, (b) => symbols[b % symbols.length]).join('');
}
