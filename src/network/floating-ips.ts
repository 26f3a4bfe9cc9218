// Floating IPs and their port forwardings (Neutron's router extension, fip-port-details and
// floating-ip-port-forwarding). A floating IP holds an address of an external network through a
// port (device_owner network:floatingip, no project) made by PortService inside the same
// transaction. Associating it with a fixed IP needs a router joining that fixed IP's subnet to
// the external network; a fixed IP has one floating IP per external network (a unique index),
// and a floating IP is either associated or forwards ports, never both.
import type { Kysely } from 'kysely';
import { BadRequest, Conflict, NotFound } from '../core/errors.js';
import { newUuid } from '../core/ids.js';
import { neutronError } from './api/errors.js';
import type { Caller } from './api/common.js';
import type { NetworkContext } from './index.js';
import { canonicalAddress, parseAddress } from './addresses.js';
import type { FixedIp, FixedIpRequest, Port } from './ports.js';
import type { RouterSetup } from './rpc.js';
import { replaceTags, tagsOf } from './tags.js';
import { insertUnlessDuplicate, nowStamp, retryingTransaction } from './transactions.js';

export const FLOATING_IP_OWNER = 'network:floatingip';

export interface FloatingIp {
  id: string;
  projectId: string;
  description: string;
  floatingNetworkId: string;
  floatingIpAddress: string;
  floatingPortId: string;
  portId: string | null;
  fixedIpAddress: string | null;
  routerId: string | null;
  status: 'ACTIVE' | 'DOWN';
  tags: string[];
  revisionNumber: number;
  createdAt: string;
  updatedAt: string;
}

export interface FloatingIpCreate {
  projectId: string;
  floatingNetworkId: string;
  floatingIpAddress?: string;
  subnetId?: string;
  portId?: string;
  fixedIpAddress?: string;
  description?: string;
  tags?: string[];
}

export interface FloatingIpUpdate { portId?: string | null; fixedIpAddress?: string; description?: string }

export type ForwardingProtocol = 'tcp' | 'udp';

export interface PortForwarding {
  id: string;
  floatingIpId: string;
  protocol: ForwardingProtocol;
  externalPort: number;
  internalPortId: string;
  internalIpAddress: string;
  internalPort: number;
  description: string;
}

export interface PortForwardingCreate {
  protocol: ForwardingProtocol;
  externalPort: number;
  internalPortId: string;
  internalIpAddress?: string;
  internalPort: number;
  description?: string;
}

export const floatingIpNotFound = (id: string) => neutronError(new NotFound(`Floating IP ${id} could not be found`), 'FloatingIPNotFound');
export const portForwardingNotFound = (id: string) => neutronError(new NotFound(`Port Forwarding ${id} could not be found.`), 'PortForwardingNotFound');
const badFloatingIp = (message: string) => neutronError(new BadRequest(`Bad floatingip request: ${message}.`), 'BadRequest');
const badForwarding = (message: string) => neutronError(new BadRequest(`Bad port_forwarding request: ${message}.`), 'BadRequest');
const isIpv4 = (ip: string) => parseAddress(ip)?.version === 4;

export class FloatingIpService {
  constructor(private readonly context: NetworkContext) {}

  private get db() { return this.context.database.db; }
  private get ports() { return this.context.services.ports; }

  async get(id: string, db: Kysely<any> = this.db): Promise<FloatingIp> {
    const [fip] = await this.load(db, (q) => q.where('id', '=', id));
    if (!fip) throw floatingIpNotFound(id);
    return fip;
  }

  async find(id: string): Promise<FloatingIp | undefined> {
    const [fip] = await this.load(this.db, (q) => q.where('id', '=', id));
    return fip;
  }

  list(): Promise<FloatingIp[]> { return this.load(this.db, (q) => q); }

