// Routers (Neutron's router, ext-gw-mode, extraroute and extraroute-atomic extensions): a gateway
// port on an external network with SNAT on or off, interfaces on subnets (ports that hold the
// subnet's gateway address), and static routes whose nexthop lies on a connected subnet. Ports
// are made and removed through PortService inside the router's transaction, so a refused change
// leaves nothing half-done. After each commit the router's agent is told (agents.notifyRouterChanged).
import type { Kysely } from 'kysely';
import { BadRequest, Conflict, NotFound } from '../core/errors.js';
import { newUuid } from '../core/ids.js';
import { neutronError } from './api/errors.js';
import type { Caller } from './api/common.js';
import type { NetworkContext } from './index.js';
import { canonicalAddress, contains, formatCidr, overlaps, parseAddress, parseCidr } from './addresses.js';
import type { FixedIp, FixedIpRequest, Port } from './ports.js';
import { L2_AGENT_TYPE, type RouterSetup } from './rpc.js';
import type { Subnet } from './subnets.js';
import { replaceTags, tagsOf } from './tags.js';
import { nowStamp, parseJson, retryingTransaction } from './transactions.js';
import { DEFAULT_AVAILABILITY_ZONE } from './networks.js';

export const ROUTER_INTERFACE = 'network:router_interface';
export const ROUTER_GATEWAY = 'network:router_gateway';
/** [DEFAULT] max_routes in Neutron. */
const MAX_ROUTES_DEFAULT = 30;

export interface RouterRoute { destination: string; nexthop: string }

export interface RouterGateway { networkId: string; enableSnat: boolean; portId: string; externalFixedIps: FixedIp[] }

export interface Router {
  id: string;
  projectId: string;
  name: string;
  description: string;
  adminStateUp: boolean;
  status: string;
  gateway: RouterGateway | null;
  routes: RouterRoute[];
  /** router_availability_zone: the zones asked for (only 'nova' exists). */
  availabilityZoneHints: string[];
  /** Interface port ids. */
  interfacePorts: string[];
  tags: string[];
  revisionNumber: number;
  createdAt: string;
  updatedAt: string;
}

/** external_gateway_info as asked: null removes the gateway. */
export interface GatewayRequest { networkId: string; enableSnat?: boolean; externalFixedIps?: FixedIpRequest[] }

export interface RouterCreate {
  projectId: string;
  name?: string;
  description?: string;
  adminStateUp?: boolean;
  gateway?: GatewayRequest | null;
  availabilityZoneHints?: string[];
  tags?: string[];
}

export interface RouterUpdate {
  name?: string;
  description?: string;
  adminStateUp?: boolean;
  gateway?: GatewayRequest | null;
  routes?: RouterRoute[];
}

export interface RouterInterfaceInfo { id: string; subnetId: string; subnetIds: string[]; portId: string; networkId: string; projectId: string }

/** A removed port its host's agent should unplug once the removal committed. */
interface Unplug { host: string; portId: string }

export const routerNotFound = (id: string) => neutronError(new NotFound(`Router ${id} could not be found.`), 'RouterNotFound');
const badRouter = (message: string) => neutronError(new BadRequest(`Bad router request: ${message}`), 'BadRequest');
const invalidRoutes = (routes: RouterRoute[], reason: string) =>
  neutronError(new BadRequest(`Invalid format for routes: ${JSON.stringify(routes)}, ${reason}`), 'InvalidRoutes');

export class RouterService {
  constructor(private readonly context: NetworkContext) {}

  private get db() { return this.context.database.db; }
  private get ports() { return this.context.services.ports; }

  async get(id: string, db: Kysely<any> = this.db): Promise<Router> {
    const [router] = await this.load(db, [id]);
    if (!router) throw routerNotFound(id);
    return router;
  }

  async find(id: string): Promise<Router | undefined> {
    const [router] = await this.load(this.db, [id]);
    return router;
  }

  list(): Promise<Router[]> { return this.load(this.db); }

