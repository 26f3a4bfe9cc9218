// The evacuate workflow (Nova's conductor rebuild_instance with a migration of type
// 'evacuation' + the compute manager's rebuild on the destination). The source host is down;
// the instance is built again on another host from its image. The migration's status is the
// checkpoint a resumed run reads:
//   accepted      scheduling: the source's allocations move to the migration, the instance
//                 claims the destination (no host left: allocations back, ERROR with a fault)
//   pre-migrating the destination spawns the instance (task rebuild_spawning); a stopped
//                 instance is stopped again; then the source's allocations are dropped → done
//   done          the source agent, when it comes back, destroys its copy (the conductor's
//                 reconcileHost) and the record becomes completed
//   failed|error  the instance is in ERROR with a fault, back on its source in the records
import { NuboError } from '../../core/errors.js';
import { VmState, type Instance } from '../instances.js';
import type { Migration } from '../migrations.js';
import { PowerState } from '../rpc.js';
import { specOf } from './build.js';
import type { ConductorContext } from './context.js';
import { FINISHED_STATUSES, moveAllocationsBack, moveAllocationsToMigration, scheduleMove } from './live-migrate.js';
import type { Workflow, WorkflowStore } from './workflows.js';

export interface EvacuateData {
  actionId: string;
  migrationId: number;
  requestedHost: string | null;
  force: boolean;
  /** The password the rebuilt guest gets. */
  adminPass: string | null;
  /** The vm_state before the evacuation: a stopped instance ends stopped. */
  vmState: string;
}

const EVACUATE_TASKS = ['rebuilding', 'rebuild_spawning'];

export function evacuateWorkflow(ctx: ConductorContext) {
  return async function runEvacuate(workflow: Workflow<EvacuateData>, store: WorkflowStore): Promise<void> {
    const data = workflow.data;
    let migration = await ctx.migrations.get(data.migrationId);
    let instance = await ctx.instances.find(workflow.instanceId);
    if (!instance || instance.deletedAt || !EVACUATE_TASKS.includes(instance.taskState ?? '')) {
      if (instance && !FINISHED_STATUSES.includes(migration.status)) {
        if (instance.deletedAt) await ctx.placement.deleteAllocations(migration.uuid);
        else if (instance.host === migration.destCompute) await ctx.placement.deleteAllocations(migration.uuid);
        else await moveAllocationsBack(ctx, instance, migration);
        await ctx.migrations.update(migration.id, { status: instance.host === migration.destCompute ? 'done' : 'error' });
      }
      await store.finish(workflow, 'done');
      return;
    }
    const source = migration.sourceCompute!;

    if (migration.status === 'accepted') {
      try {
        const selection = await ctx.actions.withEvent(data.actionId, 'conductor_rebuild_server', ctx.conductorHost, async () => {
          await moveAllocationsToMigration(ctx, instance!, migration);
          return scheduleMove(ctx, instance!, source, data.requestedHost, data.force);
        });
        await ctx.migrations.update(migration.id, { status: 'pre-migrating', destCompute: selection.host, destNode: selection.nodename });
        await ctx.instances.updateIf(instance.id, { taskState: EVACUATE_TASKS }, {
          host: selection.host, node: selection.nodename, availabilityZone: await ctx.availabilityZoneOf(selection.host), taskState: 'rebuild_spawning',
        });
        await store.advance(workflow, 'scheduled');
        migration = await ctx.migrations.get(migration.id);
        instance = await ctx.instances.get(instance.id);
      } catch (err) {
        return fail(ctx, workflow, store, instance, await ctx.migrations.get(migration.id), 'error', err);
      }
    }
    if (migration.status !== 'pre-migrating') {
      // failed/error recorded but the instance still in its task: cut off while settling.
      return fail(ctx, workflow, store, instance, migration, migration.status === 'error' ? 'error' : 'failed', new Error('evacuation failed'));
    }

    const dest = migration.destCompute!;
    try {
      const powerState = await ctx.actions.withEvent(data.actionId, 'compute_rebuild_instance', dest, async () => {
        await ctx.notify('compute.instance.rebuild.start', instance!);
        await ctx.networking.rebind(instance!, dest);
        const spec = { ...(await specOf(ctx, instance!)), adminPass: data.adminPass };
        let { powerState } = await ctx.agent(dest, ctx.spawnTimeoutMs).spawnInstance({ instance: spec });
        if (data.vmState === VmState.STOPPED) {
          ({ powerState } = await ctx.agent(dest).changePower({ uuid: instance!.id, operation: 'stop', timeoutSeconds: ctx.shutdownTimeoutSeconds }));
        }
        return powerState;
      });
      // Rebuilt: the source's allocations go now (Nova drops them when the source comes back).
      await ctx.placement.deleteAllocations(migration.uuid);
      await ctx.migrations.update(migration.id, { status: 'done' });
      await ctx.instances.updateIf(instance.id, { taskState: EVACUATE_TASKS }, {
        vmState: data.vmState === VmState.STOPPED ? VmState.STOPPED : VmState.ACTIVE, powerState, taskState: null, adminPass: null,
        launchedAt: new Date().toISOString(),
      });
      await ctx.notify('compute.instance.rebuild.end', await ctx.instances.get(instance.id));
      // A source that came back meanwhile (its reconciliation skipped the instance while this ran) drops its copy now.
      if (await ctx.hostIsUp(source)) {
        await ctx.agent(source).destroyInstance({ uuid: instance.id }).then(() => ctx.migrations.update(migration.id, { status: 'completed' })).catch(() => undefined);
      }
      await store.finish(workflow, 'done');
    } catch (err) {
      await ctx.agent(dest).destroyInstance({ uuid: instance.id }).catch(() => undefined);
      return fail(ctx, workflow, store, instance, migration, 'failed', err);
    }
  };
}

/** No host took it: the records point at the source again with its allocations, the instance in ERROR with a fault. */
async function fail(ctx: ConductorContext, workflow: Workflow<EvacuateData>, store: WorkflowStore, instance: Instance, migration: Migration,
  status: 'error' | 'failed', err: unknown): Promise<void> {
  ctx.logger.warn(`evacuation of ${instance.id} from ${migration.sourceCompute} failed: ${(err as Error).message}`);
  await moveAllocationsBack(ctx, instance, migration);
  await ctx.migrations.update(migration.id, { status });
  await ctx.instances.setFault(instance.id, {
    code: err instanceof NuboError ? err.status : 500,
    message: status === 'error' ? (err as Error).message : `Evacuation to ${migration.destCompute} failed: ${(err as Error).message}`,
    details: (err as Error).stack ?? null,
  });
  await ctx.instances.updateIf(instance.id, { taskState: EVACUATE_TASKS }, {
    host: migration.sourceCompute, node: migration.sourceNode, vmState: VmState.ERROR, taskState: null, powerState: PowerState.NOSTATE,
    ...(migration.sourceCompute ? { availabilityZone: await ctx.availabilityZoneOf(migration.sourceCompute) } : {}),
  });
  await ctx.notify('compute.instance.rebuild.error', await ctx.instances.get(instance.id), 'ERROR');
  await store.finish(workflow, 'failed');
}
