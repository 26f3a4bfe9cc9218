// The fake virt driver and the driver registry: host size and delays from [fake_driver],
// failure injection (name pattern, rate), the contract's cleanup rules, and probing once.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Config } from '../../core/config.js';
import { BadRequest, InternalError, ServiceUnavailable } from '../../core/errors.js';
import { createLogger } from '../../core/log.js';
import { PowerState, type InstanceSpec } from '../rpc.js';
import { FakeDriver, FAKE_CAPABILITIES, fakeDriverSettings } from './fake.js';
import { createVirtDriver, probeVirtDriver, probeVirtDrivers, registerVirtDriver, virtDriverNames } from './index.js';

const logger = createLogger('test');
const spec = (name: string, uuid = `uuid-${name}`): InstanceSpec => ({
  uuid, name, hostname: name, projectId: 'p', userId: 'u',
  flavor: { id: 'f', name: 'm1.tiny', vcpus: 1, memoryMb: 512, rootGb: 1, ephemeralGb: 0, swapMb: 0, extraSpecs: {} },
  image: null, keyData: null, userData: null, metadata: {}, configDrive: false, adminPass: null,
});
const driverWith = (values: Record<string, string> = {}, random?: () => number) =>
  new FakeDriver(fakeDriverSettings(new Config({ fake_driver: values }, {})), random);

describe('fake virt driver', () => {
  it('reports the host size from [fake_driver] (8 vCPUs, 16384 MB, 200 GB by default)', async () => {
    const defaults = await driverWith().hostResources();
    assert.equal(defaults.hypervisorType, 'fake');
    assert.equal(defaults.hypervisorVersion, 1000);
    assert.deepEqual([defaults.vcpus, defaults.memoryMb, defaults.localGb], [8, 16384, 200]);
    assert.ok(defaults.traits.includes('COMPUTE_IMAGE_TYPE_QCOW2'));
    assert.ok(defaults.supportedInstances.some(([arch]) => arch === 'x86_64'));
    const sized = await driverWith({ vcpus: '64', memory_mb: '262144', local_gb: '4000' }).hostResources();
    assert.deepEqual([sized.vcpus, sized.memoryMb, sized.localGb], [64, 262144, 4000]);
    assert.equal((sized.cpuInfo.topology as { cores: number }).cores, 64);
  });

  it('supports every capability of the contract', () => {
    const driver = driverWith();
    assert.ok(Object.values(driver.capabilities).every((v) => v === true));
    assert.deepEqual(Object.keys(driver.capabilities).sort(), Object.keys(FAKE_CAPABILITIES).sort());
  });

  it('refuses bad options with the option named', () => {
    assert.throws(() => fakeDriverSettings(new Config({ fake_driver: { vcpus: '0' } }, {})), (e: Error) => e instanceof BadRequest && /vcpus/.test(e.message));
    assert.throws(() => fakeDriverSettings(new Config({ fake_driver: { spawn_failure_rate: '1.5' } }, {})), /spawn_failure_rate/);
    assert.throws(() => fakeDriverSettings(new Config({ fake_driver: { spawn_delay_ms: '-1' } }, {})), /spawn_delay_ms/);
    assert.throws(() => fakeDriverSettings(new Config({ fake_driver: { fail_spawn_name_pattern: '(' } }, {})), /fail_spawn_name_pattern/);
  });

  it('keeps instances in memory: spawn, power state, list, destroy (idempotent)', async () => {
    const driver = driverWith();
    await driver.init();
    assert.equal(await driver.powerState('nope'), null);
    await driver.spawn(spec('a'));
    await driver.spawn(spec('b'));
    await driver.spawn(spec('a')); // a repeated spawn of a running instance changes nothing
    assert.deepEqual((await driver.listInstances()).sort(), ['uuid-a', 'uuid-b']);
    assert.equal(await driver.powerState('uuid-a'), PowerState.RUNNING);
    driver.setPowerState('uuid-a', PowerState.SHUTDOWN);
    assert.equal(await driver.powerState('uuid-a'), PowerState.SHUTDOWN);
    await driver.destroy('uuid-a');
    await driver.destroy('uuid-a'); // already gone: still fine
    await driver.destroy('never-existed');
    assert.deepEqual(await driver.listInstances(), ['uuid-b']);
    assert.equal(await driver.powerState('uuid-a'), null);
  });

  it('fails spawns of instances whose name matches fail_spawn_name_pattern, leaving nothing behind', async () => {
    const driver = driverWith({ fail_spawn_name_pattern: '^fail-' });
    await assert.rejects(driver.spawn(spec('fail-1')), (e: Error) => e instanceof InternalError && /fail_spawn_name_pattern/.test(e.message));
    await driver.spawn(spec('ok-fail-1'));
    assert.deepEqual(await driver.listInstances(), ['uuid-ok-fail-1']);
  });

  it('fails spawns at spawn_failure_rate', async () => {
    const draws = [0.1, 0.9, 0.29, 0.31];
    const driver = driverWith({ spawn_failure_rate: '0.3' }, () => draws.shift()!);
    const results = await Promise.allSettled(['a', 'b', 'c', 'd'].map((n) => driver.spawn(spec(n))));
    assert.deepEqual(results.map((r) => r.status), ['rejected', 'fulfilled', 'rejected', 'fulfilled']);
    assert.deepEqual((await driver.listInstances()).sort(), ['uuid-b', 'uuid-d']);
    const never = driverWith({ spawn_failure_rate: '0' }, () => 0);
    await never.spawn(spec('x'));
    const always = driverWith({ spawn_failure_rate: '1' }, () => 0.999);
    await assert.rejects(always.spawn(spec('x')), /spawn_failure_rate/);
  });

  it('takes spawn_delay_ms and destroy_delay_ms; a destroy during a spawn wins', async () => {
    const driver = driverWith({ spawn_delay_ms: '80', destroy_delay_ms: '40' });
    const started = Date.now();
    await driver.spawn(spec('slow'));
    assert.ok(Date.now() - started >= 70, 'spawn waited');
    const t = Date.now();
    await driver.destroy('uuid-slow');
    assert.ok(Date.now() - t >= 30, 'destroy waited');
    const spawning = driver.spawn(spec('raced'));
    await driver.destroy('uuid-raced');
    await assert.rejects(spawning, /destroyed while it was being spawned/);
    assert.deepEqual(await driver.listInstances(), []);
  });

  it('close() ends pending delays and refuses further work', async () => {
    const driver = driverWith({ spawn_delay_ms: '10000' });
    const pending = driver.spawn(spec('a'));
    await driver.close();
    await assert.rejects(pending, ServiceUnavailable);
    await assert.rejects(driver.spawn(spec('b')), ServiceUnavailable);
  });
});

