// The server actions that make or use images: shelve / shelveOffload / unshelve, createImage
// (snapshot), createBackup, rescue / unrescue, rebuild. Each checks Nova's preconditions
// (nova/compute/api.py), then moves the instance into its task state with an instance action
// and a persisted workflow (ServerActions.startTask); the conductor does the rest
// (conductor/snapshot.ts, shelve.ts, rescue.ts).
import { BadRequest, Conflict, NotFound, NuboError } from '../core/errors.js';
import type { ImageService, Image } from '../image/service.js';
import type { AggregateService } from './aggregates.js';
import type { RebuildData, RescueData, UnrescueData } from './conductor/rescue.js';
import type { ShelveData, ShelveOffloadData, UnshelveData } from './conductor/shelve.js';
import type { SnapshotData } from './conductor/snapshot.js';
import { VmState, type Instance, type InstanceStore } from './instances.js';
import type { KeypairService } from './keypairs.js';
import type { ServerActions } from './lifecycle.js';
import type { QuotaService } from './quotas.js';
import { hostnameOf, type Caller } from './servers.js';
import type { SystemMetadataStore } from './system-metadata.js';

export interface ImageActionDeps {
  instances: InstanceStore;
  lifecycle: ServerActions;
  images: ImageService;
  quotas: QuotaService;
  keypairs: KeypairService;
  aggregates: AggregateService;
  systemMetadata: SystemMetadataStore;
  internalZone: string;
}

/** Image properties a snapshot does not inherit from its base image (Nova's NON_INHERITABLE_IMAGE_PROPERTIES and namespaces). */
const NON_INHERITABLE = new Set(['cinder_encryption_key_id', 'cinder_encryption_key_deletion_policy', 'img_signature',
  'img_signature_hash_method', 'img_signature_key_type', 'img_signature_certificate_uuid']);
const NON_INHERITABLE_PREFIXES = ['os_glance'];

const SNAPSHOT_STATES = [VmState.ACTIVE, VmState.STOPPED, VmState.PAUSED, VmState.SUSPENDED];

export interface RebuildRequest {
  imageRef: string;
  name?: string;
  description?: string | null;
  metadata?: Record<string, string>;
  adminPass: string | null;
  preserveEphemeral: boolean;
  accessIpV4?: string | null;
  accessIpV6?: string | null;
  /** undefined: unchanged; null: unset (2.54). */
  keyName?: string | null;
  /** undefined: unchanged; null: unset (2.57). */
  userData?: string | null;
}

const ADMIN = { isAdmin: true } as const;

export class ImageActions {
  constructor(private readonly deps: ImageActionDeps) {}

  /**
   * The fields of a new snapshot image as Nova's compute_utils.create_image makes them: the base
   * image's inheritable properties, min_ram/min_disk, instance_uuid, user_id, image_type,
   * base_image_ref, then the caller's extra properties; private to the caller's project, or shared
   * when the caller is another project's (an admin snapshotting someone's server).
   */
  async snapshotFields(caller: Caller, instance: Instance, name: string, imageType: 'snapshot' | 'backup', extra: Record<string, string> = {}): Promise<Record<string, unknown>> {
    const base = instance.imageRef ? await this.deps.images.getImage(ADMIN, instance.imageRef).catch(() => undefined) : undefined;
    const properties: Record<string, string> = {};
    for (const [key, value] of Object.entries(base?.properties ?? {})) {
      if (NON_INHERITABLE.has(key) || NON_INHERITABLE_PREFIXES.some((p) => key.startsWith(p))) continue;
      properties[key] = value;
    }
    Object.assign(properties, { instance_uuid: instance.id, user_id: caller.userId, image_type: imageType });
    if (instance.imageRef) properties.base_image_ref = instance.imageRef;
    Object.assign(properties, extra);
    return {
      ...properties,
      name,
      owner: caller.projectId || instance.projectId,
      visibility: caller.projectId === instance.projectId ? 'private' : 'shared',
      min_ram: base?.min_ram ?? 0,
      min_disk: base?.min_disk ?? 0,
      // A backup keeps the base image's formats (Nova pops them for snapshots only); the driver's formats win at upload.
      ...(imageType === 'backup' && base?.disk_format ? { disk_format: base.disk_format, container_format: base.container_format } : {}),
    };
  }

