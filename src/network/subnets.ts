// Subnets and IP address management. A subnet's allocation pools default to its whole cidr but
// the network (and broadcast) address and the gateway; a port gets an address from the pools at
// random among the free ones (as Neutron's IPAM does, so concurrent creates rarely pick the same
// one), and the UNIQUE (subnet_id, ip_address) index settles any race: the loser tries another.
// IPv6 subnets in SLAAC or DHCPv6-stateless mode give EUI-64 addresses made from the port's MAC.
import type { Kysely } from 'kysely';
import { BadRequest, Conflict, NotFound } from '../core/errors.js';
import { newUuid } from '../core/ids.js';
import { randomBytes } from 'node:crypto';
import { neutronError } from './api/errors.js';
import type { NetworkContext } from './index.js';
import {
  bitsOf, canonicalAddress, contains, eui64, formatAddress, formatCidr, lastOf, overlaps, parseAddress, parseCidr, sizeOf,
  type Cidr, type IpVersion,
} from './addresses.js';
import { replaceTags, tagsOf } from './tags.js';
import { inTransaction, insertUnlessDuplicate, lockRows, nowStamp, parseJson } from './transactions.js';

export type Ipv6Mode = 'slaac' | 'dhcpv6-stateful' | 'dhcpv6-stateless';
export const IPV6_MODES: Ipv6Mode[] = ['slaac', 'dhcpv6-stateful', 'dhcpv6-stateless'];

export interface AllocationPool { start: string; end: string }
export interface HostRoute { destination: string; nexthop: string }

export interface Subnet {
  id: string;
  projectId: string;
  networkId: string;
  name: string;
  description: string;
  ipVersion: IpVersion;
  cidr: string;
  gatewayIp: string | null;
  enableDhcp: boolean;
  allocationPools: AllocationPool[];
  dnsNameservers: string[];
  hostRoutes: HostRoute[];
  ipv6RaMode: Ipv6Mode | null;
  ipv6AddressMode: Ipv6Mode | null;
  subnetpoolId: string | null;
  tags: string[];
  revisionNumber: number;
  createdAt: string;
  updatedAt: string;
}

export interface SubnetCreate {
  projectId: string;
  networkId: string;
  name?: string;
  description?: string;
  ipVersion: number;
  cidr?: string;
  /** undefined: the first address of the cidr; null: no gateway. */
  gatewayIp?: string | null;
  allocationPools?: AllocationPool[];
  dnsNameservers?: string[];
  hostRoutes?: HostRoute[];
  enableDhcp?: boolean;
  ipv6RaMode?: string | null;
  ipv6AddressMode?: string | null;
  subnetpoolId?: string | null;
  useDefaultSubnetpool?: boolean;
  prefixlen?: number;
  tags?: string[];
}

export type SubnetUpdate = Partial<Pick<SubnetCreate, 'name' | 'description' | 'gatewayIp' | 'allocationPools' | 'dnsNameservers' | 'hostRoutes' | 'enableDhcp'>>;

/** Device owners that may hold a subnet's gateway address. */
export const ROUTER_INTERFACE_OWNERS = ['network:router_interface', 'network:router_interface_distributed', 'network:ha_router_replicated_interface', 'network:router_gateway'];

export interface SubnetPool {
  id: string;
  projectId: string;
  name: string;
  description: string;
  ipVersion: IpVersion;
  prefixes: string[];
  defaultPrefixlen: number;
  minPrefixlen: number;
  maxPrefixlen: number;
  defaultQuota: number | null;
  isDefault: boolean;
  shared: boolean;
  addressScopeId: string | null;
  tags: string[];
  revisionNumber: number;
  createdAt: string;
  updatedAt: string;
}

export interface SubnetPoolCreate {
  projectId: string;
  name?: string;
  description?: string;
  prefixes: string[];
  defaultPrefixlen?: number;
  minPrefixlen?: number;
  maxPrefixlen?: number;
  defaultQuota?: number | null;
  isDefault?: boolean;
  shared?: boolean;
  addressScopeId?: string | null;
  tags?: string[];
}

export type SubnetPoolUpdate = Partial<Omit<SubnetPoolCreate, 'projectId' | 'shared' | 'tags'>> & { addPrefixes?: string[]; removePrefixes?: string[] };

export const subnetPoolNotFound = (id: string) => neutronError(new NotFound(`Subnet pool ${id} could not be found.`), 'SubnetPoolNotFound');
export const subnetNotFound = (id: string) => neutronError(new NotFound(`Subnet ${id} could not be found.`), 'SubnetNotFound');
const invalid = (message: string) => neutronError(new BadRequest(`Invalid input for operation: ${message}`), 'InvalidInput');

/** A subnet's allocation pools as address ranges. */
interface Range { first: bigint; last: bigint }

export class SubnetService {
  constructor(private readonly context: NetworkContext) {}

  private get db() { return this.context.database.db; }

  async get(id: string, db: Kysely<any> = this.db): Promise<Subnet> {
    const [subnet] = await this.load(db, (q) => q.where('id', '=', id));
    if (!subnet) throw subnetNotFound(id);
    return subnet;
  }

