// The compute side of networking (Nova's network API over Neutron): checks the networks a
// server create asks for, allocates the instance's ports once it has a host (device_id = the
// instance, device_owner compute:<az>, bound to the host), frees them on delete (ports Nova made
// are deleted, ports the user gave are only unbound: preserve_on_delete), rebinds them when the
// instance moves, attaches/detaches interfaces, and renders `addresses` and `security_groups`.
// compute_instance_ports is Nova's info cache: which ports an instance has, in device order,
// and which of them the user brought. Allocation reads it first, so a resumed build does not
// allocate twice.
import type { Kysely } from 'kysely';
import { BadRequest, Conflict, Forbidden, NotFound } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { Database } from '../db/index.js';
import type { NetworkServices } from '../network/index.js';
import type { Network } from '../network/networks.js';
import type { Port } from '../network/ports.js';
import { contains, parseAddress, parseCidr } from '../network/addresses.js';
import { retryingTransaction } from '../network/transactions.js';
import type { Instance, InstanceRequest } from './instances.js';
import type { InstanceVif } from './rpc.js';

/** One NIC of a server create, as the API accepted it. */
export interface NicRequest { uuid?: string; port?: string; fixed_ip?: string; tag?: string }

interface InstancePortRow { instanceId: string; portId: string; networkId: string; preserveOnDelete: boolean; tag: string | null; position: number }

/** An address as Nova's `addresses` shows it. */
export interface ServerAddress { version: 4 | 6; addr: string; 'OS-EXT-IPS:type': 'fixed' | 'floating'; 'OS-EXT-IPS-MAC:mac_addr': string }

/** What the server views need of an instance's networking. */
export interface ServerNetworkView {
  addresses: Record<string, ServerAddress[]>;
  /** Names of the security groups on the instance's ports (Nova's security_groups). */
  securityGroups: string[];
  ports: Port[];
}

/** A floating IP on a port, as FloatingIpService.forPorts gives it. */
interface FloatingForPort { portId: string; floatingIpAddress: string; fixedIpAddress: string | null }

export const AUTO_ALLOCATE_FAILED = (projectId: string) => new BadRequest(`Unable to automatically allocate a network for project ${projectId}`);

export class InstanceNetworking {
  constructor(private readonly deps: { database: Database; network?: NetworkServices; logger: Logger }) {}

  private get db() { return this.deps.database.db; }
  get enabled(): boolean { return this.deps.network !== undefined; }
  private get net(): NetworkServices {
    if (!this.deps.network) throw new BadRequest('This cloud runs no Networking service.');
    return this.deps.network;
  }

  // ---- API side: server create ------------------------------------------------------------

