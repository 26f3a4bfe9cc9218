import { matchesRequirement, pythonStr } from '../extra-specs.js';
import type { HostState, RequestSpec } from '../types.js';
import { BaseFilter } from './base.js';

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
    const attributes = capabilityAttributes(host);
    for (const [key, requirement] of Object.entries(spec.flavor.extraSpecs)) {
      let scope = key.split(':');
      if (scope.length === 1) {
        if (!(key in attributes) && !(key in host.capabilities)) continue;
      } else {
        if (scope[0] !== 'capabilities') continue;
        scope = scope.slice(1);
      }
      const cap = lookup(host, attributes, scope);
      if (cap === undefined) return false;
      if (!matchesRequirement(pythonStr(cap), String(requirement))) return false;
    }
    return true;
  }
}