  async list(filter: { networkId?: string; ids?: string[]; subnetpoolId?: string } = {}, db: Kysely<any> = this.db): Promise<Subnet[]> {
    return this.load(db, (q) => {
      if (filter.networkId !== undefined) q = q.where('network_id', '=', filter.networkId);
      if (filter.ids) q = q.where('id', 'in', filter.ids.length > 0 ? filter.ids : ['']);
      if (filter.subnetpoolId !== undefined) q = q.where('subnetpool_id', '=', filter.subnetpoolId);
      return q;
    });
  }

  private async load(db: Kysely<any>, where: (q: any) => any): Promise<Subnet[]> {
    const rows = await where(db.selectFrom('network_subnets').selectAll()).orderBy('created_at').orderBy('id').execute();
    const tags = await tagsOf(db, 'subnets', rows.map((r: any) => r.id));
    return rows.map((r: any) => ({
      id: r.id, projectId: r.project_id, networkId: r.network_id, name: r.name, description: r.description,
      ipVersion: Number(r.ip_version) as IpVersion, cidr: r.cidr, gatewayIp: r.gateway_ip ?? null, enableDhcp: !!r.enable_dhcp,
      allocationPools: parseJson<AllocationPool[]>(r.allocation_pools, []), dnsNameservers: parseJson<string[]>(r.dns_nameservers, []),
      hostRoutes: parseJson<HostRoute[]>(r.host_routes, []), ipv6RaMode: r.ipv6_ra_mode ?? null, ipv6AddressMode: r.ipv6_address_mode ?? null,
      subnetpoolId: r.subnetpool_id ?? null, tags: tags.get(r.id) ?? [], revisionNumber: Number(r.revision_number),
      createdAt: r.created_at, updatedAt: r.updated_at,
    }));
  }

  async create(body: SubnetCreate, options: { trx?: Kysely<any> } = {}): Promise<Subnet> {
    if (body.ipVersion !== 4 && body.ipVersion !== 6) throw invalid(`${body.ipVersion} is not in [4, 6].`);
    const version = body.ipVersion as IpVersion;
    const ra = this.mode(body.ipv6RaMode, 'ipv6_ra_mode');
    const addressMode = this.mode(body.ipv6AddressMode, 'ipv6_address_mode');
    if (version === 4 && (ra || addressMode)) throw invalid('ipv6_ra_mode or ipv6_address_mode cannot be set when ip_version is 4');
    if (ra && addressMode && ra !== addressMode) {
      throw invalid(`ipv6_ra_mode set to '${ra}' with ipv6_address_mode set to '${addressMode}' is not valid. If both attributes are set, they must be the same value`);
    }
    if ((ra || addressMode) && body.enableDhcp === false) throw invalid('ipv6_ra_mode or ipv6_address_mode cannot be set when enable_dhcp is set to False');
    const dnsNameservers = this.nameservers(body.dnsNameservers ?? [], version);
    const hostRoutes = this.routes(body.hostRoutes ?? [], version);
    const id = newUuid();
    await inTransaction(this.context.database, options.trx, async (trx) => {
      // Subnets of one network (overlaps) and of one pool (free prefixes) are made one at a time.
      await lockRows(this.context.database, trx, 'network_networks', [body.networkId]);
      await lockRows(this.context.database, trx, 'network_subnet_pools', body.subnetpoolId ? [body.subnetpoolId] : []);
      const network = await this.context.services.networks.get(body.networkId, trx);
      await this.context.services.quotas.check(trx, body.projectId, 'subnet');
      let poolId = body.subnetpoolId ?? null;
      if (!poolId && body.useDefaultSubnetpool) {
        poolId = await this.defaultPoolId(trx, version);
        await lockRows(this.context.database, trx, 'network_subnet_pools', [poolId]);
      }
      let cidr: Cidr;
      if (poolId) {
        cidr = await this.allocateFromPool(trx, poolId, version, body.cidr, body.prefixlen);
      } else {
        if (body.cidr === undefined) throw neutronError(new BadRequest('Bad subnets request: a cidr must be specified in the absence of a subnet pool'), 'BadRequest');
        cidr = this.cidr(body.cidr, version);
      }
      if ((addressMode === 'slaac' || addressMode === 'dhcpv6-stateless' || ra === 'slaac' || ra === 'dhcpv6-stateless') && cidr.prefixlen !== 64) {
        throw invalid(`Invalid CIDR ${formatCidr(cidr)} for IPv6 address mode. OpenStack uses the EUI-64 address format, which requires the prefix to be /64`);
      }
      // A locking read sees the latest committed subnets (MariaDB's plain reads keep the transaction's snapshot).
      let existing = trx.selectFrom('network_subnets').select('cidr').where('network_id', '=', network.id);
      if (this.context.database.engine !== 'sqlite') existing = existing.forUpdate();
      for (const other of await existing.execute()) {
        if (overlaps(parseCidr(other.cidr)!, cidr)) {
          throw invalid(`Requested subnet with cidr: ${formatCidr(cidr)} for network: ${network.id} overlaps with another subnet`);
        }
      }
      const gatewayIp = body.gatewayIp === undefined
        ? (sizeOf(cidr) > 2n || version === 6 ? formatAddress(version, cidr.network + 1n) : null)
        : body.gatewayIp === null ? null : this.gateway(body.gatewayIp, cidr);
      const pools = body.allocationPools === undefined ? defaultPools(cidr, gatewayIp) : this.pools(body.allocationPools, cidr, gatewayIp);
      const now = nowStamp();
      await trx.insertInto('network_subnets').values({
        id, project_id: body.projectId, network_id: network.id, name: body.name ?? '', description: body.description ?? '',
        ip_version: version, cidr: formatCidr(cidr), gateway_ip: gatewayIp, enable_dhcp: body.enableDhcp === false ? 0 : 1,
        allocation_pools: JSON.stringify(pools), dns_nameservers: JSON.stringify(dnsNameservers), host_routes: JSON.stringify(hostRoutes),
        ipv6_ra_mode: ra, ipv6_address_mode: addressMode, subnetpool_id: poolId, revision_number: 1, created_at: now, updated_at: now,
      }).execute();
      if (body.tags) await replaceTags(trx, 'subnets', id, body.tags);
      await this.context.services.networks.touch(trx, network.id);
    });
    if (!options.trx) await this.context.services.agents.notifyNetworkChanged(body.networkId);
    return this.get(id, options.trx);
  }

