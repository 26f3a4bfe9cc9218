// Server actions (POST /servers/{id}/action): the state checks Nova makes before an action,
// the task state it moves the instance into, the instance action it records, and the
// workflow that carries it out. Quick actions that need no workflow (lock, reset state,
// console output) are here too.
import { Conflict, Forbidden, NotFound } from '../core/errors.js';
import type { Kysely } from 'kysely';
import { transaction, type Database } from '../db/index.js';
import type { InstanceActionStore } from './actions.js';
import type { Conductor } from './conductor/index.js';
import { POWER_STEPS, type PowerData } from './conductor/power.js';
import type { HostService } from './hosts.js';
import { VmState, type Instance, type InstanceStore } from './instances.js';
import { agentClient } from './rpc.js';
import type { Caller } from './servers.js';
import type { PowerOperation } from './virt/driver.js';
import type { Bus } from '../bus/types.js';
import type { InstanceNetworking } from './networking.js';

/** When an action may start: Nova's check_instance_state. */
export interface StateRule {
  vmStates: string[];
  /** Task states it may start from; [null] (no task) by default. */
  taskStates?: (string | null)[];
}

/** Power operations: the API name (for messages), the instance action, the states they start from, their task state. */
/** Where Nova's attach_interface / detach_interface may run. */
const INTERFACE_STATES: StateRule = { vmStates: [VmState.ACTIVE, VmState.PAUSED, VmState.STOPPED] };

const POWER_RULES: Record<PowerOperation, StateRule & { apiName: string; action: string; taskState: string }> = {
  stop: { apiName: 'stop', action: 'stop', vmStates: [VmState.ACTIVE, VmState.ERROR], taskState: 'powering-off' },
  start: { apiName: 'start', action: 'start', vmStates: [VmState.STOPPED], taskState: 'powering-on' },
  'reboot-soft': { apiName: 'reboot', action: 'reboot', vmStates: [VmState.ACTIVE], taskState: 'rebooting' },
  'reboot-hard': {
    apiName: 'reboot', action: 'reboot',
    vmStates: [VmState.ACTIVE, VmState.STOPPED, VmState.PAUSED, VmState.SUSPENDED, VmState.ERROR],
    taskStates: [null, 'rebooting', 'reboot_pending', 'reboot_started', 'rebooting_hard', 'resuming', 'unpausing', 'pausing', 'suspending'],
    taskState: 'rebooting_hard',
  },
  pause: { apiName: 'pause', action: 'pause', vmStates: [VmState.ACTIVE], taskState: 'pausing' },
  unpause: { apiName: 'unpause', action: 'unpause', vmStates: [VmState.PAUSED], taskState: 'unpausing' },
  suspend: { apiName: 'suspend', action: 'suspend', vmStates: [VmState.ACTIVE], taskState: 'suspending' },
  resume: { apiName: 'resume', action: 'resume', vmStates: [VmState.SUSPENDED], taskState: 'resuming' },
};

export interface ServerActionDeps {
  database: Database;
  bus: Bus;
  instances: InstanceStore;
  actions: InstanceActionStore;
  hosts: HostService;
  conductor: Conductor;
  rpcTimeoutMs: number;
  networking: InstanceNetworking;
}

export class ServerActions {
  constructor(private readonly deps: ServerActionDeps) {}

  /** 409 unless the instance is in one of the rule's states, in Nova's words. */
  checkState(instance: Instance, rule: StateRule, apiName: string): void {
    if (!rule.vmStates.includes(instance.vmState)) {
      throw new Conflict(`Cannot '${apiName}' instance ${instance.id} while it is in vm_state ${instance.vmState}`);
    }
    const taskStates = rule.taskStates ?? [null];
    if (!taskStates.includes(instance.taskState)) {
      throw new Conflict(`Cannot '${apiName}' instance ${instance.id} while it is in task_state ${instance.taskState}`);
    }
  }

  /** 409 when a non-admin acts on a locked server (Nova's check_instance_lock). */
  checkLock(caller: Caller, instance: Instance): void {
    if (instance.locked && !caller.isAdmin) throw new Conflict(`Instance ${instance.id} is locked`);
  }