  /**
   * Checks what a create asks for and returns the NICs to allocate ('none' for no NICs).
   * `networks` undefined is a request before 2.37 without the field: like auto, but no network
   * at all means no NICs (as Nova did).
   */
  async validate(caller: { projectId: string; isAdmin: boolean }, networks: InstanceRequest['networks'] | undefined, securityGroups: string[], minCount: number, maxCount: number): Promise<InstanceRequest['networks']> {
    if (networks === 'none') return 'none';
    if (!this.deps.network) {
      if (Array.isArray(networks) && networks.length > 0) {
        const first = networks[0];
        throw new BadRequest(first.port ? `Port id ${first.port} could not be found.` : `Network ${first.uuid ?? first.fixed_ip} could not be found.`);
      }
      return networks ?? 'auto';
    }
    let nics: NicRequest[];
    if (networks === undefined || networks === 'auto' || (Array.isArray(networks) && networks.length === 0)) {
      const candidates = await this.availableNetworks(caller.projectId);
      if (candidates.length > 1) throw new Conflict('Multiple possible networks found, use a Network ID to be more specific.');
      if (candidates.length === 0) {
        // get-me-a-network needs Neutron's auto-allocated-topology, which this cloud does not serve.
        if (networks === 'auto') throw AUTO_ALLOCATE_FAILED(caller.projectId);
        return 'none';
      }
      nics = [{ uuid: candidates[0].id }];
    } else {
      nics = networks.map((n) => ({ ...n }));
    }
    const seenPorts = new Set<string>();
    for (const nic of nics) {
      if (nic.port) {
        if (maxCount > 1) throw new BadRequest('Unable to launch multiple instances with a single configured port ID. Please launch your instance one by one with different ports.');
        if (seenPorts.has(nic.port)) throw new BadRequest(`Port ${nic.port} is still in use.`);
        seenPorts.add(nic.port);
        const port = await this.userPort(caller, nic.port);
        if (port.deviceId) throw new Conflict(`Port ${port.id} is still in use.`);
        nic.uuid = port.networkId;
        delete nic.fixed_ip;
        continue;
      }
      if (!nic.uuid) throw new BadRequest('Bad networks format: network uuid is not in proper format ()');
      const network = await this.userNetwork(caller, nic.uuid);
      if (network.subnets.length === 0) throw new BadRequest(`Network ${network.id} requires a subnet in order to boot instances on.`);
      if (nic.fixed_ip !== undefined) {
        if (maxCount > 1) throw new BadRequest('max_count cannot be greater than 1 if an fixed_ip is specified.');
        await this.checkFixedIp(network, nic.fixed_ip);
      }
    }
    const created = nics.filter((n) => !n.port).length;
    if (created > 0) {
      const limit = (await this.net.quotas.limits(caller.projectId)).port;
      if (limit >= 0) {
        const used = (await this.net.ports.list({ projectId: caller.projectId })).length;
        if (used + created * minCount > limit) throw new Forbidden('Maximum number of ports exceeded');
      }
    }
    if (securityGroups.length > 0) await this.securityGroupIds(caller.projectId, securityGroups, caller).catch((err) => { throw asBadRequest(err); });
    return nics;
  }

  /** Networks a server of the project may use without naming one: its own (not external) and shared ones. */
  async availableNetworks(projectId: string): Promise<Network[]> {
    const all = await this.net.networks.list();
    return all.filter((n) => (n.projectId === projectId && !n.external) || n.shared);
  }

  private async userNetwork(caller: { projectId: string; isAdmin: boolean }, id: string): Promise<Network> {
    const network = await this.net.networks.find(id);
    if (!network || !(caller.isAdmin || network.projectId === caller.projectId || network.shared || network.external)) {
      throw new BadRequest(`Network ${id} could not be found.`);
    }
    if (network.external && !network.shared && !caller.isAdmin) throw new Forbidden(`It is not allowed to create an interface on external network ${id}`);
    return network;
  }

  private async userPort(caller: { projectId: string; isAdmin: boolean }, id: string): Promise<Port> {
    const port = await this.net.ports.find(id);
    // Nova reads the port with the user's token: another project's port is not found.
    if (!port || (!caller.isAdmin && port.projectId !== caller.projectId)) throw new BadRequest(`Port id ${id} could not be found.`);
    return port;
  }

  private async checkFixedIp(network: Network, address: string): Promise<void> {
    const subnets = await this.net.subnets.list({ networkId: network.id });
    const parsed = parseAddress(address);
    if (!parsed) throw new BadRequest(`Invalid fixed IP address (${address})`);
    if (!subnets.some((s) => { const cidr = parseCidr(s.cidr); return !!cidr && contains(cidr, parsed); })) {
      throw new BadRequest(`Fixed IP address ${address} is not valid for network ${network.id}.`);
    }
    const taken = await this.net.ports.list({ networkId: network.id });
    if (taken.some((p) => p.fixedIps.some((f) => f.ipAddress === address))) throw new Conflict(`Fixed IP address ${address} is already in use on instance.`);
  }

  private async securityGroupIds(projectId: string, names: string[], caller: { projectId: string; isAdmin: boolean } | null = null): Promise<string[]> {
    return this.net.securityGroups.resolve(caller ?? { projectId, isAdmin: false }, names, projectId);
  }

  // ---- conductor side: allocate, free, move ------------------------------------------------

