// The fake hypervisor (after Nova's virt/fake.py): instances live in memory, nothing runs.
// It backs the integration tests and scale simulation (a thousand fake hosts in one process),
// so it is cheap per host, and it can be told to be slow or to fail:
//   [fake_driver] vcpus (8), memory_mb (16384), local_gb (200)    the host's size
//   [fake_driver] spawn_delay_ms (0), destroy_delay_ms (0)         how long spawn/destroy take
//   [fake_driver] spawn_failure_rate (0..1, 0)                     spawns that fail at random
//   [fake_driver] fail_spawn_name_pattern (regex, unset)           spawns of instances whose name matches fail
//   [fake_driver] live_migration_duration_ms (0)                   how long a live migration's transfer takes
//   [fake_driver] live_migration_fails (false)                     live migrations from this host fail at the end of the transfer
import type { Config } from '../../core/config.js';
import { BadRequest, Conflict, InternalError, NotFound, ServiceUnavailable } from '../../core/errors.js';
import { PowerState, type InstanceSpec, type PowerStateValue } from '../rpc.js';
import type { DriverCapabilities, HostResources, LiveMigrationJob, PowerOperation, VirtDriver } from './driver.js';

export const FAKE_HYPERVISOR_TYPE = 'fake';
export const FAKE_HYPERVISOR_VERSION = 1000;

/** The fake driver can do everything the contract names. */
export const FAKE_CAPABILITIES: DriverCapabilities = {
  supportsPause: true, supportsSuspend: true, supportsSnapshot: true, supportsRescue: true, supportsResize: true,
  supportsLiveMigration: true, supportsEvacuate: true, supportsConsoleLog: true, supportsVncConsole: true,
};

/** Traits the fake host's resource provider gets (what Nova's compute derives from the fake driver's capabilities). */
const FAKE_TRAITS = [
  'COMPUTE_IMAGE_TYPE_RAW', 'COMPUTE_IMAGE_TYPE_QCOW2', 'COMPUTE_IMAGE_TYPE_ISO', 'COMPUTE_IMAGE_TYPE_AMI',
  'COMPUTE_IMAGE_TYPE_AKI', 'COMPUTE_IMAGE_TYPE_ARI', 'COMPUTE_IMAGE_TYPE_VMDK',
  'COMPUTE_NET_ATTACH_INTERFACE', 'COMPUTE_NET_ATTACH_INTERFACE_WITH_TAG', 'COMPUTE_DEVICE_TAGGING',
  'COMPUTE_VOLUME_ATTACH', 'COMPUTE_VOLUME_ATTACH_WITH_TAG', 'COMPUTE_VOLUME_EXTEND', 'COMPUTE_VOLUME_MULTI_ATTACH',
  'COMPUTE_TRUSTED_CERTS', 'COMPUTE_SAME_HOST_COLD_MIGRATE', 'COMPUTE_RESCUE_BFV',
];

export interface FakeDriverSettings {
  vcpus: number;
  memoryMb: number;
  localGb: number;
  spawnDelayMs: number;
  destroyDelayMs: number;
  /** How long each power operation takes ([fake_driver] action_delay_ms). */
  actionDelayMs: number;
  spawnFailureRate: number;
  failSpawnNamePattern: RegExp | null;
  /** How long a live migration's transfer takes ([fake_driver] live_migration_duration_ms). */
  liveMigrationDurationMs: number;
  /** Live migrations from this host fail when the transfer ends ([fake_driver] live_migration_fails). */
  liveMigrationFails: boolean;
}

/** Reads and checks the [fake_driver] options; a bad value is a BadRequest naming the option. */
export function fakeDriverSettings(config: Config): FakeDriverSettings {
  const count = (option: string, fallback: number, min: number) => {
    const value = config.getInt('fake_driver', option, fallback);
    if (!Number.isInteger(value) || value < min) throw new BadRequest(`[fake_driver] ${option} must be an integer >= ${min}, got ${value}`);
    return value;
  };
  const delay = (option: string) => {
    const value = config.getInt('fake_driver', option, 0);
    if (value < 0) throw new BadRequest(`[fake_driver] ${option} must be >= 0, got ${value}`);
    return value;
  };
  const rate = config.getInt('fake_driver', 'spawn_failure_rate', 0);
  if (!(rate >= 0 && rate <= 1)) throw new BadRequest(`[fake_driver] spawn_failure_rate must be between 0 and 1, got ${rate}`);
  const pattern = config.getOptional('fake_driver', 'fail_spawn_name_pattern');
  let failSpawnNamePattern: RegExp | null = null;
  if (pattern !== undefined && pattern !== '') {
    try {
      failSpawnNamePattern = new RegExp(pattern);
    } catch (err) {
      throw new BadRequest(`[fake_driver] fail_spawn_name_pattern is not a valid regular expression: ${(err as Error).message}`);
    }
  }
  return {
    vcpus: count('vcpus', 8, 1),
    memoryMb: count('memory_mb', 16384, 1),
    localGb: count('local_gb', 200, 1),
    spawnDelayMs: delay('spawn_delay_ms'),
    destroyDelayMs: delay('destroy_delay_ms'),
    actionDelayMs: delay('action_delay_ms'),
    spawnFailureRate: rate,
    failSpawnNamePattern,
    liveMigrationDurationMs: delay('live_migration_duration_ms'),
    liveMigrationFails: config.getBool('fake_driver', 'live_migration_fails', false),
  };
}