  /**
   * Moves the instance into `taskState` (guarded, so two actions cannot both start), records the
   * instance action and a workflow in one transaction, then runs the workflow.
   */
  async startTask<Data>(caller: Caller, instance: Instance, spec: StateRule & { apiName: string; action: string; taskState: string; lockFree?: boolean },
    workflow: { kind: string; data: (actionId: string) => Data; prepare?: (trx: Kysely<any>) => Promise<void> }): Promise<void> {
    // lockFree: Nova's snapshot and backup do not check the lock (it guards against changes, not copies).
    if (!spec.lockFree) this.checkLock(caller, instance);
    this.checkState(instance, spec, spec.apiName);
    const created = await transaction(this.deps.database, async (trx) => {
      const moved = await this.deps.instances.updateIf(instance.id, { vmState: spec.vmStates, taskState: spec.taskStates ?? [null] }, { taskState: spec.taskState }, trx);
      if (!moved) {
        const now = await this.deps.instances.get(instance.id, trx);
        this.checkState(now, spec, spec.apiName);
        throw new Conflict(`Cannot '${spec.apiName}' instance ${instance.id}: another action changed it meanwhile`);
      }
      // Changes the action makes at the API (a rebuild's new name and image), in the same transaction.
      if (workflow.prepare) await workflow.prepare(trx);
      const action = await this.deps.actions.start(instance.id, spec.action, caller, trx);
      return this.deps.conductor.createWorkflow(workflow.kind, instance.id, workflow.data(action.id), trx);
    });
    this.deps.conductor.launch(created);
  }

  /** os-start, os-stop, reboot, pause, unpause, suspend, resume. */
  power(caller: Caller, instance: Instance, operation: PowerOperation): Promise<void> {
    const rule = POWER_RULES[operation];
    const steps = POWER_STEPS[operation];
    return this.startTask<PowerData>(caller, instance, rule, {
      kind: 'power',
      data: (actionId) => ({ actionId, operation, taskState: rule.taskState, vmState: steps.vmState, event: steps.event, notification: steps.notification }),
    });
  }

  /** Locks the server; locked_by says whether its owner or an admin did, as Nova records it. */
  async lock(caller: Caller, instance: Instance, reason: string | null): Promise<void> {
    const byOwner = caller.projectId === instance.projectId;
    await transaction(this.deps.database, async (trx) => {
      await this.deps.instances.update(instance.id, { locked: true, lockedBy: byOwner ? 'owner' : 'admin', lockedReason: reason }, trx);
      await this.deps.actions.start(instance.id, 'lock', caller, trx);
    });
  }

  /** Unlocks; a lock an admin set can only be lifted by those the unlock_override rule allows. */
  async unlock(caller: Caller, instance: Instance, mayOverride: boolean): Promise<void> {
    if (instance.locked && instance.lockedBy === 'admin' && caller.projectId === instance.projectId && !mayOverride) {
      throw new Forbidden('Policy doesn\'t allow os_compute_api:os-lock-server:unlock:unlock_override to be performed.');
    }
    await transaction(this.deps.database, async (trx) => {
      await this.deps.instances.update(instance.id, { locked: false, lockedBy: null, lockedReason: null }, trx);
      await this.deps.actions.start(instance.id, 'unlock', caller, trx);
    });
  }

  /** os-resetState (admin): vm_state active or error, task cleared, as Nova does it — no host is asked. */
  async resetState(caller: Caller, instance: Instance, state: 'active' | 'error'): Promise<void> {
    await transaction(this.deps.database, async (trx) => {
      await this.deps.instances.update(instance.id, { vmState: state === 'active' ? VmState.ACTIVE : VmState.ERROR, taskState: null }, trx);
      await this.deps.actions.start(instance.id, 'resetState', caller, trx);
    });
  }

  /** The tail of the console log from the instance's host (409 while it has none). */
  async consoleOutput(instance: Instance, length: number | undefined): Promise<string> {
    const host = this.hostOf(instance);
    const { output } = await this.agent(host).consoleOutput({ uuid: instance.id, length }).catch(this.unavailable(instance));
    return output;
  }

  /** changePassword: ACTIVE only; the task state updating_password while the host sets it. */
  async changePassword(caller: Caller, instance: Instance, password: string): Promise<void> {
    this.checkLock(caller, instance);
    this.checkState(instance, { vmStates: [VmState.ACTIVE] }, 'changePassword');
    const host = this.hostOf(instance);
    if (!(await this.deps.instances.updateIf(instance.id, { vmState: [VmState.ACTIVE], taskState: [null] }, { taskState: 'updating_password' }))) {
      throw new Conflict(`Cannot 'changePassword' instance ${instance.id}: another action changed it meanwhile`);
    }
    const action = await this.deps.actions.start(instance.id, 'changePassword', caller);
    try {
      await this.deps.actions.withEvent(action.id, 'compute_set_admin_password', host,
        () => this.agent(host).setAdminPassword({ uuid: instance.id, password }).catch(this.unavailable(instance)));
    } finally {
      await this.deps.instances.updateIf(instance.id, { taskState: ['updating_password'] }, { taskState: null });
    }
  }

