// Deferred delete (Nova's soft delete): with [DEFAULT] reclaim_instance_interval > 0, DELETE
// /servers/{id} powers the server off on its host and leaves it SOFT_DELETED with everything it
// holds (host, allocations, quota); `restore` powers it back on, `forceDelete` deletes it at
// once, and the conductor's reclaim task deletes the soft-deleted servers older than the
// interval. The power-off and power-on run as the persisted power workflow, so a crash leaves
// nothing in a task state.
import type { Kysely } from 'kysely';
import { Conflict } from '../core/errors.js';
import { transaction, type Database } from '../db/index.js';
import type { InstanceActionStore } from './actions.js';
import type { Conductor } from './conductor/index.js';
import type { PowerData } from './conductor/power.js';
import type { HostService } from './hosts.js';
import { VmState, type Instance, type InstanceStore } from './instances.js';
import type { ServerActions } from './lifecycle.js';
import type { Caller, ServerService } from './servers.js';

export const SOFT_DELETING = 'soft-deleting';
export const RESTORING = 'restoring';

/** Every vm_state: Nova's soft_delete checks no vm_state (vm_state=None), only that no task runs. */
const ANY_VM_STATE = Object.values(VmState).filter((s) => s !== VmState.DELETED);

export interface SoftDeleteDeps {
  database: Database;
  instances: InstanceStore;
  actions: InstanceActionStore;
  hosts: HostService;
  conductor: Conductor;
  servers: ServerService;
  lifecycle: ServerActions;
  /** [DEFAULT] reclaim_instance_interval in seconds; 0 (the default) turns soft delete off. */
  reclaimIntervalSeconds: number;
}

/** When a server was soft-deleted, and under which instance action (the reclaim records its terminate event there). */
export interface SoftDeleteRecord { instanceId: string; actionId: string; softDeletedAt: string }

export class SoftDeletes {
  constructor(private readonly deps: SoftDeleteDeps) {}

  get enabled(): boolean {
    return this.deps.reclaimIntervalSeconds > 0;
  }

  /**
   * DELETE /servers/{id}. Soft-deletes when the interval is set and the server can be (no task under way, it
   * was launched, its host's compute service is up); otherwise deletes it, as Nova's API falls back to delete()
   * when soft_delete() refuses and deletes locally when the host is down.
   */
  async delete(caller: Caller, id: string): Promise<void> {
    if (!this.enabled) return this.deps.servers.delete(caller, id);
    const instance = await this.deps.servers.get(caller, id);
    this.deps.lifecycle.checkLock(caller, instance);
    if (instance.taskState !== null || !instance.launchedAt || !instance.host || !(await this.deps.hosts.isHostUp(instance.host))) {
      return this.deps.servers.delete(caller, id);
    }
    await this.softDelete(caller, instance);
  }

  private async softDelete(caller: Caller, instance: Instance): Promise<void> {
    const workflow = await transaction(this.deps.database, async (trx) => {
      const moved = await this.deps.instances.updateIf(instance.id, { vmState: ANY_VM_STATE, taskState: [null] }, { taskState: SOFT_DELETING }, trx);
      if (!moved) return undefined;
      const action = await this.deps.actions.start(instance.id, 'delete', caller, trx);
      await this.record(instance.id, action.id, trx);
      return this.deps.conductor.createWorkflow<PowerData>('power', instance.id, {
        actionId: action.id, operation: 'stop', taskState: SOFT_DELETING, vmState: VmState.SOFT_DELETED,
        event: 'compute_soft_delete_instance', notification: 'compute.instance.soft_delete',
      }, trx);
    });
    // Another action started meanwhile: delete as Nova does when soft_delete finds a task state.
    if (!workflow) return this.deps.servers.delete(caller, instance.id);
    this.deps.conductor.launch(workflow);
  }

  /** restore: SOFT_DELETED only (409 otherwise); powers the server on again, ACTIVE. */
  async restore(caller: Caller, instance: Instance): Promise<void> {
    this.deps.lifecycle.checkLock(caller, instance);
    const rule = { vmStates: [VmState.SOFT_DELETED] };
    this.deps.lifecycle.checkState(instance, rule, 'restore');
    if (!instance.host) {
      // Nothing to power on (Nova's restore of a server without a host): active at once.
      await transaction(this.deps.database, async (trx) => {
        await this.deps.actions.start(instance.id, 'restore', caller, trx);
        await this.deps.instances.update(instance.id, { vmState: VmState.ACTIVE, taskState: null }, trx);
      });
      return;
    }
    const workflow = await transaction(this.deps.database, async (trx) => {
      const moved = await this.deps.instances.updateIf(instance.id, { vmState: rule.vmStates, taskState: [null] }, { taskState: RESTORING }, trx);
      if (!moved) {
        this.deps.lifecycle.checkState(await this.deps.instances.get(instance.id, trx), rule, 'restore');
        throw new Conflict(`Cannot 'restore' instance ${instance.id}: another action changed it meanwhile`);
      }
      const action = await this.deps.actions.start(instance.id, 'restore', caller, trx);
      return this.deps.conductor.createWorkflow<PowerData>('power', instance.id, {
        actionId: action.id, operation: 'start', taskState: RESTORING, vmState: VmState.ACTIVE,
        event: 'compute_restore_instance', notification: 'compute.instance.restore',
      }, trx);
    });
    this.deps.conductor.launch(workflow);
  }

  /** forceDelete: deletes now, in any state (Nova's force_delete checks only the lock), soft-deleted or not. */
  forceDelete(caller: Caller, instance: Instance): Promise<void> {
    return this.deps.servers.delete(caller, instance.id);
  }

  private async record(instanceId: string, actionId: string, trx: Kysely<any>): Promise<void> {
    await trx.deleteFrom('compute_soft_deletes').where('instance_id', '=', instanceId).execute();
    await trx.insertInto('compute_soft_deletes').values({ instance_id: instanceId, action_id: actionId, soft_deleted_at: new Date().toISOString() }).execute();
  }
}
