// The fake hypervisor (after Nova's virt/fake.py): instances live in memory, nothing runs.
// It backs the integration tests and scale simulation (a thousand fake hosts in one process),
// so it is cheap per host, and it can be told to be slow or to fail:
//   [fake_driver] vcpus (8), memory_mb (16384), local_gb (200)    the host's size
//   [fake_driver] spawn_delay_ms (0), destroy_delay_ms (0)         how long spawn/destroy take
//   [fake_driver] spawn_failure_rate (0..1, 0)                     spawns that fail at random
//   [fake_driver] fail_spawn_name_pattern (regex, unset)           spawns of instances whose name matches fail
//   [fake_driver] snapshot_delay_ms (0)                            how long a snapshot takes
//   [fake_driver] fail_snapshot_name_pattern, fail_rescue_name_pattern, fail_rebuild_name_pattern (regex, unset)
//                                                                  snapshots / rescues / rebuilds of matching instances fail
// Each instance has a small, real root disk: the text the fake "installed" from its image at
// spawn (or rebuild), plus a line per change made to it (a password set, test writes). A
// snapshot returns exactly those bytes; a rescue boots another image with that disk untouched.
//   [fake_driver] migrate_delay_ms (0)                             how long each step of a resize/cold migration takes
//   [fake_driver] live_migration_duration_ms (0)                   how long a live migration's transfer takes
//   [fake_driver] live_migration_fails (false)                     live migrations from this host fail at the end of the transfer
//   [fake_driver] vnc_port_base (5900)                             the VNC port of the host's first instance (tests point it at a real VNC server)
import type { Config } from '../../core/config.js';
import { BadRequest, Conflict, InternalError, NotFound, ServiceUnavailable } from '../../core/errors.js';
import { POWER_STATE_NAMES, PowerState, type InstanceSpec, type InstanceVif, type PowerStateValue } from '../rpc.js';
import type { DiskSnapshot, DriverCapabilities, HostResources, InstanceDiagnostics, LiveMigrationJob, PowerOperation, VirtDriver, VncConsole } from './driver.js';

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
  snapshotDelayMs: number;
  failSnapshotNamePattern: RegExp | null;
  failRescueNamePattern: RegExp | null;
  failRebuildNamePattern: RegExp | null;
  /** How long each resize/migration step takes on a host ([fake_driver] migrate_delay_ms). */
  migrateDelayMs?: number;
  /** How long a live migration's transfer takes ([fake_driver] live_migration_duration_ms). */
  liveMigrationDurationMs: number;
  /** Live migrations from this host fail when the transfer ends ([fake_driver] live_migration_fails). */
  liveMigrationFails: boolean;
  /** The VNC port getVncConsole gives the first instance, +1 for each next ([fake_driver] vnc_port_base). */
  vncPortBase: number;
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
  const regex = (option: string): RegExp | null => {
    const pattern = config.getOptional('fake_driver', option);
    if (pattern === undefined || pattern === '') return null;
    try {
      return new RegExp(pattern);
    } catch (err) {
      throw new BadRequest(`[fake_driver] ${option} is not a valid regular expression: ${(err as Error).message}`);
    }
  };
  const failSpawnNamePattern = regex('fail_spawn_name_pattern');
  return {
    vcpus: count('vcpus', 8, 1),
    memoryMb: count('memory_mb', 16384, 1),
    localGb: count('local_gb', 200, 1),
    spawnDelayMs: delay('spawn_delay_ms'),
    destroyDelayMs: delay('destroy_delay_ms'),
    actionDelayMs: delay('action_delay_ms'),
    spawnFailureRate: rate,
    failSpawnNamePattern,
    snapshotDelayMs: delay('snapshot_delay_ms'),
    migrateDelayMs: delay('migrate_delay_ms'),
    liveMigrationDurationMs: delay('live_migration_duration_ms'),
    liveMigrationFails: config.getBool('fake_driver', 'live_migration_fails', false),
    vncPortBase: count('vnc_port_base', 5900, 1),
    failSnapshotNamePattern: regex('fail_snapshot_name_pattern'),
    failRescueNamePattern: regex('fail_rescue_name_pattern'),
    failRebuildNamePattern: regex('fail_rebuild_name_pattern'),
  };
}

