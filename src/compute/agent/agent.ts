// The compute agent: one per hypervisor host (Nova's nova-compute). It runs a virt driver,
// serves computeTopic(host) for the conductor, registers its host with the conductor (which
// records the service and node and keeps the host's resource provider in Placement), then
// heartbeats and reports power states. It never touches the database, so a thousand fake
// agents in one process cost a thousand small timers and no connections.
//   [compute] driver (fake)                   the virt driver, from the registry (src/compute/virt)
//   [DEFAULT] report_interval (10 s)          heartbeat period; fractions of a second allowed
//   [DEFAULT] sync_power_state_interval (600 s) power-state report period; < 0 disables, 0 = 60 s
//   [DEFAULT] rpc_response_timeout (60 s)     the longest an RPC call to the conductor waits
//   [DEFAULT] cpu_allocation_ratio (4.0), ram_allocation_ratio (1.0), disk_allocation_ratio (1.0)
//   [DEFAULT] reserved_host_memory_mb (512), reserved_host_disk_mb (0), reserved_host_cpus (0)
//   [DEFAULT] my_ip (127.0.0.1)               the host_ip os-hypervisors shows
import { loadavg, uptime } from 'node:os';
import type { Config } from '../../core/config.js';
import { BadRequest, Conflict, NotFound } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import type { Bus, Subscription } from '../../bus/types.js';
import { NoSuchMethod } from '../../bus/errors.js';
import { CONDUCTOR_TOPIC, computeTopic, conductorClient, PowerState, type ComputeAgentRpc, type HostReport, type InstanceSpec, type InstanceVif, type PowerStateValue } from '../rpc.js';
import type { PowerOperation, VirtDriver } from '../virt/driver.js';

const POWER_OPERATIONS: PowerOperation[] = ['stop', 'start', 'reboot-soft', 'reboot-hard', 'pause', 'unpause', 'suspend', 'resume'];
import { createVirtDriver } from '../virt/index.js';
import { checkChunk } from '../conductor/image-data.js';
import { HeldSnapshots } from './held-snapshots.js';

export interface ComputeAgentOptions {
  config: Config;
  bus: Bus;
  /** The compute host name (Nova's CONF.host): the service's host and the topic suffix. */
  host: string;
  /** A driver to run instead of the one [compute] driver names (tests, in-process fake hosts). */
  driver?: VirtDriver;
  logger: Logger;
  /** The hypervisor (node) name; the host name by default. */
  nodename?: string;
  dataDir?: string;
}

export interface ComputeAgent {
  readonly host: string;
  readonly driver: VirtDriver;
  /** Settles when the conductor accepted the registration (it retries until then, or until close). */
  readonly registered: Promise<{ serviceId: string; nodeId: string }>;
  /** Builds the report the agent registers with (also used to re-register after a change). */
  hostReport(): Promise<HostReport>;
  /** Sends the power states of every instance now (the periodic task does the same). */
  syncPowerStates(): Promise<void>;
  close(): Promise<void>;
}

/** Seconds → milliseconds of a [DEFAULT] period option; fractions allowed. */
function periodMs(config: Config, option: string, fallback: number): number {
  const seconds = config.getInt('DEFAULT', option, fallback);
  return seconds * 1000;
}

function ratio(config: Config, option: string, fallback: number): number {
  const value = config.getInt('DEFAULT', option, fallback);
  if (!(value > 0)) throw new BadRequest(`[DEFAULT] ${option} must be a positive number, got ${value}`);
  return value;
}

function reserved(config: Config, option: string, fallback: number): number {
  const value = config.getInt('DEFAULT', option, fallback);
  if (!Number.isInteger(value) || value < 0) throw new BadRequest(`[DEFAULT] ${option} must be an integer >= 0, got ${value}`);
  return value;
}