  /**
   * os-interface attach: a port (given, or made on a network) bound to the instance's host, then
   * hot-plugged by the host's driver; a failed plug frees the port again.
   */
  async attachInterface(caller: Caller, instance: Instance, request: Parameters<InstanceNetworking['attach']>[2]) {
    this.checkLock(caller, instance);
    this.checkState(instance, INTERFACE_STATES, 'attach_interface');
    const action = await this.deps.actions.start(instance.id, 'attach_interface', caller);
    return this.deps.actions.withEvent(action.id, 'compute_attach_interface', instance.host, async () => {
      const port = await this.deps.networking.attach(caller, instance, request);
      if (!instance.host) return port;
      const vif = (await this.deps.networking.vifs(instance.id)).find((v) => v.portId === port.id)!;
      try {
        await this.agent(instance.host).attachInterface({ uuid: instance.id, vif });
      } catch (err) {
        await this.deps.networking.detach(instance.id, port.id);
        if (err instanceof Conflict) throw err;
        throw new Conflict(`Failed to attach network adapter device to ${instance.id}: ${(err as Error).message}`);
      }
      return this.deps.networking.interfaces(instance.id).then((all) => all.find((i) => i.port.id === port.id)?.port ?? port);
    });
  }

  /** os-interface detach: unplugged by the host's driver, then the port deleted (Nova made it) or unbound (the user's). */
  async detachInterface(caller: Caller, instance: Instance, portId: string): Promise<void> {
    this.checkLock(caller, instance);
    this.checkState(instance, INTERFACE_STATES, 'detach_interface');
    if (!(await this.deps.networking.hasPort(instance.id, portId))) throw new NotFound(`Port ${portId} is not attached`);
    const action = await this.deps.actions.start(instance.id, 'detach_interface', caller);
    await this.deps.actions.withEvent(action.id, 'compute_detach_interface', instance.host, async () => {
      if (instance.host) await this.agent(instance.host).detachInterface({ uuid: instance.id, portId }).catch(this.unavailable(instance));
      await this.deps.networking.detach(instance.id, portId);
    });
  }

  /** trigger_crash_dump (2.17): an NMI to a running guest. */
  async triggerCrashDump(caller: Caller, instance: Instance): Promise<void> {
    this.checkLock(caller, instance);
    this.checkState(instance, { vmStates: [VmState.ACTIVE, VmState.PAUSED, VmState.RESCUED, VmState.RESIZED, VmState.ERROR] }, 'trigger_crash_dump');
    const host = this.hostOf(instance);
    const action = await this.deps.actions.start(instance.id, 'trigger_crash_dump', caller);
    await this.deps.actions.withEvent(action.id, 'compute_trigger_crash_dump', host,
      () => this.agent(host).triggerCrashDump({ uuid: instance.id }).catch(this.unavailable(instance)));
  }

  /**
   * startTask for a workflow whose data is built inside the same transaction (a migration record created with
   * it, so a crash leaves neither without the other). Resolves with the data once the workflow is launched.
   */
  async startTaskWith<Data>(caller: Caller, instance: Instance, spec: StateRule & { apiName: string; action: string; taskState: string },
    kind: string, build: (actionId: string, trx: Kysely<any>) => Promise<Data>): Promise<Data> {
    this.checkLock(caller, instance);
    this.checkState(instance, spec, spec.apiName);
    const { created, data } = await transaction(this.deps.database, async (trx) => {
      const moved = await this.deps.instances.updateIf(instance.id, { vmState: spec.vmStates, taskState: spec.taskStates ?? [null] }, { taskState: spec.taskState }, trx);
      if (!moved) {
        const now = await this.deps.instances.get(instance.id, trx);
        this.checkState(now, spec, spec.apiName);
        throw new Conflict(`Cannot '${spec.apiName}' instance ${instance.id}: another action changed it meanwhile`);
      }
      const action = await this.deps.actions.start(instance.id, spec.action, caller, trx);
      const data = await build(action.id, trx);
      return { created: await this.deps.conductor.createWorkflow(kind, instance.id, data, trx), data };
    });
    this.deps.conductor.launch(created);
    return data;
  }

  private hostOf(instance: Instance): string {
    if (!instance.host) throw new Conflict(`Instance ${instance.id} is not ready`);
    return instance.host;
  }

  private agent(host: string) {
    return agentClient(this.deps.bus, host, this.deps.rpcTimeoutMs);
  }

  /** A host that does not answer, or no longer has the instance, is a 409 for the caller, not a 500 or 404. */
  private unavailable(instance: Instance) {
    return (err: unknown): never => {
      if (err instanceof Conflict) throw err;
      throw new Conflict(`Instance ${instance.id} is not ready: ${(err as Error).message}`);
    };
  }
}