  /**
   * Gives the instance its ports on `host` and returns them as VIFs in device order. Ports it
   * already has (a resumed build, a reschedule) are rebound, not made again.
   */
  async allocate(instance: Instance, host: string): Promise<InstanceVif[]> {
    const nics = instance.request.networks;
    if (!this.deps.network || !Array.isArray(nics) || nics.length === 0) return [];
    const owner = `compute:${instance.availabilityZone ?? 'nova'}`;
    const existing = await this.rows(instance.id);
    let groupIds: string[] | undefined;
    for (let position = 0; position < nics.length; position++) {
      const nic = nics[position];
      const row = existing.find((r) => r.position === position);
      if (row) {
        const port = await this.net.ports.find(row.portId);
        if (port) {
          if (port.binding.hostId !== host || port.deviceId !== instance.id) await this.net.ports.bind(port.id, host, instance.id, owner);
          continue;
        }
        await this.db.deleteFrom('compute_instance_ports').where('port_id', '=', row.portId).execute();
      }
      if (nic.port) {
        const port = await this.net.ports.get(nic.port);
        if (port.deviceId && port.deviceId !== instance.id) throw new Conflict(`Port ${port.id} is still in use.`);
        await this.insertRow({ instanceId: instance.id, portId: port.id, networkId: port.networkId, preserveOnDelete: true, tag: nic.tag ?? null, position });
        await this.net.ports.bind(port.id, host, instance.id, owner);
        continue;
      }
      const network = await this.net.networks.get(nic.uuid!);
      if (network.portSecurityEnabled) groupIds ??= await this.securityGroupIds(instance.projectId, instance.request.securityGroups.length > 0 ? instance.request.securityGroups : ['default']);
      const port = await this.createPort(instance, network, owner, position, nic, network.portSecurityEnabled ? groupIds : undefined);
      await this.net.ports.bind(port.id, host, instance.id, owner);
    }
    return this.vifs(instance.id);
  }

  /** A port Nova makes for the instance, recorded with it in one transaction (no orphan on a crash; again when a deadlock aborts it). */
  private async createPort(instance: Instance, network: Network, owner: string, position: number, nic: NicRequest, groupIds: string[] | undefined): Promise<Port> {
    return retryingTransaction(this.deps.database, async (trx) => {
      const port = await this.net.ports.create(null, {
        networkId: network.id, projectId: instance.projectId, deviceId: instance.id, deviceOwner: owner,
        fixedIps: nic.fixed_ip ? [{ ipAddress: nic.fixed_ip }] : undefined, securityGroups: groupIds,
      }, { trx });
      await this.insertRow({ instanceId: instance.id, portId: port.id, networkId: network.id, preserveOnDelete: false, tag: nic.tag ?? null, position }, trx);
      return port;
    });
  }

  /** Frees the instance's ports: those Nova made are deleted, the user's are unbound and kept. */
  async deallocate(instanceId: string): Promise<void> {
    if (!this.deps.network) return;
    for (const row of await this.rows(instanceId)) await this.release(row);
    // A port left with the instance's device id by a crash between steps goes too.
    for (const port of await this.net.ports.list({ deviceId: instanceId })) {
      if (port.deviceOwner.startsWith('compute:')) await this.net.ports.delete(null, port.id).catch(ignoreNotFound);
    }
  }

  private async release(row: InstancePortRow): Promise<void> {
    if (row.preserveOnDelete) await this.net.ports.unbind(row.portId).catch(ignoreNotFound);
    else await this.net.ports.delete(null, row.portId).catch(ignoreNotFound);
    await this.db.deleteFrom('compute_instance_ports').where('port_id', '=', row.portId).execute();
  }

  /** Binds the instance's ports to the host it moved to (resize, migrations, evacuate, unshelve); null unbinds (shelve offload). */
  async rebind(instance: Instance, host: string | null): Promise<void> {
    if (!this.deps.network) return;
    const owner = `compute:${instance.availabilityZone ?? 'nova'}`;
    for (const row of await this.rows(instance.id)) {
      const port = await this.net.ports.find(row.portId);
      if (!port) continue;
      if (host === null) { if (port.binding.hostId) await this.net.ports.update(null, port.id, { hostId: '' }); }
      else if (port.binding.hostId !== host) await this.net.ports.bind(port.id, host, instance.id, owner);
    }
  }

