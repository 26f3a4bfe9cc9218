// The metadata service, as Nova's nova/api/metadata does it: one instance's data as the
// OpenStack tree (/openstack/<version>/meta_data.json, user_data, password, vendor_data.json,
// network_data.json, vendor_data2.json) and the EC2 tree (/<version>/meta-data/..., user-data),
// answered one guest request at a time (guestRequest) or as a whole config-drive file tree
// (instanceFiles). Built from the compute service's stores; the instance is always named by the
// caller (the agent's per-instance proxy), never guessed from the request.
import { randomBytes } from 'node:crypto';
import { posix } from 'node:path';
import { BadRequest, Conflict, NotFound } from '../core/errors.js';
import { isUniqueViolation } from '../db/index.js';
import type { BlockDeviceMapping, Instance, InstanceStore } from '../compute/instances.js';
import type { KeypairService } from '../compute/keypairs.js';
import { MAX_PASSWORD_SIZE, type ServerPasswordStore } from '../compute/server-passwords.js';
import type { InstanceVif } from '../compute/rpc.js';

/** EC2 metadata versions (base.py VERSIONS); "latest" means the last. */
export const EC2_VERSIONS = ['1.0', '2007-01-19', '2007-03-01', '2007-08-29', '2007-10-10', '2007-12-15', '2008-02-01', '2008-09-01', '2009-04-04'];
const FOLSOM = '2012-08-10';
const GRIZZLY = '2013-04-04';
const HAVANA = '2013-10-17';
const LIBERTY = '2015-10-15';
const NEWTON_ONE = '2016-06-30';
const NEWTON_TWO = '2016-10-06';
const OCATA = '2017-02-22';
const ROCKY = '2018-08-27';
const VICTORIA = '2020-10-14';
/** OpenStack metadata versions (base.py OPENSTACK_VERSIONS). */
export const OPENSTACK_VERSIONS = [FOLSOM, GRIZZLY, HAVANA, LIBERTY, NEWTON_ONE, NEWTON_TWO, OCATA, ROCKY, VICTORIA];
/** Nova's [api] config_drive_skip_versions default: EC2 versions left off the config drive. */
const CONFIG_DRIVE_SKIP_VERSIONS = ['1.0', '2007-01-19', '2007-03-01', '2007-08-29', '2007-10-10', '2007-12-15', '2008-02-01', '2008-09-01'];
/** vif types Nova shows as themselves in network_data.json links (model.LEGACY_EXPOSED_VIF_TYPES); others are 'phy'. */
const LEGACY_EXPOSED_VIF_TYPES = ['bridge', 'dvs', 'hw_veb', 'hyperv', 'ovs', 'tap', 'vhostuser', 'vif'];

const TEXT = 'text/plain; charset=UTF-8';
const JSON_TYPE = 'application/json';

/** One HTTP request from a guest, as the agent's proxy forwards it. */
export interface GuestRequest {
  uuid: string;
  method: string;
  /** The request target as the guest sent it (query string allowed, ignored). */
  path: string;
  headers?: Record<string, string>;
  /** The request body (only the password POST reads it). */
  body?: string;
}

/** The answer to one guest request. `body` is UTF-8 text unless `encoding` is 'base64' (binary user data). */
export interface GuestResponse {
  status: number;
  contentType: string;
  body: string;
  encoding?: 'base64';
}

/** A config-drive tree: path → text content; `binaryFiles` (base64) holds what is not valid UTF-8 (user data). */
export interface InstanceFiles {
  files: Record<string, string>;
  binaryFiles?: Record<string, string>;
}

/** Where network_data.json's ports come from (the Networking service once it binds ports). */
export type NetworkInfoProvider = (instanceUuid: string) => Promise<InstanceVif[]>;

export interface MetadataServiceDeps {
  instances: InstanceStore;
  keypairs: KeypairService;
  serverPasswords: ServerPasswordStore;
  networkInfo: NetworkInfoProvider;
  /** [api] dhcp_domain (Nova's default 'novalocal'; '' for the bare hostname). */
  dhcpDomain: string;
  /** [DEFAULT] default_availability_zone, for instances not yet placed in a zone. */
  defaultAvailabilityZone: string;
  /**
   * Nova's StaticJSON vendor data ([api] vendordata_jsonfile_path), read for each answer as Nova
   * reads it per request: vendor_data.json is it, vendor_data2.json is {"static": it}. {} without one.
   */
  staticVendorData?: () => Record<string, unknown>;
}

