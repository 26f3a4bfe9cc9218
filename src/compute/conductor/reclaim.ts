// The reclaim task (Nova's _reclaim_queued_deletes): every [DEFAULT] reclaim_instance_interval
// seconds, servers that have been SOFT_DELETED longer than the interval are deleted through the
// delete workflow. Each one is moved to task_state deleting with its workflow in one guarded
// transaction, so two conductors running the task at once reclaim a server once, and a crash
// leaves a workflow that resumes.
import { transaction, type Database } from '../../db/index.js';
import type { Logger } from '../../core/log.js';
import type { InstanceActionStore } from '../actions.js';
import { VmState, type InstanceStore } from '../instances.js';
import type { DeleteData } from './delete.js';
import type { Workflow, WorkflowStore } from './workflows.js';

export interface ReclaimDeps {
  database: Database;
  instances: InstanceStore;
  actions: InstanceActionStore;
  workflows: WorkflowStore;
  launch(workflow: Workflow): void;
  logger: Logger;
}

/** Deletes the soft-deleted servers older than `intervalSeconds`; returns how many it started deleting. */
export async function reclaimQueuedDeletes(deps: ReclaimDeps, intervalSeconds: number, now = Date.now()): Promise<number> {
  const db = deps.database.db;
  const records = new Map<string, { actionId: string; softDeletedAt: string }>();
  for (const row of (await db.selectFrom('compute_soft_deletes').selectAll().execute()) as any[]) {
    records.set(row.instance_id, { actionId: row.action_id, softDeletedAt: row.soft_deleted_at });
  }
  const softDeleted = await deps.instances.list({ vmStates: [VmState.SOFT_DELETED], taskState: null });
  let started = 0;
  for (const instance of softDeleted) {
    const record = records.get(instance.id);
    // No record (written with the soft delete, so only a row an operator edited): its last change is the best age there is.
    const since = Date.parse(record?.softDeletedAt ?? instance.updatedAt);
    if (now - since < intervalSeconds * 1000) continue;
    const actionId = record?.actionId ?? (await deps.actions.list(instance.id)).filter((a) => a.action === 'delete').at(-1)?.id;
    if (!actionId) continue;
    const workflow = await transaction(deps.database, async (trx) => {
      const moved = await deps.instances.updateIf(instance.id, { vmState: [VmState.SOFT_DELETED], taskState: [null] }, { taskState: 'deleting' }, trx);
      if (!moved) return undefined; // restored, force-deleted or reclaimed by another conductor meanwhile
      await trx.deleteFrom('compute_soft_deletes').where('instance_id', '=', instance.id).execute();
      return deps.workflows.create<DeleteData>('delete', instance.id, { actionId }, trx);
    });
    if (!workflow) continue;
    deps.logger.info(`reclaiming ${instance.id}: soft-deleted since ${new Date(since).toISOString()}`);
    deps.launch(workflow);
    started++;
  }
  // Records of servers restored, or deleted another way, are no longer needed.
  const live = new Set(softDeleted.map((i) => i.id));
  const stale = [...records.keys()].filter((id) => !live.has(id));
  if (stale.length) {
    const settled = await deps.instances.list({ ids: stale, includeDeleted: true });
    const drop = settled.filter((i) => i.deletedAt || (i.taskState === null && i.vmState !== VmState.SOFT_DELETED)).map((i) => i.id);
    const known = new Set(settled.map((i) => i.id));
    drop.push(...stale.filter((id) => !known.has(id)));
    if (drop.length) await db.deleteFrom('compute_soft_deletes').where('instance_id', 'in', drop).execute();
  }
  return started;
}
