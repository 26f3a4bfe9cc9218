// The virt driver registry: a plain name → factory map (no switch statements). Each driver is
// probed once per process (is it usable here? KVM or TCG, binaries present...) and the answer
// is kept, so a thousand agents in one process do not probe a thousand times.
//   [compute] driver = fake | qemu      which driver an agent runs (qemu: src/compute/virt/qemu)
import type { Config } from '../../core/config.js';
import { BadRequest, ServiceUnavailable } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import type { VirtDriver } from './driver.js';
import { FakeDriver, fakeDriverSettings } from './fake.js';
import { qemuDriverFactory } from './qemu/index.js';
import type { Bus } from '../../bus/types.js';

export type { VirtDriver, DriverCapabilities, HostResources } from './driver.js';
export { NO_CAPABILITIES } from './driver.js';

/** What a factory gets to build a driver for one host. */
export interface VirtDriverContext {
  config: Config;
  /** The compute host the agent runs as. */
  host: string;
  logger: Logger;
  /** Where the driver may keep files (instances, image cache), when it needs any. */
  dataDir?: string;
  /** The agent's message bus (drivers that fetch images or serve metadata over it: qemu). */
  bus?: Bus;
}

/** The result of probing a driver: whether it can run in this process, and what it found. */
export interface DriverStatus {
  name: string;
  operational: boolean;
  /** Why it is not operational, or what it found (e.g. "KVM", "TCG"). */
  info: string;
}

export interface VirtDriverFactory {
  /** Checks once whether the driver can work here; must not throw (answer operational: false instead). */
  probe(config: Config): Promise<Omit<DriverStatus, 'name'>>;
  create(context: VirtDriverContext): VirtDriver;
}

const factories = new Map<string, VirtDriverFactory>([
  ['fake', {
    // Nothing to find on the machine; its options are checked when a driver is created.
    probe: async () => ({ operational: true, info: 'in-memory fake hypervisor' }),
    create: ({ config }) => new FakeDriver(fakeDriverSettings(config)),
  }],
  ['qemu', qemuDriverFactory],
]);

const probes = new Map<string, Promise<DriverStatus>>();

/** Adds a driver to the registry (the qemu driver registers itself here). */
export function registerVirtDriver(name: string, factory: VirtDriverFactory): void {
  factories.set(name, factory);
  probes.delete(name);
}

export function virtDriverNames(): string[] {
  return [...factories.keys()];
}

/** Probes one driver (once per process; later calls get the same answer). */
export function probeVirtDriver(name: string, config: Config): Promise<DriverStatus> {
  const factory = factories.get(name);
  if (!factory) return Promise.resolve({ name, operational: false, info: `unknown virt driver (known: ${virtDriverNames().join(', ')})` });
  let status = probes.get(name);
  if (!status) {
    status = factory.probe(config)
      .then((s) => ({ name, ...s }))
      .catch((err) => ({ name, operational: false, info: `probe failed: ${(err as Error).message}` }));
    probes.set(name, status);
  }
  return status;
}

/** Probes every registered driver, for `nubo up` to print what it found usable. */
export function probeVirtDrivers(config: Config): Promise<DriverStatus[]> {
  return Promise.all(virtDriverNames().map((name) => probeVirtDriver(name, config)));
}

/** Builds the driver named by `name` (default: [compute] driver, else fake) after checking its probe. */
export async function createVirtDriver(context: VirtDriverContext, name = context.config.get('compute', 'driver', 'fake')): Promise<VirtDriver> {
  const factory = factories.get(name);
  if (!factory) throw new BadRequest(`[compute] driver: unknown virt driver "${name}" (known: ${virtDriverNames().join(', ')})`);
  const status = await probeVirtDriver(name, context.config);
  if (!status.operational) {
    context.logger.warn('virt driver is not operational', { driver: name, reason: status.info });
    throw new ServiceUnavailable(`virt driver "${name}" is not operational on this host: ${status.info}`);
  }
  return factory.create(context);
}
