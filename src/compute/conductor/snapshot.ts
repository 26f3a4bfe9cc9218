// Snapshots (createImage, createBackup, and the image a shelve takes): the host's driver takes
// the root disk, the agent holds it, and the conductor streams it chunk by chunk over the bus
// into the Image service (agents have no Image service access), then releases it. The API created the image (queued) and moved the
// instance into its first task state; this walks Nova's task states (image_snapshot →
// image_pending_upload → image_uploading, or image_backup → ...), then clears the task. A failed
// snapshot deletes the image and puts the instance back where it was with a fault. A resumed run
// looks at the image: active → done; queued → snapshot again; cut off mid-upload → failed.
import { Readable } from 'node:stream';
import type { Image } from '../../image/service.js';
import type { Instance } from '../instances.js';
import type { ComputeAgentRpc } from '../rpc.js';
import { IMAGE_CHUNK_BYTES } from './image-data.js';
import type { ConductorContext } from './context.js';
import type { Workflow, WorkflowStore } from './workflows.js';

const ADMIN = { isAdmin: true } as const;

export interface SnapshotData {
  actionId: string;
  imageId: string;
  imageType: 'snapshot' | 'backup';
  backupType?: string;
  rotation?: number;
}

/** Task states of a snapshot (createImage) and a backup, in order. */
export const SNAPSHOT_TASKS = {
  snapshot: ['image_snapshot_pending', 'image_snapshot', 'image_pending_upload', 'image_uploading'],
  backup: ['image_backup', 'image_pending_upload', 'image_uploading'],
} as const;

/** The image, or undefined when it is gone. */
export async function findImage(ctx: ConductorContext, imageId: string): Promise<Image | undefined> {
  return ctx.images.getImage(ADMIN, imageId).catch(() => undefined);
}

/** Deletes an image; one already gone is fine. */
export async function deleteImage(ctx: ConductorContext, imageId: string): Promise<void> {
  await ctx.images.deleteImage(ADMIN, imageId).catch((err) => {
    if ((err as { status?: number }).status !== 404) ctx.logger.warn(`could not delete image ${imageId}: ${(err as Error).message}`);
  });
}

/**
 * Takes the instance's disk on `host` and uploads it into the queued image, moving the task
 * state from one of `from` to `pending` (before the driver runs) and `uploading` (before the
 * upload), as Nova's update_task_state does. Throws when the instance left those task states.
 */
export async function takeSnapshot(ctx: ConductorContext, instance: Instance, host: string, imageId: string,
  states: { from: string[]; pending: string; uploading: string }): Promise<Image> {
  const changed = () => new Error(`instance ${instance.id} changed while it was being snapshotted (deleted, or reset)`);
  if (!(await ctx.instances.updateIf(instance.id, { taskState: states.from }, { taskState: states.pending }))) throw changed();
  if (!(await ctx.hostIsUp(host))) throw new Error(`the compute service on ${host} is down`);
  const agent = ctx.agent(host, ctx.spawnTimeoutMs);
  const disk = await agent.snapshotInstance({ uuid: instance.id });
  try {
    if (!(await ctx.instances.updateIf(instance.id, { taskState: [states.pending] }, { taskState: states.uploading }))) throw changed();
    const image = await findImage(ctx, imageId);
    if (!image) throw new Error(`image ${imageId} was deleted during the snapshot`);
    // Nova leaves the formats of a snapshot to the driver, which knows what it wrote.
    if (image.disk_format !== disk.diskFormat || image.container_format !== disk.containerFormat) {
      await ctx.images.updateImage(ADMIN, imageId, [
        { op: 'replace', name: 'disk_format', value: disk.diskFormat },
        { op: 'replace', name: 'container_format', value: disk.containerFormat },
      ], { publicize: true, communitize: true });
    }
    return await ctx.images.upload(ADMIN, imageId, Readable.from(snapshotChunks(agent, disk.snapshotId, disk.size)));
  } finally {
    await agent.releaseSnapshot({ snapshotId: disk.snapshotId }).catch((err) => ctx.logger.warn(`could not release snapshot ${disk.snapshotId} on ${host}: ${(err as Error).message}`));
  }
}