/** A value in the EC2 tree: a leaf, a list (printed one per line) or a directory; `_name` overrides a directory's listing line. */
type Ec2Node = string | number | Buffer | string[] | Ec2Dir;
interface Ec2Dir { [key: string]: Ec2Node }

/** Everything one answer needs, read once per request (Nova's InstanceMetadata). */
export interface InstanceMetadata {
  instance: Instance;
  hostname: string;
  availabilityZone: string;
  securityGroups: string[];
  blockDeviceMapping: Record<string, string>;
  userData: Buffer | null;
  keypair: { name: string; type: string; data: string } | null;
  password: string;
  vifs: InstanceVif[];
  /** The StaticJSON vendor data (see MetadataServiceDeps.staticVendorData). */
  vendorData: Record<string, unknown>;
  /** Personality files (config drive only, as in Nova: the metadata service never had them). */
  files: { path: string; contents: Buffer }[];
}

class PathNotFound extends Error {}

export class MetadataService {
  constructor(private readonly deps: MetadataServiceDeps) {}

  /** Reads what the trees are built from; NotFound for an unknown or deleted instance. */
  async load(uuid: string, options: { withFiles?: boolean } = {}): Promise<InstanceMetadata> {
    const instance = await this.deps.instances.find(uuid);
    if (!instance || instance.deletedAt) throw new NotFound(`Instance ${uuid} could not be found.`);
    const [bdms, keypair, password, vifs] = await Promise.all([
      this.deps.instances.blockDeviceMappings(uuid),
      this.keypairOf(instance),
      this.deps.serverPasswords.get(uuid),
      this.deps.networkInfo(uuid),
    ]);
    return {
      instance,
      hostname: this.deps.dhcpDomain ? `${instance.hostname}.${this.deps.dhcpDomain}` : instance.hostname,
      availabilityZone: instance.availabilityZone ?? this.deps.defaultAvailabilityZone,
      securityGroups: instance.request.securityGroups?.length ? instance.request.securityGroups : ['default'],
      blockDeviceMapping: blockDeviceMapping(instance, bdms),
      userData: instance.userData !== null ? Buffer.from(instance.userData, 'base64') : null,
      keypair,
      password,
      vifs,
      vendorData: this.deps.staticVendorData?.() ?? {},
      files: options.withFiles ? (instance.request.personality ?? []).map((f) => ({ path: f.path, contents: Buffer.from(f.contents, 'base64') })) : [],
    };
  }

  /** The key pair as the instance was booted with it: the current record's type when it still exists, else ssh. */
  private async keypairOf(instance: Instance): Promise<InstanceMetadata['keypair']> {
    if (!instance.keyName || instance.keyData === null) return null;
    const current = await this.deps.keypairs.get(instance.userId, instance.keyName).catch(() => undefined);
    const type = current && current.publicKey === instance.keyData ? current.type : 'ssh';
    return { name: instance.keyName, type, data: instance.keyData };
  }

  /** One guest HTTP request for instance `uuid` (only that instance's data is ever read). */
  async guestRequest(request: GuestRequest): Promise<GuestResponse> {
    let md: InstanceMetadata;
    try {
      md = await this.load(request.uuid);
    } catch (err) {
      if (err instanceof NotFound) return notFound();
      throw err;
    }
    const target = request.path.split('?')[0].split('#')[0];
    let path: string;
    try {
      path = decodeURIComponent(target);
    } catch {
      return notFound();
    }
    const tokens = tokensOf(path);
    if (tokens[0] === 'openstack' && tokens.length === 3 && tokens[2] === 'password' && isOpenstackVersion(tokens[1], GRIZZLY)) {
      return this.password(md, request);
    }
    try {
      const found = lookup(md, path);
      return found;
    } catch (err) {
      if (err instanceof PathNotFound) return notFound();
      throw err;
    }
  }