/** The report the agent registers with: what the driver sees plus the operator's ratios and reservations. */
export async function buildHostReport(config: Config, host: string, nodename: string, driver: VirtDriver): Promise<HostReport> {
  const resources = await driver.hostResources();
  return {
    host,
    nodename,
    hypervisorType: resources.hypervisorType,
    hypervisorVersion: resources.hypervisorVersion,
    hostIp: config.get('DEFAULT', 'my_ip', '127.0.0.1'),
    vcpus: resources.vcpus,
    memoryMb: resources.memoryMb,
    localGb: resources.localGb,
    cpuInfo: resources.cpuInfo,
    supportedInstances: resources.supportedInstances,
    // COMPUTE_NODE marks a compute node's root provider (as Nova sets it); the driver adds what it can do.
    traits: [...new Set(['COMPUTE_NODE', ...resources.traits])],
    capabilities: { ...driver.capabilities },
    cpuAllocationRatio: ratio(config, 'cpu_allocation_ratio', 4.0),
    ramAllocationRatio: ratio(config, 'ram_allocation_ratio', 1.0),
    diskAllocationRatio: ratio(config, 'disk_allocation_ratio', 1.0),
    reservedHostMemoryMb: reserved(config, 'reserved_host_memory_mb', 512),
    reservedHostDiskMb: reserved(config, 'reserved_host_disk_mb', 0),
    reservedHostCpus: reserved(config, 'reserved_host_cpus', 0),
  };
}

/** A random point in [0, ms): spreads the periodic work of many agents over the period. */
const jitter = (ms: number) => Math.floor(Math.random() * ms);

export async function startComputeAgent(options: ComputeAgentOptions): Promise<ComputeAgent> {
  const { config, bus, host, logger } = options;
  if (!host || typeof host !== 'string') throw new BadRequest('a compute agent needs a host name');
  const nodename = options.nodename ?? host;
  const reportMs = periodMs(config, 'report_interval', 10);
  if (!(reportMs > 0)) throw new BadRequest(`[DEFAULT] report_interval must be a positive number of seconds, got ${reportMs / 1000}`);
  const syncSeconds = config.getInt('DEFAULT', 'sync_power_state_interval', 600);
  const syncMs = syncSeconds < 0 ? 0 : (syncSeconds === 0 ? 60_000 : syncSeconds * 1000);
  const rpcTimeoutMs = periodMs(config, 'rpc_response_timeout', 60);
  const driver = options.driver ?? await createVirtDriver({ config, host, logger, dataDir: options.dataDir, bus });
  const conductor = conductorClient(bus, rpcTimeoutMs);
  const report = () => buildHostReport(config, host, nodename, driver);
  let subscription: Subscription;
  try {
    await driver.init();
    await report(); // checks the ratios and reservations now, so a bad value fails the start rather than a later timer
    subscription = await bus.serve(computeTopic(host), agentHandlers(driver));
  } catch (err) {
    await driver.close().catch(() => undefined);
    throw err;
  }

  let closed = false;
  const timers = new Set<NodeJS.Timeout>();
  const later = (ms: number, fn: () => void) => {
    const t = setTimeout(() => { timers.delete(t); fn(); }, ms);
    timers.add(t);
    return t;
  };

  // Heartbeats: every report_interval, the first at a random point of the period so many agents spread out.
  // A heartbeat that fails is logged once until one succeeds again (the conductor may be restarting).
  let heartbeatFailing = false;
  const heartbeat = async () => {
    try {
      await bus.call(CONDUCTOR_TOPIC, 'heartbeat', { host }, { timeoutMs: Math.max(reportMs, 1000) });
      if (heartbeatFailing) logger.info('heartbeats reach the conductor again', { host });
      heartbeatFailing = false;
    } catch (err) {
      if (!heartbeatFailing) {
        // NotFound: the service was deleted while this agent runs; as in Nova it comes back when the agent restarts.
        logger.warn(err instanceof NotFound ? 'the conductor no longer knows this service (deleted?); restart the agent to register again' : 'heartbeat failed', { host, error: (err as Error).message });
      }
      heartbeatFailing = true;
    }
  };
  const scheduleHeartbeat = (delay: number) => later(delay, () => {
    if (closed) return;
    void heartbeat().finally(() => { if (!closed) scheduleHeartbeat(reportMs); });
  });

  let syncUnsupported = false;
  const syncPowerStates = async () => {
    if (closed) return;
    const uuids = await driver.listInstances();
    const states: Record<string, PowerStateValue> = {};
    for (const uuid of uuids) states[uuid] = (await driver.powerState(uuid)) ?? PowerState.NOSTATE;
    await conductor.syncPowerStates({ host, states });
  };
  const scheduleSync = (delay: number) => later(delay, () => {
    if (closed) return;
    void syncPowerStates()
      .then(() => { syncUnsupported = false; })
      .catch((err) => {
        if (err instanceof NoSuchMethod) {
          if (!syncUnsupported) logger.debug('the conductor does not take power-state reports yet', { host });
          syncUnsupported = true;
        } else {
          logger.warn('power-state sync failed', { host, error: (err as Error).message });
        }
      })
      .finally(() => { if (!closed) scheduleSync(syncMs); });
  });

  // Registration: retried with growing waits until a conductor answers (the controller may start after the agents).
  // Each attempt waits longer for an answer too, so a busy conductor (a thousand agents registering) is not flooded.
  let stopRegistering: (() => void) | undefined;
  const registered = new Promise<{ serviceId: string; nodeId: string }>((resolve, reject) => {
    stopRegistering = () => reject(new Error(`compute agent ${host} closed before it registered`));
    let attempt = 0;
    const tryRegister = async () => {
      if (closed) return;
      const timeoutMs = Math.min(rpcTimeoutMs, 10_000 * 2 ** Math.min(attempt, 6));
      try {
        const ids = await bus.call<{ serviceId: string; nodeId: string }>(CONDUCTOR_TOPIC, 'registerHost', { report: await report() }, { timeoutMs });
        if (closed) return;
        logger.info('registered with the conductor', { host, serviceId: ids.serviceId, nodeId: ids.nodeId });
        resolve(ids);
        scheduleHeartbeat(jitter(reportMs));
        if (syncMs > 0) scheduleSync(Math.min(reportMs, syncMs) + jitter(syncMs));
      } catch (err) {
        if (closed) return;
        const wait = Math.min(30_000, 500 * 2 ** attempt) * (0.5 + Math.random());
        if (attempt === 0 || attempt % 5 === 0) logger.warn('registration with the conductor failed; retrying', { host, attempt: attempt + 1, error: (err as Error).message, retryInMs: Math.round(wait) });
        attempt++;
        later(wait, () => void tryRegister());
      }
    };
    void tryRegister();
  });
  registered.catch(() => undefined); // a close before registration is not an unhandled rejection

  return {
    host, driver, registered,
    hostReport: report,
    syncPowerStates,
    close: async () => {
      if (closed) return;
      closed = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      stopRegistering?.();
      await subscription.close();
      await driver.close();
    },
  };
}