  private async load(db: Kysely<any>, ids?: string[]): Promise<Router[]> {
    let query = db.selectFrom('network_routers').selectAll();
    if (ids) query = query.where('id', 'in', ids.length > 0 ? ids : ['']);
    const rows = await query.orderBy('id').execute();
    if (rows.length === 0) return [];
    const routerIds = rows.map((r) => r.id as string);
    const routes = new Map<string, RouterRoute[]>(routerIds.map((id) => [id, []]));
    const interfaces = new Map<string, string[]>(routerIds.map((id) => [id, []]));
    for (let i = 0; i < routerIds.length; i += 500) {
      const chunk = routerIds.slice(i, i + 500);
      for (const r of await db.selectFrom('network_router_routes').selectAll().where('router_id', 'in', chunk).execute()) routes.get(r.router_id)?.push({ destination: r.destination, nexthop: r.nexthop });
      for (const p of await db.selectFrom('network_router_ports').selectAll().where('router_id', 'in', chunk).where('port_type', '=', ROUTER_INTERFACE).execute()) interfaces.get(p.router_id)?.push(p.port_id);
    }
    const gwPortIds = rows.map((r) => r.gw_port_id as string | null).filter((id): id is string => !!id);
    const gwPorts = new Map<string, { networkId: string; fixedIps: FixedIp[] }>();
    if (gwPortIds.length > 0) {
      const portRows = await db.selectFrom('network_ports').select(['id', 'network_id']).where('id', 'in', gwPortIds).execute();
      const allocations = await db.selectFrom('network_ip_allocations').select(['port_id', 'subnet_id', 'ip_address']).where('port_id', 'in', gwPortIds).orderBy('ip_address').execute();
      for (const p of portRows) gwPorts.set(p.id, { networkId: p.network_id, fixedIps: allocations.filter((a) => a.port_id === p.id).map((a) => ({ subnetId: a.subnet_id, ipAddress: a.ip_address })) });
    }
    const tags = await tagsOf(db, 'routers', routerIds);
    return rows.map((r) => {
      const gw = r.gw_port_id ? gwPorts.get(r.gw_port_id) : undefined;
      return {
        id: r.id, projectId: r.project_id, name: r.name, description: r.description, adminStateUp: !!r.admin_state_up, status: r.status,
        gateway: gw ? { networkId: gw.networkId, enableSnat: !!r.enable_snat, portId: r.gw_port_id, externalFixedIps: gw.fixedIps } : null,
        routes: routes.get(r.id)!.sort((a, b) => a.destination.localeCompare(b.destination) || a.nexthop.localeCompare(b.nexthop)),
        availabilityZoneHints: parseJson<string[]>(r.availability_zone_hints, []),
        interfacePorts: interfaces.get(r.id)!.sort(), tags: tags.get(r.id) ?? [],
        revisionNumber: Number(r.revision_number), createdAt: r.created_at, updatedAt: r.updated_at,
      };
    });
  }

  async create(body: RouterCreate): Promise<Router> {
    const hints = [...new Set(body.availabilityZoneHints ?? [])];
    for (const zone of hints) if (zone !== DEFAULT_AVAILABILITY_ZONE) throw neutronError(new NotFound(`AvailabilityZone ${zone} could not be found.`), 'AvailabilityZoneNotFound');
    const id = newUuid();
    const unplug: Unplug[] = [];
    await retryingTransaction(this.context.database, async (trx) => {
      unplug.length = 0;
      await this.context.services.quotas.check(trx, body.projectId, 'router');
      const now = nowStamp();
      await trx.insertInto('network_routers').values({
        id, project_id: body.projectId, name: body.name ?? '', description: body.description ?? '',
        admin_state_up: body.adminStateUp === false ? 0 : 1, status: 'ACTIVE', gw_port_id: null, enable_snat: 1, availability_zone_hints: JSON.stringify(hints),
        revision_number: 1, created_at: now, updated_at: now,
      }).execute();
      if (body.gateway) await this.setGateway(trx, id, body.gateway, unplug);
      if (body.tags) await replaceTags(trx, 'routers', id, body.tags);
    });
    await this.bindPorts(id);
    await this.notify(id);
    return this.get(id);
  }

