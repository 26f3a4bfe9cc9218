// Servers: create (validation, quotas, records, a build workflow), list/show with Nova's
// visibility rules, update, delete, metadata and tags. The API layer parses requests into
// these calls; the conductor does the rest in the background.
import { BadRequest, Conflict, Forbidden, NotFound, NuboError } from '../core/errors.js';
import { newUuid } from '../core/ids.js';
import type { Config } from '../core/config.js';
import { transaction, type Database } from '../db/index.js';
import type { ImageService } from '../image/service.js';
import type { InstanceActionStore } from './actions.js';
import type { AggregateService } from './aggregates.js';
import type { Conductor } from './conductor/index.js';
import type { DeleteData } from './conductor/delete.js';
import type { FlavorService } from './flavors.js';
import type { HostService } from './hosts.js';
import { VmState, type BlockDeviceMapping, type FlavorSnapshot, type Instance, type InstanceListFilters, type InstanceRequest, type InstanceStore } from './instances.js';
import type { KeypairService } from './keypairs.js';
import type { QuotaService } from './quotas.js';
import { PowerState } from './rpc.js';
import type { ServerGroupService } from './server-groups.js';
import type { InstanceNetworking } from './networking.js';

import type { Caller } from '../http/auth.js';

export type { Caller };

export interface BlockDeviceRequest {
  boot_index?: number | string | null;
  source_type?: string;
  destination_type?: string;
  uuid?: string;
  volume_size?: number | string | null;
  delete_on_termination?: boolean;
  device_name?: string;
  device_type?: string;
  disk_bus?: string;
  guest_format?: string;
}

export interface CreateServerRequest {
  name: string;
  imageRef?: string;
  flavorRef: string;
  keyName?: string;
  metadata?: Record<string, string>;
  userData?: string;
  personality?: { path: string; contents: string }[];
  availabilityZone?: string;
  /** Admin placement: from `zone:host:node` or the 2.74 host / hypervisor_hostname fields. */
  host?: string;
  node?: string;
  /** undefined: the field was left out (before 2.37), auto without the error when no network exists. */
  networks: InstanceRequest['networks'] | undefined;
  securityGroups?: string[];
  blockDeviceMappings?: BlockDeviceRequest[];
  configDrive?: boolean;
  minCount: number;
  maxCount: number;
  accessIpV4?: string;
  accessIpV6?: string;
  adminPass?: string;
  description?: string | null;
  tags?: string[];
  schedulerHints?: Record<string, string | string[]>;
}

export interface ServerServiceDeps {
  config: Config;
  database: Database;
  instances: InstanceStore;
  actions: InstanceActionStore;
  flavors: FlavorService;
  keypairs: KeypairService;
  quotas: QuotaService;
  serverGroups: ServerGroupService;
  aggregates: AggregateService;
  hosts: HostService;
  images: ImageService;
  conductor: Conductor;
  networking: InstanceNetworking;
}

/** Nova's sanitize_hostname: lower case, [a-z0-9-] only, no leading/trailing dashes, 63 characters at most. */
export function hostnameOf(name: string): string {
  const cleaned = name.toLowerCase().replace(/[ _]/g, '-').replace(/[^a-z0-9.-]/g, '').replace(/\.+/g, '.');
  const trimmed = cleaned.slice(0, 63).replace(/^[.-]+|[.-]+$/g, '');
  return trimmed || 'server';
}

/** The id at the end of a reference that may be a URL (flavorRef and imageRef may be links). */
function idOfRef(ref: string): string {
  const trimmed = ref.replace(/\/+$/, '');
  return trimmed.includes('/') ? trimmed.slice(trimmed.lastIndexOf('/') + 1) : trimmed;
}

export class ServerService {
  constructor(private readonly deps: ServerServiceDeps) {}

