// The Placement query built from flavor, extra specs and image properties.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { BadRequest } from '../../core/errors.js';
import { buildCandidateQuery, describeQuery, flavorResources, totalResources } from './placement-request.js';
import { makeSpec } from './testing.js';

describe('placement request builder', () => {
  it('asks for the flavor: DISK_GB = root + ephemeral + swap rounded up to GB', () => {
    const spec = makeSpec({}, { vcpus: 2, memoryMb: 2048, rootGb: 10, ephemeralGb: 5, swapMb: 1500 });
    assert.deepEqual(flavorResources(spec.flavor), { VCPU: 2, MEMORY_MB: 2048, DISK_GB: 17 });
    assert.deepEqual(buildCandidateQuery(spec, { limit: 1000 }), { unsuffixed: { resources: { VCPU: 2, MEMORY_MB: 2048, DISK_GB: 17 } }, limit: 1000 });
  });

  it('leaves the root disk out when booting from a volume, and drops zero amounts', () => {
    const q = buildCandidateQuery(makeSpec({ bootFromVolume: true }, { rootGb: 10 }));
    assert.deepEqual(q.unsuffixed.resources, { VCPU: 1, MEMORY_MB: 512 });
  });

  it('applies resources:, trait:, granular groups, group_policy and image traits', () => {
    const spec = makeSpec({ image: { id: 'i', properties: { 'trait:HW_CPU_X86_AVX2': 'required', 'trait:CUSTOM_IGNORED': 'forbidden' } } }, {
      extraSpecs: {
        'resources:VCPU': '0', 'resources:CUSTOM_BAREMETAL_GOLD': '1', 'resources:MEMORY_MB': '1024',
        'trait:CUSTOM_FAST': 'required', 'trait:CUSTOM_SLOW': 'forbidden', 'trait:CUSTOM_WHATEVER': 'maybe',
        'resources1:SRIOV_NET_VF': '1', 'trait1:CUSTOM_PHYSNET_A': 'required',
        'resources_NET:NET_BW_EGR_KILOBIT_PER_SEC': '1000', 'group_policy': 'isolate', 'hw:cpu_policy': 'dedicated',
      },
    });
    const q = buildCandidateQuery(spec, { memberOf: [['agg-1', 'agg-2']] });
    assert.deepEqual(q.unsuffixed, {
      resources: { MEMORY_MB: 1024, DISK_GB: 1, CUSTOM_BAREMETAL_GOLD: 1 },
      required: ['CUSTOM_FAST', 'HW_CPU_X86_AVX2'], forbidden: ['CUSTOM_SLOW'], memberOf: [['agg-1', 'agg-2']],
    });
    assert.deepEqual(q.granular, {
      1: { resources: { SRIOV_NET_VF: 1 }, required: ['CUSTOM_PHYSNET_A'] },
      _NET: { resources: { NET_BW_EGR_KILOBIT_PER_SEC: 1000 } },
    });
    assert.equal(q.groupPolicy, 'isolate');
    assert.equal(q.limit, undefined);
    assert.deepEqual(totalResources(q), { MEMORY_MB: 1024, DISK_GB: 1, CUSTOM_BAREMETAL_GOLD: 1, SRIOV_NET_VF: 1, NET_BW_EGR_KILOBIT_PER_SEC: 1000 });
  });

  it('refuses malformed amounts and policies', () => {
    assert.throws(() => buildCandidateQuery(makeSpec({}, { extraSpecs: { 'resources:VCPU': 'two' } })), BadRequest);
    assert.throws(() => buildCandidateQuery(makeSpec({}, { extraSpecs: { 'resources:vcpu': '1' } })), BadRequest);
    assert.throws(() => buildCandidateQuery(makeSpec({}, { extraSpecs: { group_policy: 'sometimes' } })), BadRequest);
  });

  it('describes the query in words', () => {
    const q = buildCandidateQuery(makeSpec({}, { vcpus: 64, extraSpecs: { 'trait:CUSTOM_X': 'required', 'resources1:CUSTOM_Y': '2' } }));
    assert.equal(describeQuery(q, ['in availability zone az1']),
      'VCPU=64, MEMORY_MB=512, DISK_GB=1 (required traits CUSTOM_X); group 1: CUSTOM_Y=2 (in availability zone az1)');
  });
});