  async update(id: string, changes: RouterUpdate): Promise<Router> {
    const unplug: Unplug[] = [];
    await retryingTransaction(this.context.database, async (trx) => {
      unplug.length = 0;
      const router = await this.get(id, trx);
      const set: Record<string, unknown> = { revision_number: router.revisionNumber + 1, updated_at: nowStamp() };
      if (changes.name !== undefined) set.name = changes.name;
      if (changes.description !== undefined) set.description = changes.description;
      if (changes.adminStateUp !== undefined) set.admin_state_up = changes.adminStateUp ? 1 : 0;
      await trx.updateTable('network_routers').set(set).where('id', '=', id).execute();
      if (changes.gateway !== undefined) {
        if (changes.gateway === null) await this.clearGateway(trx, router, unplug);
        else await this.setGateway(trx, id, changes.gateway, unplug);
      }
      // Routes are checked against the interfaces (and gateway) the router has after this update.
      if (changes.routes !== undefined) await this.writeRoutes(trx, id, changes.routes);
    });
    await this.unplugAll(unplug);
    if (changes.gateway) await this.bindPorts(id);
    await this.notify(id);
    return this.get(id);
  }

  /** Deletes a router and its gateway port; 409 RouterInUse while it has interfaces. */
  async delete(id: string): Promise<void> {
    const unplug: Unplug[] = [];
    await retryingTransaction(this.context.database, async (trx) => {
      unplug.length = 0;
      const router = await this.get(id, trx);
      if (router.interfacePorts.length > 0) throw neutronError(new Conflict(`Router ${id} still has ports`), 'RouterInUse');
      await this.clearGateway(trx, router, unplug);
      await trx.deleteFrom('network_router_routes').where('router_id', '=', id).execute();
      await trx.deleteFrom('network_tags').where('resource_type', '=', 'routers').where('resource_id', '=', id).execute();
      await trx.deleteFrom('network_routers').where('id', '=', id).execute();
    });
    await this.unplugAll(unplug);
    await this.notify(id);
  }

  /** Makes (or replaces) the gateway port on an external network; the SNAT flag defaults to on. */
  private async setGateway(trx: Kysely<any>, routerId: string, asked: GatewayRequest, unplug: Unplug[]): Promise<void> {
    const router = await this.get(routerId, trx);
    const network = await this.context.services.networks.get(asked.networkId, trx);
    if (!network.external) throw badRouter(`Network ${network.id} is not an external network`);
    const enableSnat = asked.enableSnat ?? router.gateway?.enableSnat ?? true;
    const sameNetwork = router.gateway?.networkId === network.id;
    if (sameNetwork && asked.externalFixedIps === undefined) {
      await trx.updateTable('network_routers').set({ enable_snat: enableSnat ? 1 : 0 }).where('id', '=', routerId).execute();
      return;
    }
    if (router.gateway && !sameNetwork) await this.refuseIfFloatingIps(trx, router);
    const subnets = await this.context.services.subnets.list({ networkId: network.id }, trx);
    if (subnets.length === 0) throw badRouter(`No subnets defined on external network ${network.id}`);
    const interfaceSubnets = await this.interfaceSubnets(trx, routerId);
    for (const subnet of subnets) {
      const clash = interfaceSubnets.find((s) => overlaps(parseCidr(s.cidr)!, parseCidr(subnet.cidr)!));
      if (clash) throw badRouter(`Cidr ${subnet.cidr} of subnet ${subnet.id} overlaps with cidr ${clash.cidr} of subnet ${clash.id}`);
    }
    if (router.gateway && sameNetwork) {
      // Only the external fixed IPs change: the port keeps its identity.
      await this.ports.update(null, router.gateway.portId, { fixedIps: asked.externalFixedIps }, { trx });
      await trx.updateTable('network_routers').set({ enable_snat: enableSnat ? 1 : 0 }).where('id', '=', routerId).execute();
      return;
    }
    if (router.gateway) await this.removePort(trx, router.gateway.portId, unplug);
    // A gateway port belongs to no project (Neutron makes it with tenant_id '').
    const port = await this.ports.create(null, {
      networkId: network.id, projectId: '', deviceId: routerId, deviceOwner: ROUTER_GATEWAY, adminStateUp: true,
      fixedIps: asked.externalFixedIps ?? this.oneAddressPerVersion(subnets), securityGroups: [],
    }, { trx });
    if (port.fixedIps.length === 0) throw badRouter(`No IPs available for external network ${network.id}`);
    await trx.insertInto('network_router_ports').values({ port_id: port.id, router_id: routerId, port_type: ROUTER_GATEWAY }).execute();
    await trx.updateTable('network_routers').set({ gw_port_id: port.id, enable_snat: enableSnat ? 1 : 0 }).where('id', '=', routerId).execute();
  }

