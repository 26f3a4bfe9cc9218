// Persisted workflows: each multi-step operation (build, delete, and later resize,
// migrate, shelve...) is a row in compute_workflows that a conductor holds under a lease.
// A conductor that starts takes over the rows whose lease ran out (or that its own earlier
// incarnation held) and runs them again: every workflow handler is written to resume from
// whatever state the instance is in, so running it twice is safe.
import { hostname } from 'node:os';
import type { Kysely } from 'kysely';
import { newUuid } from '../../core/ids.js';
import type { Logger } from '../../core/log.js';
import type { Database } from '../../db/index.js';

export interface Workflow<Data = any> {
  id: string;
  kind: string;
  instanceId: string;
  step: string;
  status: 'running' | 'done' | 'failed';
  data: Data;
  owner: string | null;
  /** True when this run took the workflow over from a conductor that stopped (its handler must check what was done). */
  resumed: boolean;
}

/** Runs one workflow to its end. It must be safe to call again on a workflow that was cut off at any point. */
export type WorkflowHandler = (workflow: Workflow, store: WorkflowStore) => Promise<void>;

export class WorkflowStore {
  /** `<conductor host>/<random>`: the host part lets a restarted conductor take back its own workflows at once. */
  readonly owner: string;

  constructor(private readonly database: Database, readonly conductorHost: string = hostname(), readonly leaseMs = 30_000) {
    this.owner = `${conductorHost}/${newUuid()}`;
  }

  async create<Data>(kind: string, instanceId: string, data: Data, trx?: Kysely<any>): Promise<Workflow<Data>> {
    const now = new Date();
    const workflow: Workflow<Data> = { id: newUuid(), kind, instanceId, step: 'start', status: 'running', data, owner: this.owner, resumed: false };
    await (trx ?? this.database.db).insertInto('compute_workflows').values({
      id: workflow.id, kind, instance_id: instanceId, step: 'start', status: 'running', data: JSON.stringify(data), owner: this.owner,
      lease_until: new Date(now.getTime() + this.leaseMs).toISOString(), created_at: now.toISOString(), updated_at: now.toISOString(),
    }).execute();
    return workflow;
  }

  /** Records the step reached (and new data) so a resumed run knows what was done. */
  async advance(workflow: Workflow, step: string, data?: unknown): Promise<void> {
    workflow.step = step;
    if (data !== undefined) workflow.data = data;
    await this.database.db.updateTable('compute_workflows')
      .set({ step, data: JSON.stringify(workflow.data), updated_at: new Date().toISOString() })
      .where('id', '=', workflow.id).execute();
  }

  async finish(workflow: Workflow, status: 'done' | 'failed'): Promise<void> {
    workflow.status = status;
    await this.database.db.updateTable('compute_workflows')
      .set({ status, owner: null, lease_until: null, updated_at: new Date().toISOString() })
      .where('id', '=', workflow.id).execute();
  }

  /** Extends the lease of every running workflow this conductor holds. */
  async renewLeases(): Promise<void> {
    await this.database.db.updateTable('compute_workflows')
      .set({ lease_until: new Date(Date.now() + this.leaseMs).toISOString() })
      .where('owner', '=', this.owner).where('status', '=', 'running').execute();
  }

  /** Takes over running workflows whose holder is gone: lease expired, or held by an earlier run of this conductor host. */
  async takeOrphans(): Promise<Workflow[]> {
    const now = new Date().toISOString();
    const rows = await this.database.db.selectFrom('compute_workflows').selectAll().where('status', '=', 'running').execute();
    const taken: Workflow[] = [];
    for (const row of rows as any[]) {
      if (row.owner === this.owner) continue;
      const earlierSelf = typeof row.owner === 'string' && row.owner.startsWith(`${this.conductorHost}/`);
      if (!earlierSelf && row.lease_until && row.lease_until > now) continue;
      // Conditional update: when several conductors start together, one of them wins each workflow.
      const result = await this.database.db.updateTable('compute_workflows')
        .set({ owner: this.owner, lease_until: new Date(Date.now() + this.leaseMs).toISOString() })
        .where('id', '=', row.id).where('status', '=', 'running')
        .where((eb) => (row.owner === null ? eb('owner', 'is', null) : eb('owner', '=', row.owner)))
        .executeTakeFirst();
      if (Number(result.numUpdatedRows) > 0) {
        taken.push({ id: row.id, kind: row.kind, instanceId: row.instance_id, step: row.step, status: 'running', data: JSON.parse(row.data), owner: this.owner, resumed: true });
      }
    }
    return taken;
  }