  private async load(db: Kysely<any>, where: (query: any) => any): Promise<FloatingIp[]> {
    const rows = await where(db.selectFrom('network_floating_ips').selectAll()).orderBy('id').execute();
    const tags = await tagsOf(db, 'floatingips', rows.map((r: any) => r.id as string));
    return rows.map((r: any) => ({
      id: r.id, projectId: r.project_id, description: r.description, floatingNetworkId: r.floating_network_id,
      floatingIpAddress: r.floating_ip_address, floatingPortId: r.floating_port_id, portId: r.fixed_port_id ?? null,
      fixedIpAddress: r.fixed_ip_address ?? null, routerId: r.router_id ?? null, status: r.fixed_port_id ? 'ACTIVE' : 'DOWN',
      tags: tags.get(r.id) ?? [], revisionNumber: Number(r.revision_number), createdAt: r.created_at, updatedAt: r.updated_at,
    }));
  }

  /** Floating IPs of these (internal) ports, for the compute service's server addresses. */
  async forPorts(portIds: string[]): Promise<{ portId: string; fixedIpAddress: string; floatingIpAddress: string }[]> {
    if (portIds.length === 0) return [];
    const rows = await this.db.selectFrom('network_floating_ips').select(['fixed_port_id', 'fixed_ip_address', 'floating_ip_address'])
      .where('fixed_port_id', 'in', portIds).orderBy('floating_ip_address').execute();
    return rows.map((r) => ({ portId: r.fixed_port_id, fixedIpAddress: r.fixed_ip_address, floatingIpAddress: r.floating_ip_address }));
  }

  /**
   * Allocates an address on an external network (the asked one or subnet, else a free IPv4
   * address of any of its subnets) and associates it when a port is given.
   */
  async create(caller: Caller | null, body: FloatingIpCreate): Promise<FloatingIp> {
    const network = await this.context.services.networks.get(body.floatingNetworkId);
    if (!network.external) throw badFloatingIp(`Network ${network.id} is not a valid external network`);
    const subnets = (await this.context.services.subnets.list({ networkId: network.id })).filter((s) => s.ipVersion === 4);
    let attempts: FixedIpRequest[][];
    if (body.subnetId !== undefined || body.floatingIpAddress !== undefined) {
      if (body.subnetId !== undefined && !subnets.some((s) => s.id === body.subnetId)) {
        throw badFloatingIp(`Subnet ${body.subnetId} is not an IPv4 subnet of network ${network.id}`);
      }
      attempts = [[{ subnetId: body.subnetId, ipAddress: body.floatingIpAddress }]];
    } else {
      if (subnets.length === 0) throw badFloatingIp(`Network ${network.id} does not contain any IPv4 subnet`);
      attempts = subnets.map((s) => [{ subnetId: s.id }]);
    }
    const id = newUuid();
    let routerId: string | null = null;
    for (let i = 0; ; i++) {
      try {
        routerId = await retryingTransaction(this.context.database, async (trx) => {
          await this.context.services.quotas.check(trx, body.projectId, 'floatingip');
          // The port of a floating IP belongs to no project, as Neutron makes it.
          const port = await this.ports.create(null, { networkId: network.id, projectId: '', deviceId: id, deviceOwner: FLOATING_IP_OWNER, fixedIps: attempts[i], securityGroups: [] }, { trx });
          const now = nowStamp();
          await trx.insertInto('network_floating_ips').values({
            id, project_id: body.projectId, description: body.description ?? '', floating_network_id: network.id, floating_port_id: port.id,
            floating_ip_address: port.fixedIps[0].ipAddress, fixed_port_id: null, fixed_ip_address: null, router_id: null,
            status: 'DOWN', revision_number: 1, created_at: now, updated_at: now,
          }).execute();
          if (body.tags) await replaceTags(trx, 'floatingips', id, body.tags);
          if (body.portId === undefined) return null;
          return this.associate(trx, caller, await this.get(id, trx), body.portId, body.fixedIpAddress);
        });
        break;
      } catch (err) {
        // A full subnet: try the network's next one.
        if ((err as { neutronType?: string }).neutronType !== 'IpAddressGenerationFailure' || i + 1 >= attempts.length) throw err;
      }
    }
    if (routerId) await this.context.services.routers.notify(routerId);
    return this.get(id);
  }