interface FakeInstance {
  name: string;
  powerState: PowerStateValue;
  console: string[];
  adminPassword?: string;
  /** The flavor's root disk size, so a resize can refuse to shrink it. */
  rootGb?: number;
  /** The flavor's memory and root disk, the sizes a live migration transfers. */
  memoryMb: number;
  diskGb: number;
  /** The port of the instance's (pretend) VNC server, 5900 + n by default, as QEMU's -vnc :n would. */
  vncPort: number;
  /** The root disk's content, line by line (what a snapshot returns). */
  disk: string[];
  /** The ports plugged into the instance (from the spawn's spec, then interface attach/detach). */
  vifs: InstanceVif[];
  /** The image the instance runs from while rescued; its own disk is kept aside meanwhile. */
  rescue?: { imageId: string; powerStateBefore: PowerStateValue };
}

/** What the fake "installs" on a root disk from an image. */
function freshDisk(instance: InstanceSpec): string[] {
  return ['nubo fake disk', `instance ${instance.uuid}`, `image ${instance.image?.id ?? 'none'}`, `hostname ${instance.hostname}`];
}

/** What diagnostics reports about an instance besides its counters: its devices and when it booted here. */
interface FakeDiagnosticFacts {
  bootedAt: number;
  vcpus: number;
  memoryMb: number;
  configDrive: boolean;
  ephemeral: boolean;
  swap: boolean;
  /** Nova's libvirt names a port's tap device "tap" + the first 11 characters of the port id. */
  nics: { name: string; macAddress: string }[];
}