  async running(instanceId: string): Promise<Workflow[]> {
    const rows = await this.database.db.selectFrom('compute_workflows').selectAll().where('instance_id', '=', instanceId).where('status', '=', 'running').execute();
    return (rows as any[]).map((row) => ({ id: row.id, kind: row.kind, instanceId: row.instance_id, step: row.step, status: row.status, data: JSON.parse(row.data), owner: row.owner, resumed: false }));
  }
}

/**
 * Runs workflows in this process with a cap on how many run at once, and keeps their leases
 * alive. A workflow that throws is logged and marked failed; its handler is expected to have
 * left the instance in a settled state (ERROR with a fault) before giving up.
 */
export class WorkflowRunner {
  private readonly handlers = new Map<string, WorkflowHandler>();
  private readonly inFlight = new Set<Promise<void>>();
  private readonly queue: Workflow[] = [];
  private active = 0;
  private leaseTimer?: NodeJS.Timeout;

  constructor(readonly store: WorkflowStore, private readonly logger: Logger, private readonly maxConcurrent = 64) {}

  register(kind: string, handler: WorkflowHandler): void {
    this.handlers.set(kind, handler);
  }

  /**
   * Resumes orphaned workflows, then keeps renewing this conductor's leases and, as often,
   * takes over the workflows of conductors that stopped renewing theirs.
   */
  async start(): Promise<number> {
    this.leaseTimer = setInterval(() => {
      this.store.renewLeases()
        .then(() => this.resumeOrphans())
        .catch((err) => this.logger.warn('workflow lease renewal failed', { error: String(err) }));
    }, this.store.leaseMs / 3);
    this.leaseTimer.unref();
    return this.resumeOrphans();
  }

  private async resumeOrphans(): Promise<number> {
    const orphans = await this.store.takeOrphans();
    for (const workflow of orphans) {
      this.logger.info(`resuming ${workflow.kind} workflow ${workflow.id} of instance ${workflow.instanceId} at step ${workflow.step}`);
      this.run(workflow);
    }
    return orphans.length;
  }

  /** Queues a workflow to run in the background. */
  run(workflow: Workflow): void {
    this.queue.push(workflow);
    this.pump();
  }

  private pump(): void {
    while (this.active < this.maxConcurrent && this.queue.length > 0) {
      const workflow = this.queue.shift()!;
      const handler = this.handlers.get(workflow.kind);
      if (!handler) {
        this.logger.error(`no handler for workflow kind ${workflow.kind}`);
        continue;
      }
      this.active++;
      const promise = handler(workflow, this.store)
        .catch(async (err) => {
          this.logger.error(`${workflow.kind} workflow ${workflow.id} failed`, { error: (err as Error)?.stack ?? String(err) });
          await this.store.finish(workflow, 'failed').catch(() => undefined);
        })
        .finally(() => {
          this.active--;
          this.inFlight.delete(promise);
          this.pump();
        });
      this.inFlight.add(promise);
    }
  }

  /** Resolves when nothing is queued or running (tests and shutdown). */
  async settle(): Promise<void> {
    while (this.inFlight.size > 0 || this.queue.length > 0) await Promise.race([...this.inFlight, new Promise((r) => setTimeout(r, 10))]);
  }

  stop(): void {
    if (this.leaseTimer) clearInterval(this.leaseTimer);
    this.queue.length = 0;
  }
}
