// Rescue, unrescue and rebuild. Rescue boots the instance from a rescue image with its own disk
// attached (task rescuing → RESCUED); unrescue boots it from its own disk again (unrescuing →
// ACTIVE). Rebuild re-creates the root disk from a (new) image, keeping the instance (task
// rebuilding → rebuild_block_device_mapping → rebuild_spawning → ACTIVE, or SHUTOFF again when
// it was stopped); an instance on no host (an ERROR from a failed build) is scheduled first. As in
// Nova, a driver failure in any of them leaves the instance in ERROR with a fault; drivers accept
// a repeated call, so a run resumed after a crash simply asks again.
import { VmState } from '../instances.js';
import { PowerState } from '../rpc.js';
import { NoValidHost } from '../scheduler/index.js';
import type { ConductorContext } from './context.js';
import { scheduleOne, specFor } from './shelve.js';
import { findImage } from './snapshot.js';
import type { Workflow, WorkflowStore } from './workflows.js';

export interface RescueData { actionId: string; image: { id: string; properties: Record<string, string> }; adminPass: string | null }
export interface UnrescueData { actionId: string }
export interface RebuildData { actionId: string; imageId: string; preserveEphemeral: boolean; vmStateBefore: string }

const REBUILD_TASKS = ['rebuilding', 'rebuild_block_device_mapping', 'rebuild_spawning'];

async function setError(ctx: ConductorContext, instanceId: string, taskStates: string[], message: string, event: string): Promise<void> {
  await ctx.instances.setFault(instanceId, { code: 500, message });
  await ctx.instances.updateIf(instanceId, { taskState: taskStates }, { vmState: VmState.ERROR, taskState: null });
  await ctx.notify(`${event}.error`, await ctx.instances.get(instanceId), 'ERROR');
}

export function rescueWorkflow(ctx: ConductorContext) {
  return async function runRescue(workflow: Workflow<RescueData>, store: WorkflowStore): Promise<void> {
    const data = workflow.data;
    const instance = await ctx.instances.find(workflow.instanceId);
    if (!instance || instance.deletedAt || instance.taskState !== 'rescuing' || !instance.host) {
      await store.finish(workflow, 'done');
      return;
    }
    const host = instance.host;
    await ctx.notify('compute.instance.rescue.start', instance);
    try {
      const { powerState } = await ctx.actions.withEvent(data.actionId, 'compute_rescue_instance', host, async () => {
        if (!(await ctx.hostIsUp(host))) throw new Error(`the compute service on ${host} is down`);
        return ctx.agent(host, ctx.spawnTimeoutMs).rescueInstance({ uuid: instance.id, image: data.image, adminPass: data.adminPass });
      });
      await ctx.instances.updateIf(instance.id, { taskState: ['rescuing'] }, { vmState: VmState.RESCUED, taskState: null, powerState, launchedAt: new Date().toISOString() });
      await ctx.notify('compute.instance.rescue.end', await ctx.instances.get(instance.id));
      await store.finish(workflow, 'done');
    } catch (err) {
      // Nova's InstanceNotRescuable, with the instance in ERROR.
      await setError(ctx, instance.id, ['rescuing'], `Instance ${instance.id} cannot be rescued: Driver Error: ${(err as Error).message}`, 'compute.instance.rescue');
      await store.finish(workflow, 'failed');
    }
  };
}

export function unrescueWorkflow(ctx: ConductorContext) {
  return async function runUnrescue(workflow: Workflow<UnrescueData>, store: WorkflowStore): Promise<void> {
    const instance = await ctx.instances.find(workflow.instanceId);
    if (!instance || instance.deletedAt || instance.taskState !== 'unrescuing' || !instance.host) {
      await store.finish(workflow, 'done');
      return;
    }
    const host = instance.host;
    await ctx.notify('compute.instance.unrescue.start', instance);
    try {
      const { powerState } = await ctx.actions.withEvent(workflow.data.actionId, 'compute_unrescue_instance', host, async () => {
        if (!(await ctx.hostIsUp(host))) throw new Error(`the compute service on ${host} is down`);
        return ctx.agent(host, ctx.spawnTimeoutMs).unrescueInstance({ uuid: instance.id });
      });
      await ctx.instances.updateIf(instance.id, { taskState: ['unrescuing'] }, { vmState: VmState.ACTIVE, taskState: null, powerState });
      await ctx.notify('compute.instance.unrescue.end', await ctx.instances.get(instance.id));
      await store.finish(workflow, 'done');
    } catch (err) {
      await setError(ctx, instance.id, ['unrescuing'], `Unrescue failed on ${host}: ${(err as Error).message}`, 'compute.instance.unrescue');
      await store.finish(workflow, 'failed');
    }
  };
}