  async update(id: string, changes: SubnetUpdate): Promise<Subnet> {
    await inTransaction(this.context.database, undefined, async (trx) => {
      const current = await this.get(id, trx);
      const cidr = parseCidr(current.cidr)!;
      const set: Record<string, unknown> = { revision_number: current.revisionNumber + 1, updated_at: nowStamp() };
      let gatewayIp = current.gatewayIp;
      if (changes.gatewayIp !== undefined) {
        gatewayIp = changes.gatewayIp === null ? null : this.gateway(changes.gatewayIp, cidr);
        if (gatewayIp !== current.gatewayIp && gatewayIp !== null) {
          const holder = await trx.selectFrom('network_ip_allocations').select('port_id').where('subnet_id', '=', id).where('ip_address', '=', gatewayIp).executeTakeFirst();
          if (holder) throw neutronError(new Conflict(`IP address ${gatewayIp} already allocated in subnet ${id}`), 'IpAddressAlreadyAllocated');
        }
        set.gateway_ip = gatewayIp;
      }
      if (changes.allocationPools !== undefined) set.allocation_pools = JSON.stringify(this.pools(changes.allocationPools, cidr, gatewayIp));
      else if (gatewayIp !== current.gatewayIp && gatewayIp !== null) {
        const pool = current.allocationPools.find((p) => inRange(p, gatewayIp!));
        if (pool) throw neutronError(new Conflict(`Gateway ip ${gatewayIp} conflicts with allocation pool ${pool.start}-${pool.end}`), 'GatewayConflictWithAllocationPools');
      }
      if (changes.dnsNameservers !== undefined) set.dns_nameservers = JSON.stringify(this.nameservers(changes.dnsNameservers, current.ipVersion));
      if (changes.hostRoutes !== undefined) set.host_routes = JSON.stringify(this.routes(changes.hostRoutes, current.ipVersion));
      if (changes.enableDhcp === false && (current.ipv6RaMode || current.ipv6AddressMode)) {
        throw invalid('ipv6_ra_mode or ipv6_address_mode cannot be set when enable_dhcp is set to False');
      }
      if (changes.enableDhcp !== undefined) set.enable_dhcp = changes.enableDhcp ? 1 : 0;
      if (changes.name !== undefined) set.name = changes.name;
      if (changes.description !== undefined) set.description = changes.description;
      await trx.updateTable('network_subnets').set(set).where('id', '=', id).execute();
    });
    const subnet = await this.get(id);
    await this.context.services.agents.notifyNetworkChanged(subnet.networkId);
    return subnet;
  }

  /** Deletes a subnet nobody but DHCP holds an address on: 409 SubnetInUse otherwise. */
  async delete(id: string): Promise<void> {
    let networkId = '';
    await inTransaction(this.context.database, undefined, async (trx) => {
      const subnet = await this.get(id, trx);
      networkId = subnet.networkId;
      const holders = await trx.selectFrom('network_ip_allocations as a').innerJoin('network_ports as p', 'p.id', 'a.port_id')
        .select(['p.id', 'p.device_owner']).where('a.subnet_id', '=', id).execute();
      // Addresses of a SLAAC / stateless subnet come from the MACs: they go with it, unless a router uses it.
      const blocking = isAutoAddress(subnet) ? holders.filter((h) => ROUTER_INTERFACE_OWNERS.includes(h.device_owner)) : holders.filter((h) => h.device_owner !== 'network:dhcp');
      if (blocking.length > 0) {
        throw neutronError(new Conflict(`Unable to complete operation on subnet ${id}: One or more ports have an IP allocation from this subnet.`), 'SubnetInUse');
      }
      await this.deleteRows(trx, id);
      await this.context.services.networks.touch(trx, subnet.networkId);
    });
    await this.context.services.agents.notifyNetworkChanged(networkId);
  }

  /** The rows of one subnet and its remaining (DHCP) allocations, inside the caller's transaction. */
  async deleteRows(trx: Kysely<any>, id: string): Promise<void> {
    await trx.deleteFrom('network_ip_allocations').where('subnet_id', '=', id).execute();
    await trx.deleteFrom('network_tags').where('resource_type', '=', 'subnets').where('resource_id', '=', id).execute();
    await trx.deleteFrom('network_subnets').where('id', '=', id).execute();
  }