  /** As Neutron's gateway: an address of the first IPv4 and of the first IPv6 subnet. */
  private oneAddressPerVersion(subnets: Subnet[]): FixedIpRequest[] {
    const result: FixedIpRequest[] = [];
    for (const version of [4, 6]) {
      const subnet = subnets.find((s) => s.ipVersion === version);
      if (subnet) result.push({ subnetId: subnet.id });
    }
    return result;
  }

  private async clearGateway(trx: Kysely<any>, router: Router, unplug: Unplug[]): Promise<void> {
    if (!router.gateway) return;
    await this.refuseIfFloatingIps(trx, router);
    await trx.updateTable('network_routers').set({ gw_port_id: null, enable_snat: 1 }).where('id', '=', router.id).execute();
    await this.removePort(trx, router.gateway.portId, unplug);
    // Routes whose nexthop was on the gateway's subnets go with it.
    const left = await this.connectedCidrs(trx, router.id);
    for (const route of router.routes) {
      const nexthop = parseAddress(route.nexthop)!;
      if (!left.some((c) => contains(c, nexthop))) {
        await trx.deleteFrom('network_router_routes').where('router_id', '=', router.id).where('destination', '=', route.destination).where('nexthop', '=', route.nexthop).execute();
      }
    }
  }

  private async refuseIfFloatingIps(trx: Kysely<any>, router: Router): Promise<void> {
    const used = await trx.selectFrom('network_floating_ips').select('id').where('router_id', '=', router.id).limit(1).execute();
    if (used.length > 0) {
      throw neutronError(new Conflict(`Gateway cannot be updated for router ${router.id}, since a gateway to external network ${router.gateway!.networkId} is required by one or more floating IPs.`), 'RouterExternalGatewayInUseByFloatingIp');
    }
  }

  /** Removes a router port in the router's transaction; its host's agent unplugs it after commit (`unplugAll`). */
  private async removePort(trx: Kysely<any>, portId: string, unplug: Unplug[]): Promise<void> {
    const port = await this.ports.get(portId, trx);
    if (port.binding.hostId) unplug.push({ host: port.binding.hostId, portId });
    await trx.deleteFrom('network_router_ports').where('port_id', '=', portId).execute();
    await this.ports.delete(null, portId, { trx });
  }

  /** The subnets the router's interfaces are on. */
  private async interfaceSubnets(trx: Kysely<any>, routerId: string): Promise<Subnet[]> {
    const rows = await trx.selectFrom('network_router_ports as rp').innerJoin('network_ip_allocations as a', 'a.port_id', 'rp.port_id')
      .select('a.subnet_id').where('rp.router_id', '=', routerId).where('rp.port_type', '=', ROUTER_INTERFACE).execute();
    const ids = [...new Set(rows.map((r) => r.subnet_id as string))];
    return ids.length === 0 ? [] : this.context.services.subnets.list({ ids }, trx);
  }