interface FakeInstance { name: string; powerState: PowerStateValue; console: string[]; adminPassword?: string; memoryMb: number; diskGb: number }

/** A live migration job on the source: its progress, and the timer that moves it on. */
interface FakeJob { job: LiveMigrationJob; timer?: NodeJS.Timeout; startedAt: number }

const MIB = 1024 * 1024;

/** The power state each operation ends in, and the states it may start from. */
const POWER_OPERATIONS: Record<PowerOperation, { to: PowerStateValue; from: PowerStateValue[] }> = {
  stop: { to: PowerState.SHUTDOWN, from: [PowerState.RUNNING, PowerState.PAUSED, PowerState.SUSPENDED, PowerState.CRASHED, PowerState.SHUTDOWN] },
  start: { to: PowerState.RUNNING, from: [PowerState.SHUTDOWN, PowerState.CRASHED, PowerState.RUNNING] },
  'reboot-soft': { to: PowerState.RUNNING, from: [PowerState.RUNNING] },
  'reboot-hard': { to: PowerState.RUNNING, from: [PowerState.RUNNING, PowerState.PAUSED, PowerState.SUSPENDED, PowerState.SHUTDOWN, PowerState.CRASHED] },
  pause: { to: PowerState.PAUSED, from: [PowerState.RUNNING, PowerState.PAUSED] },
  unpause: { to: PowerState.RUNNING, from: [PowerState.PAUSED, PowerState.RUNNING] },
  suspend: { to: PowerState.SUSPENDED, from: [PowerState.RUNNING, PowerState.SUSPENDED] },
  resume: { to: PowerState.RUNNING, from: [PowerState.SUSPENDED, PowerState.RUNNING] },
};

export class FakeDriver implements VirtDriver {
  readonly name = 'fake';
  readonly capabilities: DriverCapabilities = FAKE_CAPABILITIES;
  private readonly instances = new Map<string, FakeInstance>();
  /** Spawns under way; a destroy meanwhile cancels them (the spawn then fails, leaving nothing behind). */
  private readonly spawning = new Map<string, { cancelled: boolean }>();
  /** Instances prepared to arrive by live migration (the destination's paused, incoming guest). */
  private readonly incoming = new Map<string, { spec: InstanceSpec; sourceHost: string }>();
  /** Live migration jobs of instances leaving this host (the last one per instance, kept after it ends). */
  private readonly jobs = new Map<string, FakeJob>();
  private readonly waits = new Set<{ timer: NodeJS.Timeout; reject: (err: Error) => void }>();
  private closed = false;

  constructor(readonly settings: FakeDriverSettings, private readonly random: () => number = Math.random) {}

  static fromConfig(config: Config): FakeDriver {
    return new FakeDriver(fakeDriverSettings(config));
  }

  async init(): Promise<void> {
    this.closed = false;
  }

  async hostResources(): Promise<HostResources> {
    const { vcpus, memoryMb, localGb } = this.settings;
    return {
      hypervisorType: FAKE_HYPERVISOR_TYPE,
      hypervisorVersion: FAKE_HYPERVISOR_VERSION,
      vcpus, memoryMb, localGb,
      cpuInfo: { arch: 'x86_64', model: 'fake', vendor: 'fake', topology: { cells: 1, sockets: 1, cores: vcpus, threads: 1 }, features: [] },
      supportedInstances: [['x86_64', 'fake', 'hvm'], ['i686', 'fake', 'hvm']],
      traits: [...FAKE_TRAITS],
    };
  }