/** This machine's uptime in uptime(1)'s form: " 08:32:11 up 93 days, 18:25,  load average: 0.20, 0.12, 0.14". */
export function uptimeLine(now = new Date(), seconds = uptime(), load = loadavg()): string {
  const two = (n: number) => String(n).padStart(2, '0');
  const clock = `${two(now.getHours())}:${two(now.getMinutes())}:${two(now.getSeconds())}`;
  const days = Math.floor(seconds / 86400);
  const hours = Math.floor((seconds % 86400) / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  const since = `${days > 0 ? `${days} day${days === 1 ? '' : 's'}, ` : ''}${hours > 0 ? `${hours}:${two(minutes)}` : `${minutes} min`}`;
  return ` ${clock} up ${since},  load average: ${load.map((l) => l.toFixed(2)).join(', ')}`;
}

/** The methods an agent serves on computeTopic(host): each one goes to the driver. */
export function agentHandlers(driver: VirtDriver, snapshots = new HeldSnapshots()): Record<keyof ComputeAgentRpc, (args: any) => Promise<unknown>> {
  const rpc: ComputeAgentRpc = {
    spawnInstance: async ({ instance }: { instance: InstanceSpec }) => {
      if (!instance || typeof instance.uuid !== 'string' || typeof instance.name !== 'string') {
        throw new BadRequest('spawnInstance needs an instance with a uuid and a name');
      }
      await driver.spawn(instance);
      return { powerState: (await driver.powerState(instance.uuid)) ?? PowerState.RUNNING };
    },
    destroyInstance: async ({ uuid }: { uuid: string }) => {
      if (typeof uuid !== 'string') throw new BadRequest('destroyInstance needs a uuid');
      await snapshots.releaseInstance(uuid);
      await driver.destroy(uuid);
    },
    getPowerState: async ({ uuid }: { uuid: string }) => {
      if (typeof uuid !== 'string') throw new BadRequest('getPowerState needs a uuid');
      return { powerState: await driver.powerState(uuid) };
    },
    listInstances: async () => ({ uuids: await driver.listInstances() }),
    changePower: async ({ uuid, operation, timeoutSeconds }: { uuid: string; operation: PowerOperation; timeoutSeconds?: number }) => {
      if (typeof uuid !== 'string' || !POWER_OPERATIONS.includes(operation)) throw new BadRequest(`changePower needs a uuid and one of ${POWER_OPERATIONS.join(', ')}`);
      return { powerState: await driver.changePower(uuid, operation, { timeoutSeconds }) };
    },
    consoleOutput: async ({ uuid, length }: { uuid: string; length?: number }) => {
      if (typeof uuid !== 'string') throw new BadRequest('consoleOutput needs a uuid');
      return { output: await driver.consoleOutput(uuid, length) };
    },
    setAdminPassword: async ({ uuid, password }: { uuid: string; password: string }) => {
      if (typeof uuid !== 'string' || typeof password !== 'string') throw new BadRequest('setAdminPassword needs a uuid and a password');
      await driver.setAdminPassword(uuid, password);
    },
    triggerCrashDump: async ({ uuid }: { uuid: string }) => {
      if (typeof uuid !== 'string') throw new BadRequest('triggerCrashDump needs a uuid');
      await driver.triggerCrashDump(uuid);
    },
    attachInterface: async ({ uuid, vif }: { uuid: string; vif: InstanceVif }) => {
      if (typeof uuid !== 'string' || typeof vif?.portId !== 'string') throw new BadRequest('attachInterface needs a uuid and a vif');
      if (!driver.attachInterface) throw new Conflict(`The ${driver.name} driver cannot attach interfaces`);
      await driver.attachInterface(uuid, vif);
    },
    detachInterface: async ({ uuid, portId }: { uuid: string; portId: string }) => {
      if (typeof uuid !== 'string' || typeof portId !== 'string') throw new BadRequest('detachInterface needs a uuid and a portId');
      if (!driver.detachInterface) throw new Conflict(`The ${driver.name} driver cannot detach interfaces`);
      await driver.detachInterface(uuid, portId);
    },
    getHostUptime: async () => ({ uptime: uptimeLine() }),
    getVncConsole: async ({ uuid }: { uuid: string }) => {
      if (typeof uuid !== 'string') throw new BadRequest('getVncConsole needs a uuid');
      return driver.getVncConsole(uuid);
    },
    getDiagnostics: async ({ uuid }: { uuid: string }) => {
      if (typeof uuid !== 'string') throw new BadRequest('getDiagnostics needs a uuid');
      // As Nova's compute manager: only a running guest has diagnostics; a missing one is NOSTATE ("pending").
      const powerState = (await driver.powerState(uuid)) ?? PowerState.NOSTATE;
      if (powerState !== PowerState.RUNNING) return { powerState, supported: true, diagnostics: null };
      if (!driver.diagnostics) return { powerState, supported: false, diagnostics: null };
      return { powerState, supported: true, diagnostics: await driver.diagnostics(uuid) };
    },
    snapshotInstance: async ({ uuid }: { uuid: string }) => {
      if (typeof uuid !== 'string') throw new BadRequest('snapshotInstance needs a uuid');
      const snapshot = await driver.snapshot(uuid);
      return { snapshotId: snapshots.hold(uuid, snapshot), size: snapshot.size, diskFormat: snapshot.diskFormat, containerFormat: snapshot.containerFormat };
    },
    readSnapshotChunk: async (args: { snapshotId: string; offset: number; length: number }) => {
      const { snapshotId, offset, length } = args ?? ({} as any);
      if (typeof snapshotId !== 'string') throw new BadRequest('readSnapshotChunk needs a snapshotId');
      checkChunk('readSnapshotChunk', offset, length);
      return { data: (await snapshots.read(snapshotId, offset, length)).toString('base64') };
    },
    releaseSnapshot: async ({ snapshotId }: { snapshotId: string }) => {
      if (typeof snapshotId !== 'string') throw new BadRequest('releaseSnapshot needs a snapshotId');
      await snapshots.release(snapshotId);
    },
    rescueInstance: async ({ uuid, image, adminPass }: { uuid: string; image: { id: string; properties: Record<string, string> }; adminPass: string | null }) => {
      if (typeof uuid !== 'string' || !image || typeof image.id !== 'string') throw new BadRequest('rescueInstance needs a uuid and an image');
      return { powerState: await driver.rescue(uuid, image, adminPass ?? null) };
    },
    unrescueInstance: async ({ uuid }: { uuid: string }) => {
      if (typeof uuid !== 'string') throw new BadRequest('unrescueInstance needs a uuid');
      return { powerState: await driver.unrescue(uuid) };
    },
    rebuildInstance: async ({ instance, preserveEphemeral }: { instance: InstanceSpec; preserveEphemeral: boolean }) => {
      if (!instance || typeof instance.uuid !== 'string') throw new BadRequest('rebuildInstance needs an instance');
      return { powerState: await driver.rebuild(instance, { preserveEphemeral: preserveEphemeral === true }) };
    },
    migrateDiskAndPowerOff: async ({ uuid, flavor, timeoutSeconds }: { uuid: string; flavor: InstanceSpec['flavor']; timeoutSeconds?: number }) => {
      if (typeof uuid !== 'string' || !flavor || typeof flavor.rootGb !== 'number') throw new BadRequest('migrateDiskAndPowerOff needs a uuid and a flavor');
      await driver.migrateDiskAndPowerOff(uuid, flavor, { timeoutSeconds });
    },
    finishMigration: async ({ instance, powerOn, sourceHost }: { instance: InstanceSpec; powerOn: boolean; sourceHost?: string }) => {
      if (!instance || typeof instance.uuid !== 'string' || typeof instance.name !== 'string') throw new BadRequest('finishMigration needs an instance with a uuid and a name');
      return { powerState: await driver.finishMigration(instance, powerOn !== false, { sourceHost: typeof sourceHost === 'string' ? sourceHost : undefined }) };
    },
    confirmMigration: async ({ uuid }: { uuid: string }) => {
      if (typeof uuid !== 'string') throw new BadRequest('confirmMigration needs a uuid');
      await driver.confirmMigration(uuid);
    },
    revertMigration: async ({ uuid }: { uuid: string }) => {
      if (typeof uuid !== 'string') throw new BadRequest('revertMigration needs a uuid');
      await driver.revertMigration(uuid);
    },
    finishRevertMigration: async ({ uuid, powerOn }: { uuid: string; powerOn: boolean }) => {
      if (typeof uuid !== 'string') throw new BadRequest('finishRevertMigration needs a uuid');
      return { powerState: await driver.finishRevertMigration(uuid, powerOn !== false) };
    },
    preLiveMigration: async ({ instance, sourceHost }: { instance: InstanceSpec; sourceHost: string }) => {
      if (!instance || typeof instance.uuid !== 'string' || typeof sourceHost !== 'string') throw new BadRequest('preLiveMigration needs an instance and a source host');
      await driver.prepareIncomingMigration(instance, sourceHost);
    },
    liveMigration: async ({ uuid, destHost, blockMigration, migrationUuid }: { uuid: string; destHost: string; blockMigration: boolean; migrationUuid: string }) => {
      if (typeof uuid !== 'string' || typeof destHost !== 'string' || typeof migrationUuid !== 'string') throw new BadRequest('liveMigration needs a uuid, a destination host and a migration uuid');
      await driver.liveMigrate(uuid, destHost, { blockMigration: blockMigration === true, migrationUuid });
    },
    liveMigrationJob: async ({ uuid }: { uuid: string }) => {
      if (typeof uuid !== 'string') throw new BadRequest('liveMigrationJob needs a uuid');
      return { job: await driver.liveMigrationJob(uuid) };
    },
    abortLiveMigration: async ({ uuid }: { uuid: string }) => {
      if (typeof uuid !== 'string') throw new BadRequest('abortLiveMigration needs a uuid');
      await driver.abortLiveMigration(uuid);
    },
    forceCompleteLiveMigration: async ({ uuid }: { uuid: string }) => {
      if (typeof uuid !== 'string') throw new BadRequest('forceCompleteLiveMigration needs a uuid');
      await driver.forceCompleteLiveMigration(uuid);
    },
    postLiveMigrationAtDestination: async ({ uuid, powerState }: { uuid: string; powerState: PowerStateValue }) => {
      if (typeof uuid !== 'string' || typeof powerState !== 'number') throw new BadRequest('postLiveMigrationAtDestination needs a uuid and a power state');
      return { powerState: await driver.finishIncomingMigration(uuid, powerState) };
    },
    rollbackLiveMigrationAtDestination: async ({ uuid }: { uuid: string }) => {
      if (typeof uuid !== 'string') throw new BadRequest('rollbackLiveMigrationAtDestination needs a uuid');
      await driver.rollbackIncomingMigration(uuid);
    },
  };
  return rpc;
}
