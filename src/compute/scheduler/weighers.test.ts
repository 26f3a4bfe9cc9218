// Each weigher on real host states, normalization, multipliers (config and aggregate override) and the registry.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Config } from '../../core/config.js';
import {
  BuildFailureWeigher, CPUWeigher, DiskWeigher, enabledWeighers, normalize, RAMWeigher,
  ServerGroupSoftAffinityWeigher, ServerGroupSoftAntiAffinityWeigher, weighHosts,
} from './weighers/index.js';
import { makeHost, makeSpec } from './testing.js';

const config = new Config({}, {});
const names = (list: { host: { host: string } }[]) => list.map((w) => w.host.host);

describe('scheduler weighers', () => {
  it('normalize maps to 0..1 and flattens equal values', () => {
    assert.deepEqual(normalize([10, 20, 15]), [0, 1, 0.5]);
    assert.deepEqual(normalize([3, 3]), [0, 0]);
    assert.deepEqual(normalize([]), []);
  });

  it('RAMWeigher spreads by free RAM, or stacks with a negative multiplier', () => {
    const hosts = [makeHost({ host: 'a', freeRamMb: 1000 }), makeHost({ host: 'b', freeRamMb: 4000 }), makeHost({ host: 'c', freeRamMb: 2000 })];
    const spread = weighHosts(hosts, makeSpec(), [new RAMWeigher({ config })]);
    assert.deepEqual(names(spread), ['b', 'c', 'a']);
    assert.equal(spread[0].weight, 1);
    const stack = weighHosts(hosts, makeSpec(), [new RAMWeigher({ config: new Config({ filter_scheduler: { ram_weight_multiplier: '-1.0' } }, {}) })]);
    assert.deepEqual(names(stack), ['a', 'c', 'b']);
  });

  it('DiskWeigher and CPUWeigher prefer free disk and free vCPUs', () => {
    const hosts = [makeHost({ host: 'a', freeDiskMb: 5000, vcpus: 8, vcpusUsed: 6 }), makeHost({ host: 'b', freeDiskMb: 1000, vcpus: 8, vcpusUsed: 1, cpuAllocationRatio: 2 })];
    assert.deepEqual(names(weighHosts(hosts, makeSpec(), [new DiskWeigher({ config })])), ['a', 'b']);
    const cpu = new CPUWeigher({ config });
    assert.equal(cpu.weigh(hosts[1]), 15);
    assert.deepEqual(names(weighHosts(hosts, makeSpec(), [cpu])), ['b', 'a']);
  });

  it('BuildFailureWeigher pushes failing hosts down, whatever the resources say', () => {
    const hosts = [makeHost({ host: 'a', freeRamMb: 9000, failedBuilds: 3 }), makeHost({ host: 'b', freeRamMb: 1000 })];
    const w = new BuildFailureWeigher({ config });
    assert.equal(w.multiplier(hosts[0]), -1000000);
    assert.deepEqual(names(weighHosts(hosts, makeSpec(), [new RAMWeigher({ config }), w])), ['b', 'a']);
  });

  it('soft affinity weighers count group members on the host', () => {
    const members = ['m1', 'm2', 'm3'];
    const hosts = [makeHost({ host: 'a', instanceUuids: new Set(['m1', 'm2']) }), makeHost({ host: 'b', instanceUuids: new Set(['m3']) }), makeHost({ host: 'c' })];
    const soft = makeSpec({ group: { id: 'g', policy: 'soft-affinity', rules: {}, members } });
    const softAnti = makeSpec({ group: { id: 'g', policy: 'soft-anti-affinity', rules: {}, members } });
    const affinity = new ServerGroupSoftAffinityWeigher({ config });
    const anti = new ServerGroupSoftAntiAffinityWeigher({ config });
    assert.deepEqual(names(weighHosts(hosts, soft, [affinity])), ['a', 'b', 'c']);
    assert.deepEqual(names(weighHosts(hosts, softAnti, [anti])), ['c', 'b', 'a']);
    assert.equal(affinity.weigh(hosts[0], softAnti), 0, 'only for its own policy');
    assert.equal(anti.weigh(hosts[0], softAnti), -2);
  });

  it('an aggregate metadata multiplier overrides the configured one', () => {
    const w = new RAMWeigher({ config });
    const host = makeHost({ host: 'a', aggregates: [
      { id: 1, uuid: 'u1', name: 'x', metadata: { ram_weight_multiplier: '-2' } },
      { id: 2, uuid: 'u2', name: 'y', metadata: { ram_weight_multiplier: '0.5' } },
    ] });
    assert.equal(w.multiplier(host), -2);
    assert.equal(w.multiplier(makeHost({ host: 'b' })), 1);
  });

  it('weight_classes picks weighers from the registry', () => {
    assert.equal(enabledWeighers({ config }).length, 6);
    const only = enabledWeighers({ config: new Config({ filter_scheduler: { weight_classes: 'nova.scheduler.weights.ram.RAMWeigher,CPUWeigher' } }, {}) });
    assert.deepEqual(only.map((w) => w.name), ['RAMWeigher', 'CPUWeigher']);
    assert.throws(() => enabledWeighers({ config: new Config({ filter_scheduler: { weight_classes: 'Nope' } }, {}) }), /unknown weigher/);
  });
});