  /** Nova's handle_password: GET returns it, POST sets it once (409 while one is set), other methods 400. */
  private async password(md: InstanceMetadata, request: GuestRequest): Promise<GuestResponse> {
    const method = request.method.toUpperCase();
    if (method === 'GET' || method === 'HEAD') return { status: 200, contentType: TEXT, body: md.password };
    if (method !== 'POST') return plainError(400, 'Bad Request', 'GET and POST only are supported.');
    if (md.password) return plainError(409, 'Conflict', 'There was a conflict when trying to complete your request.');
    const body = request.body ?? '';
    const length = Number(request.headers?.['content-length'] ?? Buffer.byteLength(body));
    if (length > MAX_PASSWORD_SIZE || Buffer.byteLength(body) > MAX_PASSWORD_SIZE) return plainError(400, 'Bad Request', 'Request is too large.');
    try {
      await this.deps.serverPasswords.set(md.instance.id, body);
    } catch (err) {
      // Two posts racing: the store's check let both through, the primary key stops the second.
      if (err instanceof Conflict || isUniqueViolation(err)) return plainError(409, 'Conflict', 'There was a conflict when trying to complete your request.');
      throw err;
    }
    return { status: 200, contentType: TEXT, body: '' };
  }

  /** The whole config-drive tree for instance `uuid` (Nova's metadata_for_config_drive); NotFound when it is gone. */
  async instanceFiles(uuid: string): Promise<InstanceFiles> {
    const md = await this.load(uuid, { withFiles: true });
    const files: Record<string, string> = {};
    const binaryFiles: Record<string, string> = {};
    const put = (path: string, data: string | Buffer) => {
      if (typeof data === 'string') files[path] = data;
      else if (isUtf8(data)) files[path] = data.toString('utf8');
      else binaryFiles[path] = data.toString('base64');
    };
    for (const version of [...EC2_VERSIONS, 'latest']) {
      if (CONFIG_DRIVE_SKIP_VERSIONS.includes(version)) continue;
      const data = ec2Metadata(md, version);
      if (data['user-data'] !== undefined) put(`ec2/${version}/user-data`, data['user-data'] as Buffer);
      put(`ec2/${version}/meta-data.json`, JSON.stringify(data['meta-data']));
    }
    // One random seed for the whole drive, as Nova renders it once per build.
    const seed = randomBytes(512).toString('base64');
    const contentPaths = md.files.map((_, i) => `/content/${String(i).padStart(4, '0')}`);
    for (const version of [...OPENSTACK_VERSIONS, 'latest']) {
      const v = version === 'latest' ? VICTORIA : version;
      const meta = openstackMetaData(md, v, seed);
      if (md.files.length) meta.files = md.files.map((f, i) => ({ path: f.path, content_path: contentPaths[i] }));
      put(`openstack/${version}/meta_data.json`, JSON.stringify(meta));
      if (md.userData !== null) put(`openstack/${version}/user_data`, md.userData);
      if (atLeast(v, HAVANA)) put(`openstack/${version}/vendor_data.json`, JSON.stringify(md.vendorData));
      if (atLeast(v, LIBERTY)) put(`openstack/${version}/network_data.json`, JSON.stringify(networkData(md.vifs)));
      if (atLeast(v, NEWTON_TWO)) put(`openstack/${version}/vendor_data2.json`, JSON.stringify(vendorData2(md)));
    }
    md.files.forEach((f, i) => put(`openstack${contentPaths[i]}`, f.contents));
    return Object.keys(binaryFiles).length ? { files, binaryFiles } : { files };
  }
}

// ---- path lookup (base.py lookup, RouteConfiguration, find_path_in_tree, ec2_md_print) -----------

function tokensOf(path: string): string[] {
  const normal = posix.normalize('/' + path).replace(/\/+$/, '') || '/';
  const tokens = normal.split('/').slice(1);
  if (tokens[0] === 'ec2' || tokens[0] === 'openstack') return tokens;
  return tokens[0] === '' || tokens.length === 0 ? ['ec2'] : ['ec2', ...tokens];
}

function isOpenstackVersion(version: string, atLeastVersion: string): boolean {
  const v = version === 'latest' ? VICTORIA : version;
  return OPENSTACK_VERSIONS.includes(v) && atLeast(v, atLeastVersion);
}

/** Resolves a GET for any path but the password (handled apart): the data, or PathNotFound. */
export function lookup(md: InstanceMetadata, path: string): GuestResponse {
  const tokens = tokensOf(path);
  if (tokens.length === 1) {
    const versions = tokens[0] === 'openstack' ? OPENSTACK_VERSIONS.filter((v) => v <= new Date().toISOString().slice(0, 10)) : EC2_VERSIONS;
    return { status: 200, contentType: TEXT, body: [...versions, 'latest'].join('\n') };
  }
  if (tokens[0] === 'openstack') return openstackItem(md, tokens.slice(1));
  const data = ec2Metadata(md, tokens[1]);
  const found = findPathInTree(data, tokens.slice(2));
  if (Buffer.isBuffer(found)) {
    return isUtf8(found) ? { status: 200, contentType: TEXT, body: found.toString('utf8') } : { status: 200, contentType: TEXT, body: found.toString('base64'), encoding: 'base64' };
  }
  return { status: 200, contentType: TEXT, body: ec2Print(found) };
}

