// Networks with their provider segment (flat / vlan / vxlan / local), external and shared
// networks, and the network availability zones. Tenant networks get a segment of
// [ml2] tenant_network_types (vxlan by default) with an id from [ml2_type_vxlan] vni_ranges.
import type { Kysely } from 'kysely';
import { BadRequest, Conflict, NotFound, ServiceUnavailable } from '../core/errors.js';
import { newUuid } from '../core/ids.js';
import { neutronError } from './api/errors.js';
import type { Caller } from './api/common.js';
import type { NetworkContext } from './index.js';
import { replaceTags, tagsOf } from './tags.js';
import { inTransaction, insertUnlessDuplicate, nowStamp, parseJson } from './transactions.js';

export type NetworkType = 'flat' | 'vlan' | 'vxlan' | 'local';
export const NETWORK_TYPES: NetworkType[] = ['flat', 'vlan', 'vxlan', 'local'];

export interface Segment { networkType: NetworkType; physicalNetwork: string | null; segmentationId: number | null }

export interface Network {
  id: string;
  projectId: string;
  name: string;
  description: string;
  adminStateUp: boolean;
  shared: boolean;
  external: boolean;
  isDefault: boolean;
  mtu: number;
  portSecurityEnabled: boolean;
  dnsDomain: string;
  availabilityZoneHints: string[];
  status: string;
  segment: Segment | null;
  subnets: string[];
  tags: string[];
  revisionNumber: number;
  createdAt: string;
  updatedAt: string;
}

export interface NetworkCreate {
  projectId: string;
  name?: string;
  description?: string;
  adminStateUp?: boolean;
  shared?: boolean;
  external?: boolean;
  isDefault?: boolean;
  mtu?: number;
  portSecurityEnabled?: boolean;
  dnsDomain?: string;
  availabilityZoneHints?: string[];
  networkType?: string;
  physicalNetwork?: string;
  segmentationId?: number;
  tags?: string[];
}

export type NetworkUpdate = Partial<Pick<NetworkCreate, 'name' | 'description' | 'adminStateUp' | 'shared' | 'external' | 'isDefault' | 'mtu' | 'portSecurityEnabled' | 'dnsDomain'>>;

/** The one availability zone networks and routers live in (Neutron's default_availability_zones is empty: 'nova'). */
export const DEFAULT_AVAILABILITY_ZONE = 'nova';
const VXLAN_OVERHEAD = 50;
const MAX_VXLAN_VNI = 2 ** 24 - 1;

export const networkNotFound = (id: string) => neutronError(new NotFound(`Network ${id} could not be found.`), 'NetworkNotFound');
const invalid = (message: string) => neutronError(new BadRequest(`Invalid input for operation: ${message}`), 'InvalidInput');

export class NetworkService {
  constructor(private readonly context: NetworkContext) {}

  private get db() { return this.context.database.db; }

  /** [DEFAULT] global_physnet_mtu: what a network over the physical network carries. */
  private physnetMtu(): number { return this.context.config.getInt('DEFAULT', 'global_physnet_mtu', 1500); }

  private ranges(section: string, option: string, fallback: string): { physnet: string | null; min: number; max: number }[] {
    return this.context.config.getList(section, option, [fallback]).filter(Boolean).map((entry) => {
      const parts = entry.split(':');
      if (parts.length === 3) return { physnet: parts[0], min: Number(parts[1]), max: Number(parts[2]) };
      if (parts.length === 2) return { physnet: null, min: Number(parts[0]), max: Number(parts[1]) };
      return { physnet: parts[0], min: 0, max: -1 };
    });
  }

  async get(id: string, db: Kysely<any> = this.db): Promise<Network> {
    const [network] = await this.load(db, (q) => q.where('id', '=', id));
    if (!network) throw networkNotFound(id);
    return network;
  }

  async find(id: string): Promise<Network | undefined> {
    const [network] = await this.load(this.db, (q) => q.where('id', '=', id));
    return network;
  }

  async list(filter: { ids?: string[]; projectId?: string; external?: boolean } = {}): Promise<Network[]> {
    return this.load(this.db, (q) => {
      if (filter.ids) q = q.where('id', 'in', filter.ids.length > 0 ? filter.ids : ['']);
      if (filter.projectId !== undefined) q = q.where('project_id', '=', filter.projectId);
      if (filter.external !== undefined) q = q.where('external', '=', filter.external ? 1 : 0);
      return q;
    });
  }

  /** Networks the caller may see: its own, shared and external ones (all, for an admin). */
  async visibleTo(caller: Caller): Promise<Network[]> {
    const all = await this.list();
    return caller.isAdmin ? all : all.filter((n) => isVisible(caller, n));
  }

