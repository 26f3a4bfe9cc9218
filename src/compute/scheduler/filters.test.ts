// Each filter on real host states and request specs, plus the registry and Nova's requirement operators.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Config } from '../../core/config.js';
import { BadRequest } from '../../core/errors.js';
import { matchesRequirement, pythonStr } from './extra-specs.js';
import {
  AggregateInstanceExtraSpecsFilter, AvailabilityZoneFilter, ComputeCapabilitiesFilter, ComputeFilter, CoreFilter,
  DifferentHostFilter, DiskFilter, enabledFilters, ImagePropertiesFilter, RamFilter, RetryFilter, SameHostFilter,
  ServerGroupAffinityFilter, ServerGroupAntiAffinityFilter, DEFAULT_ENABLED_FILTERS,
} from './filters/index.js';
import { versionSatisfies, versionToString } from './filters/image-properties.js';
import { makeHost, makeSpec } from './testing.js';
import type { AggregateInfo } from './types.js';

const options = { config: new Config({}, {}), defaultAvailabilityZone: 'nova' };
const agg = (id: number, metadata: Record<string, string>): AggregateInfo => ({ id, uuid: `agg-${id}`, name: `agg${id}`, metadata });

describe('extra spec operators', () => {
  it('compares as Nova does', () => {
    assert.equal(matchesRequirement('8', '= 4'), true, '= is numeric at-least');
    assert.equal(matchesRequirement('2', '= 4'), false);
    assert.equal(matchesRequirement('4', '== 4.0'), true);
    assert.equal(matchesRequirement('4', '!= 4'), false);
    assert.equal(matchesRequirement('5', '>= 5'), true);
    assert.equal(matchesRequirement('6', '<= 5'), false);
    assert.equal(matchesRequirement('abc', '>= 5'), false, 'non-numbers fail numeric operators');
    assert.equal(matchesRequirement('QEMU', 's== QEMU'), true);
    assert.equal(matchesRequirement('qemu', 's== QEMU'), false);
    assert.equal(matchesRequirement('b', 's> a'), true);
    assert.equal(matchesRequirement('a', 's>= b'), false);
    assert.equal(matchesRequirement('a', 's!= b'), true);
    assert.equal(matchesRequirement("['avx', 'sse4']", '<in> avx'), true);
    assert.equal(matchesRequirement("['sse4']", '<in> avx'), false);
    assert.equal(matchesRequirement("['avx', 'sse4']", '<all-in> avx sse4'), true);
    assert.equal(matchesRequirement("['avx']", '<all-in> avx sse4'), false);
    assert.equal(matchesRequirement('kvm', '<or> qemu <or> kvm'), true);
    assert.equal(matchesRequirement('xen', '<or> qemu <or> kvm'), false);
    assert.equal(matchesRequirement('plain', 'plain'), true, 'no operator: string equality');
    assert.equal(matchesRequirement('x', '<in>'), false, 'an operator without operand matches nothing');
    assert.equal(matchesRequirement(null, '= 1'), false);
    assert.equal(pythonStr(true), 'True');
    assert.equal(pythonStr(['a', 'b']), "['a', 'b']");
  });
});