  /** Associates (port_id), moves or disassociates (port_id null) a floating IP. */
  async update(caller: Caller | null, id: string, changes: FloatingIpUpdate): Promise<FloatingIp> {
    const touched = new Set<string>();
    await retryingTransaction(this.context.database, async (trx) => {
      const fip = await this.get(id, trx);
      const set: Record<string, unknown> = { revision_number: fip.revisionNumber + 1, updated_at: nowStamp() };
      if (changes.description !== undefined) set.description = changes.description;
      await trx.updateTable('network_floating_ips').set(set).where('id', '=', id).execute();
      if (fip.routerId) touched.add(fip.routerId);
      if (changes.portId === null) {
        await this.disassociate(trx, id);
      } else if (changes.portId !== undefined || changes.fixedIpAddress !== undefined) {
        const portId = changes.portId ?? fip.portId;
        if (!portId) throw badFloatingIp('fixed_ip_address cannot be specified without a port_id');
        const routerId = await this.associate(trx, caller, fip, portId, changes.fixedIpAddress);
        touched.add(routerId);
      }
    });
    for (const routerId of touched) await this.context.services.routers.notify(routerId);
    return this.get(id);
  }

  async delete(id: string): Promise<void> {
    const fip = await this.get(id);
    await retryingTransaction(this.context.database, async (trx) => {
      await this.get(id, trx);
      await trx.deleteFrom('network_port_forwardings').where('floatingip_id', '=', id).execute();
      await trx.deleteFrom('network_tags').where('resource_type', '=', 'floatingips').where('resource_id', '=', id).execute();
      await trx.deleteFrom('network_floating_ips').where('id', '=', id).execute();
      await this.ports.delete(null, fip.floatingPortId, { trx });
    });
    if (fip.routerId) await this.context.services.routers.notify(fip.routerId);
  }

  private async disassociate(trx: Kysely<any>, id: string): Promise<void> {
    await trx.updateTable('network_floating_ips').set({ fixed_port_id: null, fixed_ip_address: null, router_id: null, status: 'DOWN' }).where('id', '=', id).execute();
  }

  /** Points the floating IP at a fixed IP of a port; returns the router that serves it. */
  private async associate(trx: Kysely<any>, caller: Caller | null, fip: FloatingIp, portId: string, fixedIpAddress: string | undefined): Promise<string> {
    const port = await this.ports.get(portId, trx);
    if (caller && !caller.isAdmin && port.projectId !== fip.projectId) {
      throw badFloatingIp(`Cannot process floating IP association with Port ${port.id}, since that port is owned by a different tenant`);
    }
    if (port.deviceOwner.startsWith('network:') && port.deviceOwner !== 'network:dhcp') {
      throw badFloatingIp(`Port ${port.id} has owner ${port.deviceOwner} and therefore cannot be associated with a floating IP`);
    }
    const forwardings = await trx.selectFrom('network_port_forwardings').select('id').where('floatingip_id', '=', fip.id).limit(1).execute();
    if (forwardings.length > 0) throw neutronError(new Conflict(`Floating IP ${fip.id} in use by Port Forwarding resources.`), 'FipInUseByPortForwarding');
    const fixed = this.pickFixedIp(port, fixedIpAddress);
    const routerId = await this.routerFor(trx, port, fixed, fip.floatingNetworkId);
    const updated = await insertUnlessDuplicate(trx, (t) => t.updateTable('network_floating_ips')
      .set({ fixed_port_id: port.id, fixed_ip_address: fixed.ipAddress, router_id: routerId, status: 'ACTIVE' }).where('id', '=', fip.id).execute());
    if (!updated) {
      throw neutronError(new Conflict(`Cannot associate floating IP ${fip.floatingIpAddress} (${fip.id}) with port ${port.id} using fixed IP ${fixed.ipAddress}, as that fixed IP already has a floating IP on external network ${fip.floatingNetworkId}.`), 'FloatingIPPortAlreadyAssociated');
    }
    return routerId;
  }

