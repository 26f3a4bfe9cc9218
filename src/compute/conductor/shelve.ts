// Shelving (Nova's shelve / shelve_offload / unshelve): shelve powers the guest off, snapshots
// it into the image "<name>-shelved" (task shelving → shelving_image_pending_upload →
// shelving_image_uploading) and leaves it SHELVED on its host; with [DEFAULT]
// shelved_offload_time = 0 (Nova's default) it is offloaded at once, otherwise by the poller
// below after that many seconds (< 0: never). Offloading destroys it on the host, releases its
// Placement allocations and clears host and node (SHELVED_OFFLOADED). Unshelve powers a SHELVED
// instance back on where it is, or schedules a SHELVED_OFFLOADED one again (claiming
// allocations), spawns it from the shelved image, then deletes that image.
// Every handler reads where the instance is, so a run resumed after a crash carries on.
import type { Kysely } from 'kysely';
import type { Config } from '../../core/config.js';
import { newUuid } from '../../core/ids.js';
import { transaction, type Database } from '../../db/index.js';
import type { FlavorSize } from '../flavors.js';
import { VmState, type Instance } from '../instances.js';
import { PowerState, type InstanceSpec, type PowerStateValue } from '../rpc.js';
import { NoValidHost } from '../scheduler/index.js';
import type { Selection } from '../scheduler/types.js';
import { SHELVED_KEYS } from '../system-metadata.js';
import type { ConductorContext } from './context.js';
import { rebuildWorkflow, rescueWorkflow, unrescueWorkflow } from './rescue.js';
import { deleteImage, findImage, snapshotWorkflow, takeSnapshot } from './snapshot.js';
import type { Workflow, WorkflowRunner, WorkflowStore } from './workflows.js';

export interface ShelveData { actionId: string; imageId: string; imageFields: Record<string, unknown> }
export interface ShelveOffloadData { actionId: string }
/** availabilityZone: undefined keeps the instance's requested zone; a string pins it there (2.77). */
export interface UnshelveData { actionId: string; availabilityZone?: string }

const SHELVE_TASKS = ['shelving', 'shelving_image_pending_upload', 'shelving_image_uploading'];

/** Registers the workflows of snapshots, shelving, rescue and rebuild on the conductor's runner. */
export function registerImageWorkflows(runner: WorkflowRunner, ctx: ConductorContext): void {
  runner.register('snapshot', snapshotWorkflow(ctx));
  runner.register('shelve', shelveWorkflow(ctx));
  runner.register('shelveOffload', shelveOffloadWorkflow(ctx));
  runner.register('unshelve', unshelveWorkflow(ctx));
  runner.register('rescue', rescueWorkflow(ctx));
  runner.register('unrescue', unrescueWorkflow(ctx));
  runner.register('rebuild', rebuildWorkflow(ctx));
}