export function rebuildWorkflow(ctx: ConductorContext) {
  return async function runRebuild(workflow: Workflow<RebuildData>, store: WorkflowStore): Promise<void> {
    const data = workflow.data;
    let instance = await ctx.instances.find(workflow.instanceId);
    if (!instance || instance.deletedAt || !instance.taskState || !REBUILD_TASKS.includes(instance.taskState)) {
      await store.finish(workflow, 'done');
      return;
    }
    await ctx.notify('compute.instance.rebuild.start', instance);
    const image = await findImage(ctx, data.imageId);
    const imageSpec = { id: data.imageId, properties: { ...(image?.properties ?? {}), ...(image?.min_ram ? { min_ram: String(image.min_ram) } : {}) } };
    if (!instance.host) {
      // Never placed (an ERROR from a failed build): Nova's conductor schedules it first.
      if (workflow.resumed) await ctx.placement.deleteAllocations(instance.id);
      try {
        const selection = await ctx.actions.withEvent(data.actionId, 'conductor_rebuild_instance', ctx.conductorHost,
          () => scheduleOne(ctx, instance!, imageSpec, instance!.requestedAvailabilityZone));
        const moved = await ctx.instances.updateIf(instance.id, { taskState: REBUILD_TASKS }, {
          host: selection.host, node: selection.nodename, availabilityZone: await ctx.availabilityZoneOf(selection.host),
        });
        if (!moved) {
          await ctx.placement.deleteAllocations(instance.id);
          await store.finish(workflow, 'done');
          return;
        }
        await store.advance(workflow, 'scheduled');
        instance = await ctx.instances.get(instance.id);
      } catch (err) {
        await ctx.placement.deleteAllocations(instance.id);
        await setError(ctx, instance.id, REBUILD_TASKS, err instanceof NoValidHost ? err.message : `Rebuild failed: ${(err as Error).message}`, 'compute.instance.rebuild');
        await store.finish(workflow, 'failed');
        return;
      }
    }
    const host = instance.host!;
    try {
      let powerState = await ctx.actions.withEvent(data.actionId, 'compute_rebuild_instance', host, async () => {
        if (!(await ctx.hostIsUp(host))) throw new Error(`the compute service on ${host} is down`);
        if (!image || image.status !== 'active') throw new Error(`image ${data.imageId} is not available any more`);
        const changed = new Error(`instance ${instance!.id} changed while it was being rebuilt`);
        if (!(await ctx.instances.updateIf(instance!.id, { taskState: REBUILD_TASKS }, { taskState: 'rebuild_block_device_mapping' }))) throw changed;
        if (!(await ctx.instances.updateIf(instance!.id, { taskState: ['rebuild_block_device_mapping'] }, { taskState: 'rebuild_spawning' }))) throw changed;
        const rebuilt = await ctx.agent(host, ctx.spawnTimeoutMs).rebuildInstance({ instance: specFor(instance!, imageSpec), preserveEphemeral: data.preserveEphemeral });
        return rebuilt.powerState;
      });
      // A stopped server is stopped again after its rebuild, as Nova does.
      let vmState: string = VmState.ACTIVE;
      if (data.vmStateBefore === VmState.STOPPED) {
        powerState = (await ctx.agent(host).changePower({ uuid: instance.id, operation: 'stop', timeoutSeconds: ctx.shutdownTimeoutSeconds })).powerState;
        vmState = VmState.STOPPED;
      }
      await ctx.instances.updateIf(instance.id, { taskState: ['rebuild_spawning'] }, {
        vmState, taskState: null, powerState: powerState ?? PowerState.NOSTATE, launchedAt: new Date().toISOString(), progress: 100, adminPass: null,
      });
      await ctx.notify('compute.instance.rebuild.end', await ctx.instances.get(instance.id));
      await store.finish(workflow, 'done');
    } catch (err) {
      ctx.logger.warn(`rebuild of ${instance.id} on ${host} failed: ${(err as Error).message}`);
      await ctx.instances.update(instance.id, { adminPass: null });
      await setError(ctx, instance.id, REBUILD_TASKS, `Rebuild failed on ${host}: ${(err as Error).message}`, 'compute.instance.rebuild');
      await store.finish(workflow, 'failed');
    }
  };
}
