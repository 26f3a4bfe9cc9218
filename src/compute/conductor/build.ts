// The build workflow: schedule (Placement + filters + weighers, allocations claimed) →
// spawn on the chosen host → ACTIVE; a failed spawn moves to an alternate host (RetryFilter
// semantics) until the alternates run out, then ERROR with a fault. Allocations are released
// on every way out that does not end in a running instance. Resuming after a crash reads
// where each instance is (no host yet, host chosen, running) and carries on from there.
import { NuboError } from '../../core/errors.js';
import type { FlavorSize } from '../flavors.js';
import type { Instance } from '../instances.js';
import { VmState } from '../instances.js';
import { PowerState, type InstanceSpec } from '../rpc.js';
import type { RequestSpec, Selection } from '../scheduler/types.js';
import { NoValidHost } from '../scheduler/index.js';
import type { ConductorContext } from './context.js';
import type { Workflow, WorkflowStore } from './workflows.js';

export interface BuildData {
  /** The instances of one create request (min_count..max_count share a reservation and one scheduling pass). */
  instanceIds: string[];
  /** instance id → the action recording this build. */
  actionIds: Record<string, string>;
  /** instance id → hosts still to try after the current one (with their allocation requests). */
  alternates: Record<string, Selection['alternates']>;
  /** instance id → hosts already tried. */
  tried: Record<string, string[]>;
  /** Instances whose ports were allocated on their current host (compute_instance_ports has them; a resumed run rebinds, never makes them twice). */
  networked?: string[];
}

export function buildWorkflow(ctx: ConductorContext) {
  return async function runBuild(workflow: Workflow<BuildData>, store: WorkflowStore): Promise<void> {
    const data = workflow.data;
    // A workflow taken over from a stopped conductor may hold claims, and spawns in flight or done on the hosts.
    const resumed = workflow.resumed;
    const instances = (await Promise.all(data.instanceIds.map((id) => ctx.instances.find(id)))).filter((i): i is Instance => !!i);

    // Instances with no host yet (new, or cut off between claiming and recording the host) are scheduled together,
    // so anti-affinity and the in-request consumption of resources see each other.
    const unscheduled = instances.filter((i) => !i.deletedAt && i.vmState === VmState.BUILDING && i.taskState === 'scheduling' && !i.host);
    if (unscheduled.length > 0) {
      if (resumed) for (const instance of unscheduled) await ctx.placement.deleteAllocations(instance.id);
      // Builds into one server group are placed one request at a time, so each sees where the others went
      // (two anti-affinity members scheduled at once would otherwise both pick the emptiest host).
      const groupId = unscheduled[0].request.groupId;
      const placed = groupId
        ? await ctx.serialized(`server-group:${groupId}`, () => schedule(ctx, workflow, unscheduled))
        : await schedule(ctx, workflow, unscheduled);
      await store.advance(workflow, 'scheduled', data);
      if (!placed) {
        await store.finish(workflow, 'done');
        return;
      }
    }

    await Promise.all(data.instanceIds.map((id) => buildOne(ctx, workflow, store, id, resumed)));
    await store.finish(workflow, 'done');
  };
}

/** Picks hosts for the instances and records them; false when scheduling failed (the instances are then in ERROR). */
async function schedule(ctx: ConductorContext, workflow: Workflow<BuildData>, instances: Instance[]): Promise<boolean> {
  const data = workflow.data;
  const first = instances[0];
  const scheduleEvent = 'conductor_schedule_and_build_instances';
  const eventIds = await Promise.all(instances.map((i) => ctx.actions.startEvent(data.actionIds[i.id], scheduleEvent, ctx.conductorHost)));
  let selections: Selection[];
  try {
    selections = await ctx.scheduler.selectDestinations(await requestSpecOf(ctx, first, instances, data));
  } catch (err) {
    const fault = err instanceof NoValidHost
      ? { code: 500, message: err.message, details: null }
      : { code: 500, message: `Build of instance failed: ${(err as Error).message}`, details: (err as Error).stack ?? null };
    if (!(err instanceof NoValidHost)) ctx.logger.error('scheduling failed', { error: (err as Error).stack });
    await Promise.all(instances.map(async (instance, index) => {
      await ctx.actions.finishEvent(eventIds[index], data.actionIds[instance.id], { message: fault.message, traceback: fault.details ?? undefined });
      await setError(ctx, instance.id, fault);
    }));
    return false;
  }
  await Promise.all(selections.map(async (selection) => {
    const index = instances.findIndex((i) => i.id === selection.instanceUuid);
    data.alternates[selection.instanceUuid] = selection.alternates;
    data.tried[selection.instanceUuid] = [selection.host];
    // Guarded: a delete that came in meanwhile (task_state deleting) wins; buildOne then releases the claim.
    await ctx.instances.updateIf(selection.instanceUuid, { taskState: ['scheduling'] }, {
      host: selection.host, node: selection.nodename, taskState: 'spawning',
      availabilityZone: await ctx.availabilityZoneOf(selection.host),
    });
    await ctx.actions.finishEvent(eventIds[index], data.actionIds[selection.instanceUuid]);
  }));
  return true;
}