function shelveWorkflow(ctx: ConductorContext) {
  return async function runShelve(workflow: Workflow<ShelveData>, store: WorkflowStore): Promise<void> {
    const data = workflow.data;
    let instance = await ctx.instances.find(workflow.instanceId);
    if (!instance || instance.deletedAt) {
      await dropUnusedImage(ctx, data.imageId);
      await store.finish(workflow, 'done');
      return;
    }
    // Shelved already (a resumed run after the snapshot): only the offload may be left.
    if (instance.vmState === VmState.SHELVED && instance.taskState === 'shelving_offloading') {
      await offload(ctx, instance, workflow, store).catch(() => undefined); // settled with a fault
      return;
    }
    if (!instance.taskState || !SHELVE_TASKS.includes(instance.taskState) || !instance.host) {
      await dropUnusedImage(ctx, data.imageId);
      await store.finish(workflow, 'done');
      return;
    }
    const host = instance.host;
    const vmStateBefore = instance.vmState;
    const offloadNow = ctx.shelvedOffloadTimeSeconds === 0;
    await ctx.notify('compute.instance.shelve.start', instance);
    try {
      await ctx.actions.withEvent(data.actionId, 'compute_shelve_instance', host, async () => {
        if (!(await ctx.hostIsUp(host))) throw new Error(`the compute service on ${host} is down`);
        let image = await findImage(ctx, data.imageId);
        if (image && image.status !== 'active' && image.status !== 'queued') {
          // An upload cut off by a crash: nobody has seen this image, so start over with a new one.
          await deleteImage(ctx, data.imageId);
          image = undefined;
        }
        if (!image) {
          image = await ctx.images.createImage({ isAdmin: true }, { ...data.imageFields });
          data.imageId = image.id;
          await store.advance(workflow, 'image-created', data);
        }
        if (image.status !== 'active') {
          // Nova does not try a clean shutdown of a paused guest.
          await ctx.agent(host).changePower({ uuid: instance!.id, operation: 'stop', timeoutSeconds: instance!.powerState === PowerState.PAUSED ? 0 : ctx.shutdownTimeoutSeconds });
          await takeSnapshot(ctx, instance!, host, data.imageId, { from: SHELVE_TASKS, pending: 'shelving_image_pending_upload', uploading: 'shelving_image_uploading' });
        }
        const { powerState } = await ctx.agent(host).getPowerState({ uuid: instance!.id });
        await ctx.systemMetadata.set(instance!.id, { shelved_at: new Date().toISOString(), shelved_image_id: data.imageId, shelved_host: host });
        const moved = await ctx.instances.updateIf(instance!.id, { taskState: SHELVE_TASKS }, {
          vmState: VmState.SHELVED, taskState: offloadNow ? 'shelving_offloading' : null, powerState: powerState ?? PowerState.SHUTDOWN,
        });
        if (!moved) throw new Error(`instance ${instance!.id} changed while it was being shelved`);
      });
    } catch (err) {
      const message = (err as Error).message;
      ctx.logger.warn(`shelve of ${instance.id} on ${host} failed: ${message}`);
      await deleteImage(ctx, data.imageId);
      await ctx.systemMetadata.remove(instance.id, SHELVED_KEYS);
      const now = await ctx.instances.find(instance.id);
      if (now && !now.deletedAt && now.taskState && SHELVE_TASKS.includes(now.taskState)) {
        await ctx.instances.setFault(instance.id, { code: 500, message: `Shelve failed on ${host}: ${message}` });
        const seen = await ctx.agent(host).getPowerState({ uuid: instance.id }).catch(() => ({ powerState: null }));
        // The guest may already be off: then it is a stopped server, as the power sync would make it.
        const off = seen.powerState === PowerState.SHUTDOWN && vmStateBefore === VmState.ACTIVE;
        await ctx.instances.updateIf(instance.id, { taskState: SHELVE_TASKS }, {
          taskState: null, ...(seen.powerState !== null ? { powerState: seen.powerState } : {}), ...(off ? { vmState: VmState.STOPPED } : {}),
        });
      }
      await ctx.notify('compute.instance.shelve.error', await ctx.instances.get(instance.id), 'ERROR');
      await store.finish(workflow, 'failed');
      return;
    }
    await store.advance(workflow, 'shelved', data);
    instance = await ctx.instances.get(instance.id);
    await ctx.notify('compute.instance.shelve.end', instance);
    if (offloadNow && instance.taskState === 'shelving_offloading') {
      await offload(ctx, instance, workflow, store).catch(() => undefined); // settled with a fault
      return;
    }
    await store.finish(workflow, 'done');
  };
}

function shelveOffloadWorkflow(ctx: ConductorContext) {
  return async function runShelveOffload(workflow: Workflow<ShelveOffloadData>, store: WorkflowStore): Promise<void> {
    const instance = await ctx.instances.find(workflow.instanceId);
    if (!instance || instance.deletedAt || instance.vmState !== VmState.SHELVED || instance.taskState !== 'shelving_offloading') {
      await store.finish(workflow, 'done');
      return;
    }
    await ctx.actions.withEvent(workflow.data.actionId, 'compute_shelve_offload_instance', instance.host, () => offload(ctx, instance, workflow, store))
      .catch(() => undefined); // offload settled the instance and the workflow; the event records the error
  };
}

/**
 * SHELVED (task shelving_offloading) → SHELVED_OFFLOADED: destroyed on the host (locally when its
 * compute service is down: the agent's reconciliation removes the leftover when it returns),
 * allocations released, host and node cleared. On a failure it stays SHELVED with a fault.
 */