  async spawn(instance: InstanceSpec): Promise<void> {
    this.assertOpen();
    if (this.instances.has(instance.uuid)) return; // a repeated spawn of a running instance (a resumed workflow) is a no-op
    const attempt = { cancelled: false };
    this.spawning.set(instance.uuid, attempt);
    try {
      await this.wait(this.settings.spawnDelayMs);
      const pattern = this.settings.failSpawnNamePattern;
      if (pattern && pattern.test(instance.name)) {
        throw new InternalError(`Fake driver: spawn of instance ${instance.uuid} failed: its name "${instance.name}" matches [fake_driver] fail_spawn_name_pattern`);
      }
      if (this.settings.spawnFailureRate > 0 && this.random() < this.settings.spawnFailureRate) {
        throw new InternalError(`Fake driver: spawn of instance ${instance.uuid} failed (injected by [fake_driver] spawn_failure_rate)`);
      }
      if (attempt.cancelled) throw new InternalError(`Fake driver: instance ${instance.uuid} was destroyed while it was being spawned`);
      this.instances.set(instance.uuid, { name: instance.name, powerState: PowerState.RUNNING, console: [`fake console of ${instance.name} (${instance.uuid})`, 'booted'], memoryMb: instance.flavor.memoryMb, diskGb: instance.flavor.rootGb });
    } finally {
      if (this.spawning.get(instance.uuid) === attempt) this.spawning.delete(instance.uuid);
    }
  }

  async destroy(uuid: string): Promise<void> {
    this.assertOpen();
    const attempt = this.spawning.get(uuid);
    if (attempt) attempt.cancelled = true;
    await this.wait(this.settings.destroyDelayMs);
    this.instances.delete(uuid);
    this.incoming.delete(uuid);
    const job = this.jobs.get(uuid);
    if (job?.timer) clearTimeout(job.timer);
    this.jobs.delete(uuid);
  }

  async powerState(uuid: string): Promise<PowerStateValue | null> {
    return this.instances.get(uuid)?.powerState ?? null;
  }

  async listInstances(): Promise<string[]> {
    return [...new Set([...this.instances.keys(), ...this.incoming.keys()])];
  }

  async changePower(uuid: string, operation: PowerOperation): Promise<PowerStateValue> {
    this.assertOpen();
    await this.wait(this.settings.actionDelayMs);
    const instance = this.get(uuid);
    const rule = POWER_OPERATIONS[operation];
    if (!rule.from.includes(instance.powerState)) {
      throw new Conflict(`Fake driver: cannot ${operation} instance ${uuid} in power state ${instance.powerState}`);
    }
    instance.powerState = rule.to;
    instance.console.push(`${operation} done`);
    return instance.powerState;
  }

  async consoleOutput(uuid: string, length?: number): Promise<string> {
    const lines = this.get(uuid).console;
    return (length === undefined ? lines : lines.slice(-length)).join('\n') + '\n';
  }

  async setAdminPassword(uuid: string, password: string): Promise<void> {
    this.get(uuid).adminPassword = password;
    this.get(uuid).console.push('admin password changed');
  }

  async triggerCrashDump(uuid: string): Promise<void> {
    const instance = this.get(uuid);
    if (instance.powerState !== PowerState.RUNNING) throw new Conflict(`Fake driver: instance ${uuid} is not running`);
    instance.console.push('NMI received: crash dump');
  }

  async prepareIncomingMigration(instance: InstanceSpec, sourceHost: string): Promise<void> {
    this.assertOpen();
    if (this.instances.has(instance.uuid)) throw new Conflict(`Fake driver: instance ${instance.uuid} already runs on this host`);
    this.incoming.set(instance.uuid, { spec: instance, sourceHost });
  }

  async liveMigrate(uuid: string, destHost: string, options: { blockMigration: boolean; migrationUuid: string }): Promise<void> {
    this.assertOpen();
    const instance = this.get(uuid);
    const current = this.jobs.get(uuid);
    if (current?.job.status === 'running') {
      if (current.job.migrationUuid === options.migrationUuid) return; // a repeated start (a resumed workflow)
      throw new Conflict(`Fake driver: instance ${uuid} is already migrating to ${current.job.destHost}`);
    }
    if (instance.powerState !== PowerState.RUNNING && instance.powerState !== PowerState.PAUSED) {
      throw new Conflict(`Fake driver: cannot live-migrate instance ${uuid} in power state ${instance.powerState}`);
    }
    const memoryTotal = instance.memoryMb * MIB;
    const diskTotal = options.blockMigration ? instance.diskGb * 1024 * MIB : 0;
    const entry: FakeJob = {
      startedAt: Date.now(),
      job: { status: 'running', migrationUuid: options.migrationUuid, destHost, memoryTotal, memoryProcessed: 0, memoryRemaining: memoryTotal, diskTotal, diskProcessed: 0, diskRemaining: diskTotal },
    };
    this.jobs.set(uuid, entry);
    instance.console.push(`live migration to ${destHost} started`);
    const duration = this.settings.liveMigrationDurationMs;
    const tickMs = Math.max(10, Math.floor(duration / 20));
    const tick = () => {
      entry.timer = undefined;
      if (entry.job.status !== 'running' || this.closed) return;
      const fraction = duration <= 0 ? 1 : Math.min(1, (Date.now() - entry.startedAt) / duration);
      this.progress(entry.job, fraction);
      if (fraction >= 1) this.endJob(uuid, entry);
      else entry.timer = setTimeout(tick, tickMs);
    };
    entry.timer = setTimeout(tick, duration <= 0 ? 0 : tickMs);
  }