/** Runs one instance from wherever it is to ACTIVE or ERROR. */
async function buildOne(ctx: ConductorContext, workflow: Workflow<BuildData>, store: WorkflowStore, instanceId: string, resumed: boolean): Promise<void> {
  const data = workflow.data;
  for (;;) {
    const instance = await ctx.instances.find(instanceId);
    if (!instance) return;
    if (instance.deletedAt || instance.taskState === 'deleting') {
      // Deleted while building: whatever was placed is removed again; the delete itself settles the record.
      if (instance.host) await ctx.agent(instance.host).destroyInstance({ uuid: instance.id }).catch(() => undefined);
      await ctx.networking.deallocate(instance.id);
      await ctx.placement.deleteAllocations(instance.id);
      return;
    }
    if (instance.vmState !== VmState.BUILDING || !instance.host) return;

    const host = instance.host;
    const actionId = data.actionIds[instance.id];
    try {
      // A resumed build first asks the host: the spawn may have finished before the crash.
      const known = resumed ? await ctx.agent(host).getPowerState({ uuid: instance.id }).catch(() => ({ powerState: null })) : { powerState: null };
      let powerState = known.powerState;
      if (powerState === null || powerState === PowerState.NOSTATE) {
        powerState = (await ctx.actions.withEvent(actionId, 'compute__do_build_and_run_instance', host, async () => {
          // Ports after scheduling (Nova's allocate_for_instance on the chosen host); a resumed build finds the ones it made.
          await ctx.networking.allocate(instance, host);
          if (!(data.networked ??= []).includes(instance.id)) data.networked.push(instance.id);
          await store.advance(workflow, 'networks-allocated', data);
          return ctx.agent(host, ctx.spawnTimeoutMs).spawnInstance({ instance: await specOf(ctx, instance) });
        })).powerState;
      }
      const now = new Date().toISOString();
      const settled = await ctx.instances.updateIf(instance.id, { vmState: [VmState.BUILDING], taskState: ['spawning'] },
        { vmState: VmState.ACTIVE, taskState: null, powerState, launchedAt: now, progress: 100, adminPass: null });
      await ctx.hostBuildResult(host, true);
      if (!settled) continue; // deleted meanwhile: loop once more to clean up
      await ctx.notify('compute.instance.create.end', await ctx.instances.get(instance.id));
      return;
    } catch (err) {
      ctx.logger.warn(`build of ${instance.id} on ${host} failed: ${(err as Error).message}`);
      await ctx.hostBuildResult(host, false);
      await ctx.agent(host).destroyInstance({ uuid: instance.id }).catch(() => undefined);
      // What the failed attempt made is released (Nova's _cleanup_allocated_networks); an alternate host allocates afresh.
      await ctx.networking.deallocate(instance.id).catch((e) => ctx.logger.warn(`freeing the ports of ${instance.id} failed: ${(e as Error).message}`));
      data.networked = (data.networked ?? []).filter((id) => id !== instance.id);
      const next = await claimAlternate(ctx, instance, data);
      if (!next) {
        await ctx.placement.deleteAllocations(instance.id);
        const tried = data.tried[instance.id] ?? [host];
        await setError(ctx, instance.id, {
          code: err instanceof NuboError ? err.status : 500,
          message: ctx.maxAttempts > 1
            ? `Exceeded maximum number of retries. Exhausted all hosts available for retrying build failures for instance ${instance.id}. Last error on ${host}: ${(err as Error).message}`
            : `Build of instance ${instance.id} failed on ${host}: ${(err as Error).message}`,
          details: `hosts tried: ${tried.join(', ')}`,
        });
        return;
      }
      (data.tried[instance.id] ??= []).push(next.host);
      await ctx.instances.updateIf(instance.id, { taskState: ['spawning'] }, { host: next.host, node: next.nodename, availabilityZone: await ctx.availabilityZoneOf(next.host) });
      // A fresh spawn on the alternate: the resume check above is for the host recorded at a crash only.
      resumed = false;
      await store.advance(workflow, 'rescheduled', data);
    }
  }
}