async function offload(ctx: ConductorContext, instance: Instance, workflow: Workflow, store: WorkflowStore): Promise<void> {
  await ctx.notify('compute.instance.shelve_offload.start', instance);
  const host = instance.host;
  try {
    let powerState: PowerStateValue = PowerState.SHUTDOWN;
    if (host) {
      if (await ctx.hostIsUp(host)) {
        const agent = ctx.agent(host);
        const seen = await agent.getPowerState({ uuid: instance.id });
        if (seen.powerState !== null && seen.powerState !== PowerState.SHUTDOWN) {
          powerState = (await agent.changePower({ uuid: instance.id, operation: 'stop', timeoutSeconds: 0 })).powerState;
        }
        await agent.destroyInstance({ uuid: instance.id });
      } else {
        ctx.logger.info(`compute service on ${host} is down: offloading ${instance.id} locally`);
      }
    }
    await store.advance(workflow, 'offload-destroyed');
    // Released before the state changes, as Nova does, so whoever polls for SHELVED_OFFLOADED finds the room free.
    await ctx.placement.deleteAllocations(instance.id);
    // An offloaded instance has no host: its ports keep their addresses but lose their binding (as Nova's cleanup_instance_network_on_host).
    await ctx.networking.rebind(instance, null);
    const moved = await ctx.instances.updateIf(instance.id, { taskState: ['shelving_offloading'] }, {
      vmState: VmState.SHELVED_OFFLOADED, taskState: null, powerState, host: null, node: null,
    });
    if (moved) await ctx.notify('compute.instance.shelve_offload.end', await ctx.instances.get(instance.id));
    await store.finish(workflow, 'done');
  } catch (err) {
    const message = (err as Error).message;
    ctx.logger.warn(`shelve offload of ${instance.id} on ${host} failed: ${message}`);
    await ctx.instances.setFault(instance.id, { code: 500, message: `Shelve offload failed on ${host}: ${message}` });
    await ctx.instances.updateIf(instance.id, { taskState: ['shelving_offloading'] }, { taskState: null });
    await ctx.notify('compute.instance.shelve_offload.error', await ctx.instances.get(instance.id), 'ERROR');
    await store.finish(workflow, 'failed');
    throw err;
  }
}

function unshelveWorkflow(ctx: ConductorContext) {
  return async function runUnshelve(workflow: Workflow<UnshelveData>, store: WorkflowStore): Promise<void> {
    const data = workflow.data;
    const instance = await ctx.instances.find(workflow.instanceId);
    if (!instance || instance.deletedAt || (instance.taskState !== 'unshelving' && instance.taskState !== 'spawning')) {
      await store.finish(workflow, 'done');
      return;
    }
    const system = await ctx.systemMetadata.get(instance.id);
    const imageId = system.shelved_image_id;
    await ctx.notify('compute.instance.unshelve.start', instance);
    if (instance.vmState === VmState.SHELVED) {
      await unshelveInPlace(ctx, instance, data, imageId);
    } else {
      await unshelveOffloaded(ctx, workflow, store, instance, imageId);
    }
    await store.finish(workflow, (await ctx.instances.find(instance.id))?.vmState === VmState.ACTIVE ? 'done' : 'failed');
  };
}

/** SHELVED: still on its host, so it is powered back on there (Nova's start_instance of a shelved instance). */
async function unshelveInPlace(ctx: ConductorContext, instance: Instance, data: UnshelveData, imageId: string | undefined): Promise<void> {
  const host = instance.host!;
  try {
    const { powerState } = await ctx.actions.withEvent(data.actionId, 'compute_start_instance', host, async () => {
      if (!(await ctx.hostIsUp(host))) throw new Error(`the compute service on ${host} is down`);
      return ctx.agent(host).changePower({ uuid: instance.id, operation: 'start' });
    });
    await finishUnshelve(ctx, instance, imageId, { vmState: VmState.ACTIVE, taskState: null, powerState });
  } catch (err) {
    await unshelveFailed(ctx, instance, `Unshelve failed on ${host}: ${(err as Error).message}`);
  }
}

