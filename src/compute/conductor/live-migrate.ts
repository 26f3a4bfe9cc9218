// The live-migration workflow (Nova's conductor LiveMigrationTask + the compute manager's
// _do_live_migration / _post_live_migration / _rollback_live_migration). The migration record's
// status is the checkpoint a resumed run reads:
//   accepted   pre-checks and scheduling: the source's allocations move to the migration
//              (consumer = migration uuid), the instance claims the destination
//   queued     destination chosen → preparing: the destination prepares (pre_live_migration)
//   running    the source transfers; progress is copied into the record while it runs
//   completed  the destination runs the instance, the migration's allocations are dropped
//   error | failed | cancelled   rolled back: the instance runs where it started, its
//              allocations moved back, the destination's preparation removed
// Abort and force-complete reach the source host directly (the API sends them); this workflow
// sees their result in the job the source reports. Nothing ends in a task state.
import { NuboError } from '../../core/errors.js';
import { VmState, type Instance } from '../instances.js';
import type { Migration } from '../migrations.js';
import { PowerState, type PowerStateValue } from '../rpc.js';
import type { LiveMigrationJob } from '../virt/driver.js';
import { specOf } from './build.js';
import type { ConductorContext } from './context.js';
import type { Workflow, WorkflowStore } from './workflows.js';

export interface LiveMigrateData {
  actionId: string;
  migrationId: number;
  /** The host asked for (null: the scheduler picks). */
  requestedHost: string | null;
  /** Skip the scheduler's filters for the requested host (2.30–2.67 force). */
  force: boolean;
  /** null: auto (block migration when there is no shared storage, which is always so here). */
  blockMigration: boolean | null;
}

export const LIVE_MIGRATION_TASK = 'migrating';
/** Statuses of a migration that is over. */
export const FINISHED_STATUSES = ['completed', 'failed', 'cancelled', 'error', 'done', 'confirmed', 'reverted'];

// ---- allocations: Nova's migration-based allocations ----

/** Moves the instance's allocations (its source host's) to the migration consumer. Safe to repeat. */
export async function moveAllocationsToMigration(ctx: ConductorContext, instance: Instance, migration: Migration): Promise<void> {
  const held = await ctx.placement.getAllocations(migration.uuid);
  if (Object.keys(held.allocations).length > 0) {
    // Moved before (a resumed run): what the instance holds now is a claim of an interrupted scheduling.
    await ctx.placement.deleteAllocations(instance.id);
    return;
  }
  const current = await ctx.placement.getAllocations(instance.id);
  if (Object.keys(current.allocations).length === 0) return;
  const allocations = Object.fromEntries(Object.entries(current.allocations).map(([rp, a]) => [rp, { resources: a.resources }]));
  await ctx.placement.postAllocations({
    [migration.uuid]: { allocations, projectId: instance.projectId, userId: instance.userId, consumerGeneration: null, consumerType: 'MIGRATION' },
    [instance.id]: { allocations: {}, projectId: instance.projectId, userId: instance.userId, consumerGeneration: undefined },
  });
}

/** Gives the instance back the allocations the migration holds (dropping its claim on the destination). Safe to repeat. */
export async function moveAllocationsBack(ctx: ConductorContext, instance: Instance, migration: Migration): Promise<void> {
  const held = await ctx.placement.getAllocations(migration.uuid);
  if (Object.keys(held.allocations).length === 0) return;
  const allocations = Object.fromEntries(Object.entries(held.allocations).map(([rp, a]) => [rp, { resources: a.resources }]));
  await ctx.placement.postAllocations({
    [instance.id]: { allocations, projectId: instance.projectId, userId: instance.userId, consumerGeneration: undefined },
    [migration.uuid]: { allocations: {}, projectId: instance.projectId, userId: instance.userId, consumerGeneration: undefined },
  });
}