  private async createSnapshotImage(caller: Caller, instance: Instance, name: string, imageType: 'snapshot' | 'backup', extra: Record<string, string>): Promise<Image> {
    const fields = await this.snapshotFields(caller, instance, name, imageType, extra);
    return this.deps.images.createImage(ADMIN, fields);
  }

  /** createImage: 409 unless ACTIVE/STOPPED/PAUSED/SUSPENDED (Nova checks no lock here); returns the new image's id. */
  async snapshot(caller: Caller, instance: Instance, name: string, metadata: Record<string, string>): Promise<string> {
    const rule = { apiName: 'createImage', action: 'createImage', vmStates: SNAPSHOT_STATES, taskState: 'image_snapshot_pending', lockFree: true };
    this.deps.lifecycle.checkState(instance, rule, rule.apiName);
    const image = await this.createSnapshotImage(caller, instance, name, 'snapshot', metadata);
    await this.deps.lifecycle.startTask<SnapshotData>(caller, instance, rule, {
      kind: 'snapshot', data: (actionId) => ({ actionId, imageId: image.id, imageType: 'snapshot' }),
    }).catch(async (err) => {
      await this.deps.images.deleteImage(ADMIN, image.id).catch(() => undefined);
      throw err;
    });
    return image.id;
  }

  /** createBackup: a snapshot with image_type backup and backup_type; rotation keeps that many backups of the type. */
  async backup(caller: Caller, instance: Instance, name: string, backupType: string, rotation: number, metadata: Record<string, string>): Promise<string> {
    const rule = { apiName: 'createBackup', action: 'createBackup', vmStates: SNAPSHOT_STATES, taskState: 'image_backup', lockFree: true };
    this.deps.lifecycle.checkState(instance, rule, rule.apiName);
    const image = await this.createSnapshotImage(caller, instance, name, 'backup', { ...metadata, backup_type: backupType });
    await this.deps.lifecycle.startTask<SnapshotData>(caller, instance, rule, {
      kind: 'snapshot', data: (actionId) => ({ actionId, imageId: image.id, imageType: 'backup', backupType, rotation }),
    }).catch(async (err) => {
      await this.deps.images.deleteImage(ADMIN, image.id).catch(() => undefined);
      throw err;
    });
    return image.id;
  }

  /** shelve: ACTIVE/STOPPED/PAUSED/SUSPENDED, not locked; the image "<name>-shelved" is made by the conductor's snapshot. */
  async shelve(caller: Caller, instance: Instance): Promise<void> {
    const rule = { apiName: 'shelve', action: 'shelve', vmStates: SNAPSHOT_STATES, taskState: 'shelving' };
    this.deps.lifecycle.checkLock(caller, instance);
    this.deps.lifecycle.checkState(instance, rule, rule.apiName);
    const imageFields = await this.snapshotFields(caller, instance, `${instance.name}-shelved`, 'snapshot');
    const image = await this.deps.images.createImage(ADMIN, imageFields);
    await this.deps.lifecycle.startTask<ShelveData>(caller, instance, rule, {
      kind: 'shelve',
      data: (actionId) => ({ actionId, imageId: image.id, imageFields }),
      // Nova records the base image so unshelve and rebuild can find it.
      prepare: async (trx) => {
        if (instance.imageRef) await this.deps.systemMetadata.set(instance.id, { image_base_image_ref: instance.imageRef }, trx);
      },
    }).catch(async (err) => {
      await this.deps.images.deleteImage(ADMIN, image.id).catch(() => undefined);
      throw err;
    });
  }