/** SHELVED_OFFLOADED: scheduled again (allocations claimed), spawned from the shelved image. */
async function unshelveOffloaded(ctx: ConductorContext, workflow: Workflow<UnshelveData>, store: WorkflowStore, instance: Instance, imageId: string | undefined): Promise<void> {
  const data = workflow.data;
  const image = imageId ? await findImage(ctx, imageId) : undefined;
  if (!image || image.status !== 'active') {
    // Nova: the instance cannot come back without its image: ERROR with the reason.
    const reason = imageId ? `Unshelve attempted but the image ${imageId} cannot be found.` : 'Unshelve attempted but the image_id is not provided';
    await ctx.actions.withEvent(data.actionId, 'conductor_unshelve_instance', ctx.conductorHost, async () => { throw new Error(reason); }).catch(() => undefined);
    await ctx.instances.setFault(instance.id, { code: 500, message: `Error during unshelve instance ${instance.id}: ${reason}` });
    await ctx.instances.updateIf(instance.id, { taskState: ['unshelving', 'spawning'] }, { vmState: VmState.ERROR, taskState: null });
    await ctx.notify('compute.instance.unshelve.error', await ctx.instances.get(instance.id), 'ERROR');
    return;
  }
  const imageSpec = { id: image.id, properties: { ...image.properties, ...(image.min_ram ? { min_ram: String(image.min_ram) } : {}) } };
  let current = instance;
  if (!current.host) {
    if (workflow.resumed) await ctx.placement.deleteAllocations(current.id);
    const zone = data.availabilityZone ?? current.requestedAvailabilityZone;
    let selection: Selection;
    try {
      selection = await ctx.actions.withEvent(data.actionId, 'conductor_unshelve_instance', ctx.conductorHost,
        () => scheduleOne(ctx, current, imageSpec, zone));
    } catch (err) {
      // Nova: a failed scheduling leaves the instance SHELVED_OFFLOADED with its task cleared.
      const message = err instanceof NoValidHost ? err.message : `Unshelve failed: ${(err as Error).message}`;
      await ctx.placement.deleteAllocations(current.id);
      await unshelveFailed(ctx, current, message);
      return;
    }
    const moved = await ctx.instances.updateIf(current.id, { taskState: ['unshelving'] }, {
      host: selection.host, node: selection.nodename, taskState: 'spawning', availabilityZone: await ctx.availabilityZoneOf(selection.host),
      ...(data.availabilityZone !== undefined ? { requestedAvailabilityZone: data.availabilityZone } : {}),
    });
    if (!moved) {
      await ctx.placement.deleteAllocations(current.id); // deleted meanwhile
      return;
    }
    await store.advance(workflow, 'scheduled');
    current = await ctx.instances.get(current.id);
  }
  const host = current.host!;
  try {
    const known = workflow.resumed ? await ctx.agent(host).getPowerState({ uuid: current.id }).catch(() => ({ powerState: null })) : { powerState: null };
    let powerState = known.powerState;
    if (powerState === null || powerState === PowerState.NOSTATE) {
      powerState = (await ctx.actions.withEvent(data.actionId, 'compute_unshelve_instance', host, async () => {
        if (!(await ctx.hostIsUp(host))) throw new Error(`the compute service on ${host} is down`);
        await ctx.networking.rebind(current, host);
        return ctx.agent(host, ctx.spawnTimeoutMs).spawnInstance({ instance: { ...specFor(current, imageSpec), vifs: await ctx.networking.vifs(current.id) } });
      })).powerState;
    }
    const settled = await finishUnshelve(ctx, current, imageId, {
      vmState: VmState.ACTIVE, taskState: null, powerState, launchedAt: new Date().toISOString(), progress: 100,
    });
    if (!settled) {
      // Deleted while spawning: the delete workflow destroys it; make sure nothing stays claimed.
      await ctx.agent(host).destroyInstance({ uuid: current.id }).catch(() => undefined);
    }
  } catch (err) {
    ctx.logger.warn(`unshelve of ${current.id} on ${host} failed: ${(err as Error).message}`);
    await ctx.agent(host).destroyInstance({ uuid: current.id }).catch(() => undefined);
    await ctx.placement.deleteAllocations(current.id);
    await ctx.instances.updateIf(current.id, { taskState: ['spawning'] }, { host: null, node: null });
    await unshelveFailed(ctx, current, `Unshelve failed on ${host}: ${(err as Error).message}`);
  }
}

/** Settles an unshelved instance, then deletes the shelved image and forgets the shelved keys (Nova does both). */
async function finishUnshelve(ctx: ConductorContext, instance: Instance, imageId: string | undefined, changes: Parameters<ConductorContext['instances']['update']>[1]): Promise<boolean> {
  const settled = await ctx.instances.updateIf(instance.id, { taskState: ['unshelving', 'spawning'] }, changes);
  if (!settled) return false;
  if (imageId) await deleteImage(ctx, imageId);
  await ctx.systemMetadata.remove(instance.id, SHELVED_KEYS);
  await ctx.notify('compute.instance.unshelve.end', await ctx.instances.get(instance.id));
  return true;
}

/** Nova's reverts_task_state: the instance stays shelved (or offloaded), task cleared, with a fault. */
async function unshelveFailed(ctx: ConductorContext, instance: Instance, message: string): Promise<void> {
  ctx.logger.warn(`unshelve of ${instance.id}: ${message}`);
  await ctx.instances.setFault(instance.id, { code: 500, message });
  await ctx.instances.updateIf(instance.id, { taskState: ['unshelving', 'spawning'] }, { taskState: null });
  await ctx.notify('compute.instance.unshelve.error', await ctx.instances.get(instance.id), 'ERROR');
}

