// The conductor: runs the persisted workflows (build, delete, ...) with the scheduler, and
// serves what compute agents report (registration, heartbeats, power states). Every
// controller process runs one; they share the CONDUCTOR_TOPIC and the workflow table.
import { hostname } from 'node:os';
import type { Kysely } from 'kysely';
import type { Subscription } from '../../bus/types.js';
import type { ComputeDeps } from '../index.js';
import type { InstanceActionStore } from '../actions.js';
import type { AggregateService } from '../aggregates.js';
import type { HostService } from '../hosts.js';
import { VmState, type Instance, type InstanceStore } from '../instances.js';
import { agentClient, CONDUCTOR_TOPIC, PowerState, type PowerStateValue } from '../rpc.js';
import type { Scheduler } from '../scheduler/index.js';
import type { ServerGroupService } from '../server-groups.js';
import { buildWorkflow, type BuildData } from './build.js';
import type { ConductorContext } from './context.js';
import { deleteWorkflow } from './delete.js';
import { powerWorkflow } from './power.js';
import { reclaimQueuedDeletes } from './reclaim.js';
import { confirmResizeWorkflow, conductorRequestId, resizeWorkflow, revertResizeWorkflow, type ConfirmResizeData } from './resize.js';
import type { MigrationStore } from '../migrations.js';
import { transaction } from '../../db/index.js';
import { liveMigrateWorkflow } from './live-migrate.js';
import { evacuateWorkflow } from './evacuate.js';
import { hostHandlers } from './host-handlers.js';
import { imageDataHandlers } from './image-data.js';
import { registerImageWorkflows, shelvedOffloadPoller } from './shelve.js';
import { SystemMetadataStore } from '../system-metadata.js';
import type { InstanceNetworking } from '../networking.js';
import { WorkflowRunner, WorkflowStore, type Workflow } from './workflows.js';

export interface ConductorDeps extends ComputeDeps {
  instances: InstanceStore;
  actions: InstanceActionStore;
  hosts: HostService;
  aggregates: AggregateService;
  serverGroups: ServerGroupService;
  scheduler: Scheduler;
  migrations: MigrationStore;
  networking: InstanceNetworking;
}

export class Conductor {
  readonly host: string;
  private readonly workflows: WorkflowStore;
  private readonly runner: WorkflowRunner;
  private readonly context: ConductorContext;
  private subscription?: Subscription;
  private reclaimTimer?: NodeJS.Timeout;
  private shelvedPoller?: { stop(): void };
  private autoConfirmTimer?: NodeJS.Timeout;

  constructor(private readonly deps: ConductorDeps) {
    const { config } = deps;
    this.host = config.get('DEFAULT', 'host', hostname());
    this.workflows = new WorkflowStore(deps.database, this.host);
    this.runner = new WorkflowRunner(this.workflows, deps.logger, config.getInt('conductor', 'max_concurrent_workflows', 64));
    const rpcTimeoutMs = config.getInt('DEFAULT', 'rpc_response_timeout', 60) * 1000;
    const queues = new Map<string, Promise<unknown>>();
    this.context = {
      serialized: (key, fn) => {
        const previous = queues.get(key) ?? Promise.resolve();
        const run = previous.catch(() => undefined).then(fn);
        const tail = run.catch(() => undefined);
        queues.set(key, tail);
        void tail.then(() => { if (queues.get(key) === tail) queues.delete(key); });
        return run;
      },
      conductorHost: this.host,
      instances: deps.instances,
      actions: deps.actions,
      placement: deps.placement,
      scheduler: deps.scheduler,
      logger: deps.logger,
      maxAttempts: Math.max(1, config.getInt('scheduler', 'max_attempts', 3)),
      spawnTimeoutMs: config.getInt('compute', 'spawn_timeout', 600) * 1000,
      shutdownTimeoutSeconds: config.getInt('DEFAULT', 'shutdown_timeout', 60),
      agent: (host, timeoutMs) => agentClient(deps.bus, host, timeoutMs ?? rpcTimeoutMs),
      hostIsUp: (host) => deps.hosts.isHostUp(host),
      hostBuildResult: (host, succeeded) => deps.hosts.recordBuildResult(host, succeeded),
      availabilityZoneOf: (host) => deps.aggregates.availabilityZoneOfHost(host),
      imageProperties: async (imageId) => {
        const image = await deps.images.getImage({ isAdmin: true }, imageId).catch(() => undefined);
        if (!image) return null;
        return { ...image.properties, ...(image.min_ram ? { min_ram: String(image.min_ram) } : {}) };
      },
      serverGroup: async (groupId) => {
        const group = await deps.serverGroups.get(groupId).catch(() => undefined);
        if (!group) return undefined;
        return { id: group.id, policy: group.policy, rules: group.rules, members: group.members };
      },
      leaveServerGroup: (instanceId) => deps.serverGroups.removeMember(instanceId),
      notify: (eventType, instance, priority = 'INFO') => deps.bus.notify(eventType, instancePayload(instance), { publisherId: `compute.${this.host}`, priority }).catch(() => undefined),
      images: deps.images,
      systemMetadata: new SystemMetadataStore(deps.database),
      shelvedOffloadTimeSeconds: config.getInt('DEFAULT', 'shelved_offload_time', 0),
      migrations: deps.migrations,
      hostIp: async (host) => (await deps.hosts.listNodes()).find((n) => n.host === host)?.hostIp ?? null,
      networking: deps.networking,
      liveMigrationPollMs: Math.max(10, config.getInt('conductor', 'live_migration_poll_interval_ms', 100)),
    };
    this.runner.register('build', buildWorkflow(this.context));
    this.runner.register('delete', deleteWorkflow(this.context));
    this.runner.register('power', powerWorkflow(this.context));
    registerImageWorkflows(this.runner, this.context);
    this.runner.register('resize', resizeWorkflow(this.context));
    this.runner.register('confirm-resize', confirmResizeWorkflow(this.context));
    this.runner.register('revert-resize', revertResizeWorkflow(this.context));
    this.runner.register('live-migrate', liveMigrateWorkflow(this.context));
    this.runner.register('evacuate', evacuateWorkflow(this.context));
  }