/** Moves the instance's allocations to the next alternate host that still has room; undefined when none is left. */
async function claimAlternate(ctx: ConductorContext, instance: Instance, data: BuildData): Promise<Selection['alternates'][number] | undefined> {
  const alternates = data.alternates[instance.id] ?? [];
  while (alternates.length > 0) {
    const candidate = alternates.shift()!;
    await ctx.placement.deleteAllocations(instance.id);
    try {
      await ctx.placement.putAllocations(instance.id, { allocations: candidate.allocationRequest.allocations, projectId: instance.projectId, userId: instance.userId, consumerGeneration: null });
      return candidate;
    } catch (err) {
      ctx.logger.info(`alternate ${candidate.host} for ${instance.id} has no room any more: ${(err as Error).message}`);
    }
  }
  return undefined;
}

async function setError(ctx: ConductorContext, instanceId: string, fault: { code: number; message: string; details: string | null }): Promise<void> {
  await ctx.instances.setFault(instanceId, fault);
  await ctx.instances.update(instanceId, { vmState: VmState.ERROR, taskState: null, powerState: PowerState.NOSTATE });
  await ctx.notify('compute.instance.create.error', await ctx.instances.get(instanceId), 'ERROR');
}

async function requestSpecOf(ctx: ConductorContext, first: Instance, instances: Instance[], data: BuildData): Promise<RequestSpec> {
  const image = first.imageRef ? await ctx.imageProperties(first.imageRef) : null;
  const groupId = first.request.groupId;
  const group = groupId ? await ctx.serverGroup(groupId) : undefined;
  const bdms = await ctx.instances.blockDeviceMappings(first.id);
  return {
    instanceUuids: instances.map((i) => i.id),
    projectId: first.projectId,
    userId: first.userId,
    flavor: first.flavor,
    image: image ? { id: first.imageRef!, properties: image } : null,
    availabilityZone: first.requestedAvailabilityZone,
    requestedHost: first.request.requestedHost,
    requestedNode: first.request.requestedNode,
    schedulerHints: first.request.schedulerHints,
    group,
    ignoreHosts: [...new Set(instances.flatMap((i) => data.tried[i.id] ?? []))],
    bootFromVolume: bdms.some((b) => b.bootIndex === 0 && b.destinationType === 'volume'),
  };
}

function sizeOf(flavor: FlavorSize): FlavorSize {
  const { id, name, vcpus, memoryMb, rootGb, ephemeralGb, swapMb, extraSpecs } = flavor;
  return { id, name, vcpus, memoryMb, rootGb, ephemeralGb, swapMb, extraSpecs };
}

/** What an agent gets to build (or receive) the instance. */
export async function specOf(ctx: ConductorContext, instance: Instance): Promise<InstanceSpec> {
  const properties = instance.imageRef ? await ctx.imageProperties(instance.imageRef) : null;
  return {
    uuid: instance.id,
    name: instance.name,
    hostname: instance.hostname,
    projectId: instance.projectId,
    userId: instance.userId,
    flavor: sizeOf(instance.flavor),
    image: instance.imageRef ? { id: instance.imageRef, properties: properties ?? {} } : null,
    keyData: instance.keyData,
    userData: instance.userData,
    metadata: instance.metadata,
    configDrive: instance.configDrive,
    adminPass: instance.adminPass,
    vifs: await ctx.networking.vifs(instance.id),
  };
}
