// Ports: fixed IPs (IPAM in subnets.ts), MAC addresses unique per network, security group
// bindings, allowed address pairs, extra DHCP options and the binding to a host. A port bound to
// a host is plugged by that host's network agent (rpc.ts), which reports it up: ACTIVE.
// The compute service and the L3 area create ports as an internal caller (null): no policy.
import type { Kysely } from 'kysely';
import { randomBytes } from 'node:crypto';
import { BadRequest, Conflict, NotFound } from '../core/errors.js';
import { newUuid } from '../core/ids.js';
import { neutronError } from './api/errors.js';
import type { Caller } from './api/common.js';
import type { NetworkContext } from './index.js';
import { canonicalAddress, parseAddress, parseCidr, contains, formatCidr } from './addresses.js';
import type { Network } from './networks.js';
import { isAutoAddress, ROUTER_INTERFACE_OWNERS, type Subnet } from './subnets.js';
import { replaceTags, tagsOf } from './tags.js';
import { inTransaction, insertUnlessDuplicate, nowStamp, parseJson } from './transactions.js';

export interface FixedIp { subnetId: string; ipAddress: string }
export interface AddressPair { ipAddress: string; macAddress: string }
export interface DhcpOption { optName: string; optValue: string; ipVersion: 4 | 6 }

export interface PortBinding {
  hostId: string;
  /** 'unbound' until bound to a host; 'bridge' once the host's Linux bridge agent plugs it; 'binding_failed' without one. */
  vifType: string;
  vifDetails: Record<string, unknown>;
  vnicType: string;
  profile: Record<string, unknown>;
}

export interface Port {
  id: string;
  networkId: string;
  projectId: string;
  name: string;
  description: string;
  macAddress: string;
  adminStateUp: boolean;
  status: string;
  deviceId: string;
  deviceOwner: string;
  fixedIps: FixedIp[];
  securityGroups: string[];
  portSecurityEnabled: boolean;
  allowedAddressPairs: AddressPair[];
  extraDhcpOpts: DhcpOption[];
  binding: PortBinding;
  dnsName: string;
  tags: string[];
  revisionNumber: number;
  createdAt: string;
  updatedAt: string;
}

/** A fixed IP as asked: a subnet, an address, or both. */
export interface FixedIpRequest { subnetId?: string; ipAddress?: string }

export interface PortCreate {
  networkId: string;
  /** The owner; defaults to the caller's project, or the network's for an internal caller. */
  projectId?: string;
  name?: string;
  description?: string;
  adminStateUp?: boolean;
  macAddress?: string;
  /** undefined: one address per IP version (every SLAAC subnet); []: none. */
  fixedIps?: FixedIpRequest[];
  deviceId?: string;
  deviceOwner?: string;
  /** Names or ids; undefined: the project's default group when port security is on. */
  securityGroups?: string[];
  portSecurityEnabled?: boolean;
  allowedAddressPairs?: { ipAddress: string; macAddress?: string }[];
  extraDhcpOpts?: { optName: string; optValue: string; ipVersion?: number }[];
  hostId?: string;
  vnicType?: string;
  profile?: Record<string, unknown>;
  dnsName?: string;
  tags?: string[];
}

export type PortUpdate = Partial<Omit<PortCreate, 'networkId' | 'projectId' | 'tags'>>;

export interface PortFilter { ids?: string[]; networkId?: string; deviceId?: string; deviceOwner?: string; projectId?: string; hostId?: string; subnetId?: string }

export const VNIC_TYPES = ['normal', 'direct', 'macvtap', 'baremetal', 'direct-physical', 'virtio-forwarder', 'smart-nic', 'vdpa', 'remote-managed'];
/** What the Linux bridge agent's mechanism driver reports for a bound port. */
export const BOUND_VIF_TYPE = 'bridge';

/** Ports that belong to a router or a floating IP. */
const L3_PORT_OWNERS = ['network:router_interface', 'network:router_gateway', 'network:floatingip', 'network:router_interface_distributed', 'network:ha_router_replicated_interface'];

export const portNotFound = (id: string) => neutronError(new NotFound(`Port ${id} could not be found.`), 'PortNotFound');
const invalid = (message: string) => neutronError(new BadRequest(`Invalid input for operation: ${message}`), 'InvalidInput');

export class PortService {
  constructor(private readonly context: NetworkContext) {}

