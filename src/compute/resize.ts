// Resize and cold migration at the API (Nova's compute/api.py resize, confirm_resize,
// revert_resize): the checks Nova makes before a move, the task state, the instance action,
// the migration record and the workflow, written in one transaction. The conductor's
// resize workflows (conductor/resize.ts) carry the move out.
//   [DEFAULT] allow_resize_to_same_host (false)   a resize may land on the source host
import { BadRequest, Conflict, NotFound } from '../core/errors.js';
import type { Config } from '../core/config.js';
import { transaction, type Database } from '../db/index.js';
import type { InstanceActionStore } from './actions.js';
import type { Conductor } from './conductor/index.js';
import type { ConfirmResizeData, ResizeData, RevertResizeData } from './conductor/resize.js';
import type { FlavorService } from './flavors.js';
import type { HostService } from './hosts.js';
import { VmState, type FlavorSnapshot, type Instance, type InstanceStore } from './instances.js';
import type { ServerActions } from './lifecycle.js';
import type { Migration, MigrationStore } from './migrations.js';
import type { QuotaService } from './quotas.js';
import { PowerState } from './rpc.js';
import type { Caller } from './servers.js';

export interface ResizeDeps {
  config: Config;
  database: Database;
  instances: InstanceStore;
  actions: InstanceActionStore;
  migrations: MigrationStore;
  flavors: FlavorService;
  quotas: QuotaService;
  hosts: HostService;
  lifecycle: ServerActions;
  conductor: Conductor;
}

/** Nova's upsize_quota_delta: only the growth of cores and RAM counts. */
function upsizeDeltas(from: FlavorSnapshot, to: FlavorSnapshot): Record<string, number> {
  const deltas: Record<string, number> = {};
  if (to.vcpus > from.vcpus) deltas.cores = to.vcpus - from.vcpus;
  if (to.memoryMb > from.memoryMb) deltas.ram = to.memoryMb - from.memoryMb;
  return deltas;
}

export class ResizeService {
  readonly allowResizeToSameHost: boolean;

  constructor(private readonly deps: ResizeDeps) {
    this.allowResizeToSameHost = deps.config.getBool('DEFAULT', 'allow_resize_to_same_host', false);
  }

  /** resize (flavorRef given) or migrate (none; optionally to `host`, 2.56). */
  async resize(caller: Caller, instance: Instance, options: { flavorRef?: string; host?: string }): Promise<void> {
    const { deps } = this;
    const apiName = options.flavorRef === undefined ? 'migrate' : 'resize';
    deps.lifecycle.checkLock(caller, instance);
    deps.lifecycle.checkState(instance, { vmStates: [VmState.ACTIVE, VmState.STOPPED] }, apiName);
    // check_instance_host(check_is_up=True)
    if (!instance.host) throw new Conflict(`Instance ${instance.id} is not ready`);
    if (!(await deps.hosts.isHostUp(instance.host))) throw new Conflict('Service is unavailable at this time.');
    if (options.host !== undefined) {
      if (options.host === instance.host) throw new BadRequest('Cannot migrate to the host where the server exists.');
      if (!(await deps.hosts.hostExists(options.host))) throw new BadRequest(`Compute host ${options.host} could not be found.`);
    }
    const current = instance.flavor;
    let next: FlavorSnapshot = current;
    if (options.flavorRef !== undefined) {
      const id = options.flavorRef.split('/').pop()!;
      const flavor = await deps.flavors.get(id, { projectId: caller.projectId, isAdmin: caller.isAdmin }).catch((err: unknown) => {
        if (err instanceof NotFound) throw new BadRequest(`Flavor ${id} could not be found.`);
        throw err;
      });
      if (flavor.id === current.id) throw new BadRequest('When resizing, instances must change flavor!');
      if (flavor.disabled) throw new BadRequest(`Flavor ${id} could not be found.`);
      const bdms = await deps.instances.blockDeviceMappings(instance.id);
      const volumeBacked = bdms.some((b) => b.bootIndex === 0 && b.destinationType === 'volume');
      if (flavor.rootGb === 0 && current.rootGb !== 0 && !volumeBacked) {
        throw new BadRequest('Server disk was unable to be resized because: Resize to zero disk flavor is not allowed.');
      }
      const { name, vcpus, memoryMb, rootGb, ephemeralGb, swapMb, rxtxFactor, description, extraSpecs } = flavor;
      next = { id: flavor.id, name, vcpus, memoryMb, rootGb, ephemeralGb, swapMb, rxtxFactor, description, extraSpecs };
      const deltas = upsizeDeltas(current, next);
      if (Object.keys(deltas).length) await deps.quotas.check(instance.projectId, instance.userId, deltas);
    }
    const isResize = options.flavorRef !== undefined;
    const created = await transaction(deps.database, async (trx) => {
      const moved = await deps.instances.updateIf(instance.id, { vmState: [VmState.ACTIVE, VmState.STOPPED], taskState: [null] }, { taskState: 'resize_prep', progress: 0 }, trx);
      if (!moved) {
        deps.lifecycle.checkState(await deps.instances.get(instance.id, trx), { vmStates: [VmState.ACTIVE, VmState.STOPPED] }, apiName);
        throw new Conflict(`Cannot '${apiName}' instance ${instance.id}: another action changed it meanwhile`);
      }
      const action = await deps.actions.start(instance.id, isResize ? 'resize' : 'migrate', caller, trx);
      const migration = await deps.migrations.create({
        instanceId: instance.id, migrationType: isResize ? 'resize' : 'migration', status: 'pre-migrating',
        projectId: instance.projectId, userId: instance.userId, sourceCompute: instance.host, sourceNode: instance.node,
        oldFlavorId: current.id, newFlavorId: next.id, oldFlavor: current, newFlavor: next,
      }, trx);
      return deps.conductor.createWorkflow<ResizeData>('resize', instance.id, {
        actionId: action.id, migrationId: migration.id, oldVmState: instance.vmState,
        allowSameHost: isResize && this.allowResizeToSameHost, requestedHost: options.host,
      }, trx);
    });
    deps.conductor.launch(created);
  }

