// Resize and cold migration (Nova's conductor migrate_server + compute prep_resize /
// resize_instance / finish_resize, confirm_resize, revert_resize / finish_revert_resize).
//
// A move is one migration record and one workflow. Each step reads where things are — the
// migration's status and the instance's task state and host — so a workflow cut off by a crash
// resumes at the step it was in (every agent call succeeds when repeated):
//   pre-migrating, no destination   move the instance's allocations to the migration (consumer =
//                                   migration uuid), schedule (the scheduler claims the destination
//                                   for the instance uuid), record the destination
//   pre-migrating, destination      compute_prep_resize: the destination must be up
//   migrating                       compute_resize_instance on the source: power off, hand the disk over;
//                                   then post-migrating, instance.host = destination, resize_migrated
//   post-migrating                  compute_finish_resize on the destination: the instance is created
//                                   there with the new flavor, powered as it was → finished, vm_state resized
// Confirm: the source drops its copy, the migration's allocations go → confirmed, active/stopped.
// Revert: the destination drops its copy (reverted), the allocations move back to the instance on
// the source, the old flavor is restored, the source copy powers back as it was.
// Failures before the disk moved roll back to the source (allocations back, vm_state as before, a
// fault); a failure on the destination after it moved ends in ERROR there with a fault, and the
// source's allocations are dropped, as Nova does.
import { randomUUID } from 'node:crypto';
import { NuboError } from '../../core/errors.js';
import type { Allocations } from '../../placement/service.js';
import type { FlavorSnapshot, Instance } from '../instances.js';
import { VmState } from '../instances.js';
import type { Migration } from '../migrations.js';
import { PowerState, type InstanceSpec } from '../rpc.js';
import { NoValidHost, type RequestSpec } from '../scheduler/index.js';
import type { ConductorContext } from './context.js';
import type { Workflow, WorkflowStore } from './workflows.js';

export interface ResizeData {
  actionId: string;
  migrationId: number;
  /** The vm_state before the move (active or stopped): how the instance is powered at the end. */
  oldVmState: string;
  /** [DEFAULT] allow_resize_to_same_host applied (resize only): the source is not ignored by the scheduler. */
  allowSameHost: boolean;
  /** migrate with a host (2.56). */
  requestedHost?: string;
}

export interface ConfirmResizeData { actionId: string; migrationId: number }
export interface RevertResizeData { actionId: string; migrationId: number; powerOn: boolean }

const MOVE_TASKS = ['resize_prep', 'resize_migrating', 'resize_migrated', 'resize_finish'];

const hasAny = (allocations: Record<string, unknown>) => Object.keys(allocations).length > 0;

function plain(allocations: Record<string, { resources: Record<string, number> }>): Allocations {
  return Object.fromEntries(Object.entries(allocations).map(([rp, a]) => [rp, { resources: { ...a.resources } }]));
}

/** The move's allocations go back to the instance (on the source): one atomic POST /allocations. */
async function revertAllocations(ctx: ConductorContext, instance: Instance, migration: Migration): Promise<void> {
  const held = await ctx.placement.getAllocations(migration.uuid);
  if (!hasAny(held.allocations)) return; // done already
  await ctx.placement.postAllocations({
    [instance.id]: { allocations: plain(held.allocations), projectId: instance.projectId, userId: instance.userId, consumerGeneration: undefined, consumerType: 'INSTANCE' },
    [migration.uuid]: { allocations: {}, projectId: instance.projectId, userId: instance.userId, consumerGeneration: undefined },
  });
}

async function specOf(ctx: ConductorContext, instance: Instance, flavor: FlavorSnapshot): Promise<InstanceSpec> {
  const properties = instance.imageRef ? await ctx.imageProperties(instance.imageRef) : null;
  const { id, name, vcpus, memoryMb, rootGb, ephemeralGb, swapMb, extraSpecs } = flavor;
  return {
    uuid: instance.id, name: instance.name, hostname: instance.hostname, projectId: instance.projectId, userId: instance.userId,
    flavor: { id, name, vcpus, memoryMb, rootGb, ephemeralGb, swapMb, extraSpecs },
    image: instance.imageRef ? { id: instance.imageRef, properties: properties ?? {} } : null,
    keyData: instance.keyData, userData: instance.userData, metadata: instance.metadata, configDrive: instance.configDrive, adminPass: null,
    vifs: await ctx.networking.vifs(instance.id),
  };
}

const errorOf = (err: unknown) => ({ message: (err as Error).message, traceback: (err as Error).stack });