/** Picks (and claims, for the instance) the destination: the scheduler with the source left out, or the given host. */
export async function scheduleMove(ctx: ConductorContext, instance: Instance, source: string, requestedHost: string | null, force: boolean) {
  const image = instance.imageRef ? await ctx.imageProperties(instance.imageRef) : null;
  const groupId = instance.request.groupId;
  const bdms = await ctx.instances.blockDeviceMappings(instance.id);
  const [selection] = await ctx.scheduler.selectDestinations({
    instanceUuids: [instance.id],
    projectId: instance.projectId,
    userId: instance.userId,
    flavor: instance.flavor,
    image: image ? { id: instance.imageRef!, properties: image } : null,
    availabilityZone: instance.requestedAvailabilityZone,
    ...(requestedHost ? (force ? { requestedHost } : { requestedDestination: requestedHost }) : {}),
    schedulerHints: instance.request.schedulerHints,
    group: groupId ? await ctx.serverGroup(groupId) : undefined,
    ignoreHosts: [source],
    bootFromVolume: bdms.some((b) => b.bootIndex === 0 && b.destinationType === 'volume'),
  });
  return selection;
}

// ---- the workflow ----

export function liveMigrateWorkflow(ctx: ConductorContext) {
  return async function runLiveMigrate(workflow: Workflow<LiveMigrateData>, store: WorkflowStore): Promise<void> {
    const data = workflow.data;
    let migration = await ctx.migrations.get(data.migrationId);
    const instance = await ctx.instances.find(workflow.instanceId);
    if (!instance || instance.deletedAt || instance.taskState !== LIVE_MIGRATION_TASK) {
      // Someone else (a delete, a reset) took the instance over: settle the record and the allocations by where it is.
      if (instance && !FINISHED_STATUSES.includes(migration.status)) {
        if (instance.host === migration.destCompute && migration.destCompute) await ctx.placement.deleteAllocations(migration.uuid);
        else if (!instance.deletedAt) await moveAllocationsBack(ctx, instance, migration);
        else await ctx.placement.deleteAllocations(migration.uuid);
        await ctx.migrations.update(migration.id, { status: instance.host === migration.destCompute ? 'completed' : 'error' });
      }
      await store.finish(workflow, 'done');
      return;
    }
    const run = new LiveMigration(ctx, workflow, store, instance);

    if (migration.status === 'accepted') {
      const next = await run.precheckAndSchedule(migration);
      if (!next) return;
      migration = next;
    }
    if (migration.status === 'queued' || migration.status === 'preparing') {
      // A run cut off before the transfer started: nothing ran on the source, so start over from a clean state.
      if (workflow.resumed) return run.rollBack(migration, 'error', 'the conductor stopped before the transfer started');
      const next = await run.prepareAndStart(migration);
      if (!next) return;
      migration = next;
    }
    if (migration.status === 'running') {
      const job = await run.monitor(migration);
      migration = await ctx.migrations.get(migration.id);
      if (job?.status !== 'completed') {
        return run.rollBack(migration, job?.status === 'cancelled' ? 'cancelled' : 'failed', job?.error ?? 'the source host lost the migration job');
      }
      return run.complete(migration);
    }
    if (migration.status === 'completed') return run.complete(migration);
    // error, failed, cancelled recorded but the instance still migrating (cut off while rolling back).
    return run.rollBack(migration, migration.status as 'error', 'resumed');
  };
}

class LiveMigration {
  constructor(private readonly ctx: ConductorContext, private readonly workflow: Workflow<LiveMigrateData>,
    private readonly store: WorkflowStore, private readonly instance: Instance) {}

  private get data() { return this.workflow.data; }

  /** Pre-checks and the destination: 'queued' with it recorded, or rolled back ('error') and undefined. */
  async precheckAndSchedule(migration: Migration): Promise<Migration | undefined> {
    const { ctx, instance, data } = this;
    const source = migration.sourceCompute!;
    try {
      const selection = await ctx.actions.withEvent(data.actionId, 'conductor_live_migrate_instance', ctx.conductorHost, async () => {
        if (!(await ctx.hostIsUp(source))) throw new PrecheckError(`Compute service of ${source} is unavailable at this time.`);
        if (data.requestedHost) {
          if (data.requestedHost === source) throw new PrecheckError(`Unable to migrate instance (${instance.id}) to current host (${source}).`);
          if (!(await ctx.hostIsUp(data.requestedHost))) throw new PrecheckError(`Compute service of ${data.requestedHost} is unavailable at this time.`);
        }
        await moveAllocationsToMigration(ctx, instance, migration);
        return scheduleMove(ctx, instance, source, data.requestedHost, data.force);
      });
      const recorded = await ctx.migrations.updateIf(migration.id, ['accepted'], {
        status: 'queued', destCompute: selection.host, destNode: selection.nodename,
      });
      if (!recorded) throw new PrecheckError('the migration was changed meanwhile');
      await this.store.advance(this.workflow, 'queued');
      return ctx.migrations.get(migration.id);
    } catch (err) {
      await this.rollBack(await ctx.migrations.get(migration.id), 'error', `Migration pre-check error: ${(err as Error).message}`, err);
      return undefined;
    }
  }

