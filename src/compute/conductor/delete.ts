// The delete workflow: destroy on the host (or a local delete when its compute service is
// down: the agent removes the leftover when it comes back) → release the allocations →
// leave the server group → mark the record deleted.
import { VmState } from '../instances.js';
import { PowerState } from '../rpc.js';
import type { ConductorContext } from './context.js';
import type { Workflow, WorkflowStore } from './workflows.js';

export interface DeleteData { actionId: string }

export function deleteWorkflow(ctx: ConductorContext) {
  return async function runDelete(workflow: Workflow<DeleteData>, store: WorkflowStore): Promise<void> {
    const instance = await ctx.instances.find(workflow.instanceId);
    if (!instance || instance.deletedAt) {
      await store.finish(workflow, 'done');
      return;
    }
    if (instance.host) {
      const host = instance.host;
      try {
        await ctx.actions.withEvent(workflow.data.actionId, 'compute_terminate_instance', host, async () => {
          if (await ctx.hostIsUp(host)) await ctx.agent(host).destroyInstance({ uuid: instance.id });
          else ctx.logger.info(`compute service on ${host} is down: deleting ${instance.id} locally`);
        });
      } catch (err) {
        // The host is up but did not destroy it: ERROR with a fault, so the user can try again, never stuck in deleting.
        await ctx.instances.setFault(instance.id, { code: 500, message: `Delete failed on ${host}: ${(err as Error).message}` });
        await ctx.instances.update(instance.id, { vmState: VmState.ERROR, taskState: null });
        await store.finish(workflow, 'failed');
        return;
      }
    }
    await store.advance(workflow, 'destroyed');
    // Deleted in VERIFY_RESIZE or mid-move (Nova confirms first): the other host's copy and the migration's allocations go too.
    const open = await ctx.migrations.list({ instanceId: instance.id, status: ['pre-migrating', 'migrating', 'post-migrating', 'finished', 'confirming', 'reverting', 'reverted'] });
    for (const migration of open) {
      for (const host of new Set([migration.sourceCompute, migration.destCompute])) {
        if (host && host !== instance.host && (await ctx.hostIsUp(host))) await ctx.agent(host).destroyInstance({ uuid: instance.id }).catch(() => undefined);
      }
      await ctx.placement.deleteAllocations(migration.uuid);
      await ctx.migrations.update(migration.id, { status: migration.status === 'finished' ? 'confirmed' : 'error' });
    }
    await ctx.placement.deleteAllocations(instance.id);
    // Ports Nova made are deleted, the user's are unbound and kept (preserve_on_delete).
    await ctx.networking.deallocate(instance.id);
    await ctx.leaveServerGroup(instance.id);
    const now = new Date().toISOString();
    await ctx.instances.update(instance.id, { vmState: VmState.DELETED, taskState: null, powerState: PowerState.NOSTATE, terminatedAt: now, deletedAt: now });
    await ctx.notify('compute.instance.delete.end', await ctx.instances.get(instance.id));
    await store.finish(workflow, 'done');
  };
}