  /** The instance's ports as the virt driver needs them (Nova's network_info), in device order. */
  async vifs(instanceId: string): Promise<InstanceVif[]> {
    if (!this.deps.network) return [];
    const rows = await this.rows(instanceId);
    const ports = await this.net.ports.list({ ids: rows.map((r) => r.portId) });
    const networks = new Map((await this.net.networks.list({ ids: [...new Set(ports.map((p) => p.networkId))] })).map((n) => [n.id, n]));
    const subnetIds = [...new Set(ports.flatMap((p) => p.fixedIps.map((f) => f.subnetId)))];
    const subnets = new Map((await this.net.subnets.list({ ids: subnetIds })).map((s) => [s.id, s]));
    const out: InstanceVif[] = [];
    for (const row of rows) {
      const port = ports.find((p) => p.id === row.portId);
      if (!port) continue;
      out.push({
        portId: port.id, networkId: port.networkId, macAddress: port.macAddress, mtu: networks.get(port.networkId)?.mtu ?? 1500,
        vifType: port.binding.vifType, vifDetails: port.binding.vifDetails,
        fixedIps: port.fixedIps.map((f) => {
          const subnet = subnets.get(f.subnetId);
          return {
            subnetId: f.subnetId, ipAddress: f.ipAddress, version: (subnet?.ipVersion ?? (f.ipAddress.includes(':') ? 6 : 4)) as 4 | 6,
            cidr: subnet?.cidr ?? '', gatewayIp: subnet?.gatewayIp ?? null, dnsNameservers: subnet?.dnsNameservers ?? [], enableDhcp: subnet?.enableDhcp ?? false,
          };
        }),
      });
    }
    return out;
  }

  // ---- views -------------------------------------------------------------------------------

  /** addresses / security_groups of each instance, from its ports (one read for a whole list). */
  async views(instanceIds: string[]): Promise<Map<string, ServerNetworkView>> {
    const result = new Map<string, ServerNetworkView>(instanceIds.map((id) => [id, { addresses: {}, securityGroups: [], ports: [] }]));
    if (!this.deps.network || instanceIds.length === 0) return result;
    const rows: InstancePortRow[] = [];
    for (let i = 0; i < instanceIds.length; i += 500) rows.push(...await this.rows(instanceIds.slice(i, i + 500)));
    if (rows.length === 0) return result;
    const ports = new Map((await this.net.ports.list({ ids: rows.map((r) => r.portId) })).map((p) => [p.id, p]));
    const networks = new Map((await this.net.networks.list({ ids: [...new Set([...ports.values()].map((p) => p.networkId))] })).map((n) => [n.id, n]));
    const floating = await this.floatingFor([...ports.keys()]);
    const groupIds = [...new Set([...ports.values()].flatMap((p) => p.securityGroups))];
    const groupNames = new Map<string, string>();
    if (groupIds.length > 0) {
      for (const g of await this.db.selectFrom('network_security_groups').select(['id', 'name']).where('id', 'in', groupIds).execute()) groupNames.set(g.id, g.name);
    }
    for (const row of rows) {
      const port = ports.get(row.portId);
      const view = result.get(row.instanceId);
      if (!port || !view) continue;
      view.ports.push(port);
      const name = networks.get(port.networkId)?.name ?? port.networkId;
      const list = (view.addresses[name] ??= []);
      for (const fixed of port.fixedIps) {
        list.push({ version: fixed.ipAddress.includes(':') ? 6 : 4, addr: fixed.ipAddress, 'OS-EXT-IPS:type': 'fixed', 'OS-EXT-IPS-MAC:mac_addr': port.macAddress });
        for (const fip of floating.filter((f) => f.portId === port.id && (f.fixedIpAddress === null || f.fixedIpAddress === fixed.ipAddress))) {
          list.push({ version: fip.floatingIpAddress.includes(':') ? 6 : 4, addr: fip.floatingIpAddress, 'OS-EXT-IPS:type': 'floating', 'OS-EXT-IPS-MAC:mac_addr': port.macAddress });
        }
      }
      for (const g of port.securityGroups) {
        const groupName = groupNames.get(g) ?? g;
        if (!view.securityGroups.includes(groupName)) view.securityGroups.push(groupName);
      }
    }
    return result;
  }