export function resizeWorkflow(ctx: ConductorContext) {
  return async function runResize(workflow: Workflow<ResizeData>, store: WorkflowStore): Promise<void> {
    const data = workflow.data;
    for (;;) {
      const migration = await ctx.migrations.get(data.migrationId);
      const instance = await ctx.instances.find(workflow.instanceId);
      if (!instance || instance.deletedAt || instance.taskState === 'deleting' || !MOVE_TASKS.includes(instance.taskState ?? '')) {
        if (['pre-migrating', 'migrating', 'post-migrating'].includes(migration.status)) await abandon(ctx, instance, migration);
        await store.finish(workflow, 'done');
        return;
      }
      let next: boolean;
      if (migration.status === 'pre-migrating' && !migration.destCompute) next = await schedule(ctx, data, instance, migration);
      else if (migration.status === 'pre-migrating') next = await prepare(ctx, data, instance, migration);
      else if (migration.status === 'migrating') next = await migrateSource(ctx, data, instance, migration);
      else if (migration.status === 'post-migrating') next = await finishOnDestination(ctx, data, instance, migration);
      else next = false;
      if (!next) {
        await store.finish(workflow, 'done');
        return;
      }
      await store.advance(workflow, (await ctx.migrations.get(data.migrationId)).status);
    }
  };
}

/**
 * The instance was deleted or another action (a reset) took it over mid-move: the move stops, and
 * what it holds is let go — the migration's allocations, and the instance's own when it is deleted.
 */
async function abandon(ctx: ConductorContext, instance: Instance | undefined, migration: Migration): Promise<void> {
  await ctx.migrations.update(migration.id, { status: 'error' });
  if (!instance || instance.deletedAt) {
    await ctx.placement.deleteAllocations(migration.uuid);
    if (instance) await ctx.placement.deleteAllocations(instance.id);
    return;
  }
  if (instance.taskState === 'deleting') {
    await ctx.placement.deleteAllocations(migration.uuid);
    return;
  }
  // Reset meanwhile: the instance stays where its record says; the allocations follow it.
  if (instance.host === migration.sourceCompute) await revertAllocations(ctx, instance, migration);
  else await ctx.placement.deleteAllocations(migration.uuid);
}

/** Back to the source, as before the move, with a fault: the allocations go back, the migration is in error. */
async function rollBack(ctx: ConductorContext, data: ResizeData, instance: Instance, migration: Migration, err: unknown, taskStates: string[]): Promise<false> {
  const reason = (err as Error).message;
  ctx.logger.warn(`${migration.migrationType} of ${instance.id} rolled back: ${reason}`);
  let powerState: number | null = null;
  if (migration.status === 'migrating' && migration.sourceCompute) {
    // The source may have powered off and handed the disk over before the failure reached us: take it back.
    powerState = await ctx.agent(migration.sourceCompute).finishRevertMigration({ uuid: instance.id, powerOn: data.oldVmState !== VmState.STOPPED })
      .then((r) => r.powerState, () => null);
    if (migration.destCompute && migration.destCompute !== migration.sourceCompute) await ctx.agent(migration.destCompute).revertMigration({ uuid: instance.id }).catch(() => undefined);
  }
  await revertAllocations(ctx, instance, migration);
  await ctx.migrations.update(migration.id, { status: 'error' });
  await ctx.instances.setFault(instance.id, { code: err instanceof NuboError ? err.status : 500, message: reason, details: (err as Error).stack ?? null });
  await ctx.instances.updateIf(instance.id, { taskState: taskStates }, {
    vmState: data.oldVmState, taskState: null, host: migration.sourceCompute, node: migration.sourceNode, ...(powerState !== null ? { powerState } : {}),
  });
  await ctx.notify(`compute.instance.${migration.migrationType === 'resize' ? 'resize' : 'migrate'}.error`, await ctx.instances.get(instance.id), 'ERROR');
  return false;
}