  /** Cidrs of every subnet the router has a port on (interfaces and gateway): where nexthops may be. */
  private async connectedCidrs(trx: Kysely<any>, routerId: string) {
    const rows = await trx.selectFrom('network_router_ports as rp').innerJoin('network_ip_allocations as a', 'a.port_id', 'rp.port_id')
      .innerJoin('network_subnets as s', 's.id', 'a.subnet_id').select(['s.cidr', 'a.ip_address']).where('rp.router_id', '=', routerId).execute();
    return rows.map((r) => Object.assign(parseCidr(r.cidr)!, { routerIp: r.ip_address as string }));
  }

  /** Replaces the router's routes after checking each one (extraroute). */
  private async writeRoutes(trx: Kysely<any>, routerId: string, asked: RouterRoute[]): Promise<void> {
    const routes = this.normalizeRoutes(asked);
    const max = this.context.config.getInt('DEFAULT', 'max_routes', MAX_ROUTES_DEFAULT);
    if (routes.length > max) throw neutronError(new BadRequest(`Unable to complete operation for ${routerId}. The number of routes exceeds the maximum ${max}.`), 'RoutesExhausted');
    const cidrs = await this.connectedCidrs(trx, routerId);
    for (const route of routes) {
      const nexthop = parseAddress(route.nexthop)!;
      if (!cidrs.some((c) => c.version === nexthop.version && contains(c, nexthop))) throw invalidRoutes([route], 'the nexthop is not connected with router');
      if (cidrs.some((c) => c.routerIp === route.nexthop)) throw invalidRoutes([route], 'the nexthop is used by router');
    }
    await trx.deleteFrom('network_router_routes').where('router_id', '=', routerId).execute();
    if (routes.length > 0) await trx.insertInto('network_router_routes').values(routes.map((r) => ({ router_id: routerId, ...r }))).execute();
  }

  /** Checks the shape of routes; destinations become network addresses, duplicates collapse. */
  normalizeRoutes(asked: unknown[]): RouterRoute[] {
    const result = new Map<string, RouterRoute>();
    for (const entry of asked) {
      const route = entry as Record<string, unknown> | null;
      const keys = route && typeof route === 'object' ? Object.keys(route) : [];
      if (!route || keys.length !== 2 || !keys.includes('destination') || !keys.includes('nexthop')) {
        throw invalidRoutes([entry as RouterRoute], 'a route needs exactly destination and nexthop');
      }
      const destination = parseCidr(route.destination);
      const nexthop = parseAddress(route.nexthop);
      if (!destination) throw invalidRoutes([entry as RouterRoute], `'${String(route.destination)}' is not a valid CIDR`);
      if (!nexthop) throw invalidRoutes([entry as RouterRoute], `'${String(route.nexthop)}' is not a valid IP address`);
      if (destination.version !== nexthop.version) throw invalidRoutes([entry as RouterRoute], 'destination and nexthop have different IP versions');
      const normalized = { destination: formatCidr(destination), nexthop: canonicalAddress(route.nexthop)! };
      result.set(`${normalized.destination}|${normalized.nexthop}`, normalized);
    }
    return [...result.values()];
  }

  /** add_extraroutes / remove_extraroutes (extraroute-atomic): change a few routes, keep the rest. */
  async changeRoutes(id: string, add: RouterRoute[], remove: RouterRoute[]): Promise<Router> {
    await retryingTransaction(this.context.database, async (trx) => {
      const router = await this.get(id, trx);
      const key = (r: RouterRoute) => `${r.destination}|${r.nexthop}`;
      const removing = new Set(this.normalizeRoutes(remove).map(key));
      const routes = new Map(router.routes.filter((r) => !removing.has(key(r))).map((r) => [key(r), r]));
      for (const route of this.normalizeRoutes(add)) routes.set(key(route), route);
      await this.writeRoutes(trx, id, [...routes.values()]);
      await trx.updateTable('network_routers').set({ revision_number: router.revisionNumber + 1, updated_at: nowStamp() }).where('id', '=', id).execute();
    });
    await this.notify(id);
    return this.get(id);
  }