  private pickFixedIp(port: Port, asked: string | undefined): FixedIp {
    const v4 = port.fixedIps.filter((f) => isIpv4(f.ipAddress));
    if (asked !== undefined) {
      const ip = canonicalAddress(asked);
      const found = v4.find((f) => f.ipAddress === ip);
      if (!found) throw badFloatingIp(`Port ${port.id} does not have fixed ip ${asked}`);
      return found;
    }
    if (v4.length === 0) throw badFloatingIp(`Port ${port.id} does not have any IPv4 address`);
    if (v4.length > 1) throw badFloatingIp(`Port ${port.id} has multiple fixed IPv4 addresses. Must provide a specific IPv4 address when assigning a floating IP`);
    return v4[0];
  }

  private async routerFor(trx: Kysely<any>, port: Port, fixed: FixedIp, networkId: string): Promise<string> {
    const routerId = await this.context.services.routers.routerBetween(trx, fixed.subnetId, networkId);
    if (!routerId) {
      throw neutronError(new NotFound(`External network ${networkId} is not reachable from subnet ${fixed.subnetId}. Therefore, cannot associate Port ${port.id} with a Floating IP.`), 'ExternalGatewayForFloatingIPNotFound');
    }
    return routerId;
  }

  /**
   * A port is going (PortService.delete): floating IPs on it are disassociated and its port
   * forwardings removed, in the port's transaction. Returns the routers to tell after commit.
   */
  async portDeleted(trx: Kysely<any>, portId: string): Promise<string[]> {
    const routers = new Set<string>();
    const associated = await trx.selectFrom('network_floating_ips').select(['id', 'router_id']).where('fixed_port_id', '=', portId).execute();
    for (const fip of associated) { if (fip.router_id) routers.add(fip.router_id); await this.disassociate(trx, fip.id); }
    const forwarded = await trx.selectFrom('network_port_forwardings').select('floatingip_id').where('internal_port_id', '=', portId).execute();
    if (forwarded.length > 0) {
      await trx.deleteFrom('network_port_forwardings').where('internal_port_id', '=', portId).execute();
      for (const fipId of new Set(forwarded.map((f) => f.floatingip_id as string))) {
        const fip = await this.get(fipId, trx);
        if (fip.routerId) routers.add(fip.routerId);
        await this.releaseRouterIfUnforwarded(trx, fipId);
      }
    }
    return [...routers];
  }

  /**
   * A port's fixed IPs changed (PortService.update): floating IPs and port forwardings on an
   * address it no longer has go, as Neutron does. Returns the routers to tell after commit.
   */
  async fixedIpsChanged(trx: Kysely<any>, portId: string): Promise<string[]> {
    const kept = new Set((await trx.selectFrom('network_ip_allocations').select('ip_address').where('port_id', '=', portId).execute()).map((r) => r.ip_address as string));
    const routers = new Set<string>();
    for (const fip of await trx.selectFrom('network_floating_ips').select(['id', 'router_id', 'fixed_ip_address']).where('fixed_port_id', '=', portId).execute()) {
      if (kept.has(fip.fixed_ip_address)) continue;
      if (fip.router_id) routers.add(fip.router_id);
      await this.disassociate(trx, fip.id);
    }
    for (const pf of await trx.selectFrom('network_port_forwardings').select(['id', 'floatingip_id', 'internal_ip_address']).where('internal_port_id', '=', portId).execute()) {
      if (kept.has(pf.internal_ip_address)) continue;
      const fip = await this.get(pf.floatingip_id, trx);
      if (fip.routerId) routers.add(fip.routerId);
      await trx.deleteFrom('network_port_forwardings').where('id', '=', pf.id).execute();
      await this.releaseRouterIfUnforwarded(trx, pf.floatingip_id);
    }
    return [...routers];
  }

  /** A floating IP that no longer forwards ports has no router (as Neutron's plugin does). */
  private async releaseRouterIfUnforwarded(trx: Kysely<any>, fipId: string): Promise<void> {
    const left = await trx.selectFrom('network_port_forwardings').select('id').where('floatingip_id', '=', fipId).limit(1).execute();
    if (left.length === 0) await trx.updateTable('network_floating_ips').set({ router_id: null }).where('id', '=', fipId).where('fixed_port_id', 'is', null).execute();
  }