describe('virt driver registry', () => {
  it('creates the driver [compute] driver names, fake by default', async () => {
    const config = new Config({}, {});
    assert.ok(virtDriverNames().includes('fake'));
    const driver = await createVirtDriver({ config, host: 'h1', logger });
    assert.equal(driver.name, 'fake');
    const named = await createVirtDriver({ config: new Config({ compute: { driver: 'fake' }, fake_driver: { vcpus: '3' } }, {}), host: 'h1', logger });
    assert.equal((await named.hostResources()).vcpus, 3);
  });

  it('refuses an unknown driver, listing the known ones', async () => {
    await assert.rejects(createVirtDriver({ config: new Config({ compute: { driver: 'vmware' } }, {}), host: 'h', logger }),
      (e: Error) => e instanceof BadRequest && /unknown virt driver "vmware".*fake/.test(e.message));
    const status = await probeVirtDriver('vmware', new Config({}, {}));
    assert.equal(status.operational, false);
  });

  it('probes each driver once and refuses one that is not operational', async () => {
    let probes = 0;
    registerVirtDriver('test-broken', {
      probe: async () => { probes++; return { operational: false, info: 'no hypervisor here' }; },
      create: () => { throw new Error('must not be created'); },
    });
    const config = new Config({ compute: { driver: 'test-broken' } }, {});
    await assert.rejects(createVirtDriver({ config, host: 'h', logger }), (e: Error) => e instanceof ServiceUnavailable && /no hypervisor here/.test(e.message));
    await assert.rejects(createVirtDriver({ config, host: 'h', logger }), ServiceUnavailable);
    const all = await probeVirtDrivers(config);
    assert.equal(probes, 1);
    assert.deepEqual(all.find((s) => s.name === 'fake'), { name: 'fake', operational: true, info: 'in-memory fake hypervisor' });
  });
});