  /**
   * Gives `portId` an address on `subnet`: `ipAddress` when asked (409 IpAddressAlreadyAllocated if
   * taken), the EUI-64 address on SLAAC/stateless IPv6 subnets, else a free pool address
   * (409 IpAddressGenerationFailure when none is left). Runs inside the caller's transaction.
   */
  async allocate(trx: Kysely<any>, request: { subnet: Subnet; portId: string; ipAddress?: string; macAddress: string; deviceOwner: string }): Promise<string> {
    const { subnet, portId } = request;
    const cidr = parseCidr(subnet.cidr)!;
    const insert = (ip: string) => insertUnlessDuplicate(trx, (t) => t.insertInto('network_ip_allocations')
      .values({ port_id: portId, subnet_id: subnet.id, network_id: subnet.networkId, ip_address: ip }).execute());
    const taken = (ip: string) => neutronError(new Conflict(`IP address ${ip} already allocated in subnet ${subnet.id}`), 'IpAddressAlreadyAllocated');
    const isRouterPort = ROUTER_INTERFACE_OWNERS.includes(request.deviceOwner);
    if (request.ipAddress !== undefined) {
      const address = parseAddress(request.ipAddress);
      if (!address || !contains(cidr, address) || (cidr.version === 4 && cidr.prefixlen < 31 && (address.value === cidr.network || address.value === lastOf(cidr)))) {
        throw neutronError(new BadRequest(`Invalid input for operation: IP address ${request.ipAddress} is not a valid IP for the specified subnet.`), 'InvalidIpForSubnet');
      }
      if (isAutoAddress(subnet) && !isRouterPort) {
        throw neutronError(new BadRequest(`Invalid input for operation: IPv6 address ${request.ipAddress} cannot be directly assigned to a port on subnet ${subnet.id} since the subnet is configured for automatic addresses.`), 'InvalidInput');
      }
      const ip = formatAddress(address.version, address.value);
      if (ip === subnet.gatewayIp && !isRouterPort) throw taken(ip);
      if (!(await insert(ip))) throw taken(ip);
      return ip;
    }
    if (isAutoAddress(subnet) && !isRouterPort) {
      const ip = formatAddress(6, eui64(cidr, request.macAddress));
      if (!(await insert(ip))) throw taken(ip);
      return ip;
    }
    const pools: Range[] = subnet.allocationPools.map((p) => ({ first: parseAddress(p.start)!.value, last: parseAddress(p.end)!.value }));
    const total = pools.reduce((sum, p) => sum + p.last - p.first + 1n, 0n);
    const rows = await trx.selectFrom('network_ip_allocations').select('ip_address').where('subnet_id', '=', subnet.id).execute();
    const unavailable = new Set(rows.map((r) => parseAddress(r.ip_address)!.value));
    const exhausted = () => neutronError(new Conflict(`No more IP addresses available on network ${subnet.networkId}.`), 'IpAddressGenerationFailure');
    // A random start then the first free address after it: at most |unavailable| + 1 steps.
    for (;;) {
      if (total === 0n) throw exhausted();
      const start = randomBelow(total);
      let picked: bigint | undefined;
      for (let step = 0n; step <= BigInt(unavailable.size) && step < total; step++) {
        const candidate = nthAddress(pools, (start + step) % total);
        if (!unavailable.has(candidate)) { picked = candidate; break; }
      }
      if (picked === undefined) throw exhausted();
      const ip = formatAddress(subnet.ipVersion, picked);
      if (await insert(ip)) return ip;
      unavailable.add(picked); // another transaction took it meanwhile
    }
  }

  /** Frees one address of a port (a fixed IP removed by a port update). */
  async release(trx: Kysely<any>, portId: string, subnetId: string, ipAddress: string): Promise<void> {
    await trx.deleteFrom('network_ip_allocations').where('port_id', '=', portId).where('subnet_id', '=', subnetId).where('ip_address', '=', ipAddress).execute();
  }

  /** Addresses in use per subnet (network-ip-availabilities). */
  async usedCount(subnetId: string): Promise<number> {
    const row = await this.db.selectFrom('network_ip_allocations').select((eb) => eb.fn.countAll<number>().as('n')).where('subnet_id', '=', subnetId).executeTakeFirst();
    return Number(row?.n ?? 0);
  }

  // --- validation -------------------------------------------------------------------------