  /** What the router's agent needs: its associated floating IPs and port forwardings. */
  async ofRouter(routerId: string): Promise<{ floating: RouterSetup['floatingIps']; forwardings: RouterSetup['portForwardings'] }> {
    const fips = await this.load(this.db, (q) => q.where('router_id', '=', routerId));
    const floating = fips.filter((f) => f.portId).map((f) => ({ id: f.id, floatingIpAddress: f.floatingIpAddress, fixedIpAddress: f.fixedIpAddress!, portId: f.portId! }));
    const forwardings: RouterSetup['portForwardings'] = [];
    const byId = new Map(fips.map((f) => [f.id, f]));
    if (fips.length > 0) {
      for (const pf of await this.forwardingRows(this.db, (q) => q.where('floatingip_id', 'in', fips.map((f) => f.id)))) {
        forwardings.push({ id: pf.id, floatingIpAddress: byId.get(pf.floatingIpId)!.floatingIpAddress, protocol: pf.protocol, externalPort: pf.externalPort, internalIpAddress: pf.internalIpAddress, internalPort: pf.internalPort });
      }
    }
    return { floating, forwardings };
  }

  // Port forwardings (/v2.0/floatingips/{id}/port_forwardings).

  private async forwardingRows(db: Kysely<any>, where: (query: any) => any): Promise<PortForwarding[]> {
    const rows = await where(db.selectFrom('network_port_forwardings').selectAll()).orderBy('id').execute();
    return rows.map((r: any) => ({
      id: r.id, floatingIpId: r.floatingip_id, protocol: r.protocol, externalPort: Number(r.external_port), internalPortId: r.internal_port_id,
      internalIpAddress: r.internal_ip_address, internalPort: Number(r.internal_port), description: r.description,
    }));
  }

  async listForwardings(fipId: string): Promise<PortForwarding[]> {
    await this.get(fipId);
    return this.forwardingRows(this.db, (q) => q.where('floatingip_id', '=', fipId));
  }

  async getForwarding(fipId: string, id: string, db: Kysely<any> = this.db): Promise<PortForwarding> {
    await this.get(fipId, db);
    const [found] = await this.forwardingRows(db, (q) => q.where('floatingip_id', '=', fipId).where('id', '=', id));
    if (!found) throw portForwardingNotFound(id);
    return found;
  }

  async createForwarding(fipId: string, body: PortForwardingCreate): Promise<PortForwarding> {
    const id = newUuid();
    const routerId = await retryingTransaction(this.context.database, async (trx) => {
      const fip = await this.get(fipId, trx);
      if (fip.portId) {
        throw neutronError(new Conflict(`Cannot associate floating IP ${fip.floatingIpAddress} (${fip.id}) with port ${body.internalPortId} using fixed IP ${body.internalIpAddress ?? ''}, as that fixed IP already has a floating IP on external network ${fip.floatingNetworkId}.`), 'FloatingIPPortAlreadyAssociated');
      }
      const { internalIpAddress, routerId } = await this.forwardingTarget(trx, fip, body.internalPortId, body.internalIpAddress);
      const row = { id, floatingip_id: fipId, protocol: body.protocol, external_port: body.externalPort, internal_port_id: body.internalPortId, internal_ip_address: internalIpAddress, internal_port: body.internalPort, description: body.description ?? '' };
      if (!(await insertUnlessDuplicate(trx, (t) => t.insertInto('network_port_forwardings').values(row).execute()))) throw await this.duplicate(trx, row);
      if (!fip.routerId) await trx.updateTable('network_floating_ips').set({ router_id: routerId }).where('id', '=', fipId).execute();
      return routerId;
    });
    await this.context.services.routers.notify(routerId);
    return this.getForwarding(fipId, id);
  }