  /** confirmResize: VERIFY_RESIZE only; the move's migration goes finished → confirming. */
  async confirm(caller: Caller, instance: Instance): Promise<void> {
    const { deps } = this;
    deps.lifecycle.checkLock(caller, instance);
    deps.lifecycle.checkState(instance, { vmStates: [VmState.RESIZED] }, 'confirmResize');
    const migration = await this.finishedMigration(instance);
    const created = await transaction(deps.database, async (trx) => {
      if (!(await deps.migrations.updateIf(migration.id, ['finished'], { status: 'confirming' }, trx))) throw new BadRequest('Instance has not been resized.');
      if (!(await deps.instances.updateIf(instance.id, { vmState: [VmState.RESIZED], taskState: [null] }, {}, trx))) {
        throw new Conflict(`Cannot 'confirmResize' instance ${instance.id}: another action changed it meanwhile`);
      }
      const action = await deps.actions.start(instance.id, 'confirmResize', caller, trx);
      return deps.conductor.createWorkflow<ConfirmResizeData>('confirm-resize', instance.id, { actionId: action.id, migrationId: migration.id }, trx);
    });
    deps.conductor.launch(created);
  }

  /** revertResize: VERIFY_RESIZE only; a revert of a downsize may go over quota (Nova checks it). */
  async revert(caller: Caller, instance: Instance): Promise<void> {
    const { deps } = this;
    deps.lifecycle.checkLock(caller, instance);
    deps.lifecycle.checkState(instance, { vmStates: [VmState.RESIZED] }, 'revertResize');
    const migration = await this.finishedMigration(instance);
    const oldFlavor = migration.oldFlavor as FlavorSnapshot | null;
    if (!oldFlavor) throw new BadRequest('Flavor used by the instance could not be found.');
    const deltas = upsizeDeltas(instance.flavor, oldFlavor);
    if (Object.keys(deltas).length) await deps.quotas.check(instance.projectId, instance.userId, deltas);
    const created = await transaction(deps.database, async (trx) => {
      if (!(await deps.instances.updateIf(instance.id, { vmState: [VmState.RESIZED], taskState: [null] }, { taskState: 'resize_reverting' }, trx))) {
        deps.lifecycle.checkState(await deps.instances.get(instance.id, trx), { vmStates: [VmState.RESIZED] }, 'revertResize');
        throw new Conflict(`Cannot 'revertResize' instance ${instance.id}: another action changed it meanwhile`);
      }
      if (!(await deps.migrations.updateIf(migration.id, ['finished'], { status: 'reverting' }, trx))) throw new BadRequest('Instance has not been resized.');
      const action = await deps.actions.start(instance.id, 'revertResize', caller, trx);
      // A server moved while stopped stays off (its guest is off in VERIFY_RESIZE: nothing can start it there).
      return deps.conductor.createWorkflow<RevertResizeData>('revert-resize', instance.id, {
        actionId: action.id, migrationId: migration.id, powerOn: instance.powerState !== PowerState.SHUTDOWN,
      }, trx);
    });
    deps.conductor.launch(created);
  }

  private async finishedMigration(instance: Instance): Promise<Migration> {
    const [migration] = await this.deps.migrations.list({ instanceId: instance.id, status: ['finished'] });
    if (!migration) throw new BadRequest('Instance has not been resized.');
    return migration;
  }
}