  private async load(db: Kysely<any>, where: (q: any) => any): Promise<Network[]> {
    const rows = await where(db.selectFrom('network_networks').selectAll()).orderBy('id').execute();
    if (rows.length === 0) return [];
    const ids = rows.map((r: any) => r.id as string);
    const segments = new Map<string, Segment>();
    const subnets = new Map<string, string[]>(ids.map((id: string) => [id, []]));
    for (let i = 0; i < ids.length; i += 500) {
      const chunk = ids.slice(i, i + 500);
      for (const s of await db.selectFrom('network_segments').selectAll().where('network_id', 'in', chunk).execute()) {
        segments.set(s.network_id, { networkType: s.network_type, physicalNetwork: s.physical_network ?? null, segmentationId: s.segmentation_id === null ? null : Number(s.segmentation_id) });
      }
      for (const s of await db.selectFrom('network_subnets').select(['id', 'network_id']).where('network_id', 'in', chunk).orderBy('created_at').orderBy('id').execute()) {
        subnets.get(s.network_id)?.push(s.id);
      }
    }
    const tags = await tagsOf(db, 'networks', ids);
    return rows.map((r: any) => ({
      id: r.id, projectId: r.project_id, name: r.name, description: r.description,
      adminStateUp: !!r.admin_state_up, shared: !!r.shared, external: !!r.external, isDefault: !!r.is_default,
      mtu: Number(r.mtu), portSecurityEnabled: !!r.port_security_enabled, dnsDomain: r.dns_domain,
      availabilityZoneHints: parseJson<string[]>(r.availability_zone_hints, []), status: r.status,
      segment: segments.get(r.id) ?? null, subnets: subnets.get(r.id) ?? [], tags: tags.get(r.id) ?? [],
      revisionNumber: Number(r.revision_number), createdAt: r.created_at, updatedAt: r.updated_at,
    }));
  }

  async create(body: NetworkCreate, options: { trx?: Kysely<any> } = {}): Promise<Network> {
    const hints = body.availabilityZoneHints ?? [];
    for (const zone of hints) if (zone !== DEFAULT_AVAILABILITY_ZONE) throw neutronError(new NotFound(`AvailabilityZone ${zone} could not be found.`), 'AvailabilityZoneNotFound');
    const requested = this.validateSegment(body);
    const id = newUuid();
    const now = nowStamp();
    await inTransaction(this.context.database, options.trx, async (trx) => {
      await this.context.services.quotas.check(trx, body.projectId, 'network');
      const segment = await this.allocateSegment(trx, id, requested);
      const maxMtu = segment?.networkType === 'vxlan' ? this.physnetMtu() - VXLAN_OVERHEAD : this.physnetMtu();
      if (body.mtu !== undefined && (body.mtu < 68 || body.mtu > maxMtu)) {
        throw invalid(`Requested MTU is too big, maximum is ${maxMtu}.`);
      }
      if (body.isDefault && !body.external) throw invalid('is_default may only be set on an external network.');
      if (body.isDefault) await trx.updateTable('network_networks').set({ is_default: 0 }).where('is_default', '=', 1).execute();
      await trx.insertInto('network_networks').values({
        id, project_id: body.projectId, name: body.name ?? '', description: body.description ?? '',
        admin_state_up: body.adminStateUp === false ? 0 : 1, shared: body.shared ? 1 : 0, external: body.external ? 1 : 0,
        is_default: body.isDefault ? 1 : 0, mtu: body.mtu ?? maxMtu, port_security_enabled: body.portSecurityEnabled === false ? 0 : 1,
        dns_domain: body.dnsDomain ?? '', availability_zone_hints: JSON.stringify(hints), status: 'ACTIVE',
        revision_number: 1, created_at: now, updated_at: now,
      }).execute();
      if (body.tags) await replaceTags(trx, 'networks', id, body.tags);
    });
    return this.get(id, options.trx);
  }