function openstackItem(md: InstanceMetadata, tokens: string[]): GuestResponse {
  const requested = tokens[0];
  if (requested === 'content') throw new PathNotFound(); // personality files live on the config drive only
  const version = requested === 'latest' ? VICTORIA : requested;
  if (!OPENSTACK_VERSIONS.includes(version)) throw new PathNotFound();
  const item = tokens.slice(1).join('/');
  switch (item) {
    case '': {
      const listing = ['meta_data.json'];
      if (md.userData !== null) listing.push('user_data');
      if (atLeast(version, GRIZZLY)) listing.push('password');
      if (atLeast(version, HAVANA)) listing.push('vendor_data.json');
      if (atLeast(version, LIBERTY)) listing.push('network_data.json');
      if (atLeast(version, NEWTON_TWO)) listing.push('vendor_data2.json');
      return { status: 200, contentType: TEXT, body: listing.join('\n') };
    }
    case 'meta_data.json':
      return { status: 200, contentType: JSON_TYPE, body: JSON.stringify(openstackMetaData(md, version, randomBytes(512).toString('base64'))) };
    case 'user_data':
      if (md.userData === null) throw new PathNotFound();
      return isUtf8(md.userData) ? { status: 200, contentType: TEXT, body: md.userData.toString('utf8') }
        : { status: 200, contentType: TEXT, body: md.userData.toString('base64'), encoding: 'base64' };
    case 'vendor_data.json':
      if (!atLeast(version, HAVANA)) throw new PathNotFound();
      return { status: 200, contentType: JSON_TYPE, body: JSON.stringify(md.vendorData) };
    case 'network_data.json':
      if (!atLeast(version, LIBERTY)) throw new PathNotFound();
      return { status: 200, contentType: JSON_TYPE, body: JSON.stringify(networkData(md.vifs)) };
    case 'vendor_data2.json':
      if (!atLeast(version, NEWTON_TWO)) throw new PathNotFound();
      return { status: 200, contentType: JSON_TYPE, body: JSON.stringify(vendorData2(md)) };
    default:
      throw new PathNotFound();
  }
}

/** vendor_data2.json: one key per [api] vendordata_providers entry; Nova's default is StaticJSON alone, keyed "static". */
function vendorData2(md: InstanceMetadata): Record<string, unknown> {
  return { static: md.vendorData };
}

function atLeast(version: string, required: string): boolean {
  return OPENSTACK_VERSIONS.indexOf(version) >= OPENSTACK_VERSIONS.indexOf(required);
}

function findPathInTree(data: Ec2Node, tokens: string[]): Ec2Node {
  let node = data;
  for (const token of tokens) {
    if (node === null || typeof node !== 'object' || Array.isArray(node) || Buffer.isBuffer(node) || token === '_name' || !(token in node)) throw new PathNotFound();
    node = (node as Ec2Dir)[token];
  }
  return node;
}

/** A directory as Nova lists it: sorted keys, one per line, '/' after sub-directories (or their `_name`). */
function ec2Print(data: Ec2Node): string {
  if (Array.isArray(data)) return data.join('\n');
  if (data !== null && typeof data === 'object' && !Buffer.isBuffer(data)) {
    return Object.keys(data).filter((k) => k !== '_name').sort().map((key) => {
      const value = data[key];
      if (value !== null && typeof value === 'object' && !Array.isArray(value) && !Buffer.isBuffer(value)) {
        return typeof value._name === 'string' ? value._name : `${key}/`;
      }
      return key;
    }).join('\n');
  }
  return String(data);
}

// ---- the trees ---------------------------------------------------------------------------------------

/** EC2-style ids: Nova maps its integer ids as %08x; ours are uuids, so their first 8 hex digits. */
function ec2Id(prefix: string, uuid: string): string {
  return `${prefix}-${uuid.replace(/-/g, '').slice(0, 8).padStart(8, '0')}`;
}