  async liveMigrationJob(uuid: string): Promise<LiveMigrationJob | null> {
    const entry = this.jobs.get(uuid);
    return entry ? { ...entry.job } : null;
  }

  async abortLiveMigration(uuid: string): Promise<void> {
    const entry = this.runningJob(uuid);
    if (entry.timer) clearTimeout(entry.timer);
    entry.timer = undefined;
    entry.job.status = 'cancelled';
    this.instances.get(uuid)?.console.push(`live migration to ${entry.job.destHost} cancelled`);
  }

  async forceCompleteLiveMigration(uuid: string): Promise<void> {
    const entry = this.runningJob(uuid);
    if (entry.timer) clearTimeout(entry.timer);
    entry.timer = undefined;
    this.instances.get(uuid)?.console.push('live migration forced to complete');
    this.progress(entry.job, 1);
    this.endJob(uuid, entry);
  }

  async finishIncomingMigration(uuid: string, powerState: PowerStateValue): Promise<PowerStateValue> {
    this.assertOpen();
    const arriving = this.incoming.get(uuid);
    if (!arriving) {
      const here = this.instances.get(uuid);
      if (here) return here.powerState; // finished before (a resumed workflow)
      throw new NotFound(`Fake driver has no incoming instance ${uuid}`);
    }
    const { spec, sourceHost } = arriving;
    this.incoming.delete(uuid);
    this.instances.set(uuid, {
      name: spec.name, powerState, memoryMb: spec.flavor.memoryMb, diskGb: spec.flavor.rootGb,
      console: [`fake console of ${spec.name} (${uuid})`, `live migrated in from ${sourceHost}`],
    });
    return powerState;
  }

  async rollbackIncomingMigration(uuid: string): Promise<void> {
    this.incoming.delete(uuid);
  }

  private runningJob(uuid: string): FakeJob {
    const entry = this.jobs.get(uuid);
    if (!entry || entry.job.status !== 'running') throw new Conflict(`Fake driver: instance ${uuid} has no live migration in progress`);
    return entry;
  }

  private progress(job: LiveMigrationJob, fraction: number): void {
    job.memoryProcessed = Math.floor(job.memoryTotal * fraction);
    job.memoryRemaining = job.memoryTotal - job.memoryProcessed;
    job.diskProcessed = Math.floor(job.diskTotal * fraction);
    job.diskRemaining = job.diskTotal - job.diskProcessed;
  }

  /** The transfer is over: it fails when told to (the instance stays here), else the instance has left this host. */
  private endJob(uuid: string, entry: FakeJob): void {
    if (this.settings.liveMigrationFails) {
      entry.job.status = 'failed';
      entry.job.error = `Fake driver: live migration of instance ${uuid} to ${entry.job.destHost} failed (injected by [fake_driver] live_migration_fails)`;
      this.instances.get(uuid)?.console.push(`live migration to ${entry.job.destHost} failed`);
      return;
    }
    entry.job.status = 'completed';
    this.instances.delete(uuid);
  }

  private get(uuid: string): FakeInstance {
    const instance = this.instances.get(uuid);
    if (!instance) throw new NotFound(`Fake driver has no instance ${uuid}`);
    return instance;
  }

  /** Test hook (as Nova's fake has): change what the "hypervisor" reports for an instance, e.g. a crash. */
  setPowerState(uuid: string, state: PowerStateValue): void {
    const instance = this.instances.get(uuid);
    if (!instance) throw new BadRequest(`Fake driver has no instance ${uuid}`);
    instance.powerState = state;
  }

  /** Test hook: the instance disappears behind the agent's back (as if the VM vanished). */
  forget(uuid: string): void {
    this.instances.delete(uuid);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const entry of this.jobs.values()) if (entry.timer) clearTimeout(entry.timer);
    for (const w of this.waits) {
      clearTimeout(w.timer);
      w.reject(new ServiceUnavailable('Fake driver closed'));
    }
    this.waits.clear();
  }

  private wait(ms: number): Promise<void> {
    if (ms <= 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const entry = {
        reject,
        timer: setTimeout(() => {
          this.waits.delete(entry);
          resolve();
        }, ms),
      };
      this.waits.add(entry);
    });
  }

  private assertOpen(): void {
    if (this.closed) throw new ServiceUnavailable('Fake driver closed');
  }
}