  /** preparing (the destination gets ready) → running (the source transfers); undefined when it was cancelled or failed (rolled back). */
  async prepareAndStart(migration: Migration): Promise<Migration | undefined> {
    const { ctx, instance, data } = this;
    const source = migration.sourceCompute!;
    const dest = migration.destCompute!;
    try {
      if (!(await ctx.migrations.updateIf(migration.id, ['queued'], { status: 'preparing' }))) {
        await this.rollBack(await ctx.migrations.get(migration.id), 'cancelled', 'cancelled before it started');
        return undefined;
      }
      await ctx.notify('compute.instance.live_migration.pre.start', instance);
      await ctx.actions.withEvent(data.actionId, 'compute_pre_live_migration', dest, async () => {
        await ctx.agent(dest).preLiveMigration({ instance: await specOf(ctx, instance), sourceHost: source });
      });
      if (!(await ctx.migrations.updateIf(migration.id, ['preparing'], { status: 'running' }))) {
        await this.rollBack(await ctx.migrations.get(migration.id), 'cancelled', 'cancelled before the transfer');
        return undefined;
      }
      await this.store.advance(this.workflow, 'running');
      await ctx.agent(source).liveMigration({ uuid: instance.id, destHost: dest, blockMigration: data.blockMigration !== false, migrationUuid: migration.uuid });
      return ctx.migrations.get(migration.id);
    } catch (err) {
      await this.rollBack(await ctx.migrations.get(migration.id), 'failed', (err as Error).message, err);
      return undefined;
    }
  }

  /** Follows the source's job to its end, copying its progress into the record; null when the source has no such job. */
  async monitor(migration: Migration): Promise<LiveMigrationJob | null> {
    const { ctx, instance, data } = this;
    const source = migration.sourceCompute!;
    const eventId = await ctx.actions.startEvent(data.actionId, 'compute_live_migration', source);
    let failures = 0;
    let last = '';
    let result: LiveMigrationJob | null = null;
    for (;;) {
      let job: LiveMigrationJob | null;
      try {
        job = (await ctx.agent(source).liveMigrationJob({ uuid: instance.id })).job;
        failures = 0;
      } catch (err) {
        // The source does not answer: keep asking a while (a restarting agent), then give up and roll back.
        if (++failures < 20) {
          await sleep(ctx.liveMigrationPollMs);
          continue;
        }
        job = { status: 'failed', migrationUuid: migration.uuid, destHost: migration.destCompute!, error: `the source host does not answer: ${(err as Error).message}`, memoryTotal: 0, memoryProcessed: 0, memoryRemaining: 0, diskTotal: 0, diskProcessed: 0, diskRemaining: 0 };
      }
      if (job && job.migrationUuid !== migration.uuid) job = null;
      if (job) {
        const progress = { memoryTotal: job.memoryTotal, memoryProcessed: job.memoryProcessed, memoryRemaining: job.memoryRemaining, diskTotal: job.diskTotal, diskProcessed: job.diskProcessed, diskRemaining: job.diskRemaining };
        const key = JSON.stringify(progress);
        if (key !== last) {
          last = key;
          await ctx.migrations.update(migration.id, progress);
          const percent = job.memoryTotal > 0 ? Math.floor((100 * job.memoryProcessed) / job.memoryTotal) : 0;
          await ctx.instances.updateIf(instance.id, { taskState: [LIVE_MIGRATION_TASK] }, { progress: percent });
        }
      }
      if (!job || job.status !== 'running') {
        result = job;
        break;
      }
      await sleep(ctx.liveMigrationPollMs);
    }
    await ctx.actions.finishEvent(eventId, data.actionId, result?.status === 'completed' ? undefined : { message: result?.error ?? `live migration ${result?.status ?? 'lost'}` });
    return result;
  }