  /** The floating IPs on these ports, through the L3 area's FloatingIpService.forPorts. */
  private async floatingFor(portIds: string[]): Promise<FloatingForPort[]> {
    if (portIds.length === 0) return [];
    return this.net.floatingIps.forPorts(portIds);
  }

  // ---- interfaces (os-interface) and security groups of a server ----------------------------

  /** The instance's ports (os-interface list). */
  async interfaces(instanceId: string): Promise<{ port: Port; tag: string | null }[]> {
    if (!this.deps.network) return [];
    const rows = await this.rows(instanceId);
    const ports = await this.net.ports.list({ ids: rows.map((r) => r.portId) });
    return rows.flatMap((r) => { const port = ports.find((p) => p.id === r.portId); return port ? [{ port, tag: r.tag }] : []; });
  }

  /**
   * Attaches a port (the user's, or one made on `netId`) to the instance: recorded, bound to the
   * instance's host. The caller then asks the host's driver to plug it, and calls detach on failure.
   */
  async attach(caller: { projectId: string; isAdmin: boolean }, instance: Instance, request: { portId?: string; netId?: string; fixedIps?: { ip_address?: string }[]; tag?: string }): Promise<Port> {
    const position = Math.max(-1, ...(await this.rows(instance.id)).map((r) => r.position)) + 1;
    const owner = `compute:${instance.availabilityZone ?? 'nova'}`;
    let portId: string;
    if (request.portId) {
      const port = await this.net.ports.find(request.portId);
      if (!port || (!caller.isAdmin && port.projectId !== caller.projectId)) throw new NotFound(`Port ${request.portId} could not be found.`);
      if (port.deviceId) throw new Conflict(`Port ${port.id} is still in use.`);
      await this.insertRow({ instanceId: instance.id, portId: port.id, networkId: port.networkId, preserveOnDelete: true, tag: request.tag ?? null, position });
      portId = port.id;
    } else {
      let networkId = request.netId;
      if (!networkId) {
        const candidates = await this.availableNetworks(instance.projectId);
        if (candidates.length !== 1) throw candidates.length === 0 ? new BadRequest('No network is available to attach an interface to.') : new Conflict('Multiple possible networks found, use a Network ID to be more specific.');
        networkId = candidates[0].id;
      }
      const network = await this.net.networks.find(networkId);
      if (!network || !(caller.isAdmin || network.projectId === caller.projectId || network.shared || network.external)) throw new NotFound(`Network ${networkId} could not be found.`);
      if (network.external && !network.shared && !caller.isAdmin) throw new Forbidden(`It is not allowed to create an interface on external network ${networkId}`);
      const fixedIp = request.fixedIps?.[0]?.ip_address;
      if (fixedIp !== undefined) await this.checkFixedIp(network, fixedIp);
      const groups = network.portSecurityEnabled ? await this.securityGroupIds(instance.projectId, ['default']) : undefined;
      const port = await this.createPort(instance, network, owner, position, { uuid: network.id, fixed_ip: fixedIp, tag: request.tag }, groups)
        .catch((err) => { throw asConflictOrBadRequest(err); });
      portId = port.id;
    }
    if (instance.host) return this.net.ports.bind(portId, instance.host, instance.id, owner);
    return this.net.ports.update(null, portId, { deviceId: instance.id, deviceOwner: owner });
  }

  /** Takes a port off the instance: deleted when Nova made it, unbound when the user gave it. 404 when it is not the instance's. */
  async detach(instanceId: string, portId: string): Promise<void> {
    const [row] = (await this.rows(instanceId)).filter((r) => r.portId === portId);
    if (!row) throw new NotFound(`Port ${portId} is not attached`);
    await this.release(row);
  }

  /** Whether the port is one of the instance's (os-interface show/detach). */
  async hasPort(instanceId: string, portId: string): Promise<boolean> {
    return (await this.rows(instanceId)).some((r) => r.portId === portId);
  }