describe('scheduler filters', () => {
  it('RetryFilter skips the hosts already tried', () => {
    const f = new RetryFilter();
    assert.equal(f.runOncePerRequest, true);
    assert.equal(f.hostPasses(makeHost({ host: 'a' }), makeSpec({ ignoreHosts: ['a'] })), false);
    assert.equal(f.hostPasses(makeHost({ host: 'b' }), makeSpec({ ignoreHosts: ['a'] })), true);
  });

  it('AvailabilityZoneFilter matches aggregate zones, else the default zone', () => {
    const f = new AvailabilityZoneFilter(options);
    const zoned = makeHost({ host: 'a', aggregates: [agg(1, { availability_zone: 'az1' }), agg(2, { availability_zone: 'az2' })] });
    const plain = makeHost({ host: 'b', aggregates: [agg(3, { ssd: 'true' })] });
    assert.equal(f.hostPasses(zoned, makeSpec({ availabilityZone: 'az1' })), true);
    assert.equal(f.hostPasses(zoned, makeSpec({ availabilityZone: 'az2' })), true);
    assert.equal(f.hostPasses(zoned, makeSpec({ availabilityZone: 'nova' })), false);
    assert.equal(f.hostPasses(plain, makeSpec({ availabilityZone: 'nova' })), true);
    assert.equal(f.hostPasses(plain, makeSpec({ availabilityZone: 'az1' })), false);
    assert.equal(f.hostPasses(zoned, makeSpec({ availabilityZone: null })), true);
    const other = new AvailabilityZoneFilter({ ...options, defaultAvailabilityZone: 'zone-x' });
    assert.equal(other.hostPasses(plain, makeSpec({ availabilityZone: 'zone-x' })), true);
  });

  it('ComputeFilter wants an up, enabled service', () => {
    const f = new ComputeFilter();
    const base = makeHost({ host: 'a' });
    assert.equal(f.hostPasses(base), true);
    assert.equal(f.hostPasses({ ...base, service: { ...base.service, up: false } }), false);
    assert.equal(f.hostPasses({ ...base, service: { ...base.service, disabled: true } }), false);
  });

  it('ComputeCapabilitiesFilter checks capabilities: and unscoped keys with operators', () => {
    const f = new ComputeCapabilitiesFilter();
    const host = makeHost({
      host: 'a', hypervisorType: 'QEMU', cpuInfo: { arch: 'x86_64', features: ['avx', 'sse4'], topology: { cores: 4 } },
      capabilities: { supportsLiveMigration: true, gpu: 'nvidia' },
    });
    const passes = (extraSpecs: Record<string, string>) => f.hostPasses(host, makeSpec({}, { extraSpecs }));
    assert.equal(passes({}), true);
    assert.equal(passes({ 'capabilities:hypervisor_type': 's== QEMU' }), true);
    assert.equal(passes({ 'capabilities:hypervisor_type': 's== xen' }), false);
    assert.equal(passes({ 'capabilities:cpu_info:arch': 'x86_64' }), true);
    assert.equal(passes({ 'capabilities:cpu_info:features': '<in> avx' }), true);
    assert.equal(passes({ 'capabilities:cpu_info:features': '<all-in> avx avx512' }), false);
    assert.equal(passes({ 'capabilities:cpu_info:topology:cores': '>= 4' }), true);
    assert.equal(passes({ 'capabilities:cpu_info:topology:cores': '>= 8' }), false);
    assert.equal(passes({ 'capabilities:vcpus_total': '= 8' }), true);
    assert.equal(passes({ 'capabilities:free_ram_mb': '>= 32768' }), false);
    assert.equal(passes({ 'capabilities:hypervisor_version': '>= 7000000' }), true);
    assert.equal(passes({ 'capabilities:supportsLiveMigration': 'True' }), true, 'capabilities are Nova stats');
    assert.equal(passes({ 'capabilities:nonexistent': 'x' }), false, 'a missing capability fails');
    assert.equal(passes({ gpu: '<or> amd <or> nvidia' }), true, 'unscoped key naming a capability');
    assert.equal(passes({ gpu: 'amd' }), false);
    assert.equal(passes({ hypervisor_type: 'xen' }), false, 'unscoped key naming an attribute');
    assert.equal(passes({ unrelated_key: 'x', 'hw:cpu_policy': 'dedicated', 'resources:VCPU': '2' }), true, 'others are ignored');
  });

  it('ImagePropertiesFilter compares architecture, hypervisor type, vm mode and version', () => {
    const f = new ImagePropertiesFilter(options);
    const host = makeHost({ host: 'a', supportedInstances: [['x86_64', 'qemu', 'hvm'], ['i686', 'qemu', 'hvm']], hypervisorVersion: 7002000 });
    const passes = (properties: Record<string, string> | null, h = host) =>
      f.hostPasses(h, makeSpec({ image: properties ? { id: 'img', properties } : null }));
    assert.equal(passes(null), true);
    assert.equal(passes({ os_distro: 'debian' }), true, 'no compute properties');
    assert.equal(passes({ hw_architecture: 'x86_64' }), true);
    assert.equal(passes({ hw_architecture: 'amd64' }), true, 'canonical architecture');
    assert.equal(passes({ architecture: 'i386' }), true, 'legacy name, canonicalised to i686');
    assert.equal(passes({ hw_architecture: 'aarch64' }), false);
    assert.equal(passes({ img_hv_type: 'QEMU', hw_vm_mode: 'hvm' }), true);
    assert.equal(passes({ hypervisor_type: 'kvm' }), false);
    assert.equal(passes({ hw_vm_mode: 'xen' }), false);
    assert.equal(passes({ hw_architecture: 'x86_64', img_hv_requested_version: '>=7.0, <8.0' }), true);
    assert.equal(passes({ hw_architecture: 'x86_64', img_hv_requested_version: '>=8.0' }), false);
    assert.equal(passes({ hw_architecture: 'x86_64' }, makeHost({ host: 'b', supportedInstances: [] })), false, 'nothing advertised');
    const withDefault = new ImagePropertiesFilter({ ...options, config: new Config({ filter_scheduler: { image_properties_default_architecture: 'aarch64' } }, {}) });
    assert.equal(withDefault.hostPasses(host, makeSpec({ image: { id: 'i', properties: {} } })), false);
    assert.equal(versionToString(7002000), '7.2.0');
    assert.equal(versionSatisfies('6.1', '>=6.0, <6.2'), true);
    assert.equal(versionSatisfies('6.2', '>=6.0, <6.2'), false);
  });

  it('ServerGroupAffinityFilter keeps the group on its hosts', () => {
    const f = new ServerGroupAffinityFilter();
    const group = { id: 'g', policy: 'affinity' as const, rules: {}, members: ['m1'], hosts: ['a'] };
    assert.equal(f.hostPasses(makeHost({ host: 'a' }), makeSpec({ group })), true);
    assert.equal(f.hostPasses(makeHost({ host: 'b' }), makeSpec({ group })), false);
    assert.equal(f.hostPasses(makeHost({ host: 'b' }), makeSpec({ group: { ...group, hosts: [] } })), true, 'first member goes anywhere');
    assert.equal(f.hostPasses(makeHost({ host: 'b' }), makeSpec({ group: { ...group, policy: 'anti-affinity' } })), true);
  });

  it('ServerGroupAntiAffinityFilter honours max_server_per_host', () => {
    const f = new ServerGroupAntiAffinityFilter();
    const host = makeHost({ host: 'a', instanceUuids: new Set(['m1', 'other']) });
    const group = { id: 'g', policy: 'anti-affinity' as const, rules: {}, members: ['m1', 'm2', 'm3'] };
    const spec = makeSpec({ instanceUuids: ['m2', 'm3'], group });
    assert.equal(f.hostPasses(host, spec), false);
    assert.equal(f.hostPasses(makeHost({ host: 'b', instanceUuids: new Set(['other']) }), spec), true);
    assert.equal(f.hostPasses(host, makeSpec({ instanceUuids: ['m2', 'm3'], group: { ...group, rules: { max_server_per_host: 2 } } })), true);
    assert.equal(f.hostPasses(host, makeSpec({ instanceUuids: ['m1'], group })), true, 'a move may stay on its own host');
    assert.equal(f.hostPasses(host, makeSpec({ group: { ...group, policy: 'soft-anti-affinity' } })), true);
  });

  it('SameHostFilter and DifferentHostFilter follow the hints', () => {
    const same = new SameHostFilter(), different = new DifferentHostFilter();
    const a = makeHost({ host: 'a', instanceUuids: new Set(['x']) });
    const b = makeHost({ host: 'b', instanceUuids: new Set(['y']) });
    const spec = makeSpec({ schedulerHints: { same_host: ['x', 'z'], different_host: 'x' } });
    assert.equal(same.hostPasses(a, spec), true);
    assert.equal(same.hostPasses(b, spec), false);
    assert.equal(same.hostPasses(b, makeSpec()), true);
    assert.equal(different.hostPasses(a, spec), false);
    assert.equal(different.hostPasses(b, spec), true);
  });

  it('AggregateInstanceExtraSpecsFilter matches scoped and unscoped keys against aggregate metadata', () => {
    const f = new AggregateInstanceExtraSpecsFilter();
    const host = makeHost({ host: 'a', aggregates: [agg(1, { ssd: 'true', tier: 'gold' }), agg(2, { tier: 'silver', cores: '16' })] });
    const passes = (extraSpecs: Record<string, string>) => f.hostPasses(host, makeSpec({}, { extraSpecs }));
    assert.equal(passes({}), true);
    assert.equal(passes({ 'aggregate_instance_extra_specs:ssd': 'true' }), true);
    assert.equal(passes({ 'aggregate_instance_extra_specs:ssd': 'false' }), false);
    assert.equal(passes({ 'aggregate_instance_extra_specs:tier': 'silver' }), true, 'any aggregate may satisfy it');
    assert.equal(passes({ 'aggregate_instance_extra_specs:cores': '>= 8' }), true);
    assert.equal(passes({ tier: '<or> bronze <or> gold' }), true, 'unscoped key');
    assert.equal(passes({ gpu: 'yes' }), false, 'unscoped key with no metadata fails');
    assert.equal(passes({ 'hw:cpu_policy': 'dedicated', 'capabilities:x': 'y' }), true, 'other scopes are ignored');
  });

  it('RamFilter, DiskFilter and CoreFilter guard what is left after in-request consumption', () => {
    const host = makeHost({ host: 'a', capacity: { VCPU: 4, MEMORY_MB: 2048, DISK_GB: 20 }, used: { VCPU: 3, MEMORY_MB: 1024, DISK_GB: 10 } });
    const spec = makeSpec({}, { vcpus: 1, memoryMb: 1024, rootGb: 10 });
    assert.equal(new RamFilter().hostPasses(host, spec), true);
    assert.equal(new DiskFilter().hostPasses(host, spec), true);
    assert.equal(new CoreFilter().hostPasses(host, spec), true);
    const bigger = makeSpec({}, { vcpus: 2, memoryMb: 1536, rootGb: 10, swapMb: 1 });
    assert.equal(new RamFilter().hostPasses(host, bigger), false);
    assert.equal(new DiskFilter().hostPasses(host, bigger), false, 'swap rounds up to a whole GB');
    assert.equal(new CoreFilter().hostPasses(host, bigger), false);
    assert.equal(new DiskFilter().hostPasses(host, makeSpec({ bootFromVolume: true }, { rootGb: 50 })), true, 'boot from volume');
    assert.equal(new CoreFilter().hostPasses(host, makeSpec({}, { vcpus: 2, extraSpecs: { 'resources:VCPU': '0' } })), true);
  });

  it('the registry builds the enabled filters and refuses unknown ones', () => {
    assert.deepEqual(enabledFilters(options).map((f) => f.name), DEFAULT_ENABLED_FILTERS);
    const config = new Config({ filter_scheduler: { enabled_filters: 'nova.scheduler.filters.compute_filter.ComputeFilter, SameHostFilter' } }, {});
    assert.deepEqual(enabledFilters({ ...options, config }).map((f) => f.name), ['ComputeFilter', 'SameHostFilter']);
    assert.throws(() => enabledFilters({ ...options, config: new Config({ filter_scheduler: { enabled_filters: 'NoSuchFilter' } }, {}) }), BadRequest);
    assert.throws(() => enabledFilters({ ...options, config: new Config({ filter_scheduler: { available_filters: 'ComputeFilter', enabled_filters: 'RamFilter' } }, {}) }),
      /not in available_filters/);
  });
});