  /** shelveOffload: SHELVED only. */
  shelveOffload(caller: Caller, instance: Instance): Promise<void> {
    return this.deps.lifecycle.startTask<ShelveOffloadData>(caller, instance,
      { apiName: 'shelveOffload', action: 'shelveOffload', vmStates: [VmState.SHELVED], taskState: 'shelving_offloading' },
      { kind: 'shelveOffload', data: (actionId) => ({ actionId }) });
  }

  /** unshelve: SHELVED or SHELVED_OFFLOADED; a zone (2.77) only for an offloaded server, and only one that exists. */
  async unshelve(caller: Caller, instance: Instance, availabilityZone: string | undefined): Promise<void> {
    const rule = { apiName: 'unshelve', action: 'unshelve', vmStates: [VmState.SHELVED, VmState.SHELVED_OFFLOADED], taskState: 'unshelving' };
    this.deps.lifecycle.checkLock(caller, instance);
    this.deps.lifecycle.checkState(instance, rule, rule.apiName);
    if (availabilityZone !== undefined) {
      if (instance.vmState !== VmState.SHELVED_OFFLOADED) {
        throw new Conflict(`Specifying an availability zone or a host when unshelving server "${instance.id}" with status "${instance.vmState.toUpperCase()}" is not supported. The server status must be SHELVED_OFFLOADED.`);
      }
      const zones = await this.deps.aggregates.zones();
      if (availabilityZone === this.deps.internalZone || !zones.available.includes(availabilityZone)) {
        throw new BadRequest('The requested availability zone is not available');
      }
    }
    await this.deps.lifecycle.startTask<UnshelveData>(caller, instance, rule, {
      kind: 'unshelve', data: (actionId) => ({ actionId, ...(availabilityZone !== undefined ? { availabilityZone } : {}) }),
    });
  }

  /** rescue: ACTIVE/STOPPED/ERROR, not locked; from the given image or the instance's own. */
  async rescue(caller: Caller, instance: Instance, adminPass: string, rescueImageRef: string | undefined): Promise<void> {
    const rule = { apiName: 'rescue', action: 'rescue', vmStates: [VmState.ACTIVE, VmState.STOPPED, VmState.ERROR], taskState: 'rescuing' };
    this.deps.lifecycle.checkLock(caller, instance);
    this.deps.lifecycle.checkState(instance, rule, rule.apiName);
    let image: { id: string; properties: Record<string, string> };
    if (rescueImageRef !== undefined) {
      const found = await this.deps.images.getImage({ projectId: caller.projectId, isAdmin: caller.isAdmin }, rescueImageRef).catch(() => undefined);
      if (!found || found.status !== 'active') throw new BadRequest(`Requested rescue image '${rescueImageRef}' is not supported`);
      image = { id: found.id, properties: found.properties };
    } else {
      const own = instance.imageRef ? await this.deps.images.getImage(ADMIN, instance.imageRef).catch(() => undefined) : undefined;
      if (!instance.imageRef) throw new BadRequest(`Instance ${instance.id} cannot be rescued: Cannot rescue a volume-backed instance`);
      image = { id: instance.imageRef, properties: own?.properties ?? {} };
    }
    if (!instance.host) throw new Conflict(`Instance ${instance.id} cannot be rescued: it is on no host`);
    await this.deps.lifecycle.startTask<RescueData>(caller, instance, rule, {
      kind: 'rescue', data: (actionId) => ({ actionId, image, adminPass }),
    });
  }

  unrescue(caller: Caller, instance: Instance): Promise<void> {
    return this.deps.lifecycle.startTask<UnrescueData>(caller, instance,
      { apiName: 'unrescue', action: 'unrescue', vmStates: [VmState.RESCUED], taskState: 'unrescuing' },
      { kind: 'unrescue', data: (actionId) => ({ actionId }) });
  }