  private get db() { return this.context.database.db; }
  private get securityGroups() { return this.context.services.securityGroups; }

  async get(id: string, db: Kysely<any> = this.db): Promise<Port> {
    const [port] = await this.load(db, { ids: [id] });
    if (!port) throw portNotFound(id);
    return port;
  }

  async find(id: string): Promise<Port | undefined> {
    const [port] = await this.load(this.db, { ids: [id] });
    return port;
  }

  list(filter: PortFilter = {}): Promise<Port[]> {
    return this.load(this.db, filter);
  }

  private async load(db: Kysely<any>, filter: PortFilter): Promise<Port[]> {
    let query = db.selectFrom('network_ports').selectAll();
    if (filter.ids) query = query.where('id', 'in', filter.ids.length > 0 ? filter.ids : ['']);
    if (filter.networkId !== undefined) query = query.where('network_id', '=', filter.networkId);
    if (filter.deviceId !== undefined) query = query.where('device_id', '=', filter.deviceId);
    if (filter.deviceOwner !== undefined) query = query.where('device_owner', '=', filter.deviceOwner);
    if (filter.projectId !== undefined) query = query.where('project_id', '=', filter.projectId);
    if (filter.hostId !== undefined) query = query.where('binding_host_id', '=', filter.hostId);
    if (filter.subnetId !== undefined) {
      const subnetId = filter.subnetId;
      query = query.where('id', 'in', (eb: any) => eb.selectFrom('network_ip_allocations').select('port_id').where('subnet_id', '=', subnetId));
    }
    const rows = await query.orderBy('id').execute();
    if (rows.length === 0) return [];
    const ids = rows.map((r) => r.id as string);
    const fixed = new Map<string, FixedIp[]>(ids.map((id) => [id, []]));
    const groups = new Map<string, string[]>(ids.map((id) => [id, []]));
    const pairs = new Map<string, AddressPair[]>(ids.map((id) => [id, []]));
    const options = new Map<string, DhcpOption[]>(ids.map((id) => [id, []]));
    const subnetOrder = new Map<string, string>();
    for (let i = 0; i < ids.length; i += 500) {
      const chunk = ids.slice(i, i + 500);
      const allocations = await db.selectFrom('network_ip_allocations as a').leftJoin('network_subnets as s', 's.id', 'a.subnet_id')
        .select(['a.port_id', 'a.subnet_id', 'a.ip_address', 's.created_at']).where('a.port_id', 'in', chunk).execute();
      for (const a of allocations) { fixed.get(a.port_id)?.push({ subnetId: a.subnet_id, ipAddress: a.ip_address }); subnetOrder.set(a.subnet_id, `${a.created_at ?? ''}|${a.subnet_id}`); }
      for (const g of await db.selectFrom('network_port_security_groups').selectAll().where('port_id', 'in', chunk).execute()) groups.get(g.port_id)?.push(g.security_group_id);
      for (const p of await db.selectFrom('network_allowed_address_pairs').selectAll().where('port_id', 'in', chunk).execute()) pairs.get(p.port_id)?.push({ ipAddress: p.ip_address, macAddress: p.mac_address });
      for (const o of await db.selectFrom('network_extra_dhcp_opts').selectAll().where('port_id', 'in', chunk).execute()) options.get(o.port_id)?.push({ optName: o.opt_name, optValue: o.opt_value, ipVersion: Number(o.ip_version) as 4 | 6 });
    }
    const tags = await tagsOf(db, 'ports', ids);
    return rows.map((r) => ({
      id: r.id, networkId: r.network_id, projectId: r.project_id, name: r.name, description: r.description,
      macAddress: r.mac_address, adminStateUp: !!r.admin_state_up, status: r.status, deviceId: r.device_id, deviceOwner: r.device_owner,
      // Fixed IPs in the order of their subnets' creation, as Neutron lists them.
      fixedIps: fixed.get(r.id)!.sort((a, b) => (subnetOrder.get(a.subnetId)! < subnetOrder.get(b.subnetId)! ? -1 : subnetOrder.get(a.subnetId)! > subnetOrder.get(b.subnetId)! ? 1 : 0)),
      securityGroups: groups.get(r.id)!.sort(), portSecurityEnabled: !!r.port_security_enabled,
      allowedAddressPairs: pairs.get(r.id)!.sort((a, b) => a.ipAddress.localeCompare(b.ipAddress) || a.macAddress.localeCompare(b.macAddress)), extraDhcpOpts: options.get(r.id)!.sort((a, b) => a.optName.localeCompare(b.optName)),
      binding: {
        hostId: r.binding_host_id, vifType: r.binding_vif_type, vifDetails: parseJson(r.binding_vif_details, {}),
        vnicType: r.binding_vnic_type, profile: parseJson(r.binding_profile, {}),
      },
      dnsName: r.dns_name, tags: tags.get(r.id) ?? [], revisionNumber: Number(r.revision_number), createdAt: r.created_at, updatedAt: r.updated_at,
    }));
  }