  /** The provider attributes as asked (types and ranges checked); the id is picked when absent. */
  private validateSegment(body: NetworkCreate): Segment | null {
    const { networkType, physicalNetwork, segmentationId } = body;
    if (networkType === undefined) {
      if (physicalNetwork !== undefined || segmentationId !== undefined) throw invalid('provider:network_type required');
      return null;
    }
    if (!NETWORK_TYPES.includes(networkType as NetworkType)) throw invalid(`network_type value '${networkType}' not supported`);
    const type = networkType as NetworkType;
    if (segmentationId !== undefined && (!Number.isInteger(segmentationId) || segmentationId < 0)) throw invalid(`segmentation_id must be a positive integer`);
    if (type === 'flat' || type === 'local') {
      if (segmentationId !== undefined) throw invalid(`segmentation_id specified for ${type} network`);
      if (type === 'local' && physicalNetwork !== undefined) throw invalid('provider:physical_network specified for local network');
      if (type === 'flat') {
        if (!physicalNetwork) throw invalid('physical_network required for flat provider network');
        const allowed = this.context.config.getList('ml2_type_flat', 'flat_networks', ['*']);
        if (!allowed.includes('*') && !allowed.includes(physicalNetwork)) throw invalid(`physical_network '${physicalNetwork}' unknown for flat provider network`);
      }
      return { networkType: type, physicalNetwork: physicalNetwork ?? null, segmentationId: null };
    }
    if (type === 'vlan') {
      if (!physicalNetwork) throw invalid('physical_network required for VLAN provider network');
      if (segmentationId !== undefined && (segmentationId < 1 || segmentationId > 4094)) {
        throw invalid(`segmentation_id out of range (1 through 4094)`);
      }
      return { networkType: 'vlan', physicalNetwork, segmentationId: segmentationId ?? null };
    }
    if (physicalNetwork !== undefined) throw invalid('provider:physical_network specified for VXLAN network');
    if (segmentationId !== undefined && (segmentationId < 1 || segmentationId > MAX_VXLAN_VNI)) throw invalid(`segmentation_id out of range (1 through ${MAX_VXLAN_VNI})`);
    return { networkType: 'vxlan', physicalNetwork: null, segmentationId: segmentationId ?? null };
  }

  /** Inserts the network's segment; a tenant network without provider attributes gets [ml2] tenant_network_types' first type. */
  private async allocateSegment(trx: Kysely<any>, networkId: string, requested: Segment | null): Promise<Segment | null> {
    let segment = requested;
    if (!segment) {
      const type = this.context.config.getList('ml2', 'tenant_network_types', ['vxlan'])[0] ?? 'local';
      if (type === 'local' || type === '') return null;
      if (type !== 'vxlan' && type !== 'vlan') return null;
      segment = { networkType: type, physicalNetwork: null, segmentationId: null };
    }
    const insert = (s: Segment) => insertUnlessDuplicate(trx, (t) => t.insertInto('network_segments').values({
      id: newUuid(), network_id: networkId, network_type: s.networkType, physical_network: s.physicalNetwork,
      segmentation_id: s.segmentationId, physnet_key: s.physicalNetwork ?? '', segmentation_key: s.segmentationId ?? 0,
    }).execute());
    if (segment.networkType === 'flat' || segment.networkType === 'local') {
      if (segment.networkType === 'local') { await insert({ ...segment, segmentationId: null }); return segment; }
      if (!(await insert(segment))) throw neutronError(new Conflict(`Unable to create the flat network. Physical network ${segment.physicalNetwork} is in use.`), 'FlatNetworkInUse');
      return segment;
    }
    if (segment.segmentationId !== null) {
      if (await insert(segment)) return segment;
      if (segment.networkType === 'vlan') throw neutronError(new Conflict(`Unable to create the network. The VLAN ${segment.segmentationId} on physical network ${segment.physicalNetwork} is in use.`), 'VlanIdInUse');
      throw neutronError(new Conflict(`Unable to create the network. The tunnel ID ${segment.segmentationId} is in use.`), 'TunnelIdInUse');
    }
    // Pick the lowest free id of the configured ranges; a concurrent pick of the same id makes us try the next.
    const ranges = segment.networkType === 'vxlan'
      ? this.ranges('ml2_type_vxlan', 'vni_ranges', '1:1000')
      : this.ranges('ml2_type_vlan', 'network_vlan_ranges', '').filter((r) => r.physnet === (segment.physicalNetwork ?? r.physnet) && r.max >= r.min);
    for (const range of ranges) {
      const physnet = segment.physicalNetwork ?? range.physnet;
      const used = new Set((await trx.selectFrom('network_segments').select('segmentation_key')
        .where('network_type', '=', segment.networkType).where('physnet_key', '=', physnet ?? '')
        .where('segmentation_key', '>=', range.min).where('segmentation_key', '<=', range.max).execute()).map((r) => Number(r.segmentation_key)));
      for (let candidate = range.min; candidate <= range.max; candidate++) {
        if (used.has(candidate)) continue;
        const picked = { ...segment, physicalNetwork: physnet, segmentationId: candidate };
        if (await insert(picked)) return picked;
      }
    }
    throw neutronError(new ServiceUnavailable('Unable to create the network. No tenant network is available for allocation.'), 'NoNetworkAvailable');
  }

