// Builders for the scheduler's tests: a host state and a request spec with sensible defaults.
import type { HostState, RequestSpec } from './types.js';

export function makeHost(overrides: Partial<HostState> & { host: string }): HostState {
  const h: HostState = {
    nodename: overrides.host,
    providerUuid: `rp-${overrides.host}`,
    availabilityZone: 'nova',
    aggregates: [],
    service: { id: `svc-${overrides.host}`, up: true, disabled: false, disabledReason: null, forcedDown: false, lastHeartbeat: null },
    hypervisorType: 'QEMU',
    hypervisorVersion: 7002000,
    hostIp: '10.0.0.1',
    supportedInstances: [['x86_64', 'qemu', 'hvm']],
    traits: [],
    capabilities: {},
    cpuInfo: {},
    vcpus: 8, vcpusUsed: 0, memoryMb: 16384, memoryMbUsed: 0, freeRamMb: 16384, localGb: 100, diskGbUsed: 0, freeDiskMb: 102400,
    cpuAllocationRatio: 1, ramAllocationRatio: 1, diskAllocationRatio: 1,
    reservedHostCpus: 0, reservedHostMemoryMb: 0, reservedHostDiskMb: 0,
    capacity: { VCPU: 8, MEMORY_MB: 16384, DISK_GB: 100 },
    used: { VCPU: 0, MEMORY_MB: 0, DISK_GB: 0 },
    numInstances: 0,
    instanceUuids: new Set(),
    failedBuilds: 0,
    ...overrides,
  };
  return h;
}

export function makeSpec(overrides: Partial<RequestSpec> = {}, flavor: Partial<RequestSpec['flavor']> = {}): RequestSpec {
  return {
    instanceUuids: ['11111111-1111-1111-1111-111111111111'],
    projectId: 'project-a',
    userId: 'user-a',
    flavor: { id: 'f1', name: 'm1.small', vcpus: 1, memoryMb: 512, rootGb: 1, ephemeralGb: 0, swapMb: 0, extraSpecs: {}, ...flavor },
    image: null,
    availabilityZone: null,
    schedulerHints: {},
    ignoreHosts: [],
    ...overrides,
  };
}