/** The held snapshot's bytes, chunk by chunk; throws when the agent has fewer than `size`. */
async function* snapshotChunks(agent: Pick<ComputeAgentRpc, 'readSnapshotChunk'>, snapshotId: string, size: number): AsyncGenerator<Buffer> {
  for (let offset = 0; offset < size;) {
    const chunk = Buffer.from((await agent.readSnapshotChunk({ snapshotId, offset, length: Math.min(IMAGE_CHUNK_BYTES, size - offset) })).data, 'base64');
    if (chunk.length === 0) throw new Error(`snapshot ${snapshotId} ended at ${offset} of ${size} bytes`);
    offset += chunk.length;
    yield chunk;
  }
}

/** Deletes the oldest backups of this type of the instance beyond `rotation` (Nova's _rotate_backups; 0 deletes them all). */
export async function rotateBackups(ctx: ConductorContext, instanceId: string, backupType: string, rotation: number): Promise<void> {
  const images = await ctx.images.listImages(ADMIN, {
    properties: { image_type: 'backup', backup_type: backupType, instance_uuid: instanceId },
    sort: [{ key: 'created_at', dir: 'desc' }],
  });
  for (const image of images.slice(rotation)) {
    ctx.logger.info(`rotating out backup ${image.id} of ${instanceId} (${backupType}, rotation ${rotation})`);
    await deleteImage(ctx, image.id);
  }
}

export function snapshotWorkflow(ctx: ConductorContext) {
  return async function runSnapshot(workflow: Workflow<SnapshotData>, store: WorkflowStore): Promise<void> {
    const data = workflow.data;
    const tasks: readonly string[] = SNAPSHOT_TASKS[data.imageType];
    const instance = await ctx.instances.find(workflow.instanceId);
    if (!instance || instance.deletedAt || !instance.taskState || !tasks.includes(instance.taskState)) {
      // Deleted or reset meanwhile: an image that never became active is removed, as Nova does.
      const image = await findImage(ctx, data.imageId);
      if (image && image.status !== 'active') await deleteImage(ctx, data.imageId);
      await store.finish(workflow, 'done');
      return;
    }
    const event = data.imageType === 'backup' ? 'compute_backup_instance' : 'compute_snapshot_instance';
    const host = instance.host;
    await ctx.notify('compute.instance.snapshot.start', instance);
    try {
      await ctx.actions.withEvent(data.actionId, event, host, async () => {
        if (!host) throw new Error(`instance ${instance.id} is on no host`);
        const image = await findImage(ctx, data.imageId);
        if (!image) throw new Error(`image ${data.imageId} was deleted before the snapshot was uploaded`);
        if (image.status === 'active') return; // a resumed run: the upload finished before the crash
        if (image.status !== 'queued') throw new Error(`the upload of image ${data.imageId} was cut off (image ${image.status})`);
        const first = data.imageType === 'backup' ? 'image_backup' : 'image_snapshot';
        if (data.imageType === 'snapshot') {
          await ctx.instances.updateIf(instance.id, { taskState: ['image_snapshot_pending'] }, { taskState: 'image_snapshot' });
        }
        await takeSnapshot(ctx, instance, host, data.imageId, { from: [first, 'image_pending_upload', 'image_uploading'], pending: 'image_pending_upload', uploading: 'image_uploading' });
      });
      await store.advance(workflow, 'uploaded');
      if (data.imageType === 'backup') await rotateBackups(ctx, instance.id, data.backupType ?? '', data.rotation ?? 0);
      await ctx.instances.updateIf(instance.id, { taskState: [...tasks] }, { taskState: null });
      await ctx.notify('compute.instance.snapshot.end', await ctx.instances.get(instance.id));
      await store.finish(workflow, 'done');
    } catch (err) {
      const message = (err as Error).message;
      ctx.logger.warn(`snapshot of ${instance.id} into image ${data.imageId} failed: ${message}`);
      await deleteImage(ctx, data.imageId);
      const now = await ctx.instances.find(instance.id);
      if (now && !now.deletedAt && now.taskState && tasks.includes(now.taskState)) {
        await ctx.instances.setFault(instance.id, { code: 500, message: `Snapshot failed: ${message}` });
        const seen = host ? await ctx.agent(host).getPowerState({ uuid: instance.id }).catch(() => ({ powerState: null })) : { powerState: null };
        await ctx.instances.updateIf(instance.id, { taskState: [...tasks] }, { taskState: null, ...(seen.powerState !== null ? { powerState: seen.powerState } : {}) });
      }
      await ctx.notify('compute.instance.snapshot.error', await ctx.instances.get(instance.id), 'ERROR');
      await store.finish(workflow, 'failed');
    }
  };
}