  async update(id: string, changes: NetworkUpdate): Promise<Network> {
    await inTransaction(this.context.database, undefined, async (trx) => {
      const current = await this.get(id, trx);
      if (changes.mtu !== undefined) {
        const maxMtu = current.segment?.networkType === 'vxlan' ? this.physnetMtu() - VXLAN_OVERHEAD : this.physnetMtu();
        if (changes.mtu < 68 || changes.mtu > maxMtu) throw invalid(`Requested MTU is too big, maximum is ${maxMtu}.`);
      }
      if (changes.shared === false && current.shared) {
        const others = await trx.selectFrom('network_ports').select('id').where('network_id', '=', id).where('project_id', '!=', current.projectId)
          .where('device_owner', 'not like', 'network:%').limit(1).execute();
        if (others.length > 0) throw neutronError(new Conflict(`Unable to reconfigure sharing settings for network ${id}. Multiple tenants are using it.`), 'InvalidSharedSetting');
      }
      if (changes.external === false && current.external) {
        const gateways = await trx.selectFrom('network_ports').select('id').where('network_id', '=', id)
          .where('device_owner', 'in', ['network:router_gateway', 'network:floatingip']).limit(1).execute();
        if (gateways.length > 0) {
          throw neutronError(new Conflict(`External network ${id} cannot be updated to be made non-external, since it has existing gateway ports.`), 'ExternalNetworkInUse');
        }
      }
      const external = changes.external ?? current.external;
      if (changes.isDefault && !external) throw invalid('is_default may only be set on an external network.');
      if (changes.isDefault) await trx.updateTable('network_networks').set({ is_default: 0 }).where('is_default', '=', 1).execute();
      const set: Record<string, unknown> = { revision_number: current.revisionNumber + 1, updated_at: nowStamp() };
      if (changes.name !== undefined) set.name = changes.name;
      if (changes.description !== undefined) set.description = changes.description;
      if (changes.adminStateUp !== undefined) set.admin_state_up = changes.adminStateUp ? 1 : 0;
      if (changes.shared !== undefined) set.shared = changes.shared ? 1 : 0;
      if (changes.external !== undefined) set.external = changes.external ? 1 : 0;
      if (changes.isDefault !== undefined) set.is_default = changes.isDefault ? 1 : 0;
      if (changes.external === false) set.is_default = 0;
      if (changes.mtu !== undefined) set.mtu = changes.mtu;
      if (changes.portSecurityEnabled !== undefined) set.port_security_enabled = changes.portSecurityEnabled ? 1 : 0;
      if (changes.dnsDomain !== undefined) set.dns_domain = changes.dnsDomain;
      await trx.updateTable('network_networks').set(set).where('id', '=', id).execute();
    });
    return this.get(id);
  }

  /** Bumps the revision of a network whose tags (or subnets) changed. */
  async touch(trx: Kysely<any>, id: string): Promise<void> {
    const row = await trx.selectFrom('network_networks').select('revision_number').where('id', '=', id).executeTakeFirst();
    if (row) await trx.updateTable('network_networks').set({ revision_number: Number(row.revision_number) + 1, updated_at: nowStamp() }).where('id', '=', id).execute();
  }

  /**
   * Deletes a network with its subnets; its DHCP ports go with it. Any other port keeps it:
   * 409 NetworkInUse, as Neutron answers.
   */
  async delete(id: string): Promise<void> {
    const removedPorts: string[] = [];
    await inTransaction(this.context.database, undefined, async (trx) => {
      await this.get(id, trx);
      const ports = await trx.selectFrom('network_ports').select(['id', 'device_owner']).where('network_id', '=', id).execute();
      if (ports.some((p) => p.device_owner !== 'network:dhcp')) {
        throw neutronError(new Conflict(`Unable to complete operation on network ${id}. There are one or more ports still in use on the network.`), 'NetworkInUse');
      }
      for (const port of ports) { await this.context.services.ports.deleteRows(trx, port.id); removedPorts.push(port.id); }
      const subnets = await trx.selectFrom('network_subnets').select('id').where('network_id', '=', id).execute();
      for (const subnet of subnets) await this.context.services.subnets.deleteRows(trx, subnet.id);
      await trx.deleteFrom('network_segments').where('network_id', '=', id).execute();
      await trx.deleteFrom('network_tags').where('resource_type', '=', 'networks').where('resource_id', '=', id).execute();
      await trx.deleteFrom('network_networks').where('id', '=', id).execute();
    });
  }
}

/** Neutron's get_network rule without policy files: owner, shared or external. */
export function isVisible(caller: Caller, network: Network): boolean {
  return caller.isAdmin || network.projectId === caller.projectId || network.shared || network.external;
}
