// Instance actions and their events (os-instance-actions): every API action on a server
// records an action with the request id; the conductor and agents add events to it.
import type { Kysely } from 'kysely';
import { newUuid } from '../core/ids.js';
import type { Database } from '../db/index.js';

export interface InstanceAction {
  id: string;
  instanceId: string;
  action: string;
  requestId: string;
  userId: string;
  projectId: string;
  message: string | null;
  startTime: string;
  updatedAt: string;
}

export interface InstanceActionEvent {
  id: string;
  actionId: string;
  event: string;
  host: string | null;
  result: string | null;
  traceback: string | null;
  details: string | null;
  startTime: string;
  finishTime: string | null;
}

export class InstanceActionStore {
  constructor(private readonly database: Database) {}

  /** Records that `action` started on the instance for this request. */
  async start(instanceId: string, action: string, who: { requestId: string; userId: string; projectId: string }, trx?: Kysely<any>): Promise<InstanceAction> {
    const now = new Date().toISOString();
    const row: InstanceAction = { id: newUuid(), instanceId, action, requestId: who.requestId, userId: who.userId, projectId: who.projectId, message: null, startTime: now, updatedAt: now };
    await (trx ?? this.database.db).insertInto('compute_instance_actions').values({
      id: row.id, instance_id: instanceId, action, request_id: who.requestId, user_id: who.userId, project_id: who.projectId,
      message: null, start_time: now, updated_at: now,
    }).execute();
    return row;
  }

  /** Opens an event of an action (Nova names them after the method: compute__do_build_and_run_instance). */
  async startEvent(actionId: string, event: string, host: string | null): Promise<string> {
    const id = newUuid();
    const now = new Date().toISOString();
    await this.database.db.insertInto('compute_instance_action_events').values({ id, action_id: actionId, event, host, result: null, traceback: null, details: null, start_time: now, finish_time: null }).execute();
    await this.database.db.updateTable('compute_instance_actions').set({ updated_at: now }).where('id', '=', actionId).execute();
    return id;
  }

  /** Closes an event with Success or Error; an error also becomes the action's message, as in Nova. */
  async finishEvent(eventId: string, actionId: string, error?: { message: string; traceback?: string }): Promise<void> {
    const now = new Date().toISOString();
    await this.database.db.updateTable('compute_instance_action_events')
      .set({ finish_time: now, result: error ? 'Error' : 'Success', traceback: error?.traceback ?? null, details: error?.message ?? null })
      .where('id', '=', eventId).execute();
    await this.database.db.updateTable('compute_instance_actions').set({ updated_at: now, ...(error ? { message: 'Error' } : {}) }).where('id', '=', actionId).execute();
  }

  /** Runs `fn` inside an event: opened before, closed with its outcome after (the error is rethrown). */
  async withEvent<T>(actionId: string, event: string, host: string | null, fn: () => Promise<T>): Promise<T> {
    const eventId = await this.startEvent(actionId, event, host);
    try {
      const result = await fn();
      await this.finishEvent(eventId, actionId);
      return result;
    } catch (err) {
      await this.finishEvent(eventId, actionId, { message: (err as Error).message, traceback: (err as Error).stack });
      throw err;
    }
  }

  async list(instanceId: string, filters: { changesSince?: string; changesBefore?: string } = {}): Promise<InstanceAction[]> {
    let query = this.database.db.selectFrom('compute_instance_actions').selectAll().where('instance_id', '=', instanceId);
    if (filters.changesSince) query = query.where('updated_at', '>=', filters.changesSince);
    if (filters.changesBefore) query = query.where('updated_at', '<=', filters.changesBefore);
    const rows = await query.orderBy('start_time', 'desc').orderBy('id', 'desc').execute();
    return rows.map(actionOf);
  }

  async get(instanceId: string, requestId: string): Promise<InstanceAction | undefined> {
    const row = await this.database.db.selectFrom('compute_instance_actions').selectAll()
      .where('instance_id', '=', instanceId).where('request_id', '=', requestId).executeTakeFirst();
    return row ? actionOf(row) : undefined;
  }

  async events(actionId: string): Promise<InstanceActionEvent[]> {
    const rows = await this.database.db.selectFrom('compute_instance_action_events').selectAll().where('action_id', '=', actionId).orderBy('start_time').execute();
    return rows.map((r: any) => ({
      id: r.id, actionId: r.action_id, event: r.event, host: r.host, result: r.result, traceback: r.traceback, details: r.details,
      startTime: r.start_time, finishTime: r.finish_time,
    }));
  }
}

function actionOf(r: any): InstanceAction {
  return {
    id: r.id, instanceId: r.instance_id, action: r.action, requestId: r.request_id, userId: r.user_id, projectId: r.project_id,
    message: r.message, startTime: r.start_time, updatedAt: r.updated_at,
  };
}