async function schedule(ctx: ConductorContext, data: ResizeData, instance: Instance, migration: Migration): Promise<boolean> {
  const newFlavor = migration.newFlavor as FlavorSnapshot;
  try {
    return await ctx.actions.withEvent(data.actionId, 'conductor_migrate_server', ctx.conductorHost, async () => {
      // The source's allocations move to the migration, so the instance can claim the destination.
      const held = await ctx.placement.getAllocations(migration.uuid);
      if (!hasAny(held.allocations)) {
        const own = await ctx.placement.getAllocations(instance.id);
        if (hasAny(own.allocations)) {
          await ctx.placement.postAllocations({
            [migration.uuid]: { allocations: plain(own.allocations), projectId: instance.projectId, userId: instance.userId, consumerGeneration: null, consumerType: 'MIGRATION' },
            [instance.id]: { allocations: {}, projectId: instance.projectId, userId: instance.userId, consumerGeneration: own.consumerGeneration },
          });
        }
      } else {
        // Resumed: whatever the instance holds now is a destination claim of the run that was cut off.
        await ctx.placement.deleteAllocations(instance.id);
      }
      const image = instance.imageRef ? await ctx.imageProperties(instance.imageRef) : null;
      const groupId = instance.request.groupId;
      const bdms = await ctx.instances.blockDeviceMappings(instance.id);
      const spec: RequestSpec = {
        instanceUuids: [instance.id], projectId: instance.projectId, userId: instance.userId, flavor: newFlavor,
        image: image ? { id: instance.imageRef!, properties: image } : null,
        availabilityZone: instance.requestedAvailabilityZone,
        requestedHost: data.requestedHost,
        schedulerHints: instance.request.schedulerHints,
        group: groupId ? await ctx.serverGroup(groupId) : undefined,
        ignoreHosts: data.allowSameHost || !migration.sourceCompute ? [] : [migration.sourceCompute],
        bootFromVolume: bdms.some((b) => b.bootIndex === 0 && b.destinationType === 'volume'),
      };
      const [selection] = await ctx.scheduler.selectDestinations(spec);
      const now = await ctx.instances.find(instance.id);
      if (!now || now.deletedAt || now.taskState !== 'resize_prep') {
        // Deleted or reset while scheduling: the claim is not wanted (abandon settles the rest).
        if (!now || now.deletedAt) await ctx.placement.deleteAllocations(instance.id);
        return true;
      }
      await ctx.migrations.update(migration.id, { destCompute: selection.host, destNode: selection.nodename, destHost: await ctx.hostIp(selection.host) });
      return true;
    });
  } catch (err) {
    if (!(err instanceof NoValidHost)) ctx.logger.error(`scheduling the ${migration.migrationType} of ${instance.id} failed`, { error: (err as Error).stack });
    await ctx.placement.deleteAllocations(instance.id).catch(() => undefined);
    return rollBack(ctx, data, instance, migration, err, ['resize_prep']);
  }
}

/** compute_prep_resize: the destination's service must be up to take the instance. */
async function prepare(ctx: ConductorContext, data: ResizeData, instance: Instance, migration: Migration): Promise<boolean> {
  const dest = migration.destCompute!;
  try {
    await ctx.actions.withEvent(data.actionId, 'compute_prep_resize', dest, async () => {
      if (!(await ctx.hostIsUp(dest))) throw new Error(`the compute service on ${dest} is down`);
    });
  } catch (err) {
    return rollBack(ctx, data, instance, migration, err, ['resize_prep']);
  }
  if (!(await ctx.instances.updateIf(instance.id, { taskState: ['resize_prep'] }, { taskState: 'resize_migrating' }))) return true;
  await ctx.migrations.updateIf(migration.id, ['pre-migrating'], { status: 'migrating' });
  return true;
}

/** compute_resize_instance on the source: power off and hand the disk over; then the instance is the destination's. */
async function migrateSource(ctx: ConductorContext, data: ResizeData, instance: Instance, migration: Migration): Promise<boolean> {
  const source = migration.sourceCompute!;
  const dest = migration.destCompute!;
  const kind = migration.migrationType === 'resize' ? 'resize' : 'migrate';
  if (instance.taskState === 'resize_prep') await ctx.instances.updateIf(instance.id, { taskState: ['resize_prep'] }, { taskState: 'resize_migrating' });
  await ctx.notify(`compute.instance.${kind}.start`, instance);
  try {
    await ctx.actions.withEvent(data.actionId, 'compute_resize_instance', source, async () => {
      if (!(await ctx.hostIsUp(source))) throw new Error(`the compute service on ${source} is down`);
      await ctx.agent(source, ctx.spawnTimeoutMs).migrateDiskAndPowerOff({ uuid: instance.id, flavor: migration.newFlavor as FlavorSnapshot, timeoutSeconds: ctx.shutdownTimeoutSeconds });
    });
  } catch (err) {
    return rollBack(ctx, data, instance, { ...migration, status: 'migrating' }, err, ['resize_prep', 'resize_migrating']);
  }
  const moved = await ctx.instances.updateIf(instance.id, { taskState: ['resize_migrating'] }, {
    host: dest, node: migration.destNode, taskState: 'resize_migrated', availabilityZone: await ctx.availabilityZoneOf(dest),
  });
  if (moved) await ctx.migrations.updateIf(migration.id, ['migrating'], { status: 'post-migrating' });
  await ctx.notify(`compute.instance.${kind}.end`, await ctx.instances.get(instance.id));
  return true;
}