/** base.py get_ec2_metadata: {'meta-data': {...}, 'user-data'?: bytes}; PathNotFound for an unknown version. */
export function ec2Metadata(md: InstanceMetadata, requested: string): Ec2Dir {
  const version = requested === 'latest' ? EC2_VERSIONS[EC2_VERSIONS.length - 1] : requested;
  if (!EC2_VERSIONS.includes(version)) throw new PathNotFound();
  const since = (v: string) => EC2_VERSIONS.indexOf(version) >= EC2_VERSIONS.indexOf(v);
  const { instance } = md;
  const fixedIp = md.vifs.flatMap((v) => v.fixedIps).find((ip) => ip.version === 4)?.ipAddress ?? '';
  const meta: Ec2Dir = {
    'ami-id': instance.imageRef ? ec2Id('ami', instance.imageRef) : '',
    'ami-launch-index': instance.launchIndex,
    'ami-manifest-path': 'FIXME',
    'instance-id': ec2Id('i', instance.id),
    hostname: md.hostname,
    'local-ipv4': fixedIp,
    'reservation-id': instance.reservationId,
    'security-groups': md.securityGroups,
  };
  if (md.keypair) meta['public-keys'] = { 0: { _name: `0=${md.keypair.name}`, 'openssh-key': md.keypair.data } };
  if (since('2007-01-19')) {
    meta['local-hostname'] = md.hostname;
    meta['public-hostname'] = md.hostname;
    meta['public-ipv4'] = '';
  }
  if (since('2007-08-29')) meta['instance-type'] = instance.flavor.name;
  if (since('2007-12-15')) meta['block-device-mapping'] = md.blockDeviceMapping;
  if (since('2008-02-01')) meta.placement = { 'availability-zone': md.availabilityZone };
  if (since('2008-09-01')) meta['instance-action'] = 'none';
  const data: Ec2Dir = { 'meta-data': meta };
  if (md.userData !== null) data['user-data'] = md.userData;
  return data;
}

/** base.py _metadata_as_json for one OpenStack version. */
export function openstackMetaData(md: InstanceMetadata, version: string, randomSeed: string): Record<string, unknown> {
  const { instance } = md;
  const out: Record<string, unknown> = { uuid: instance.id };
  if (Object.keys(instance.metadata).length) out.meta = instance.metadata;
  if (md.keypair) {
    out.public_keys = { [md.keypair.name]: md.keypair.data };
    out.keys = [{ name: md.keypair.name, type: md.keypair.type, data: md.keypair.data }];
  }
  out.hostname = md.hostname;
  out.name = instance.name;
  out.launch_index = instance.launchIndex;
  out.availability_zone = md.availabilityZone;
  if (atLeast(version, GRIZZLY)) out.random_seed = randomSeed;
  if (atLeast(version, LIBERTY)) out.project_id = instance.projectId;
  // Device role tags (Nova's device_metadata) are not kept yet: the list is empty, as Nova's is without tags.
  if (atLeast(version, NEWTON_ONE)) out.devices = [];
  // No CPU pinning here, so no dedicated CPUs.
  if (atLeast(version, VICTORIA)) out.dedicated_cpus = [];
  return out;
}

/** nova/virt/netutils.py get_network_metadata: links, networks and services from the instance's ports. */
export function networkData(vifs: InstanceVif[]): { links: unknown[]; networks: unknown[]; services: unknown[] } {
  const links: Record<string, unknown>[] = [];
  const networks: Record<string, unknown>[] = [];
  const services: { type: string; address: string }[] = [];
  const addServices = (found: { type: string; address: string }[]) => {
    for (const s of found) if (!services.some((t) => t.address === s.address)) services.push(s);
  };
  let interfaceNumber = -1;
  let networkNumber = 0;
  for (const vif of vifs) {
    // Only the first IPv4 and the first IPv6 address, as Nova does.
    const v4 = vif.fixedIps.find((ip) => ip.version === 4);
    const v6 = vif.fixedIps.find((ip) => ip.version === 6);
    if (!v4 && !v6) continue;
    interfaceNumber++;
    const link = {
      id: `tap${vif.portId.slice(0, 11)}`,
      vif_id: vif.portId,
      type: LEGACY_EXPOSED_VIF_TYPES.includes(vif.vifType) ? vif.vifType : 'phy',
      mtu: vif.mtu,
      ethernet_mac_address: vif.macAddress,
    };
    links.push(link);
    for (const ip of [v4, v6]) {
      if (!ip) continue;
      networkNumber++;
      const dns = ip.dnsNameservers.map((address) => ({ type: 'dns', address }));
      addServices(dns);
      if (ip.version === 4 && ip.enableDhcp) {
        networks.push({ id: `network${networkNumber}`, type: 'ipv4_dhcp', link: link.id, network_id: vif.networkId });
        continue;
      }
      const anyRoute = ip.version === 4 ? '0.0.0.0' : '::';
      networks.push({
        id: `network${networkNumber}`,
        type: `ipv${ip.version}`,
        link: link.id,
        ip_address: ip.ipAddress,
        netmask: netmaskOf(ip.cidr, ip.version),
        routes: ip.gatewayIp ? [{ network: anyRoute, netmask: anyRoute, gateway: ip.gatewayIp }] : [],
        network_id: vif.networkId,
        services: dns,
      });
    }
  }
  return { links, networks, services };
}