  /** addSecurityGroup: the group goes onto every port of the instance (that has port security). */
  async addSecurityGroup(instance: Instance, name: string): Promise<void> {
    const groupId = await this.groupFor(instance, name);
    const ports = (await this.interfaces(instance.id)).map((i) => i.port);
    if (ports.length === 0) throw new BadRequest(`Cannot add security group ${name} to server ${instance.id}: the server has no ports`);
    if (ports.every((p) => p.securityGroups.includes(groupId))) throw new BadRequest(`Security group ${name} is already associated with the instance ${instance.id}`);
    for (const port of ports) {
      if (!port.portSecurityEnabled) throw new BadRequest(`Cannot add security group ${name} to server ${instance.id}: port ${port.id} has port security disabled`);
    }
    for (const port of ports) {
      if (!port.securityGroups.includes(groupId)) await this.net.ports.update(null, port.id, { securityGroups: [...port.securityGroups, groupId] });
    }
  }

  /** removeSecurityGroup: the group comes off every port of the instance; 400 when none has it. */
  async removeSecurityGroup(instance: Instance, name: string): Promise<void> {
    const groupId = await this.groupFor(instance, name);
    const ports = (await this.interfaces(instance.id)).map((i) => i.port).filter((p) => p.securityGroups.includes(groupId));
    if (ports.length === 0) throw new BadRequest(`Security group ${name} not in server`);
    for (const port of ports) await this.net.ports.update(null, port.id, { securityGroups: port.securityGroups.filter((g) => g !== groupId) });
  }

  /** The security groups on the instance's ports (os-security-groups of a server). */
  async securityGroupsOf(instanceId: string) {
    const ids = [...new Set((await this.interfaces(instanceId)).flatMap((i) => i.port.securityGroups))];
    return Promise.all(ids.map((id) => this.net.securityGroups.get(null, id)));
  }

  /** The caller's project's groups (the os-security-groups proxy). */
  async projectSecurityGroups(caller: { projectId: string; isAdmin: boolean }) {
    if (!this.deps.network) return [];
    return this.net.securityGroups.list({ projectId: caller.projectId, isAdmin: false }, { projectId: caller.projectId });
  }

  private async groupFor(instance: Instance, name: string): Promise<string> {
    const [id] = await this.net.securityGroups.resolve({ projectId: instance.projectId, isAdmin: false }, [name], instance.projectId).catch((err) => {
      if ((err as { status?: number }).status === 404) throw new NotFound(`Security group ${name} not found for project ${instance.projectId}.`);
      throw err;
    });
    return id;
  }

  // ---- compute_instance_ports --------------------------------------------------------------

  private async rows(instanceIds: string | string[]): Promise<InstancePortRow[]> {
    const ids = Array.isArray(instanceIds) ? instanceIds : [instanceIds];
    if (ids.length === 0) return [];
    const rows = await this.db.selectFrom('compute_instance_ports').selectAll().where('instance_id', 'in', ids).orderBy('position').execute();
    return rows.map((r: any) => ({ instanceId: r.instance_id, portId: r.port_id, networkId: r.network_id, preserveOnDelete: !!r.preserve_on_delete, tag: r.tag ?? null, position: Number(r.position) }));
  }

  private async insertRow(row: InstancePortRow, trx?: Kysely<any>): Promise<void> {
    await (trx ?? this.db).insertInto('compute_instance_ports').values({
      instance_id: row.instanceId, port_id: row.portId, network_id: row.networkId, preserve_on_delete: row.preserveOnDelete ? 1 : 0,
      tag: row.tag, position: row.position, created_at: new Date().toISOString(),
    }).execute();
  }
}

function ignoreNotFound(err: unknown): void {
  if ((err as { status?: number }).status !== 404) throw err;
}

/** A Neutron refusal met while checking a create is the request's fault: Nova answers 400. */
function asBadRequest(err: unknown): Error {
  const status = (err as { status?: number }).status;
  if (status === 404 || status === 409) return new BadRequest((err as Error).message);
  return err as Error;
}

/** Neutron's address refusals while attaching: 409 for addresses in use or none left, 400 for bad input (as Nova maps them). */
function asConflictOrBadRequest(err: unknown): Error {
  const status = (err as { status?: number }).status;
  if (status === 409) return new Conflict((err as Error).message);
  if (status === 404) return new BadRequest((err as Error).message);
  return err as Error;
}