  /** Serves the conductor topic, registers this conductor's services, and resumes orphaned workflows. */
  async start(): Promise<void> {
    const handlers = hostHandlers(this.deps.hosts);
    this.subscription = await this.deps.bus.serve(CONDUCTOR_TOPIC, {
      ...handlers,
      ...imageDataHandlers(this.deps.images),
      registerHost: async (args, context) => {
        const result = await handlers.registerHost(args, context);
        // After an agent restart, remove what it still runs that the database says is gone or elsewhere.
        void this.reconcileHost(args.report.host).catch((err) => this.deps.logger.warn(`reconciling ${args.report.host} failed: ${(err as Error).message}`));
        return result;
      },
      syncPowerStates: (args: { host: string; states: Record<string, PowerStateValue> }) => this.syncPowerStates(args.host, args.states),
    });
    await this.deps.hosts.registerControlServices(this.host);
    await this.runner.start();
    this.shelvedPoller = shelvedOffloadPoller(this.context, this, this.deps.database, this.deps.config);
    this.startReclaiming();
    this.startAutoConfirm();
  }

  /** Every [DEFAULT] reclaim_instance_interval seconds (when > 0), deletes servers soft-deleted longer ago than that. */
  private startReclaiming(): void {
    const interval = this.deps.config.getInt('DEFAULT', 'reclaim_instance_interval', 0);
    if (!(interval > 0)) return;
    let running = false;
    this.reclaimTimer = setInterval(() => {
      if (running) return;
      running = true;
      reclaimQueuedDeletes({ database: this.deps.database, instances: this.deps.instances, actions: this.deps.actions, workflows: this.workflows,
        launch: (workflow) => this.launch(workflow), logger: this.deps.logger }, interval)
        .catch((err) => this.deps.logger.warn(`reclaiming soft-deleted servers failed: ${(err as Error).message}`))
        .finally(() => { running = false; });
    }, interval * 1000);
    this.reclaimTimer.unref();
  }

  /**
   * [DEFAULT] resize_confirm_window (seconds, 0 = never): moves left in VERIFY_RESIZE longer than
   * that are confirmed (Nova's _poll_unconfirmed_resizes), checked every min(window, 60) seconds.
   */
  private startAutoConfirm(): void {
    const window = this.deps.config.getInt('DEFAULT', 'resize_confirm_window', 0);
    if (!(window > 0)) return;
    const tick = () => {
      this.autoConfirmTimer = setTimeout(() => {
        void this.confirmUnconfirmedResizes(window)
          .catch((err) => this.deps.logger.warn(`auto-confirming resizes failed: ${(err as Error).message}`))
          .finally(() => { if (this.autoConfirmTimer) tick(); });
      }, Math.min(window, 60) * 1000);
      this.autoConfirmTimer.unref();
    };
    tick();
  }

  /** Confirms every finished move older than `windowSeconds` whose instance waits in VERIFY_RESIZE. */
  async confirmUnconfirmedResizes(windowSeconds: number): Promise<number> {
    const before = new Date(Date.now() - windowSeconds * 1000).toISOString();
    const due = await this.deps.migrations.list({ status: ['finished'], changesBefore: before });
    let confirmed = 0;
    for (const migration of due) {
      const instance = await this.deps.instances.find(migration.instanceId);
      if (!instance || instance.deletedAt || instance.vmState !== VmState.RESIZED || instance.taskState !== null) continue;
      const workflow = await transaction(this.deps.database, async (trx) => {
        if (!(await this.deps.migrations.updateIf(migration.id, ['finished'], { status: 'confirming' }, trx))) return undefined;
        const action = await this.deps.actions.start(instance.id, 'confirmResize', { requestId: conductorRequestId(), userId: instance.userId, projectId: instance.projectId }, trx);
        return this.workflows.create<ConfirmResizeData>('confirm-resize', instance.id, { actionId: action.id, migrationId: migration.id }, trx);
      });
      if (!workflow) continue;
      this.deps.logger.info(`automatically confirming the ${migration.migrationType} of ${instance.id} (resize_confirm_window ${windowSeconds} s)`);
      this.launch(workflow);
      confirmed++;
    }
    return confirmed;
  }