/** compute_finish_resize on the destination: the instance is created there with the new flavor → VERIFY_RESIZE. */
async function finishOnDestination(ctx: ConductorContext, data: ResizeData, instance: Instance, migration: Migration): Promise<boolean> {
  const dest = migration.destCompute!;
  const newFlavor = migration.newFlavor as FlavorSnapshot;
  if (instance.taskState === 'resize_migrated') {
    if (!(await ctx.instances.updateIf(instance.id, { taskState: ['resize_migrated'] }, { taskState: 'resize_finish' }))) return true;
  }
  await ctx.notify('compute.instance.finish_resize.start', instance);
  let powerState: number;
  try {
    powerState = (await ctx.actions.withEvent(data.actionId, 'compute_finish_resize', dest, async () => {
      // The ports follow the instance to the destination (Nova's migrate_instance_finish) before it starts there.
      await ctx.networking.rebind(instance, dest);
      return ctx.agent(dest, ctx.spawnTimeoutMs).finishMigration({ instance: await specOf(ctx, instance, newFlavor), powerOn: data.oldVmState !== VmState.STOPPED, sourceHost: migration.sourceCompute ?? undefined });
    })).powerState;
  } catch (err) {
    // As Nova: the instance is the destination's now; it stays there in ERROR, and the source's allocations are dropped.
    ctx.logger.warn(`finishing the ${migration.migrationType} of ${instance.id} on ${dest} failed: ${(err as Error).message}`);
    await ctx.placement.deleteAllocations(migration.uuid);
    await ctx.migrations.update(migration.id, { status: 'error' });
    await ctx.instances.setFault(instance.id, { code: err instanceof NuboError ? err.status : 500, message: (err as Error).message, details: (err as Error).stack ?? null });
    await ctx.instances.updateIf(instance.id, { taskState: ['resize_migrated', 'resize_finish'] }, { vmState: VmState.ERROR, taskState: null, powerState: PowerState.NOSTATE });
    await ctx.notify('compute.instance.finish_resize.error', await ctx.instances.get(instance.id), 'ERROR');
    return false;
  }
  const settled = await ctx.instances.updateIf(instance.id, { taskState: ['resize_finish'] }, {
    vmState: VmState.RESIZED, taskState: null, powerState, flavor: newFlavor, flavorId: newFlavor.id, launchedAt: new Date().toISOString(), progress: 100,
  });
  if (settled) await ctx.migrations.updateIf(migration.id, ['post-migrating'], { status: 'finished' });
  await ctx.notify('compute.instance.finish_resize.end', await ctx.instances.get(instance.id));
  return true;
}

/** confirmResize: the source drops its copy and the migration's allocations go. */
export function confirmResizeWorkflow(ctx: ConductorContext) {
  return async function runConfirm(workflow: Workflow<ConfirmResizeData>, store: WorkflowStore): Promise<void> {
    const data = workflow.data;
    const migration = await ctx.migrations.get(data.migrationId);
    const instance = await ctx.instances.find(workflow.instanceId);
    if (!instance || instance.deletedAt || migration.status !== 'confirming') {
      await store.finish(workflow, 'done');
      return;
    }
    const source = migration.sourceCompute!;
    try {
      await ctx.actions.withEvent(data.actionId, 'compute_confirm_resize', source, async () => {
        if (!(await ctx.hostIsUp(source))) throw new Error(`the compute service on ${source} is down`);
        await ctx.agent(source).confirmMigration({ uuid: instance.id });
      });
    } catch (err) {
      ctx.logger.warn(`confirming the ${migration.migrationType} of ${instance.id} failed on ${source}: ${(err as Error).message}`);
      await ctx.placement.deleteAllocations(migration.uuid);
      await ctx.migrations.update(migration.id, { status: 'error' });
      await ctx.instances.setFault(instance.id, { code: 500, message: `Confirming the resize failed on ${source}: ${(err as Error).message}`, details: (err as Error).stack ?? null });
      await ctx.instances.updateIf(instance.id, { vmState: [VmState.RESIZED] }, { vmState: VmState.ERROR, taskState: null });
      await store.finish(workflow, 'failed');
      return;
    }
    await ctx.placement.deleteAllocations(migration.uuid);
    await ctx.migrations.updateIf(migration.id, ['confirming'], { status: 'confirmed' });
    // As Nova: stopped when the guest is off (a stopped server was moved stopped), active otherwise.
    const now = await ctx.instances.get(instance.id);
    await ctx.instances.updateIf(instance.id, { vmState: [VmState.RESIZED], taskState: [null] },
      { vmState: now.powerState === PowerState.SHUTDOWN ? VmState.STOPPED : VmState.ACTIVE });
    await ctx.notify('compute.instance.resize.confirm.end', await ctx.instances.get(instance.id));
    await store.finish(workflow, 'done');
  };
}