  /**
   * add_router_interface: by subnet (a new port holding the subnet's gateway address) or by an
   * unused port of the caller's. The router's subnets may not overlap.
   */
  async addInterface(caller: Caller, id: string, asked: { subnetId?: string; portId?: string }): Promise<RouterInterfaceInfo> {
    if ((asked.subnetId === undefined) === (asked.portId === undefined)) {
      throw badRouter('Either subnet_id or port_id must be specified');
    }
    const info = await retryingTransaction(this.context.database, async (trx) => {
      const router = await this.get(id, trx);
      const attached = await this.interfaceSubnets(trx, id);
      const gatewaySubnets = router.gateway ? await this.context.services.subnets.list({ ids: router.gateway.externalFixedIps.map((f) => f.subnetId) }, trx) : [];
      const checkSubnet = (subnet: Subnet) => {
        if (attached.some((s) => s.id === subnet.id)) throw badRouter(`Router already has a port on subnet ${subnet.id}`);
        for (const other of [...attached, ...gatewaySubnets]) {
          if (overlaps(parseCidr(other.cidr)!, parseCidr(subnet.cidr)!)) {
            throw badRouter(`Cidr ${subnet.cidr} of subnet ${subnet.id} overlaps with cidr ${other.cidr} of subnet ${other.id}`);
          }
        }
      };
      let port: Port;
      if (asked.portId !== undefined) {
        port = await this.ports.get(asked.portId, trx);
        if (!caller.isAdmin && port.projectId !== caller.projectId && port.projectId !== router.projectId) throw this.portHidden(asked.portId);
        if (port.deviceId !== '' || (await trx.selectFrom('network_router_ports').select('port_id').where('port_id', '=', port.id).executeTakeFirst())) {
          throw neutronError(new Conflict(`Unable to complete operation on port ${port.id} for network ${port.networkId}. Port already has an attached device ${port.deviceId}.`), 'PortInUse');
        }
        if (port.fixedIps.length === 0) throw badRouter('Router port must have at least one fixed IP');
        const subnets = await this.context.services.subnets.list({ ids: port.fixedIps.map((f) => f.subnetId) }, trx);
        if (subnets.filter((s) => s.ipVersion === 4).length > 1) throw badRouter(`Cannot have multiple IPv4 subnets on router port`);
        for (const subnet of subnets) checkSubnet(subnet);
        port = await this.ports.update(null, port.id, { deviceId: id, deviceOwner: ROUTER_INTERFACE }, { trx });
      } else {
        const subnet = await this.context.services.subnets.get(asked.subnetId!, trx);
        if (!caller.isAdmin && subnet.projectId !== caller.projectId && subnet.projectId !== router.projectId) {
          const network = await this.context.services.networks.get(subnet.networkId, trx);
          if (!network.shared) throw neutronError(new NotFound(`Subnet ${subnet.id} could not be found.`), 'SubnetNotFound');
        }
        if (!subnet.gatewayIp) throw badRouter(`Subnet for router interface must have a gateway IP`);
        checkSubnet(subnet);
        port = await this.ports.create(null, {
          networkId: subnet.networkId, projectId: router.projectId, deviceId: id, deviceOwner: ROUTER_INTERFACE, adminStateUp: true,
          fixedIps: [{ subnetId: subnet.id, ipAddress: subnet.gatewayIp }], securityGroups: [],
        }, { trx });
      }
      await trx.insertInto('network_router_ports').values({ port_id: port.id, router_id: id, port_type: ROUTER_INTERFACE }).execute();
      await trx.updateTable('network_routers').set({ revision_number: router.revisionNumber + 1, updated_at: nowStamp() }).where('id', '=', id).execute();
      return this.interfaceInfo(router, port);
    });
    await this.bindPorts(id);
    await this.notify(id);
    return info;
  }

  private portHidden(portId: string) {
    return neutronError(new NotFound(`Port ${portId} could not be found.`), 'PortNotFound');
  }