  /** Records a build workflow for instances just created (inside the API's transaction); run it with launch() after commit. */
  createBuild(instanceIds: string[], actionIds: Record<string, string>, trx: Kysely<any>): Promise<Workflow<BuildData>> {
    return this.workflows.create<BuildData>('build', instanceIds[0], { instanceIds, actionIds, alternates: {}, tried: {} }, trx);
  }

  /** Records a workflow of another kind ('delete', 'power', ...) for one instance; run it with launch() after commit. */
  createWorkflow<Data>(kind: string, instanceId: string, data: Data, trx?: Kysely<any>): Promise<Workflow<Data>> {
    return this.workflows.create<Data>(kind, instanceId, data, trx);
  }

  launch(workflow: Workflow): void {
    this.runner.run(workflow);
  }

  /** Resolves when no workflow of this conductor is queued or running. */
  settle(): Promise<void> {
    return this.runner.settle();
  }

  /** Power states as the host's driver sees them; the database follows (Nova's _sync_power_states). */
  private async syncPowerStates(host: string, states: Record<string, PowerStateValue>): Promise<void> {
    const instances = await this.deps.instances.list({ host });
    for (const instance of instances) {
      if (instance.taskState !== null) continue; // an action is under way: it sets the state when it ends
      const seen = states[instance.id] ?? PowerState.NOSTATE;
      if (seen === instance.powerState) continue;
      const changes: Parameters<InstanceStore['update']>[1] = { powerState: seen };
      // A guest that stopped by itself is a stopped server, as Nova's sync makes it.
      if (instance.vmState === VmState.ACTIVE && (seen === PowerState.SHUTDOWN || seen === PowerState.NOSTATE || seen === PowerState.CRASHED)) changes.vmState = VmState.STOPPED;
      await this.deps.instances.updateIf(instance.id, { taskState: [null] }, changes);
    }
  }

  /** Destroys instances a host runs that are deleted or belong elsewhere (left over from a local delete or an evacuation). */
  private async reconcileHost(host: string): Promise<void> {
    const agent = this.context.agent(host);
    const { uuids } = await agent.listInstances({});
    // Evacuations away from this host are over once its copies are gone (Nova's _destroy_evacuated_instances).
    const evacuated = await this.deps.migrations.list({ sourceCompute: host, migrationType: 'evacuation', status: ['done'] });
    const finishEvacuations = () => Promise.all(evacuated.map((m) => this.deps.migrations.updateIf(m.id, ['done'], { status: 'completed' })));
    if (uuids.length === 0) {
      await finishEvacuations();
      return;
    }
    const live = new Set((await this.deps.instances.list({ host, ids: uuids })).map((i) => i.id));
    for (const uuid of uuids) {
      if (live.has(uuid)) continue;
      if ((await this.workflows.running(uuid)).length > 0) continue;
      this.deps.logger.info(`destroying ${uuid} on ${host}: it is deleted or lives elsewhere`);
      await agent.destroyInstance({ uuid }).catch(() => undefined);
    }
    await finishEvacuations();
  }

  async close(): Promise<void> {
    if (this.reclaimTimer) clearInterval(this.reclaimTimer);
    this.shelvedPoller?.stop();
    if (this.autoConfirmTimer) clearTimeout(this.autoConfirmTimer);
    this.autoConfirmTimer = undefined;
    this.runner.stop();
    await this.subscription?.close();
  }
}

/** The notification payload of an instance (the fields Nova's legacy notifications carry). */
function instancePayload(instance: Instance) {
  return {
    instance_id: instance.id, display_name: instance.name, tenant_id: instance.projectId, user_id: instance.userId,
    host: instance.host, node: instance.node, availability_zone: instance.availabilityZone, state: instance.vmState,
    state_description: instance.taskState ?? '', power_state: instance.powerState, instance_type_id: instance.flavorId,
    instance_type: instance.flavor.name, vcpus: instance.flavor.vcpus, memory_mb: instance.flavor.memoryMb,
    root_gb: instance.flavor.rootGb, image_ref_url: instance.imageRef, created_at: instance.createdAt,
    launched_at: instance.launchedAt, terminated_at: instance.terminatedAt, deleted_at: instance.deletedAt,
    fault: instance.fault?.message ?? null,
  };
}