  /**
   * Creates a port on a network. Inside `options.trx` when given (the caller's transaction: a
   * router interface, a floating IP), otherwise in a transaction of its own.
   */
  async create(caller: Caller | null, body: PortCreate, options: { trx?: Kysely<any> } = {}): Promise<Port> {
    const network = await this.context.services.networks.get(body.networkId, options.trx);
    const projectId = body.projectId ?? caller?.projectId ?? network.projectId;
    const deviceOwner = body.deviceOwner ?? '';
    const portSecurity = body.portSecurityEnabled ?? network.portSecurityEnabled;
    const pairs = this.addressPairs(body.allowedAddressPairs ?? []);
    const dhcpOptions = this.dhcpOptions(body.extraDhcpOpts ?? []);
    if (body.vnicType !== undefined && !VNIC_TYPES.includes(body.vnicType)) throw invalid(`'${body.vnicType}' is not in ${JSON.stringify(VNIC_TYPES)}`.replace(/"/g, "'"));
    if (body.macAddress !== undefined) this.mac(body.macAddress);
    const groups = await this.groupsFor(caller, projectId, portSecurity, deviceOwner, body.securityGroups, options.trx);
    if (!portSecurity && pairs.length > 0) {
      throw neutronError(new Conflict('Port Security must be enabled in order to have allowed address pairs on a port.'), 'AddressPairAndPortSecurityRequired');
    }
    const id = newUuid();
    await inTransaction(this.context.database, options.trx, async (trx) => {
      await this.context.services.quotas.check(trx, projectId, 'port');
      const now = nowStamp();
      const row = (mac: string) => ({
        id, project_id: projectId, network_id: network.id, name: body.name ?? '', description: body.description ?? '',
        mac_address: mac, admin_state_up: body.adminStateUp === false ? 0 : 1, status: 'DOWN',
        device_id: body.deviceId ?? '', device_owner: deviceOwner, port_security_enabled: portSecurity ? 1 : 0,
        binding_host_id: body.hostId ?? '', binding_vnic_type: body.vnicType ?? 'normal', binding_vif_type: 'unbound',
        binding_vif_details: '{}', binding_profile: JSON.stringify(body.profile ?? {}), dns_name: body.dnsName ?? '',
        revision_number: 1, created_at: now, updated_at: now,
      });
      let mac = body.macAddress === undefined ? undefined : this.mac(body.macAddress);
      if (mac !== undefined) {
        if (!(await insertUnlessDuplicate(trx, (t) => t.insertInto('network_ports').values(row(mac!)).execute()))) throw macInUse(network.id, mac);
      } else {
        for (let attempt = 0; ; attempt++) {
          mac = this.randomMac();
          if (await insertUnlessDuplicate(trx, (t) => t.insertInto('network_ports').values(row(mac!)).execute())) break;
          if (attempt >= 16) throw neutronError(new Conflict(`Unable to generate unique mac on network ${network.id}.`), 'MacAddressGenerationFailure');
        }
      }
      await this.assignFixedIps(trx, id, network, mac!, deviceOwner, body.fixedIps);
      if (groups.length > 0) await trx.insertInto('network_port_security_groups').values(groups.map((g) => ({ port_id: id, security_group_id: g }))).execute();
      await this.writePairs(trx, id, pairs, mac!);
      await this.writeDhcpOptions(trx, id, dhcpOptions);
      if (body.tags) await replaceTags(trx, 'ports', id, body.tags);
    });
    if (options.trx) return this.get(id, options.trx);
    const port = body.hostId ? await this.plug(id) : await this.get(id);
    await this.announce(port.networkId, port.securityGroups);
    return port;
  }

  /** The groups a new port (or a port update) gets: the asked ones, the project's default, or none. */
  private async groupsFor(caller: Caller | null, projectId: string, portSecurity: boolean, deviceOwner: string, asked: string[] | undefined, trx?: Kysely<any>): Promise<string[]> {
    if (asked !== undefined && asked.length > 0) {
      if (!portSecurity) {
        throw neutronError(new BadRequest('Port security must be enabled and port must have an IP address in order to use security groups.'), 'PortSecurityAndIPRequiredForSecurityGroups');
      }
      if (trx) return this.groupIdsIn(trx, asked);
      return [...new Set(await this.securityGroups.resolve(caller ?? { projectId, isAdmin: true }, asked, projectId))];
    }
    if (asked !== undefined || !portSecurity || deviceOwner.startsWith('network:')) return [];
    // Inside the caller's transaction the group must be made in it too (SQLite has one connection).
    return [await this.securityGroups.ensureDefault(projectId, trx)];
  }

  /** Inside a caller's transaction (internal callers), groups are given by id: each must exist. */
  private async groupIdsIn(trx: Kysely<any>, ids: string[]): Promise<string[]> {
    const wanted = [...new Set(ids)];
    const found = new Set((await trx.selectFrom('network_security_groups').select('id').where('id', 'in', wanted).execute()).map((r) => r.id as string));
    const missing = wanted.filter((id) => !found.has(id));
    if (missing.length > 0) throw neutronError(new NotFound(`Security group ${missing.join(', ')} does not exist`), 'SecurityGroupNotFound');
    return wanted;
  }

  /** Gives a new port its fixed IPs, as asked or one per IP version by default. */
  private async assignFixedIps(trx: Kysely<any>, portId: string, network: Network, mac: string, deviceOwner: string, asked: FixedIpRequest[] | undefined): Promise<void> {
    const subnets = await this.context.services.subnets.list({ networkId: network.id }, trx);
    if (asked === undefined) {
      // Neutron's default: an address from the first IPv4 subnet that has one free, likewise for a
      // stateful IPv6 subnet, and the automatic address of every SLAAC / stateless subnet.
      for (const version of [4, 6] as const) {
        const candidates = subnets.filter((s) => s.ipVersion === version && !isAutoAddress(s));
        let lastError: unknown;
        for (const subnet of candidates) {
          try { await this.context.services.subnets.allocate(trx, { subnet, portId, macAddress: mac, deviceOwner }); lastError = undefined; break; } catch (err) {
            if ((err as { neutronType?: string }).neutronType !== 'IpAddressGenerationFailure') throw err;
            lastError = err;
          }
        }
        if (lastError) throw lastError;
      }
      for (const subnet of subnets.filter(isAutoAddress)) await this.context.services.subnets.allocate(trx, { subnet, portId, macAddress: mac, deviceOwner });
      return;
    }
    const seen = new Set<string>();
    const used = new Set<string>();
    for (const request of asked) {
      const subnet = this.subnetFor(request, subnets, network);
      const ip = request.ipAddress === undefined ? undefined : canonicalAddress(request.ipAddress) ?? request.ipAddress;
      const key = `${subnet.id}|${ip ?? ''}`;
      if (seen.has(key) && (ip !== undefined || isAutoAddress(subnet))) throw invalid(`Duplicate IP address '${ip ?? subnet.id}'`);
      seen.add(key);
      used.add(subnet.id);
      await this.context.services.subnets.allocate(trx, { subnet, portId, ipAddress: ip, macAddress: mac, deviceOwner });
    }
    // As Neutron: every SLAAC / stateless subnet of the network gives a (non-router) port its address, asked for or not.
    if (ROUTER_INTERFACE_OWNERS.includes(deviceOwner)) return;
    for (const subnet of subnets.filter((s) => isAutoAddress(s) && !used.has(s.id))) {
      await this.context.services.subnets.allocate(trx, { subnet, portId, macAddress: mac, deviceOwner });
    }
  }

  private subnetFor(request: FixedIpRequest, subnets: Subnet[], network: Network): Subnet {
    if (request.subnetId !== undefined) {
      const subnet = subnets.find((s) => s.id === request.subnetId);
      if (!subnet) {
        throw neutronError(new BadRequest(`Invalid input for operation: Failed to create port on network ${network.id}, because fixed_ips included invalid subnet ${request.subnetId}.`), 'InvalidInput');
      }
      return subnet;
    }
    if (request.ipAddress === undefined) throw invalid('IP allocation requires subnet_id or ip_address');
    const address = parseAddress(request.ipAddress);
    const subnet = address && subnets.find((s) => contains(parseCidr(s.cidr)!, address));
    if (!subnet) {
      throw neutronError(new BadRequest(`Invalid input for operation: IP address ${request.ipAddress} is not a valid IP for any of the subnets on the specified network.`), 'InvalidIpForNetwork');
    }
    return subnet;
  }

  /**
   * Changes a port. Inside `options.trx` (a caller's transaction) the agents are not told:
   * the caller calls agents.notifyPortChanged after its commit.
   */
  async update(caller: Caller | null, id: string, changes: PortUpdate, options: { trx?: Kysely<any> } = {}): Promise<Port> {
    const current = await this.get(id, options.trx);
    const portSecurity = changes.portSecurityEnabled ?? current.portSecurityEnabled;
    const pairs = changes.allowedAddressPairs === undefined ? undefined : this.addressPairs(changes.allowedAddressPairs);
    const dhcpOptions = changes.extraDhcpOpts === undefined ? undefined : this.dhcpOptions(changes.extraDhcpOpts);
    if (changes.vnicType !== undefined && !VNIC_TYPES.includes(changes.vnicType)) throw invalid(`'${changes.vnicType}' is not in ${JSON.stringify(VNIC_TYPES)}`.replace(/"/g, "'"));
    let groups: string[] | undefined;
    if (changes.securityGroups !== undefined) {
      groups = await this.groupsFor(caller, current.projectId, portSecurity, current.deviceOwner, changes.securityGroups, options.trx);
    } else if (changes.portSecurityEnabled === false && current.securityGroups.length > 0) {
      throw neutronError(new Conflict('Port has security group associated. Cannot disable port security or ip address until security group is removed'), 'PortSecurityPortHasSecurityGroup');
    } else if (changes.portSecurityEnabled === true && !current.portSecurityEnabled && current.securityGroups.length === 0 && !current.deviceOwner.startsWith('network:')) {
      groups = [await this.securityGroups.ensureDefault(current.projectId, options.trx)];
    }
    if (!portSecurity && (pairs ?? current.allowedAddressPairs).length > 0) {
      throw neutronError(new Conflict('Port Security must be enabled in order to have allowed address pairs on a port.'), 'AddressPairAndPortSecurityRequired');
    }
    const previousHost = current.binding.hostId;
    let routers: string[] = [];
    await inTransaction(this.context.database, options.trx, async (trx) => {
      const row = await trx.selectFrom('network_ports').select('revision_number').where('id', '=', id).executeTakeFirst();
      if (!row) throw portNotFound(id);
      const set: Record<string, unknown> = { revision_number: Number(row.revision_number) + 1, updated_at: nowStamp() };
      if (changes.name !== undefined) set.name = changes.name;
      if (changes.description !== undefined) set.description = changes.description;
      if (changes.adminStateUp !== undefined) set.admin_state_up = changes.adminStateUp ? 1 : 0;
      if (changes.deviceId !== undefined) set.device_id = changes.deviceId;
      if (changes.deviceOwner !== undefined) set.device_owner = changes.deviceOwner;
      if (changes.portSecurityEnabled !== undefined) set.port_security_enabled = changes.portSecurityEnabled ? 1 : 0;
      if (changes.vnicType !== undefined) set.binding_vnic_type = changes.vnicType;
      if (changes.profile !== undefined) set.binding_profile = JSON.stringify(changes.profile ?? {});
      if (changes.dnsName !== undefined) set.dns_name = changes.dnsName;
      if (changes.hostId !== undefined && changes.hostId !== previousHost) {
        set.binding_host_id = changes.hostId;
        set.binding_vif_type = 'unbound';
        set.binding_vif_details = '{}';
        set.status = 'DOWN';
      }
      let mac = current.macAddress;
      if (changes.macAddress !== undefined && this.mac(changes.macAddress) !== current.macAddress) {
        if (current.binding.vifType !== 'unbound' && current.binding.vifType !== 'binding_failed') {
          throw neutronError(new Conflict(`Port ${id} is bound: its MAC address cannot be changed.`), 'PortBound');
        }
        mac = this.mac(changes.macAddress);
        set.mac_address = mac;
      }
      const updated = await insertUnlessDuplicate(trx, (t) => t.updateTable('network_ports').set(set).where('id', '=', id).execute());
      if (!updated) throw macInUse(current.networkId, mac);
      if (changes.fixedIps !== undefined) {
        await this.replaceFixedIps(trx, current, mac, changes.deviceOwner ?? current.deviceOwner, changes.fixedIps);
        // Floating IPs and port forwardings on an address the port gave up go with it.
        routers = await this.context.services.floatingIps.fixedIpsChanged(trx, id);
      }
      if (groups !== undefined) {
        await trx.deleteFrom('network_port_security_groups').where('port_id', '=', id).execute();
        if (groups.length > 0) await trx.insertInto('network_port_security_groups').values(groups.map((g) => ({ port_id: id, security_group_id: g }))).execute();
      }
      if (pairs !== undefined) {
        await trx.deleteFrom('network_allowed_address_pairs').where('port_id', '=', id).execute();
        await this.writePairs(trx, id, pairs, mac);
      }
      if (dhcpOptions !== undefined) {
        await trx.deleteFrom('network_extra_dhcp_opts').where('port_id', '=', id).execute();
        await this.writeDhcpOptions(trx, id, dhcpOptions);
      }
    });
    if (options.trx) return this.get(id, options.trx);
    for (const routerId of routers) await this.context.services.routers.notify(routerId);
    let port: Port | undefined;
    if (changes.hostId !== undefined && changes.hostId !== previousHost) {
      if (previousHost) await this.context.services.agents.unplugPort(previousHost, id);
      if (changes.hostId) port = await this.plug(id);
    } else if (current.binding.hostId) {
      await this.context.services.agents.notifyPortChanged(id);
    }
    const after = port ?? await this.get(id);
    await this.announce(current.networkId, [...current.securityGroups, ...after.securityGroups]);
    return after;
  }

  /** Keeps the asked fixed IPs the port already has, frees the others and allocates the new ones. */
  private async replaceFixedIps(trx: Kysely<any>, current: Port, mac: string, deviceOwner: string, asked: FixedIpRequest[]): Promise<void> {
    const network = await this.context.services.networks.get(current.networkId, trx);
    const subnets = await this.context.services.subnets.list({ networkId: network.id }, trx);
    const keep = new Set<string>();
    const fresh: { subnet: Subnet; ipAddress?: string }[] = [];
    for (const request of asked) {
      const subnet = this.subnetFor(request, subnets, network);
      const ip = request.ipAddress === undefined ? undefined : canonicalAddress(request.ipAddress) ?? request.ipAddress;
      const existing = current.fixedIps.find((f) => f.subnetId === subnet.id && (ip === undefined ? !keep.has(`${f.subnetId}|${f.ipAddress}`) : f.ipAddress === ip));
      if (existing) keep.add(`${existing.subnetId}|${existing.ipAddress}`);
      else fresh.push({ subnet, ipAddress: ip });
    }
    const isRouter = ROUTER_INTERFACE_OWNERS.includes(deviceOwner);
    for (const fixed of current.fixedIps) {
      if (keep.has(`${fixed.subnetId}|${fixed.ipAddress}`)) continue;
      // A SLAAC address stays with a non-router port as long as the subnet does (Neutron's _is_ip_required_by_subnet).
      const subnet = subnets.find((s) => s.id === fixed.subnetId);
      if (subnet && isAutoAddress(subnet) && !isRouter) continue;
      await this.context.services.subnets.release(trx, current.id, fixed.subnetId, fixed.ipAddress);
    }
    for (const request of fresh) {
      await this.context.services.subnets.allocate(trx, { subnet: request.subnet, portId: current.id, ipAddress: request.ipAddress, macAddress: mac, deviceOwner });
    }
  }

  /** Deletes a port and frees its addresses; its host's agent unplugs it. */
  async delete(caller: Caller | null, id: string, options: { trx?: Kysely<any> } = {}): Promise<void> {
    const port = await this.get(id, options.trx);
    // Router and floating IP ports go with their router / floating IP, not through the port API (as Neutron).
    if (caller !== null && L3_PORT_OWNERS.includes(port.deviceOwner) && port.deviceId !== '') {
      throw neutronError(new Conflict(`Port ${id} cannot be deleted directly via the port API: has device owner ${port.deviceOwner}.`), 'ServicePortInUse');
    }
    // Floating IPs on the port are disassociated and its port forwardings removed with it.
    const routers = await inTransaction(this.context.database, options.trx, async (trx) => {
      const touched = await this.context.services.floatingIps.portDeleted(trx, id);
      await this.deleteRows(trx, id);
      return touched;
    });
    if (options.trx) return;
    for (const routerId of routers) await this.context.services.routers.notify(routerId);
    if (port.binding.hostId) await this.context.services.agents.unplugPort(port.binding.hostId, id);
    await this.announce(port.networkId, port.securityGroups);
  }

  /** The rows of one port, inside the caller's transaction (network delete takes DHCP ports with it). */
  async deleteRows(trx: Kysely<any>, id: string): Promise<void> {
    await trx.deleteFrom('network_ip_allocations').where('port_id', '=', id).execute();
    await trx.deleteFrom('network_port_security_groups').where('port_id', '=', id).execute();
    await trx.deleteFrom('network_allowed_address_pairs').where('port_id', '=', id).execute();
    await trx.deleteFrom('network_extra_dhcp_opts').where('port_id', '=', id).execute();
    await trx.deleteFrom('network_tags').where('resource_type', '=', 'ports').where('resource_id', '=', id).execute();
    await trx.deleteFrom('network_ports').where('id', '=', id).execute();
  }

  /**
   * Binds a port to a host for a device (what Nova does when it plugs an instance): sets
   * binding:host_id, device_id and device_owner, and asks the host's network agent to plug it.
   */
  async bind(portId: string, host: string, deviceId: string, deviceOwner: string): Promise<Port> {
    const port = await this.get(portId);
    await this.db.updateTable('network_ports').set({
      binding_host_id: host, device_id: deviceId, device_owner: deviceOwner,
      binding_vif_type: 'unbound', binding_vif_details: '{}', status: 'DOWN',
      revision_number: port.revisionNumber + 1, updated_at: nowStamp(),
    }).where('id', '=', portId).execute();
    if (port.binding.hostId && port.binding.hostId !== host) await this.context.services.agents.unplugPort(port.binding.hostId, portId);
    const bound = await this.plug(portId);
    await this.announce(bound.networkId, bound.securityGroups);
    return bound;
  }

  /** Clears a port's binding and device (Nova's unbind on detach or delete of a server); the agent unplugs it. */
  async unbind(portId: string): Promise<Port> {
    const port = await this.get(portId);
    await this.db.updateTable('network_ports').set({
      binding_host_id: '', device_id: '', device_owner: '', binding_vif_type: 'unbound', binding_vif_details: '{}', status: 'DOWN',
      binding_profile: '{}', revision_number: port.revisionNumber + 1, updated_at: nowStamp(),
    }).where('id', '=', portId).execute();
    if (port.binding.hostId) await this.context.services.agents.unplugPort(port.binding.hostId, portId);
    await this.announce(port.networkId, port.securityGroups);
    return this.get(portId);
  }

  /** Completes a binding: with a live agent on the host the VIF is a bridge port and the agent plugs it; without one it failed. */
  private async plug(portId: string): Promise<Port> {
    const port = await this.get(portId);
    const agent = await this.context.services.agents.agentOnHost(port.binding.hostId);
    const bound = agent !== undefined && agent.alive && agent.adminStateUp;
    await this.db.updateTable('network_ports').set({
      binding_vif_type: bound ? BOUND_VIF_TYPE : 'binding_failed',
      binding_vif_details: JSON.stringify(bound ? { port_filter: true, connectivity: 'l2' } : {}),
    }).where('id', '=', portId).execute();
    if (bound) await this.context.services.agents.plugPort(port.binding.hostId, portId);
    return this.get(portId);
  }

  /**
   * After a port change committed: hosts serving DHCP on its network learn it, and hosts filtering
   * for its groups (their members changed, which remote_group_id rules depend on) re-apply them.
   */
  private async announce(networkId: string, groups: string[]): Promise<void> {
    // The change is committed: a failed notification must not fail the request (agents resync).
    try {
      await this.context.services.agents.notifyNetworkChanged(networkId);
      if (groups.length > 0) await this.context.services.agents.notifySecurityGroupsChanged([...new Set(groups)]);
    } catch (err) {
      this.context.logger.warn('could not tell the network agents about a port change', { networkId, error: (err as Error).message });
    }
  }

  /** What the agents report: ports plugged (ACTIVE) or gone (DOWN). */
  async setStatus(portIds: string[], status: 'ACTIVE' | 'DOWN'): Promise<void> {
    if (portIds.length === 0) return;
    await this.db.updateTable('network_ports').set({ status }).where('id', 'in', portIds).execute();
  }

  // --- validation -------------------------------------------------------------------------

  private mac(text: string): string {
    if (typeof text !== 'string' || !/^([0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}$/.test(text)) throw invalid(`'${String(text)}' is not a valid MAC address`);
    const mac = text.toLowerCase().replace(/-/g, ':');
    if (mac === '00:00:00:00:00:00' || (parseInt(mac.slice(0, 2), 16) & 1) === 1) throw invalid(`'${text}' is not a valid MAC address`);
    return mac;
  }

  /** [DEFAULT] base_mac (fa:16:3e:00:00:00): its non-zero octets are kept, the rest random. */
  private randomMac(): string {
    const base = this.context.config.get('DEFAULT', 'base_mac', 'fa:16:3e:00:00:00').split(':');
    const random = randomBytes(6);
    return base.map((octet, i) => (octet === '00' && i >= 3 ? random[i].toString(16).padStart(2, '0') : octet.toLowerCase())).join(':');
  }

  private addressPairs(pairs: { ipAddress: string; macAddress?: string }[]): { ipAddress: string; macAddress?: string }[] {
    if (!Array.isArray(pairs)) throw invalid('allowed_address_pairs must be a list.');
    const max = this.context.config.getInt('DEFAULT', 'max_allowed_address_pair', 10);
    if (pairs.length > max) throw neutronError(new BadRequest(`Request exceeds maximum number of allowed address pairs (${max}).`), 'AllowedAddressPairExhausted');
    const seen = new Set<string>();
    return pairs.map((pair) => {
      const cidr = parseCidr(pair?.ipAddress);
      if (!cidr) throw invalid(`'${String(pair?.ipAddress)}' is not a valid IP address or cidr.`);
      const ip = pair.ipAddress.includes('/') ? formatCidr(cidr) : canonicalAddress(pair.ipAddress)!;
      const mac = pair.macAddress === undefined ? undefined : this.mac(pair.macAddress);
      const key = `${ip}|${mac ?? ''}`;
      if (seen.has(key)) throw neutronError(new BadRequest('Request contains duplicate address pair: mac_address ' + (mac ?? 'None') + ' ip_address ' + ip + '.'), 'DuplicateAddressPairInRequest');
      seen.add(key);
      return { ipAddress: ip, macAddress: mac };
    });
  }

  private async writePairs(trx: Kysely<any>, portId: string, pairs: { ipAddress: string; macAddress?: string }[], portMac: string): Promise<void> {
    if (pairs.length === 0) return;
    await trx.insertInto('network_allowed_address_pairs').values(pairs.map((p) => ({ port_id: portId, ip_address: p.ipAddress, mac_address: p.macAddress ?? portMac }))).execute();
  }

  private dhcpOptions(options: { optName: string; optValue: string; ipVersion?: number }[]): DhcpOption[] {
    if (!Array.isArray(options)) throw invalid('extra_dhcp_opts must be a list.');
    const seen = new Set<string>();
    return options.map((o) => {
      if (typeof o?.optName !== 'string' || o.optName === '' || typeof o.optValue !== 'string') throw invalid(`Invalid data format for extra-dhcp-opt: ${JSON.stringify(o)}`);
      const version = o.ipVersion ?? 4;
      if (version !== 4 && version !== 6) throw invalid(`${version} is not in [4, 6]`);
      const key = `${o.optName}|${version}`;
      if (seen.has(key)) throw invalid(`Duplicate extra-dhcp-opt ${o.optName} for IP version ${version}`);
      seen.add(key);
      return { optName: o.optName, optValue: o.optValue, ipVersion: version };
    });
  }

  private async writeDhcpOptions(trx: Kysely<any>, portId: string, options: DhcpOption[]): Promise<void> {
    if (options.length === 0) return;
    await trx.insertInto('network_extra_dhcp_opts').values(options.map((o) => ({ port_id: portId, opt_name: o.optName, opt_value: o.optValue, ip_version: o.ipVersion }))).execute();
  }
}

const macInUse = (networkId: string, mac: string) => neutronError(new Conflict(`Unable to complete operation for network ${networkId}. The mac address ${mac} is in use.`), 'MacAddressInUse');