  private interfaceInfo(router: Router, port: Port): RouterInterfaceInfo {
    const subnetIds = port.fixedIps.map((f) => f.subnetId);
    return { id: router.id, subnetId: subnetIds[0], subnetIds, portId: port.id, networkId: port.networkId, projectId: router.projectId };
  }

  /** remove_router_interface by subnet or port; the port goes. */
  async removeInterface(id: string, asked: { subnetId?: string; portId?: string }): Promise<RouterInterfaceInfo> {
    if (asked.subnetId === undefined && asked.portId === undefined) throw badRouter('Either subnet_id or port_id must be specified');
    const unplug: Unplug[] = [];
    const info = await retryingTransaction(this.context.database, async (trx) => {
      unplug.length = 0;
      const router = await this.get(id, trx);
      const ports: Port[] = [];
      for (const portId of router.interfacePorts) ports.push(await this.ports.get(portId, trx));
      let port: Port | undefined;
      if (asked.portId !== undefined) {
        port = ports.find((p) => p.id === asked.portId);
        if (!port) throw neutronError(new NotFound(`Router ${id} does not have an interface with id ${asked.portId}`), 'RouterInterfaceNotFound');
        if (asked.subnetId !== undefined && !port.fixedIps.some((f) => f.subnetId === asked.subnetId)) {
          throw neutronError(new Conflict(`Subnet ${asked.subnetId} could not be found on port ${asked.portId}.`), 'SubnetMismatchForPort');
        }
      } else {
        port = ports.find((p) => p.fixedIps.some((f) => f.subnetId === asked.subnetId));
        if (!port) throw neutronError(new NotFound(`Router ${id} has no interface on subnet ${asked.subnetId}`), 'RouterInterfaceNotFoundForSubnet');
      }
      const subnetIds = port.fixedIps.map((f) => f.subnetId);
      await this.refuseIfInUse(trx, router, subnetIds);
      const result = this.interfaceInfo(router, port);
      await this.removePort(trx, port.id, unplug);
      await trx.updateTable('network_routers').set({ revision_number: router.revisionNumber + 1, updated_at: nowStamp() }).where('id', '=', id).execute();
      return result;
    });
    await this.unplugAll(unplug);
    await this.notify(id);
    return info;
  }

  /** An interface a route's nexthop or an associated floating IP depends on stays (Neutron's two 409s). */
  private async refuseIfInUse(trx: Kysely<any>, router: Router, subnetIds: string[]): Promise<void> {
    const subnets = await this.context.services.subnets.list({ ids: subnetIds }, trx);
    for (const subnet of subnets) {
      const cidr = parseCidr(subnet.cidr)!;
      if (router.routes.some((r) => contains(cidr, parseAddress(r.nexthop)!))) {
        throw neutronError(new Conflict(`Router interface for subnet ${subnet.id} on router ${router.id} cannot be deleted, as it is required by one or more routes.`), 'RouterInterfaceInUseByRoute');
      }
      const fips = await trx.selectFrom('network_floating_ips').select(['fixed_ip_address']).where('router_id', '=', router.id).where('fixed_ip_address', 'is not', null).execute();
      const pfs = await trx.selectFrom('network_port_forwardings as pf').innerJoin('network_floating_ips as f', 'f.id', 'pf.floatingip_id')
        .select('pf.internal_ip_address as fixed_ip_address').where('f.router_id', '=', router.id).execute();
      if ([...fips, ...pfs].some((f) => contains(cidr, parseAddress(f.fixed_ip_address)!))) {
        throw neutronError(new Conflict(`Router interface for subnet ${subnet.id} on router ${router.id} cannot be deleted, as it is required by one or more floating IPs.`), 'RouterInterfaceInUseByFloatingIP');
      }
    }
  }