/** Schedules one existing instance (unshelve, rebuild of an instance on no host): allocations claimed for it. */
export async function scheduleOne(ctx: ConductorContext, instance: Instance, image: InstanceSpec['image'], availabilityZone: string | null): Promise<Selection> {
  const group = instance.request.groupId ? await ctx.serverGroup(instance.request.groupId) : undefined;
  const bdms = await ctx.instances.blockDeviceMappings(instance.id);
  // A forced host of the create request does not apply to a later move (Nova's reset_forced_destinations).
  const [selection] = await ctx.scheduler.selectDestinations({
    instanceUuids: [instance.id], projectId: instance.projectId, userId: instance.userId, flavor: instance.flavor,
    image, availabilityZone, schedulerHints: instance.request.schedulerHints, group, ignoreHosts: [],
    bootFromVolume: bdms.some((b) => b.bootIndex === 0 && b.destinationType === 'volume'),
  });
  return selection;
}

/** What the agent is sent to build or rebuild the instance from `image`. */
export function specFor(instance: Instance, image: InstanceSpec['image']): InstanceSpec {
  const { id, name, vcpus, memoryMb, rootGb, ephemeralGb, swapMb, extraSpecs } = instance.flavor;
  const flavor: FlavorSize = { id, name, vcpus, memoryMb, rootGb, ephemeralGb, swapMb, extraSpecs };
  return {
    uuid: instance.id, name: instance.name, hostname: instance.hostname, projectId: instance.projectId, userId: instance.userId,
    flavor, image, keyData: instance.keyData, userData: instance.userData, metadata: instance.metadata,
    configDrive: instance.configDrive, adminPass: instance.adminPass,
  };
}

/** Removes a shelve's image unless it became the instance's shelved image. */
async function dropUnusedImage(ctx: ConductorContext, imageId: string): Promise<void> {
  const image = await findImage(ctx, imageId);
  if (image && image.status !== 'active') await deleteImage(ctx, imageId);
}

/**
 * Nova's _poll_shelved_instances: every [DEFAULT] shelved_poll_interval seconds (default 3600;
 * 0 = 60 s; < 0 never), SHELVED instances shelved longer than shelved_offload_time (> 0) ago are
 * offloaded, each through a shelveOffload workflow. Several conductors may poll: the guarded
 * task-state move lets one of them take each instance.
 */
export function shelvedOffloadPoller(ctx: ConductorContext, conductor: { createWorkflow<D>(kind: string, id: string, data: D, trx?: Kysely<any>): Promise<Workflow<D>>; launch(w: Workflow): void },
  database: Database, config: Config): { stop(): void } {
  const offloadAfter = ctx.shelvedOffloadTimeSeconds;
  const interval = config.getInt('DEFAULT', 'shelved_poll_interval', 3600);
  if (offloadAfter <= 0 || interval < 0) return { stop: () => undefined };
  const periodMs = (interval === 0 ? 60 : interval) * 1000;
  let running = false;
  const poll = async () => {
    if (running) return;
    running = true;
    try {
      const shelved = await ctx.instances.list({ vmStates: [VmState.SHELVED], taskState: null });
      for (const instance of shelved) {
        const shelvedAt = (await ctx.systemMetadata.get(instance.id)).shelved_at;
        if (!shelvedAt || Date.now() - Date.parse(shelvedAt) < offloadAfter * 1000) continue;
        const workflow = await transaction(database, async (trx) => {
          const moved = await ctx.instances.updateIf(instance.id, { vmState: [VmState.SHELVED], taskState: [null] }, { taskState: 'shelving_offloading' }, trx);
          if (!moved) return undefined;
          const action = await ctx.actions.start(instance.id, 'shelveOffload', { requestId: `req-${newUuid()}`, userId: instance.userId, projectId: instance.projectId }, trx);
          return conductor.createWorkflow<ShelveOffloadData>('shelveOffload', instance.id, { actionId: action.id }, trx);
        });
        if (workflow) {
          ctx.logger.info(`offloading ${instance.id}: shelved since ${shelvedAt}, longer than shelved_offload_time ${offloadAfter} s`);
          conductor.launch(workflow);
        }
      }
    } catch (err) {
      ctx.logger.warn(`polling shelved instances failed: ${(err as Error).message}`);
    } finally {
      running = false;
    }
  };
  const timer = setInterval(() => void poll(), periodMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