/** revertResize: the destination drops its copy, the allocations and the old flavor come back, the source copy powers on as before. */
export function revertResizeWorkflow(ctx: ConductorContext) {
  return async function runRevert(workflow: Workflow<RevertResizeData>, store: WorkflowStore): Promise<void> {
    const data = workflow.data;
    let migration = await ctx.migrations.get(data.migrationId);
    let instance = await ctx.instances.find(workflow.instanceId);
    if (!instance || instance.deletedAt || instance.taskState !== 'resize_reverting' || !['reverting', 'reverted'].includes(migration.status)) {
      await store.finish(workflow, 'done');
      return;
    }
    const source = migration.sourceCompute!;
    const dest = migration.destCompute!;
    const fail = async (host: string, err: unknown) => {
      ctx.logger.warn(`reverting the ${migration.migrationType} of ${instance!.id} failed on ${host}: ${(err as Error).message}`);
      if (host === dest) await ctx.placement.deleteAllocations(migration.uuid);
      await ctx.migrations.update(migration.id, { status: 'error' });
      await ctx.instances.setFault(instance!.id, { code: err instanceof NuboError ? err.status : 500, message: (err as Error).message, details: (err as Error).stack ?? null });
      await ctx.instances.updateIf(instance!.id, { taskState: ['resize_reverting'] }, { vmState: VmState.ERROR, taskState: null });
      await store.finish(workflow, 'failed');
    };
    if (migration.status === 'reverting') {
      try {
        await ctx.actions.withEvent(data.actionId, 'compute_revert_resize', dest, async () => {
          if (!(await ctx.hostIsUp(dest))) throw new Error(`the compute service on ${dest} is down`);
          await ctx.agent(dest).revertMigration({ uuid: instance!.id });
        });
      } catch (err) {
        await fail(dest, err);
        return;
      }
      await ctx.migrations.updateIf(migration.id, ['reverting'], { status: 'reverted' });
      await store.advance(workflow, 'reverted');
      migration = await ctx.migrations.get(data.migrationId);
    }
    // The instance is the source's again, with its old flavor and its source allocations (moved back atomically).
    const oldFlavor = migration.oldFlavor as FlavorSnapshot;
    await ctx.instances.updateIf(instance.id, { taskState: ['resize_reverting'] }, {
      host: source, node: migration.sourceNode, flavor: oldFlavor, flavorId: oldFlavor.id, availabilityZone: await ctx.availabilityZoneOf(source),
    });
    instance = await ctx.instances.get(instance.id);
    await revertAllocations(ctx, instance, migration);
    await ctx.networking.rebind(instance, source);
    let powerState: number;
    try {
      powerState = (await ctx.actions.withEvent(data.actionId, 'compute_finish_revert_resize', source, async () => {
        if (!(await ctx.hostIsUp(source))) throw new Error(`the compute service on ${source} is down`);
        return ctx.agent(source).finishRevertMigration({ uuid: instance!.id, powerOn: data.powerOn });
      })).powerState;
    } catch (err) {
      await fail(source, err);
      return;
    }
    await ctx.instances.updateIf(instance.id, { taskState: ['resize_reverting'] }, {
      vmState: data.powerOn ? VmState.ACTIVE : VmState.STOPPED, taskState: null, powerState, launchedAt: new Date().toISOString(),
    });
    await ctx.notify('compute.instance.resize.revert.end', await ctx.instances.get(instance.id));
    await store.finish(workflow, 'done');
  };
}

/** A request id for what the conductor does on its own (auto-confirm), in Nova's form. */
export const conductorRequestId = () => `req-${randomUUID()}`;