  /**
   * The router that connects `subnetId` to external network `networkId` (an interface on the
   * subnet and a gateway on the network), for floating IPs; undefined when none does.
   */
  async routerBetween(trx: Kysely<any>, subnetId: string, networkId: string): Promise<string | undefined> {
    const rows = await trx.selectFrom('network_router_ports as rp')
      .innerJoin('network_ip_allocations as a', 'a.port_id', 'rp.port_id')
      .innerJoin('network_routers as r', 'r.id', 'rp.router_id')
      .innerJoin('network_ports as gw', 'gw.id', 'r.gw_port_id')
      .select('r.id').where('rp.port_type', '=', ROUTER_INTERFACE).where('a.subnet_id', '=', subnetId).where('gw.network_id', '=', networkId)
      .orderBy('r.id').execute();
    return rows[0]?.id as string | undefined;
  }

  /** What the router's agent runs (rpc.ts RouterSetup); null once the router is gone. */
  async routerSetup(routerId: string): Promise<RouterSetup | null> {
    const router = await this.find(routerId);
    if (!router) return null;
    const { networks, subnets, floatingIps } = this.context.services;
    const interfaces: RouterSetup['interfaces'] = [];
    for (const port of await this.ports.list({ ids: router.interfacePorts })) {
      const network = await networks.get(port.networkId);
      for (const fixed of port.fixedIps) {
        const subnet = await subnets.get(fixed.subnetId);
        interfaces.push({ portId: port.id, subnetId: subnet.id, ipAddress: fixed.ipAddress, cidr: subnet.cidr, macAddress: port.macAddress, networkId: network.id, segment: network.segment, mtu: network.mtu });
      }
    }
    let gateway: RouterSetup['gateway'] = null;
    if (router.gateway) {
      const port = await this.ports.get(router.gateway.portId);
      const network = await networks.get(port.networkId);
      const gatewaySubnets = await subnets.list({ ids: port.fixedIps.map((f) => f.subnetId) });
      gateway = {
        portId: port.id, networkId: network.id, enableSnat: router.gateway.enableSnat, fixedIps: port.fixedIps, macAddress: port.macAddress,
        segment: network.segment, gatewayIps: gatewaySubnets.map((s) => s.gatewayIp).filter((ip): ip is string => !!ip),
      };
    }
    const { floating, forwardings } = await floatingIps.ofRouter(routerId);
    return { id: router.id, adminStateUp: router.adminStateUp, interfaces, gateway, routes: router.routes, floatingIps: floating, portForwardings: forwardings };
  }

  /**
   * Binds the router's unbound ports to the host whose agent runs the router (as Neutron binds
   * them to the L3 agent's host), so that agent plugs them and they turn ACTIVE.
   */
  private async bindPorts(routerId: string): Promise<void> {
    try {
      const agents = (await this.context.services.agents.list()).filter((a) => a.agentType === L2_AGENT_TYPE && a.alive && a.adminStateUp);
      if (agents.length === 0) return;
      const host = this.context.services.agents.routerHost(routerId, agents);
      const rows = await this.db.selectFrom('network_router_ports as rp').innerJoin('network_ports as p', 'p.id', 'rp.port_id')
        .select(['p.id', 'p.device_owner']).where('rp.router_id', '=', routerId).where('p.binding_host_id', '=', '').execute();
      for (const row of rows) await this.ports.bind(row.id, host, routerId, row.device_owner);
    } catch (err) {
      this.context.logger.warn('could not bind the ports of a router', { routerId, error: (err as Error).message });
    }
  }

  private async unplugAll(unplug: Unplug[]): Promise<void> {
    for (const { host, portId } of unplug) {
      try { await this.context.services.agents.unplugPort(host, portId); } catch (err) {
        this.context.logger.warn('could not tell an agent to unplug a router port', { host, portId, error: (err as Error).message });
      }
    }
  }

  /** Tells the router's agent after a commit; a failed notification does not fail the request (agents resync). */
  async notify(routerId: string): Promise<void> {
    try {
      await this.context.services.agents.notifyRouterChanged(routerId);
    } catch (err) {
      this.context.logger.warn('could not tell the network agents about a router change', { routerId, error: (err as Error).message });
    }
  }
}