  /** Creates the servers of one request and starts their build; returns them as recorded (BUILD / scheduling). */
  async create(caller: Caller, request: CreateServerRequest): Promise<{ instances: Instance[]; reservationId: string }> {
    const { deps } = this;
    const flavor = await this.flavorFor(caller, request.flavorRef);
    const bdms = request.blockDeviceMappings ?? [];
    const imageRef = await this.imageFor(caller, request, flavor, bdms);
    const keypair = request.keyName !== undefined ? await deps.keypairs.get(caller.userId, request.keyName).catch((err) => {
      if (err instanceof NotFound) return undefined;
      throw err;
    }) : undefined;
    if (request.keyName !== undefined && !keypair) throw new BadRequest('Invalid key_name provided.');
    const zone = request.availabilityZone || null;
    const internalZone = deps.config.get('DEFAULT', 'internal_service_availability_zone', 'internal');
    if (zone !== null && (zone === internalZone || !(await deps.aggregates.zones()).available.includes(zone))) {
      throw new BadRequest('The requested availability zone is not available');
    }
    if (request.host !== undefined && !(await deps.hosts.hostExists(request.host))) {
      throw new BadRequest(`Compute host ${request.host} could not be found.`);
    }
    // The NICs to allocate after scheduling: auto resolved to the project's one network, ports and networks checked.
    const networks = await deps.networking.validate(caller, request.networks, request.securityGroups ?? [], request.minCount, request.maxCount);
    const hints = request.schedulerHints ?? {};
    const groupHint = hints.group === undefined ? undefined : (Array.isArray(hints.group) ? hints.group[0] : hints.group);
    if (groupHint !== undefined) {
      const group = await deps.serverGroups.get(groupHint).catch((err: unknown) => {
        if (err instanceof NotFound) throw new BadRequest(`Invalid server group ${groupHint}: server group could not be found.`);
        throw err;
      });
      if (group.projectId !== caller.projectId && !caller.isAdmin) throw new BadRequest(`Invalid server group ${groupHint}: server group could not be found.`);
    }
    const metadata = request.metadata ?? {};
    await deps.quotas.check(caller.projectId, caller.userId, { metadata_items: Object.keys(metadata).length });
    const count = await this.allowedCount(caller, flavor, request.minCount, request.maxCount);

    const reservationId = `r-${newUuid().replace(/-/g, '').slice(0, 8)}`;
    const now = new Date().toISOString();
    const forceConfigDrive = deps.config.getBool('DEFAULT', 'force_config_drive', false);
    const template = deps.config.get('DEFAULT', 'multi_instance_display_name_template', '%(name)s-%(count)d');
    const instances: Instance[] = [];
    for (let index = 0; index < count; index++) {
      const name = count > 1 ? template.replace('%(name)s', request.name).replace('%(count)d', String(index + 1)).replace('%(uuid)s', '') : request.name;
      const id = newUuid();
      instances.push({
        id, name, description: request.description ?? null, projectId: caller.projectId, userId: caller.userId,
        hostname: hostnameOf(name), host: null, node: null, requestedAvailabilityZone: zone, availabilityZone: zone,
        flavorId: flavor.id, flavor, imageRef, keyName: keypair ? request.keyName! : null, keyData: keypair?.publicKey ?? null,
        userData: request.userData ?? null, configDrive: request.configDrive === true || forceConfigDrive,
        vmState: VmState.BUILDING, taskState: 'scheduling', powerState: PowerState.NOSTATE, progress: 0,
        locked: false, lockedBy: null, lockedReason: null, reservationId, launchIndex: index,
        accessIpV4: request.accessIpV4 ?? null, accessIpV6: request.accessIpV6 ?? null, adminPass: request.adminPass ?? null,
        request: {
          networks, securityGroups: request.securityGroups ?? ['default'], schedulerHints: hints, personality: request.personality ?? [],
          requestedHost: request.host, requestedNode: request.node, groupId: groupHint,
        },
        launchedAt: null, terminatedAt: null, createdAt: now, updatedAt: now, deletedAt: null,
        metadata, tags: request.tags ?? [], fault: null,
      });
    }

    // Group membership first: it checks the server_group_members quota; undone if the records cannot be written.
    if (groupHint !== undefined) await deps.serverGroups.addMembers(groupHint, instances.map((i) => i.id), caller.userId);
    const workflow = await transaction(deps.database, async (trx) => {
      const actionIds: Record<string, string> = {};
      for (const instance of instances) {
        await deps.instances.insert(instance, this.blockDevicesOf(instance.id, imageRef, bdms), trx);
        actionIds[instance.id] = (await deps.actions.start(instance.id, 'create', caller, trx)).id;
      }
      return deps.conductor.createBuild(instances.map((i) => i.id), actionIds, trx);
    }).catch(async (err) => {
      for (const instance of instances) await deps.serverGroups.removeMember(instance.id).catch(() => undefined);
      throw err;
    });
    deps.conductor.launch(workflow);
    return { instances, reservationId };
  }

  /** How many of min..max instances the quotas allow; 403 with Nova's message when not even min_count fits. */
  private async allowedCount(caller: Caller, flavor: FlavorSnapshot, minCount: number, maxCount: number): Promise<number> {
    const deltas = (n: number) => ({ instances: n, cores: n * flavor.vcpus, ram: n * flavor.memoryMb });
    try {
      await this.deps.quotas.check(caller.projectId, caller.userId, deltas(maxCount));
      return maxCount;
    } catch (err) {
      if (!(err instanceof Forbidden) || minCount === maxCount) throw err;
      // Largest count between min and max that still fits.
      let low = minCount, high = maxCount - 1, best = 0;
      while (low <= high) {
        const mid = Math.floor((low + high) / 2);
        const fits = await this.deps.quotas.check(caller.projectId, caller.userId, deltas(mid)).then(() => true, (e) => { if (e instanceof Forbidden) return false; throw e; });
        if (fits) { best = mid; low = mid + 1; } else high = mid - 1;
      }
      if (best === 0) throw err;
      return best;
    }
  }