  private mode(value: string | null | undefined, attribute: string): Ipv6Mode | null {
    if (value === undefined || value === null) return null;
    if (!IPV6_MODES.includes(value as Ipv6Mode)) throw invalid(`'${value}' is not in ${JSON.stringify(IPV6_MODES)} for ${attribute}.`.replace(/"/g, "'"));
    return value as Ipv6Mode;
  }

  private cidr(text: string, version: IpVersion): Cidr {
    const loose = parseCidr(text);
    if (!loose || !text.includes('/')) throw invalid(`'${text}' is not a valid IP subnet.`);
    const strict = parseCidr(text, { strict: true });
    if (!strict) throw invalid(`'${text}' isn't a recommended CIDR, '${formatCidr(loose)}' is recommended`);
    if (strict.version !== version) throw invalid('Cidr and ip_version are not compatible.');
    if (strict.prefixlen === 0) throw invalid(`${text} is not allowed as a subnet cidr.`);
    return strict;
  }

  private gateway(text: string, cidr: Cidr): string {
    const address = parseAddress(text);
    if (!address || address.version !== cidr.version) throw invalid(`'${text}' is not a valid IP address.`);
    const ip = formatAddress(address.version, address.value);
    if (!contains(cidr, address) || (cidr.version === 4 && cidr.prefixlen < 31 && (address.value === cidr.network || address.value === lastOf(cidr)))) {
      throw neutronError(new BadRequest(`Invalid input for operation: Gateway is not valid on subnet. Gateway IP ${ip} is not in the subnet ${formatCidr(cidr)} or is its network or broadcast address.`), 'InvalidInput');
    }
    return ip;
  }

  private pools(pools: AllocationPool[], cidr: Cidr, gatewayIp: string | null): AllocationPool[] {
    if (!Array.isArray(pools)) throw invalid('allocation_pools must be a list of {start, end}.');
    const ranges: Range[] = [];
    for (const pool of pools) {
      const start = parseAddress(pool?.start); const end = parseAddress(pool?.end);
      if (!start || !end || start.version !== cidr.version || end.version !== cidr.version) throw invalid(`The allocation pool ${JSON.stringify(pool)} is not valid.`);
      if (start.value > end.value) throw invalid(`The allocation pool ${pool.start}-${pool.end} is not valid: start is after end.`);
      if (!contains(cidr, start) || !contains(cidr, end)) {
        throw neutronError(new BadRequest(`The allocation pool ${pool.start}-${pool.end} spans beyond the subnet cidr ${formatCidr(cidr)}.`), 'OutOfBoundsAllocationPool');
      }
      ranges.push({ first: start.value, last: end.value });
    }
    for (let i = 0; i < ranges.length; i++) for (let j = i + 1; j < ranges.length; j++) {
      if (ranges[i].first <= ranges[j].last && ranges[j].first <= ranges[i].last) {
        throw neutronError(new BadRequest(`Found overlapping allocation pools: ${show(cidr.version, ranges[i])} and ${show(cidr.version, ranges[j])} for subnet ${formatCidr(cidr)}.`), 'OverlappingAllocationPools');
      }
    }
    if (gatewayIp !== null) {
      const gateway = parseAddress(gatewayIp)!.value;
      const clash = ranges.find((r) => gateway >= r.first && gateway <= r.last);
      if (clash) throw neutronError(new Conflict(`Gateway ip ${gatewayIp} conflicts with allocation pool ${show(cidr.version, clash)}`), 'GatewayConflictWithAllocationPools');
    }
    return ranges.sort((a, b) => (a.first < b.first ? -1 : 1)).map((r) => ({ start: formatAddress(cidr.version, r.first), end: formatAddress(cidr.version, r.last) }));
  }

  private nameservers(list: string[], version: IpVersion): string[] {
    if (!Array.isArray(list)) throw invalid('dns_nameservers must be a list of addresses.');
    const max = this.context.config.getInt('DEFAULT', 'max_dns_nameservers', 5);
    if (list.length > max) throw neutronError(new BadRequest(`Number of DNS nameservers exceeds the limit ${max} for subnet.`), 'DNSNameServersExhausted');
    const seen = new Set<string>();
    return list.map((text) => {
      const address = parseAddress(text);
      if (!address || address.version !== version) throw invalid(`'${text}' is not a valid nameserver.`);
      const ip = formatAddress(address.version, address.value);
      if (seen.has(ip)) throw invalid(`Duplicate nameserver '${ip}'.`);
      seen.add(ip);
      return ip;
    });
  }

  private routes(list: HostRoute[], version: IpVersion): HostRoute[] {
    if (!Array.isArray(list)) throw invalid('host_routes must be a list of {destination, nexthop}.');
    const max = this.context.config.getInt('DEFAULT', 'max_subnet_host_routes', 20);
    if (list.length > max) throw neutronError(new BadRequest(`Unable to complete operation for ${'subnet'}. The number of host routes exceeds the limit ${max}.`), 'HostRoutesExhausted');
    const seen = new Set<string>();
    return list.map((route) => {
      const destination = parseCidr(route?.destination, { strict: true });
      const nexthop = canonicalAddress(route?.nexthop);
      if (!destination || destination.version !== version || !nexthop || parseAddress(nexthop)!.version !== version) {
        throw invalid(`Invalid data format for hostroute: '${JSON.stringify(route)}'.`);
      }
      const normalised = { destination: formatCidr(destination), nexthop };
      const key = `${normalised.destination}|${nexthop}`;
      if (seen.has(key)) throw invalid(`Duplicate hostroute '${JSON.stringify(route)}'.`);
      seen.add(key);
      return normalised;
    });
  }

  // --- subnet pools ----------------------------------------------------------------------------

  async getPool(id: string, db: Kysely<any> = this.db): Promise<SubnetPool> {
    const [pool] = await this.loadPools(db, [id]);
    if (!pool) throw subnetPoolNotFound(id);
    return pool;
  }

  async listPools(ids?: string[]): Promise<SubnetPool[]> {
    return this.loadPools(this.db, ids);
  }

  private async loadPools(db: Kysely<any>, ids?: string[]): Promise<SubnetPool[]> {
    let query = db.selectFrom('network_subnet_pools').selectAll();
    if (ids) query = query.where('id', 'in', ids.length > 0 ? ids : ['']);
    const rows = await query.orderBy('id').execute();
    if (rows.length === 0) return [];
    const prefixes = new Map<string, Cidr[]>(rows.map((r) => [r.id as string, []]));
    const poolIds = rows.map((r) => r.id as string);
    for (const p of await db.selectFrom('network_subnet_pool_prefixes').selectAll().where('subnetpool_id', 'in', poolIds).execute()) prefixes.get(p.subnetpool_id)?.push(parseCidr(p.cidr)!);
    const tags = await tagsOf(db, 'subnetpools', poolIds);
    return rows.map((r) => ({
      id: r.id, projectId: r.project_id, name: r.name, description: r.description, ipVersion: Number(r.ip_version) as IpVersion,
      prefixes: prefixes.get(r.id)!.sort((a, b) => (a.network < b.network ? -1 : a.network > b.network ? 1 : a.prefixlen - b.prefixlen)).map(formatCidr),
      defaultPrefixlen: Number(r.default_prefixlen), minPrefixlen: Number(r.min_prefixlen), maxPrefixlen: Number(r.max_prefixlen),
      defaultQuota: r.default_quota === null || r.default_quota === undefined ? null : Number(r.default_quota),
      isDefault: !!r.is_default, shared: !!r.shared, addressScopeId: r.address_scope_id ?? null, tags: tags.get(r.id) ?? [],
      revisionNumber: Number(r.revision_number), createdAt: r.created_at, updatedAt: r.updated_at,
    }));
  }

  async createPool(body: SubnetPoolCreate): Promise<SubnetPool> {
    if (body.addressScopeId) throw neutronError(new NotFound(`Address scope ${body.addressScopeId} could not be found.`), 'AddressScopeNotFound');
    const prefixes = mergePrefixes(this.prefixes(body.prefixes));
    const version = prefixes[0].version;
    const bounds = this.bounds(version, body);
    const id = newUuid();
    await inTransaction(this.context.database, undefined, async (trx) => {
      await this.context.services.quotas.check(trx, body.projectId, 'subnetpool');
      if (body.isDefault) await this.refuseSecondDefault(trx, version, id);
      const now = nowStamp();
      await trx.insertInto('network_subnet_pools').values({
        id, project_id: body.projectId, name: body.name ?? '', description: body.description ?? '', ip_version: version,
        default_prefixlen: bounds.defaultPrefixlen, min_prefixlen: bounds.minPrefixlen, max_prefixlen: bounds.maxPrefixlen,
        default_quota: body.defaultQuota ?? null, is_default: body.isDefault ? 1 : 0, shared: body.shared ? 1 : 0, address_scope_id: null,
        revision_number: 1, created_at: now, updated_at: now,
      }).execute();
      await trx.insertInto('network_subnet_pool_prefixes').values(prefixes.map((p) => ({ subnetpool_id: id, cidr: formatCidr(p) }))).execute();
      if (body.tags) await replaceTags(trx, 'subnetpools', id, body.tags);
    });
    return this.getPool(id);
  }

  /**
   * Changes a pool. Prefixes may only grow (Neutron: the old ones must stay covered);
   * `removePrefixes` takes away prefixes no subnet of the pool uses (subnetpool-prefix-ops).
   */
  async updatePool(id: string, changes: SubnetPoolUpdate): Promise<SubnetPool> {
    await inTransaction(this.context.database, undefined, async (trx) => {
      const current = await this.getPool(id, trx);
      const set: Record<string, unknown> = { revision_number: current.revisionNumber + 1, updated_at: nowStamp() };
      if (changes.name !== undefined) set.name = changes.name;
      if (changes.description !== undefined) set.description = changes.description;
      if (changes.defaultQuota !== undefined) set.default_quota = changes.defaultQuota;
      if (changes.isDefault !== undefined) {
        if (changes.isDefault) await this.refuseSecondDefault(trx, current.ipVersion, id);
        set.is_default = changes.isDefault ? 1 : 0;
      }
      if (changes.addressScopeId) throw neutronError(new NotFound(`Address scope ${changes.addressScopeId} could not be found.`), 'AddressScopeNotFound');
      const bounds = this.bounds(current.ipVersion, {
        defaultPrefixlen: changes.defaultPrefixlen ?? (changes.minPrefixlen !== undefined && changes.minPrefixlen > current.defaultPrefixlen ? changes.minPrefixlen : current.defaultPrefixlen),
        minPrefixlen: changes.minPrefixlen ?? current.minPrefixlen, maxPrefixlen: changes.maxPrefixlen ?? current.maxPrefixlen,
      });
      Object.assign(set, { default_prefixlen: bounds.defaultPrefixlen, min_prefixlen: bounds.minPrefixlen, max_prefixlen: bounds.maxPrefixlen });
      let prefixes = current.prefixes.map((p) => parseCidr(p)!);
      if (changes.prefixes !== undefined || changes.addPrefixes !== undefined) {
        const wanted = this.prefixes(changes.prefixes ?? [...current.prefixes, ...(changes.addPrefixes ?? [])]);
        if (wanted.some((p) => p.version !== current.ipVersion)) throw invalid('Illegal subnetpool prefix: all prefixes must be of the pool\'s IP version.');
        const merged = mergePrefixes(wanted);
        for (const old of prefixes) {
          if (!merged.some((p) => p.prefixlen <= old.prefixlen && contains(p, { version: old.version, value: old.network }))) {
            throw invalid(`Illegal update to prefixes: ${formatCidr(old)} must be included in the new prefixes.`);
          }
        }
        prefixes = merged;
      }
      if (changes.removePrefixes !== undefined) {
        const removed = this.prefixes(changes.removePrefixes);
        const subnets = (await trx.selectFrom('network_subnets').select('cidr').where('subnetpool_id', '=', id).execute()).map((r) => parseCidr(r.cidr)!);
        for (const prefix of removed) {
          const used = subnets.find((s) => overlaps(s, prefix));
          if (used) throw invalid(`Illegal update to prefixes: prefix ${formatCidr(prefix)} is in use by subnet ${formatCidr(used)}.`);
        }
        prefixes = prefixes.filter((p) => !removed.some((r) => r.network === p.network && r.prefixlen === p.prefixlen));
      }
      await trx.updateTable('network_subnet_pools').set(set).where('id', '=', id).execute();
      await trx.deleteFrom('network_subnet_pool_prefixes').where('subnetpool_id', '=', id).execute();
      if (prefixes.length > 0) await trx.insertInto('network_subnet_pool_prefixes').values(prefixes.map((p) => ({ subnetpool_id: id, cidr: formatCidr(p) }))).execute();
    });
    return this.getPool(id);
  }

  async deletePool(id: string): Promise<void> {
    await inTransaction(this.context.database, undefined, async (trx) => {
      await this.getPool(id, trx);
      const used = await trx.selectFrom('network_subnets').select('id').where('subnetpool_id', '=', id).limit(1).execute();
      if (used.length > 0) throw neutronError(new Conflict(`Unable to complete operation on subnet pool ${id}. Subnet pool has existing allocations.`), 'SubnetPoolInUse');
      await trx.deleteFrom('network_subnet_pool_prefixes').where('subnetpool_id', '=', id).execute();
      await trx.deleteFrom('network_tags').where('resource_type', '=', 'subnetpools').where('resource_id', '=', id).execute();
      await trx.deleteFrom('network_subnet_pools').where('id', '=', id).execute();
    });
  }

  private prefixes(list: string[] | undefined): Cidr[] {
    if (!Array.isArray(list) || list.length === 0) throw invalid('prefixes: at least one prefix is required.');
    const parsed = list.map((text) => {
      const cidr = parseCidr(text);
      if (!cidr || typeof text !== 'string' || !text.includes('/')) throw invalid(`'${String(text)}' is not a valid IP subnet.`);
      return cidr;
    });
    if (new Set(parsed.map((p) => p.version)).size > 1) throw invalid('Illegal subnetpool prefix: prefixes must all be of one IP version.');
    return parsed;
  }

  private bounds(version: IpVersion, body: { defaultPrefixlen?: number; minPrefixlen?: number; maxPrefixlen?: number }) {
    const bits = bitsOf(version);
    const minPrefixlen = body.minPrefixlen ?? (version === 4 ? 8 : 64);
    const maxPrefixlen = body.maxPrefixlen ?? bits;
    const defaultPrefixlen = body.defaultPrefixlen ?? minPrefixlen;
    for (const [name, value] of [['min_prefixlen', minPrefixlen], ['max_prefixlen', maxPrefixlen], ['default_prefixlen', defaultPrefixlen]] as const) {
      if (!Number.isInteger(value) || value < 0 || value > bits) throw invalid(`${name} ${value} is not in 0..${bits}.`);
    }
    if (!(minPrefixlen <= defaultPrefixlen && defaultPrefixlen <= maxPrefixlen)) {
      throw invalid(`Illegal prefix bounds: default_prefixlen=${defaultPrefixlen}, min_prefixlen=${minPrefixlen}, max_prefixlen=${maxPrefixlen}.`);
    }
    return { defaultPrefixlen, minPrefixlen, maxPrefixlen };
  }

  private async refuseSecondDefault(trx: Kysely<any>, version: IpVersion, id: string): Promise<void> {
    const other = await trx.selectFrom('network_subnet_pools').select('id').where('is_default', '=', 1).where('ip_version', '=', version).where('id', '!=', id).executeTakeFirst();
    if (other) throw invalid(`A default subnetpool for this IP family has already been set. Only one default may exist per IP family (${other.id}).`);
  }


  async defaultPoolId(trx: Kysely<any>, version: IpVersion): Promise<string> {
    const row = await trx.selectFrom('network_subnet_pools').select('id').where('is_default', '=', 1).where('ip_version', '=', version).executeTakeFirst();
    if (!row) throw neutronError(new BadRequest(`Bad subnets request: No default subnetpool found for IPv${version}.`), 'BadRequest');
    return row.id as string;
  }

  async allocateFromPool(trx: Kysely<any>, poolId: string, version: IpVersion, cidrText?: string, prefixlen?: number): Promise<Cidr> {
    const pool = await trx.selectFrom('network_subnet_pools').selectAll().where('id', '=', poolId).executeTakeFirst();
    if (!pool) throw subnetPoolNotFound(poolId);
    if (Number(pool.ip_version) !== version) throw invalid(`Cannot allocate IPv${version} subnet from IPv${pool.ip_version} subnet pool`);
    const prefixes = (await trx.selectFrom('network_subnet_pool_prefixes').select('cidr').where('subnetpool_id', '=', poolId).execute()).map((r) => parseCidr(r.cidr)!);
    let takenQuery = trx.selectFrom('network_subnets').select('cidr').where('subnetpool_id', '=', poolId);
    // A locking read sees rows committed after this transaction's snapshot (MariaDB's repeatable read).
    if (this.context.database.engine !== 'sqlite') takenQuery = takenQuery.forUpdate();
    const taken = (await takenQuery.execute()).map((r) => parseCidr(r.cidr)!);
    const min = Number(pool.min_prefixlen); const max = Number(pool.max_prefixlen);
    const failure = (reason: string) => neutronError(new Conflict(`Failed to allocate subnet: ${reason}.`), 'SubnetAllocationError');
    if (cidrText !== undefined) {
      const cidr = this.cidr(cidrText, version);
      if (cidr.prefixlen < min || cidr.prefixlen > max) throw invalid(`Illegal prefix bounds: prefixlen=${cidr.prefixlen}, min_prefixlen=${min}, max_prefixlen=${max}.`);
      if (!prefixes.some((p) => p.prefixlen <= cidr.prefixlen && overlaps(p, cidr))) throw failure(`Cidr ${formatCidr(cidr)} is not within the pool's prefixes`);
      if (taken.some((t) => overlaps(t, cidr))) throw failure(`Cidr ${formatCidr(cidr)} overlaps with another subnet of the pool`);
      return cidr;
    }
    const length = prefixlen ?? Number(pool.default_prefixlen);
    if (!Number.isInteger(length) || length < min || length > max) throw invalid(`Illegal prefix bounds: prefixlen=${length}, min_prefixlen=${min}, max_prefixlen=${max}.`);
    const size = 1n << BigInt(bitsOf(version) - length);
    for (const prefix of [...prefixes].sort((a, b) => (a.network < b.network ? -1 : 1))) {
      if (prefix.prefixlen > length) continue;
      for (let network = prefix.network; network + size - 1n <= lastOf(prefix);) {
        const candidate: Cidr = { version, network, prefixlen: length };
        const clash = taken.find((t) => overlaps(t, candidate));
        if (!clash) return candidate;
        // Skip past the subnet in the way, keeping the candidate aligned to its size.
        const next = lastOf(clash) + 1n;
        network = ((next + size - 1n) / size) * size;
      }
    }
    throw failure(`Insufficient prefix space to allocate subnet size /${length}`);
  }
}

/** Prefixes with any one inside another dropped (Neutron merges them likewise). */
function mergePrefixes(prefixes: Cidr[]): Cidr[] {
  const sorted = [...prefixes].sort((a, b) => a.prefixlen - b.prefixlen);
  const kept: Cidr[] = [];
  for (const p of sorted) if (!kept.some((k) => overlaps(k, p))) kept.push(p);
  return kept.sort((a, b) => (a.network < b.network ? -1 : 1));
}

/** SLAAC and DHCPv6-stateless subnets: addresses come from the MAC, not from IPAM. */
export function isAutoAddress(subnet: Pick<Subnet, 'ipVersion' | 'ipv6AddressMode'>): boolean {
  return subnet.ipVersion === 6 && (subnet.ipv6AddressMode === 'slaac' || subnet.ipv6AddressMode === 'dhcpv6-stateless');
}

/** The whole cidr but its network address, its IPv4 broadcast address and the gateway. */
function defaultPools(cidr: Cidr, gatewayIp: string | null): AllocationPool[] {
  const size = sizeOf(cidr);
  let first = cidr.network; let last = lastOf(cidr);
  if (cidr.version === 4 && size > 2n) { first += 1n; last -= 1n; }
  if (cidr.version === 6) first += 1n; // the subnet-router anycast address
  if (first > last) return [];
  const ranges: Range[] = [];
  const gateway = gatewayIp === null ? undefined : parseAddress(gatewayIp)!.value;
  if (gateway !== undefined && gateway >= first && gateway <= last) {
    if (gateway > first) ranges.push({ first, last: gateway - 1n });
    if (gateway < last) ranges.push({ first: gateway + 1n, last });
  } else {
    ranges.push({ first, last });
  }
  return ranges.map((r) => ({ start: formatAddress(cidr.version, r.first), end: formatAddress(cidr.version, r.last) }));
}

function inRange(pool: AllocationPool, ip: string): boolean {
  const value = parseAddress(ip)!.value;
  return value >= parseAddress(pool.start)!.value && value <= parseAddress(pool.end)!.value;
}

const show = (version: IpVersion, r: Range) => `${formatAddress(version, r.first)}-${formatAddress(version, r.last)}`;

/** The `index`-th address across the pools, in order. */
function nthAddress(pools: Range[], index: bigint): bigint {
  let rest = index;
  for (const pool of pools) {
    const size = pool.last - pool.first + 1n;
    if (rest < size) return pool.first + rest;
    rest -= size;
  }
  throw new Error('address index beyond the pools');
}

function randomBelow(limit: bigint): bigint {
  const bytes = randomBytes(Math.ceil(limit.toString(16).length / 2) + 8);
  return BigInt(`0x${bytes.toString('hex')}`) % limit;
}