  async updateForwarding(fipId: string, id: string, changes: Partial<PortForwardingCreate>): Promise<PortForwarding> {
    const routerId = await retryingTransaction(this.context.database, async (trx) => {
      const fip = await this.get(fipId, trx);
      const current = await this.getForwarding(fipId, id, trx);
      const portId = changes.internalPortId ?? current.internalPortId;
      const asked = changes.internalIpAddress ?? (changes.internalPortId && changes.internalPortId !== current.internalPortId ? undefined : current.internalIpAddress);
      const { internalIpAddress } = await this.forwardingTarget(trx, fip, portId, asked);
      const row = {
        id, floatingip_id: fipId, protocol: changes.protocol ?? current.protocol, external_port: changes.externalPort ?? current.externalPort,
        internal_port_id: portId, internal_ip_address: internalIpAddress, internal_port: changes.internalPort ?? current.internalPort,
        description: changes.description ?? current.description,
      };
      if (!(await insertUnlessDuplicate(trx, (t) => t.updateTable('network_port_forwardings').set(row).where('id', '=', id).execute()))) throw await this.duplicate(trx, row);
      return fip.routerId;
    });
    if (routerId) await this.context.services.routers.notify(routerId);
    return this.getForwarding(fipId, id);
  }

  async deleteForwarding(fipId: string, id: string): Promise<void> {
    const routerId = await retryingTransaction(this.context.database, async (trx) => {
      const fip = await this.get(fipId, trx);
      await this.getForwarding(fipId, id, trx);
      await trx.deleteFrom('network_port_forwardings').where('id', '=', id).execute();
      await this.releaseRouterIfUnforwarded(trx, fipId);
      return fip.routerId;
    });
    if (routerId) await this.context.services.routers.notify(routerId);
  }

  /** The internal IPv4 address a forwarding goes to and the router that joins it to the floating IP's network. */
  private async forwardingTarget(trx: Kysely<any>, fip: FloatingIp, portId: string, asked: string | undefined): Promise<{ internalIpAddress: string; routerId: string }> {
    const port = await this.ports.get(portId, trx);
    const v4 = port.fixedIps.filter((f) => isIpv4(f.ipAddress));
    if (v4.length === 0) throw badForwarding(`Requested internal port ${port.id} must allocate an IPv4 address at least`);
    const fixed = asked === undefined ? v4[0] : v4.find((f) => f.ipAddress === canonicalAddress(asked));
    if (!fixed) {
      throw badForwarding(`Requested internal IP address ${asked} is not suitable for internal neutron port ${port.id}, as its fixed_ips are ${JSON.stringify(v4.map((f) => ({ subnet_id: f.subnetId, ip_address: f.ipAddress })))}`);
    }
    const routerId = await this.context.services.routers.routerBetween(trx, fixed.subnetId, fip.floatingNetworkId);
    if (!routerId) {
      throw badForwarding(`External network ${fip.floatingNetworkId} is not reachable from subnet ${fixed.subnetId}. Cannot set Port forwarding for port ${port.id} with Floating IP ${fip.id}`);
    }
    if (fip.routerId && fip.routerId !== routerId) {
      throw badForwarding(`The Floating IP ${fip.id} had been set on router ${fip.routerId}, the internal Neutron port ${port.id} can not reach it`);
    }
    return { internalIpAddress: fixed.ipAddress, routerId };
  }

  /** Neutron's answer to a clash with an existing forwarding (400, naming the conflicting values). */
  private async duplicate(trx: Kysely<any>, row: Record<string, unknown>) {
    const external = await trx.selectFrom('network_port_forwardings').select('id').where('floatingip_id', '=', row.floatingip_id as string)
      .where('protocol', '=', row.protocol as string).where('external_port', '=', row.external_port as number).where('id', '!=', row.id as string).executeTakeFirst();
    const params = external
      ? `{'floatingip_id': '${row.floatingip_id}', 'external_port': ${row.external_port}}`
      : `{'internal_port_id': '${row.internal_port_id}', 'internal_ip_address': '${row.internal_ip_address}', 'internal_port': ${row.internal_port}}`;
    return badForwarding(`A duplicate port forwarding entry with same attributes already exists, conflicting values are ${params}`);
  }
}
