import { matchesRequirement, pythonStr } from '../extra-specs.js';
import type { HostState, RequestSpec } from '../types.js';
import { BaseFilter, passAll } from './base.js';

/** The host's attributes under Nova's HostState names, which `capabilities:` extra specs address. */
export function capabilityAttributes(h: HostState): Record<string, unknown> {
  return {
    host: h.host,
    nodename: h.nodename,
    hypervisor_hostname: h.nodename,
    hypervisor_type: h.hypervisorType,
    hypervisor_version: h.hypervisorVersion,
    host_ip: h.hostIp,
    cpu_info: h.cpuInfo,
    supported_instances: h.supportedInstances,
    traits: h.traits,
    vcpus_total: h.vcpus,
    vcpus_used: h.vcpusUsed,
    total_usable_ram_mb: h.memoryMb,
    free_ram_mb: h.freeRamMb,
    total_usable_disk_gb: h.localGb,
    free_disk_mb: h.freeDiskMb,
    disk_mb_used: h.diskGbUsed * 1024,
    num_instances: h.numInstances,
    cpu_allocation_ratio: h.cpuAllocationRatio,
    ram_allocation_ratio: h.ramAllocationRatio,
    disk_allocation_ratio: h.diskAllocationRatio,
    failed_builds: h.failedBuilds,
    availability_zone: h.availabilityZone,
  };
}

/** The attribute names (an object of the same keys, so that `in` answers as it does on the attributes). */
const ATTRIBUTE_NAMES: Record<string, unknown> = capabilityAttributes({
  host: '', nodename: '', hypervisorType: '', hypervisorVersion: 0, hostIp: null, cpuInfo: {}, supportedInstances: [], traits: [],
  vcpus: 0, vcpusUsed: 0, memoryMb: 0, freeRamMb: 0, localGb: 0, freeDiskMb: 0, diskGbUsed: 0, numInstances: 0,
  cpuAllocationRatio: 0, ramAllocationRatio: 0, diskAllocationRatio: 0, failedBuilds: 0, availabilityZone: '',
} as unknown as HostState);

/** Walks a scoped key ("cpu_info:arch") into the host's attributes, falling back to its capabilities (Nova's stats). */
function lookup(h: HostState, attributes: Record<string, unknown>, path: string[]): unknown {
  let cap: unknown = undefined;
  for (let i = 0; i < path.length; i++) {
    const key = path[i];
    if (i === 0) {
      cap = attributes[key] !== undefined && attributes[key] !== null ? attributes[key] : h.capabilities[key];
    } else {
      if (typeof cap === 'string') {
        try { cap = JSON.parse(cap); } catch { return undefined; }
      }
      if (!cap || typeof cap !== 'object' || Array.isArray(cap)) return undefined;
      cap = (cap as Record<string, unknown>)[key];
    }
    if (cap === undefined || cap === null) return undefined;
  }
  return cap;
}

/**
 * Checks the flavor's `capabilities:` extra specs (and unscoped keys naming a host attribute or
 * capability) against the host, with Nova's requirement operators.
 */
export class ComputeCapabilitiesFilter extends BaseFilter {
  readonly name = 'ComputeCapabilitiesFilter';
  override readonly runOncePerRequest = true;
  hostPasses(host: HostState, spec: RequestSpec): boolean {
    return this.forRequest(spec)(host);
  }
  override forRequest(spec: RequestSpec): (host: HostState) => boolean {
    // The extra specs this filter reads: `capabilities:` ones, and unscoped keys (which apply when they name an attribute or capability).
    const checks: { unscoped: boolean; key: string; path: string[]; requirement: string }[] = [];
    for (const [key, requirement] of Object.entries(spec.flavor.extraSpecs)) {
      const scope = key.split(':');
      if (scope.length === 1) checks.push({ unscoped: true, key, path: scope, requirement: String(requirement) });
      else if (scope[0] === 'capabilities') checks.push({ unscoped: false, key, path: scope.slice(1), requirement: String(requirement) });
    }
    if (checks.length === 0) return passAll;
    return (host) => {
      let attributes: Record<string, unknown> | undefined;
      for (const check of checks) {
        if (check.unscoped && !(check.key in ATTRIBUTE_NAMES) && !(check.key in host.capabilities)) continue;
        attributes ??= capabilityAttributes(host);
        const cap = lookup(host, attributes, check.path);
        if (cap === undefined) return false;
        if (!matchesRequirement(pythonStr(cap), check.requirement)) return false;
      }
      return true;
    };
  }
}