  private async flavorFor(caller: Caller, flavorRef: string): Promise<FlavorSnapshot> {
    const id = idOfRef(flavorRef);
    const flavor = await this.deps.flavors.get(id, { projectId: caller.projectId, isAdmin: caller.isAdmin }).catch((err: unknown) => {
      if (err instanceof NotFound) throw new BadRequest(`Flavor ${id} could not be found.`);
      throw err;
    });
    if (flavor.disabled) throw new BadRequest(`Flavor ${id} could not be found.`);
    const { id: flavorId, name, vcpus, memoryMb, rootGb, ephemeralGb, swapMb, rxtxFactor, description, extraSpecs } = flavor;
    return { id: flavorId, name, vcpus, memoryMb, rootGb, ephemeralGb, swapMb, rxtxFactor, description, extraSpecs };
  }

  /** The boot image (imageRef, or the image of a boot_index 0 image→local mapping), checked against the flavor. */
  private async imageFor(caller: Caller, request: CreateServerRequest, flavor: FlavorSnapshot, bdms: BlockDeviceRequest[]): Promise<string | null> {
    for (const bdm of bdms) {
      const source = bdm.source_type ?? 'image';
      const destination = bdm.destination_type ?? (source === 'image' ? 'local' : 'volume');
      if (!['image', 'blank', 'volume', 'snapshot'].includes(source)) throw new BadRequest(`Block Device Mapping is Invalid: source_type ${source} is not valid.`);
      if (!['local', 'volume'].includes(destination)) throw new BadRequest(`Block Device Mapping is Invalid: destination_type ${destination} is not valid.`);
      if (destination === 'volume' || source === 'volume' || source === 'snapshot') {
        throw new BadRequest('Block Device Mapping is Invalid: volumes need the Block Storage service, which this cloud does not run yet.');
      }
    }
    const bootBdm = bdms.find((b) => String(b.boot_index) === '0' && (b.source_type ?? 'image') === 'image');
    const ref = request.imageRef ? idOfRef(request.imageRef) : bootBdm?.uuid;
    if (!ref) throw new BadRequest('Block Device Mapping is Invalid: Boot sequence for the instance and image/block device mapping combination is not valid.');
    const image = await this.deps.images.getImage({ projectId: caller.projectId, isAdmin: caller.isAdmin }, ref).catch((err) => {
      if (err instanceof NuboError && (err.status === 404 || err.status === 403)) throw new BadRequest(`Image ${ref} could not be found.`);
      throw err;
    });
    if (image.status !== 'active') throw new BadRequest(`Image ${ref} is not active.`);
    if (image.min_ram && image.min_ram > flavor.memoryMb) throw new BadRequest("Flavor's memory is too small for requested image.");
    if (flavor.rootGb > 0) {
      const gib = 1024 ** 3;
      if ((image.min_disk && image.min_disk > flavor.rootGb) || (image.size ?? 0) > flavor.rootGb * gib || (image.virtual_size ?? 0) > flavor.rootGb * gib) {
        throw new BadRequest("Flavor's disk is too small for requested image.");
      }
    }
    return ref;
  }

  private blockDevicesOf(instanceId: string, imageRef: string | null, requested: BlockDeviceRequest[]): BlockDeviceMapping[] {
    const mapping = (r: BlockDeviceRequest): BlockDeviceMapping => ({
      id: newUuid(), instanceId, bootIndex: r.boot_index === null || r.boot_index === undefined ? null : Number(r.boot_index),
      sourceType: r.source_type ?? 'image', destinationType: r.destination_type ?? 'local', uuid: r.uuid ?? null,
      volumeSize: r.volume_size === null || r.volume_size === undefined ? null : Number(r.volume_size),
      deleteOnTermination: r.delete_on_termination ?? true, deviceName: r.device_name ?? null, deviceType: r.device_type ?? 'disk',
      diskBus: r.disk_bus ?? null, guestFormat: r.guest_format ?? null,
    });
    const out = requested.map(mapping);
    if (imageRef && !out.some((b) => b.bootIndex === 0)) {
      out.unshift(mapping({ boot_index: 0, source_type: 'image', destination_type: 'local', uuid: imageRef, delete_on_termination: true }));
    }
    return out;
  }