/** The netmask of a CIDR: dotted quad for IPv4, an IPv6 address for IPv6 (netaddr's netmask). */
export function netmaskOf(cidr: string, version: 4 | 6): string {
  const prefix = Number(cidr.split('/')[1]);
  if (!Number.isInteger(prefix)) throw new BadRequest(`Invalid CIDR ${cidr}`);
  if (version === 4) {
    const mask = prefix === 0 ? 0 : (~0 << (32 - prefix)) >>> 0;
    return [24, 16, 8, 0].map((s) => (mask >>> s) & 255).join('.');
  }
  const groups: string[] = [];
  for (let i = 0; i < 8; i++) {
    const bits = Math.max(0, Math.min(16, prefix - i * 16));
    groups.push(((0xffff << (16 - bits)) & 0xffff).toString(16));
  }
  // Compress the longest run of two or more zero groups, as IPv6 text is written.
  let best = { start: -1, length: 0 };
  for (let i = 0; i < 8; i++) {
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > best.length && j - i >= 2) best = { start: i, length: j - i };
    if (j > i) i = j - 1;
  }
  if (best.start < 0) return groups.join(':');
  return `${groups.slice(0, best.start).join(':')}::${groups.slice(best.start + best.length).join(':')}`;
}

/** Nova's instance_block_mapping: root, ami, ephemeralN, swap and ebsN device names. */
function blockDeviceMapping(instance: Instance, bdms: BlockDeviceMapping[]): Record<string, string> {
  const root = bdms.find((b) => b.bootIndex === 0)?.deviceName ?? '/dev/vda';
  const mapping: Record<string, string> = { ami: root.replace(/^\/dev\//, ''), root };
  // Flavor ephemeral and swap disks follow the root disk on the same bus (libvirt's default device names).
  const letter = root.match(/^(\/dev\/[a-z]*d)([a-z])$/);
  let next = letter ? letter[2].charCodeAt(0) + 1 : 'b'.charCodeAt(0);
  const prefix = letter ? letter[1] : '/dev/vd';
  if (instance.flavor.ephemeralGb > 0) mapping.ephemeral0 = `${prefix}${String.fromCharCode(next++)}`;
  if (instance.flavor.swapMb > 0) mapping.swap = `${prefix}${String.fromCharCode(next++)}`;
  const volumes = bdms.filter((b) => b.destinationType === 'volume').map((b) => b.deviceName)
    .sort((a, b) => (a === null ? -1 : b === null ? 1 : a.localeCompare(b)));
  volumes.forEach((device, i) => { if (device) mapping[`ebs${i}`] = device; });
  const blanks = bdms.filter((b) => b.destinationType !== 'volume' && b.sourceType === 'blank');
  const swap = blanks.filter((b) => b.guestFormat === 'swap').pop();
  if (swap?.deviceName) mapping.swap = swap.deviceName;
  blanks.filter((b) => b.guestFormat !== 'swap').forEach((b, i) => { if (b.deviceName) mapping[`ephemeral${i}`] = b.deviceName; });
  return mapping;
}

function isUtf8(data: Buffer): boolean {
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(data);
    return true;
  } catch {
    return false;
  }
}

/** webob's plain-text error pages, as Nova's metadata handler sends them. */
function plainError(status: number, title: string, explanation: string): GuestResponse {
  return { status, contentType: TEXT, body: `${status} ${title}\n\n${explanation}\n\n   ` };
}

function notFound(): GuestResponse {
  return plainError(404, 'Not Found', 'The resource could not be found.');
}