  /** The transfer completed: the destination runs the instance, the source's allocations go, the record says where it is. */
  async complete(migration: Migration): Promise<void> {
    const { ctx, instance, data } = this;
    const dest = migration.destCompute!;
    const wanted: PowerStateValue = instance.vmState === VmState.PAUSED ? PowerState.PAUSED : PowerState.RUNNING;
    try {
      const { powerState } = await ctx.actions.withEvent(data.actionId, 'compute_post_live_migration_at_destination', dest,
        () => ctx.agent(dest).postLiveMigrationAtDestination({ uuid: instance.id, powerState: wanted }));
      await ctx.placement.deleteAllocations(migration.uuid);
      // The ports are the destination's now (Nova's migrate_instance_finish: binding:host_id moves).
      await ctx.networking.rebind(instance, dest);
      await ctx.migrations.update(migration.id, { status: 'completed' });
      await ctx.instances.updateIf(instance.id, { taskState: [LIVE_MIGRATION_TASK] }, {
        host: dest, node: migration.destNode, availabilityZone: await ctx.availabilityZoneOf(dest), powerState, taskState: null, progress: 0,
      });
      await ctx.notify('compute.instance.live_migration._post.end', await ctx.instances.get(instance.id));
      await this.store.finish(this.workflow, 'done');
    } catch (err) {
      // The source no longer has it and the destination does not take it: ERROR on the destination, with a fault.
      ctx.logger.error(`live migration of ${instance.id}: the destination ${dest} did not take the instance: ${(err as Error).message}`);
      await ctx.placement.deleteAllocations(migration.uuid);
      await ctx.migrations.update(migration.id, { status: 'error' });
      await ctx.instances.setFault(instance.id, { code: 500, message: `Live migration to ${dest} failed after the transfer: ${(err as Error).message}` });
      await ctx.instances.updateIf(instance.id, { taskState: [LIVE_MIGRATION_TASK] }, { host: dest, node: migration.destNode, vmState: VmState.ERROR, taskState: null, powerState: PowerState.NOSTATE });
      await this.store.finish(this.workflow, 'failed');
    }
  }

  /** Back to where it started: the destination's preparation removed, the allocations moved back, the task cleared. */
  async rollBack(migration: Migration, status: 'error' | 'failed' | 'cancelled', reason: string, err?: unknown): Promise<void> {
    const { ctx, instance } = this;
    const source = migration.sourceCompute!;
    if (err) ctx.logger.warn(`live migration of ${instance.id} from ${source}: ${reason}`, err instanceof NuboError || err instanceof PrecheckError ? {} : { error: (err as Error).stack });
    if (migration.destCompute) await ctx.agent(migration.destCompute).rollbackLiveMigrationAtDestination({ uuid: instance.id }).catch(() => undefined);
    await moveAllocationsBack(ctx, instance, migration);
    await ctx.migrations.update(migration.id, { status });
    if (status !== 'cancelled') {
      await ctx.instances.setFault(instance.id, { code: err instanceof NuboError ? err.status : 500, message: reason, details: (err as Error)?.stack ?? null });
    }
    const seen = await ctx.agent(source).getPowerState({ uuid: instance.id }).catch(() => ({ powerState: null }));
    await ctx.instances.updateIf(instance.id, { taskState: [LIVE_MIGRATION_TASK] }, {
      taskState: null, progress: 0, ...(seen.powerState !== null ? { powerState: seen.powerState } : {}),
    });
    await ctx.notify('compute.instance.live_migration._rollback.end', await ctx.instances.get(instance.id), status === 'cancelled' ? 'INFO' : 'ERROR');
    await this.store.finish(this.workflow, status === 'cancelled' ? 'done' : 'failed');
  }
}

/** A pre-check that refused the migration (Nova's MigrationPreCheckError family: a 400 for callers before 2.34). */
export class PrecheckError extends Error {}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