  /** rebuild: ACTIVE/STOPPED/ERROR, not locked; the image checked as for a create; the changes applied with the task state. */
  async rebuild(caller: Caller, instance: Instance, request: RebuildRequest): Promise<Instance> {
    const rule = { apiName: 'rebuild', action: 'rebuild', vmStates: [VmState.ACTIVE, VmState.STOPPED, VmState.ERROR], taskState: 'rebuilding' };
    this.deps.lifecycle.checkLock(caller, instance);
    this.deps.lifecycle.checkState(instance, rule, rule.apiName);
    const imageId = idOfRef(request.imageRef);
    const image = await this.deps.images.getImage({ projectId: caller.projectId, isAdmin: caller.isAdmin }, imageId).catch((err) => {
      if (err instanceof NuboError && (err.status === 404 || err.status === 403)) throw new BadRequest('Cannot find image for rebuild');
      throw err;
    });
    checkImageFitsFlavor(image, instance);
    if (request.metadata !== undefined) await this.deps.quotas.check(caller.projectId, caller.userId, { metadata_items: Object.keys(request.metadata).length });
    let keyData: string | null | undefined;
    if (request.keyName !== undefined && request.keyName !== null) {
      const keypair = await this.deps.keypairs.get(caller.userId, request.keyName).catch((err) => {
        if (err instanceof NotFound) throw new BadRequest('Invalid key_name provided.');
        throw err;
      });
      keyData = keypair.publicKey;
    } else if (request.keyName === null) {
      keyData = null;
    }
    const changes: Parameters<InstanceStore['update']>[1] = { imageRef: imageId, adminPass: request.adminPass, progress: 0 };
    if (request.name !== undefined) Object.assign(changes, { name: request.name, hostname: hostnameOf(request.name) });
    if (request.description !== undefined) changes.description = request.description;
    if (request.accessIpV4 !== undefined) changes.accessIpV4 = request.accessIpV4;
    if (request.accessIpV6 !== undefined) changes.accessIpV6 = request.accessIpV6;
    if (keyData !== undefined) Object.assign(changes, { keyName: request.keyName ?? null, keyData });
    if (request.userData !== undefined) changes.userData = request.userData;
    await this.deps.lifecycle.startTask<RebuildData>(caller, instance, rule, {
      kind: 'rebuild',
      data: (actionId) => ({ actionId, imageId, preserveEphemeral: request.preserveEphemeral, vmStateBefore: instance.vmState }),
      prepare: async (trx) => {
        await this.deps.instances.update(instance.id, changes, trx);
        if (request.metadata !== undefined) await this.deps.instances.replaceMetadata(instance.id, request.metadata, trx);
        await this.deps.systemMetadata.set(instance.id, { image_base_image_ref: imageId }, trx);
      },
    });
    return this.deps.instances.get(instance.id);
  }
}

/** Nova's _checks_for_create_and_rebuild on the image: active, and the flavor big enough. */
function checkImageFitsFlavor(image: Image, instance: Instance): void {
  if (image.status !== 'active') throw new BadRequest(`Image ${image.id} is not active.`);
  const flavor = instance.flavor;
  if (image.min_ram && image.min_ram > flavor.memoryMb) throw new BadRequest("Flavor's memory is too small for requested image.");
  if (flavor.rootGb > 0) {
    const gib = 1024 ** 3;
    const flavorBytes = flavor.rootGb * gib;
    const imageBytes = Math.max(image.size ?? 0, image.virtual_size ?? 0);
    if (imageBytes > flavorBytes) throw new BadRequest(`Flavor's disk is too small for requested image. Flavor disk is ${flavorBytes} bytes, image is ${imageBytes} bytes.`);
    if (image.min_disk && image.min_disk > flavor.rootGb) {
      throw new BadRequest(`Flavor's disk is smaller than the minimum size specified in image metadata. Flavor disk is ${flavorBytes} bytes, minimum size is ${image.min_disk * gib} bytes.`);
    }
  }
}

function idOfRef(ref: string): string {
  const trimmed = ref.replace(/\/+$/, '');
  return trimmed.includes('/') ? trimmed.slice(trimmed.lastIndexOf('/') + 1) : trimmed;
}