function diagnosticFacts(spec: InstanceSpec): FakeDiagnosticFacts {
  return {
    bootedAt: Date.now(), vcpus: spec.flavor.vcpus, memoryMb: spec.flavor.memoryMb, configDrive: spec.configDrive,
    ephemeral: spec.flavor.ephemeralGb > 0, swap: spec.flavor.swapMb > 0,
    nics: (spec.vifs ?? []).map((vif) => ({ name: `tap${vif.portId.slice(0, 11)}`, macAddress: vif.macAddress })),
  };
}

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
  /** Powered-off copies this host keeps of instances moved away (resize/cold migration) until confirm or revert. */
  private readonly migrationSources = new Map<string, FakeInstance>();
  /** Spawns under way; a destroy meanwhile cancels them (the spawn then fails, leaving nothing behind). */
  private readonly spawning = new Map<string, { cancelled: boolean }>();
  /** Instances prepared to arrive by live migration (the destination's paused, incoming guest). */
  private readonly incoming = new Map<string, { spec: InstanceSpec; sourceHost: string }>();
  /** Live migration jobs of instances leaving this host (the last one per instance, kept after it ends). */
  private readonly jobs = new Map<string, FakeJob>();
  private readonly waits = new Set<{ timer: NodeJS.Timeout; reject: (err: Error) => void }>();
  private closed = false;
  /** Per instance, what its diagnostics describe (set when it boots here: spawn, rebuild, arrival by a move). */
  private readonly facts = new Map<string, FakeDiagnosticFacts>();
  /** The next free VNC display; displays are not reused while the driver runs. */
  private nextDisplay = 0;

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
      this.instances.set(instance.uuid, { name: instance.name, powerState: PowerState.RUNNING, console: [`fake console of ${instance.name} (${instance.uuid})`, 'booted'], disk: freshDisk(instance), vncPort: this.settings.vncPortBase + this.nextDisplay++, vifs: [...(instance.vifs ?? [])], rootGb: instance.flavor?.rootGb, memoryMb: instance.flavor.memoryMb, diskGb: instance.flavor.rootGb });
      this.facts.set(instance.uuid, diagnosticFacts(instance));
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
    this.migrationSources.delete(uuid);
    this.incoming.delete(uuid);
    this.facts.delete(uuid);
    const job = this.jobs.get(uuid);
    if (job?.timer) clearTimeout(job.timer);
    this.jobs.delete(uuid);
  }

  async migrateDiskAndPowerOff(uuid: string, flavor: InstanceSpec['flavor']): Promise<void> {
    this.assertOpen();
    const instance = this.instances.get(uuid);
    if (!instance) {
      if (this.migrationSources.has(uuid)) return; // done already (a resumed workflow)
      throw new NotFound(`Fake driver has no instance ${uuid}`);
    }
    // As libvirt's driver: a root disk cannot shrink (checked before anything changes).
    if (instance.rootGb !== undefined && flavor.rootGb < instance.rootGb) throw new BadRequest('Resize error: Unable to resize disk down.');
    await this.wait(this.settings.migrateDelayMs ?? 0);
    if (this.instances.get(uuid) !== instance) throw new Conflict(`Fake driver: instance ${uuid} changed while its disk was being migrated`);
    instance.powerState = PowerState.SHUTDOWN;
    instance.console.push('powered off for migration');
    this.instances.delete(uuid);
    this.migrationSources.set(uuid, instance);
  }

  async finishMigration(spec: InstanceSpec, powerOn: boolean): Promise<PowerStateValue> {
    this.assertOpen();
    const existing = this.instances.get(spec.uuid);
    if (existing) return existing.powerState;
    await this.wait(this.settings.migrateDelayMs ?? 0);
    const already = this.instances.get(spec.uuid);
    if (already) return already.powerState;
    this.instances.set(spec.uuid, {
      name: spec.name, powerState: powerOn ? PowerState.RUNNING : PowerState.SHUTDOWN, rootGb: spec.flavor.rootGb,
      memoryMb: spec.flavor.memoryMb, diskGb: spec.flavor.rootGb,
      console: [`fake console of ${spec.name} (${spec.uuid})`, `migrated here with flavor ${spec.flavor.name}`, ...(powerOn ? ['booted'] : [])],
      // The source host's disk content is on another agent: the copy here starts from the image's, marked as moved.
      disk: [...freshDisk(spec), `migrated with flavor ${spec.flavor.name}`], vncPort: this.settings.vncPortBase + this.nextDisplay++, vifs: [...(spec.vifs ?? [])],
    });
    this.facts.set(spec.uuid, diagnosticFacts(spec));
    return powerOn ? PowerState.RUNNING : PowerState.SHUTDOWN;
  }

  async confirmMigration(uuid: string): Promise<void> {
    this.assertOpen();
    if (!this.migrationSources.has(uuid)) return;
    await this.wait(this.settings.migrateDelayMs ?? 0);
    this.migrationSources.delete(uuid);
  }

  async revertMigration(uuid: string): Promise<void> {
    this.assertOpen();
    if (!this.instances.has(uuid)) return;
    await this.wait(this.settings.migrateDelayMs ?? 0);
    this.instances.delete(uuid);
  }

  async finishRevertMigration(uuid: string, powerOn: boolean): Promise<PowerStateValue> {
    this.assertOpen();
    const source = this.migrationSources.get(uuid);
    if (!source) {
      const instance = this.instances.get(uuid);
      if (instance) return instance.powerState; // done already
      throw new NotFound(`Fake driver has no migration source copy of instance ${uuid}`);
    }
    await this.wait(this.settings.migrateDelayMs ?? 0);
    // On the same host the destination copy was removed first (revertMigration); a leftover is replaced.
    this.migrationSources.delete(uuid);
    source.powerState = powerOn ? PowerState.RUNNING : PowerState.SHUTDOWN;
    source.console.push(powerOn ? 'reverted: booted' : 'reverted');
    this.instances.set(uuid, source);
    return source.powerState;
  }

  /** Test hook: whether this host holds a moved-away (source) copy of the instance. */
  hasMigrationSource(uuid: string): boolean {
    return this.migrationSources.has(uuid);
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

  async attachInterface(uuid: string, vif: InstanceVif): Promise<void> {
    const instance = this.get(uuid);
    if (instance.vifs.some((v) => v.portId === vif.portId)) return;
    instance.vifs.push(vif);
    instance.console.push(`interface ${vif.macAddress} attached`);
  }

  async detachInterface(uuid: string, portId: string): Promise<void> {
    const instance = this.get(uuid);
    const before = instance.vifs.length;
    instance.vifs = instance.vifs.filter((v) => v.portId !== portId);
    if (instance.vifs.length !== before) instance.console.push(`interface of port ${portId} detached`);
  }

  /** Test hook: the ports the "hypervisor" has plugged into an instance. */
  vifsOf(uuid: string): InstanceVif[] {
    return [...this.get(uuid).vifs];
  }

  async setAdminPassword(uuid: string, password: string): Promise<void> {
    const instance = this.get(uuid);
    instance.adminPassword = password;
    instance.console.push('admin password changed');
    instance.disk.push('admin password changed');
  }

  async snapshot(uuid: string): Promise<DiskSnapshot> {
    this.assertOpen();
    const before = this.get(uuid);
    await this.wait(this.settings.snapshotDelayMs);
    const instance = this.get(uuid);
    if (instance !== before) throw new NotFound(`Fake driver: instance ${uuid} was destroyed during the snapshot`);
    const pattern = this.settings.failSnapshotNamePattern;
    if (pattern && pattern.test(instance.name)) {
      throw new InternalError(`Fake driver: snapshot of instance ${uuid} failed: its name "${instance.name}" matches [fake_driver] fail_snapshot_name_pattern`);
    }
    instance.console.push('snapshot taken');
    const data = Buffer.from(instance.disk.join('\n') + '\n', 'utf8');
    return {
      size: data.length, diskFormat: 'raw', containerFormat: 'bare',
      read: async (offset, length) => data.subarray(offset, offset + length),
      discard: async () => undefined,
    };
  }

  async rescue(uuid: string, image: { id: string; properties: Record<string, string> }, adminPass: string | null): Promise<PowerStateValue> {
    this.assertOpen();
    await this.wait(this.settings.actionDelayMs);
    const instance = this.get(uuid);
    if (instance.rescue?.imageId === image.id) return instance.powerState; // a repeated rescue (a resumed workflow)
    if (instance.rescue) throw new Conflict(`Fake driver: instance ${uuid} is already rescued from image ${instance.rescue.imageId}`);
    const pattern = this.settings.failRescueNamePattern;
    if (pattern && pattern.test(instance.name)) {
      throw new InternalError(`Fake driver: rescue of instance ${uuid} failed: its name "${instance.name}" matches [fake_driver] fail_rescue_name_pattern`);
    }
    instance.rescue = { imageId: image.id, powerStateBefore: instance.powerState };
    if (adminPass !== null) instance.adminPassword = adminPass;
    instance.powerState = PowerState.RUNNING;
    instance.console.push(`rescued from image ${image.id}`);
    return instance.powerState;
  }

  async unrescue(uuid: string): Promise<PowerStateValue> {
    this.assertOpen();
    await this.wait(this.settings.actionDelayMs);
    const instance = this.get(uuid);
    if (!instance.rescue) return instance.powerState; // not rescued: the end state already holds
    instance.rescue = undefined;
    instance.powerState = PowerState.RUNNING;
    instance.console.push('unrescued');
    return instance.powerState;
  }

  async rebuild(spec: InstanceSpec, options: { preserveEphemeral: boolean }): Promise<PowerStateValue> {
    this.assertOpen();
    await this.wait(this.settings.spawnDelayMs);
    const pattern = this.settings.failRebuildNamePattern;
    if (pattern && pattern.test(spec.name)) {
      throw new InternalError(`Fake driver: rebuild of instance ${spec.uuid} failed: its name "${spec.name}" matches [fake_driver] fail_rebuild_name_pattern`);
    }
    const existing = this.instances.get(spec.uuid);
    const console = existing?.console ?? [`fake console of ${spec.name} (${spec.uuid})`];
    console.push(`rebuilt from image ${spec.image?.id ?? 'none'}${options.preserveEphemeral ? ' (ephemeral disk kept)' : ''}`, 'booted');
    this.instances.set(spec.uuid, {
      name: spec.name, powerState: PowerState.RUNNING, console, disk: freshDisk(spec), vncPort: existing?.vncPort ?? this.settings.vncPortBase + this.nextDisplay++,
      rootGb: spec.flavor.rootGb, memoryMb: spec.flavor.memoryMb, diskGb: spec.flavor.rootGb, vifs: [...(spec.vifs ?? existing?.vifs ?? [])],
      ...(spec.adminPass ? { adminPassword: spec.adminPass } : {}),
    });
    this.facts.set(spec.uuid, diagnosticFacts(spec));
    return PowerState.RUNNING;
  }

  /** Test hook: the guest writes a line to its root disk (a later snapshot carries it). */
  writeDisk(uuid: string, line: string): void {
    this.get(uuid).disk.push(line);
  }

  /** Test hook: whether the instance runs from a rescue image, and which. */
  rescuedFrom(uuid: string): string | null {
    return this.instances.get(uuid)?.rescue?.imageId ?? null;
  }

  /**
   * Deterministic counters that grow with the time since the instance booted here: each vCPU busy 10%
   * of the time, the root disk read 4 KiB and written 8 KiB per second, each NIC 1500 octets each way per second.
   */
  async diagnostics(uuid: string): Promise<InstanceDiagnostics> {
    const instance = this.get(uuid);
    let facts = this.facts.get(uuid);
    if (!facts) {
      facts = { bootedAt: Date.now(), vcpus: 1, memoryMb: instance.memoryMb, configDrive: false, ephemeral: false, swap: false, nics: [] };
      this.facts.set(uuid, facts);
    }
    const ms = Math.max(0, Date.now() - facts.bootedAt);
    const seconds = ms / 1000;
    const disks = ['vda', ...(facts.ephemeral ? ['vdb'] : []), ...(facts.swap ? ['vdc'] : [])];
    return {
      state: POWER_STATE_NAMES[instance.powerState], driver: 'fake', hypervisor: 'fake', hypervisorOs: 'fake-os', uptime: Math.floor(seconds),
      configDrive: facts.configDrive,
      memoryDetails: { maximum: facts.memoryMb, used: Math.min(facts.memoryMb, Math.ceil(facts.memoryMb / 4)) },
      cpuDetails: Array.from({ length: facts.vcpus }, (_, id) => ({ id, time: Math.round(ms * 1e5), utilisation: 10 })),
      diskDetails: disks.map((name, i) => ({
        name, readBytes: i === 0 ? 262144 + Math.round(seconds * 4096) : 0, readRequests: i === 0 ? 112 + Math.round(seconds) : 0,
        writeBytes: i === 0 ? Math.round(seconds * 8192) : 0, writeRequests: i === 0 ? Math.round(seconds * 2) : 0, errorsCount: 0,
      })),
      nicDetails: facts.nics.map((nic) => {
        const octets = Math.round(seconds * 1500);
        const packets = Math.round(seconds);
        return {
          name: nic.name, macAddress: nic.macAddress, rxOctets: octets, rxErrors: 0, rxDrop: 0, rxPackets: packets, rxRate: null,
          txOctets: octets, txErrors: 0, txDrop: 0, txPackets: packets, txRate: null,
        };
      }),
    };
  }

  async triggerCrashDump(uuid: string): Promise<void> {
    const instance = this.get(uuid);
    if (instance.powerState !== PowerState.RUNNING) throw new Conflict(`Fake driver: instance ${uuid} is not running`);
    instance.console.push('NMI received: crash dump');
  }

  /** Nothing listens: the fake has no VNC server; the address is what a QEMU guest on this host would have. */
  async getVncConsole(uuid: string): Promise<VncConsole> {
    return { host: '127.0.0.1', port: this.get(uuid).vncPort, internalAccessPath: null };
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
      name: spec.name, powerState, memoryMb: spec.flavor.memoryMb, diskGb: spec.flavor.rootGb, rootGb: spec.flavor.rootGb, vifs: [...(spec.vifs ?? [])],
      console: [`fake console of ${spec.name} (${uuid})`, `live migrated in from ${sourceHost}`],
      // The source's disk content is on another agent: the copy here starts from the image's, marked as moved.
      disk: [...freshDisk(spec), `live migrated from ${sourceHost}`], vncPort: this.settings.vncPortBase + this.nextDisplay++,
    });
    // The guest keeps running across a live migration, so its uptime does too.
    this.facts.set(uuid, { ...diagnosticFacts(spec), bootedAt: this.facts.get(uuid)?.bootedAt ?? Date.now() });
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