  /** The server if the caller may see it: its own project's, or any for admins; 404 otherwise (Nova hides others'). */
  async get(caller: Caller, id: string): Promise<Instance> {
    const instance = await this.deps.instances.find(id);
    if (!instance || instance.deletedAt || (!caller.isAdmin && instance.projectId !== caller.projectId)) {
      throw new NotFound(`Instance ${id} could not be found.`);
    }
    return instance;
  }

  list(filters: InstanceListFilters, sort: { key: string; dir: 'asc' | 'desc' }[]): Promise<Instance[]> {
    return this.deps.instances.list(filters, sort);
  }

  async update(caller: Caller, id: string, changes: { name?: string; description?: string | null; accessIpV4?: string | null; accessIpV6?: string | null }): Promise<Instance> {
    const instance = await this.get(caller, id);
    const fields: Parameters<InstanceStore['update']>[1] = { ...changes };
    if (changes.name !== undefined) fields.hostname = hostnameOf(changes.name);
    return this.deps.instances.update(instance.id, fields);
  }

  /** 409 when a non-admin acts on a server an admin (or its owner) locked, as Nova's check_instance_lock. */
  assertNotLocked(caller: Caller, instance: Instance): void {
    if (instance.locked && !caller.isAdmin) throw new Conflict(`Instance ${instance.id} is locked`);
  }

  /** Starts deleting the server: task_state deleting, then the delete workflow destroys it and frees its resources. */
  async delete(caller: Caller, id: string): Promise<void> {
    const instance = await this.get(caller, id);
    this.assertNotLocked(caller, instance);
    if (instance.taskState === 'deleting') return;
    const workflow = await transaction(this.deps.database, async (trx) => {
      await this.deps.instances.update(instance.id, { taskState: 'deleting' }, trx);
      const action = await this.deps.actions.start(instance.id, 'delete', caller, trx);
      return this.deps.conductor.createWorkflow<DeleteData>('delete', instance.id, { actionId: action.id }, trx);
    });
    this.deps.conductor.launch(workflow);
  }

  /** Sets (replace=false: merges) metadata, within the metadata_items quota. */
  async setMetadata(caller: Caller, id: string, metadata: Record<string, string>, replace: boolean): Promise<Record<string, string>> {
    const instance = await this.get(caller, id);
    this.assertNotLocked(caller, instance);
    const merged = replace ? { ...metadata } : { ...instance.metadata, ...metadata };
    await this.deps.quotas.check(caller.projectId, caller.userId, { metadata_items: Object.keys(merged).length });
    await this.deps.instances.replaceMetadata(instance.id, merged);
    return merged;
  }

  async deleteMetadataItem(caller: Caller, id: string, key: string): Promise<void> {
    const instance = await this.get(caller, id);
    this.assertNotLocked(caller, instance);
    if (!(key in instance.metadata)) throw new NotFound(`Metadata item was not found`);
    const rest = { ...instance.metadata };
    delete rest[key];
    await this.deps.instances.replaceMetadata(instance.id, rest);
  }

  async setTags(caller: Caller, id: string, tags: string[]): Promise<string[]> {
    const instance = await this.get(caller, id);
    checkTags(tags);
    await this.deps.instances.replaceTags(instance.id, tags);
    return [...new Set(tags)].sort();
  }

  async addTag(caller: Caller, id: string, tag: string): Promise<boolean> {
    const instance = await this.get(caller, id);
    checkTags([tag]);
    if (instance.tags.includes(tag)) return false;
    if (instance.tags.length >= MAX_TAGS) throw new BadRequest(`The number of tags exceeded the per-server limit ${MAX_TAGS}`);
    await this.deps.instances.replaceTags(instance.id, [...instance.tags, tag]);
    return true;
  }

  async removeTag(caller: Caller, id: string, tag: string): Promise<void> {
    const instance = await this.get(caller, id);
    if (!instance.tags.includes(tag)) throw new NotFound(`Tag ${tag} could not be found.`);
    await this.deps.instances.replaceTags(instance.id, instance.tags.filter((t) => t !== tag));
  }
}

const MAX_TAGS = 50;

/** Nova's tag rules: 1-60 characters, no '/' or ',', at most 50 per server. */
export function checkTags(tags: string[]): void {
  if (tags.length > MAX_TAGS) throw new BadRequest(`The number of tags exceeded the per-server limit ${MAX_TAGS}`);
  for (const tag of tags) {
    if (typeof tag !== 'string' || tag.length < 1 || tag.length > 60) throw new BadRequest(`Invalid input for field/attribute tags. Value: ${tag}. Tags must be 1 to 60 characters long.`);
    if (/[\/,]/.test(tag)) throw new BadRequest(`Invalid input for field/attribute tags. Value: ${tag}. Tags may not contain '/' or ','.`);
  }
}
