// The power workflow: stop, start, reboot, pause/unpause, suspend/resume. The API has moved
// the instance into the operation's task state; this asks the host's driver, then settles the
// instance in its new vm_state (or, when the host fails, back where it was, task cleared),
// so nothing stays in a task state. A resumed run repeats the operation: drivers accept an
// operation whose end state already holds.
import { VmState } from '../instances.js';
import type { PowerOperation } from '../virt/driver.js';
import type { ConductorContext } from './context.js';
import type { Workflow, WorkflowStore } from './workflows.js';

export interface PowerData {
  actionId: string;
  operation: PowerOperation;
  /** The task state the API set, which this workflow owns. */
  taskState: string;
  /** The vm_state reached on success. */
  vmState: string;
  /** Nova's event name (compute_stop_instance) and notification (compute.instance.power_off). */
  event: string;
  notification: string;
}

/** What each operation is called in events and notifications, and the vm_state it ends in. */
export const POWER_STEPS: Record<PowerOperation, { event: string; notification: string; vmState: string }> = {
  stop: { event: 'compute_stop_instance', notification: 'compute.instance.power_off', vmState: VmState.STOPPED },
  start: { event: 'compute_start_instance', notification: 'compute.instance.power_on', vmState: VmState.ACTIVE },
  'reboot-soft': { event: 'compute_reboot_instance', notification: 'compute.instance.reboot', vmState: VmState.ACTIVE },
  'reboot-hard': { event: 'compute_reboot_instance', notification: 'compute.instance.reboot', vmState: VmState.ACTIVE },
  pause: { event: 'compute_pause_instance', notification: 'compute.instance.pause', vmState: VmState.PAUSED },
  unpause: { event: 'compute_unpause_instance', notification: 'compute.instance.unpause', vmState: VmState.ACTIVE },
  suspend: { event: 'compute_suspend_instance', notification: 'compute.instance.suspend', vmState: VmState.SUSPENDED },
  resume: { event: 'compute_resume_instance', notification: 'compute.instance.resume', vmState: VmState.ACTIVE },
};

export function powerWorkflow(ctx: ConductorContext) {
  return async function runPower(workflow: Workflow<PowerData>, store: WorkflowStore): Promise<void> {
    const data = workflow.data;
    const instance = await ctx.instances.find(workflow.instanceId);
    // Gone, or another action (a delete, a reset) took the instance over meanwhile: nothing is ours to settle.
    if (!instance || instance.deletedAt || instance.taskState !== data.taskState || !instance.host) {
      await store.finish(workflow, 'done');
      return;
    }
    const host = instance.host;
    await ctx.notify(`${data.notification}.start`, instance);
    try {
      const { powerState } = await ctx.actions.withEvent(data.actionId, data.event, host, async () => {
        if (!(await ctx.hostIsUp(host))) throw new Error(`the compute service on ${host} is down`);
        return ctx.agent(host).changePower({ uuid: instance.id, operation: data.operation, timeoutSeconds: ctx.shutdownTimeoutSeconds });
      });
      await ctx.instances.updateIf(instance.id, { taskState: [data.taskState] }, { vmState: data.vmState, powerState, taskState: null });
      await ctx.notify(`${data.notification}.end`, await ctx.instances.get(instance.id));
      await store.finish(workflow, 'done');
    } catch (err) {
      ctx.logger.warn(`${data.operation} of ${instance.id} on ${host} failed: ${(err as Error).message}`);
      await ctx.instances.setFault(instance.id, { code: 500, message: `${data.operation} failed on ${host}: ${(err as Error).message}` });
      // Back to where it was, with the power state the host really reports when it can say.
      const seen = await ctx.agent(host).getPowerState({ uuid: instance.id }).catch(() => ({ powerState: null }));
      await ctx.instances.updateIf(instance.id, { taskState: [data.taskState] }, { taskState: null, ...(seen.powerState !== null ? { powerState: seen.powerState } : {}) });
      await ctx.notify(`${data.notification}.error`, await ctx.instances.get(instance.id), 'ERROR');
      await store.finish(workflow, 'failed');
    }
  };
}
