// The QEMU virt driver: one qemu-system-x86_64 per instance, driven over QMP (no libvirt).
// Each instance has its own directory under [compute] instances_path (see process.ts for the
// files); QEMU runs detached, so instances outlive the agent, and init() re-adopts them.
//   [compute] instances_path (<data dir or cwd>/instances)   instance directories; _base/ is the image cache
//   [vnc] server_listen (127.0.0.1)                          where instances' VNC servers listen
//   [vnc] server_proxyclient_address (server_listen)         the address the console proxy connects to
//   [DEFAULT] shutdown_timeout (60 s)                        how long a guest may take to power off when asked
//   [DEFAULT] force_config_drive (false)                     every instance gets a config drive
//   [qemu] accelerator / emulator / kvm_probe_timeout        see host.ts
//   [qemu] cgroups / memory_cgroup / memory_overhead_mb      per-instance limits, see cgroups.ts
import { cpus, totalmem } from 'node:os';
import { mkdir, open, readdir, readFile, rename, rm, statfs, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Bus } from '../../../bus/types.js';
import type { Config } from '../../../core/config.js';
import { BadRequest, Conflict, NotFound } from '../../../core/errors.js';
import type { Logger } from '../../../core/log.js';
import { startMetadataProxy, type MetadataProxy } from '../../../metadata/proxy.js';
import { writeConfigDrive } from '../../../metadata/config-drive.js';
import { conductorClient, PowerState, type InstanceSpec, type InstanceVif, type PowerStateValue } from '../../rpc.js';
import type { DiskSnapshot, DriverCapabilities, HostResources, InstanceDiagnostics, LiveMigrationJob, PowerOperation, VirtDriver, VncConsole } from '../driver.js';
import { cgroupSettings, InstanceCgroups } from './cgroups.js';
import { qemuDiagnostics } from './diagnostics.js';
import { createBlankDisk, createEphemeralDisk, createRootDisk, createSwapDisk } from './disks.js';
import type { QemuHost } from './host.js';
import { ImageCache } from './images.js';
import { freeNicSlot, instanceFiles, isInstanceProcess, launchQemu, nicDevice, nicIds, qemuArgs, readInstanceRecord, runningPid, spawnNics, startedByFile, userNetdev, type InstanceNic, type InstanceRecord, type LaunchSettings } from './process.js';
import { QmpClient, QmpError } from './qmp.js';
import { LiveMigrations } from './migration.js';
import { ColdMigrations, snapshotDisk } from './moves.js';
import { rebuildInstance, rescueInstance, unrescueInstance } from './rescue.js';

export const QEMU_HYPERVISOR_TYPE = 'QEMU';

/** What works on QEMU (live migration: migration.ts; snapshot, resize and cold migration: moves.ts; rescue and rebuild: rescue.ts; evacuate: spawn, from shared storage or the image). */
export const QEMU_CAPABILITIES: DriverCapabilities = {
  supportsPause: true, supportsSuspend: true, supportsSnapshot: true, supportsRescue: true, supportsResize: true,
  supportsLiveMigration: true, supportsEvacuate: true, supportsConsoleLog: true, supportsVncConsole: true,
};

/** Image formats instances can boot from (the cache converts the others to qcow2). */
const QEMU_TRAITS = ['COMPUTE_IMAGE_TYPE_RAW', 'COMPUTE_IMAGE_TYPE_QCOW2', 'COMPUTE_IMAGE_TYPE_VMDK', 'COMPUTE_IMAGE_TYPE_VHD', 'COMPUTE_IMAGE_TYPE_VHDX', 'COMPUTE_IMAGE_TYPE_VDI', 'COMPUTE_IMAGE_TYPE_PLOOP'];

/** Nova caps the console log it returns at 100 KiB (MAX_CONSOLE_BYTES). */
const MAX_CONSOLE_BYTES = 100 * 1024;
/** Unix socket paths are limited to 107 bytes; the longest one in an instance directory is "/console.sock". */
const MAX_SOCKET_PATH = 107;
/** How long a guest may take to eject an unplugged NIC (Nova's libvirt driver retries a detach for about as long). */
const NIC_DETACH_TIMEOUT_MS = 30_000;

export interface QemuDriverOptions {
  config: Config;
  host: string;
  logger: Logger;
  bus: Bus;
  dataDir?: string;
  qemu: QemuHost;
}

export interface QemuInstance {
  uuid: string;
  dir: string;
  record: InstanceRecord;
  qmp: QmpClient | null;
  pid: number | null;
  metadataProxy: MetadataProxy | null;
}

/** QMP status → Nova power state. */
function powerStateOfStatus(status: string): PowerStateValue {
  switch (status) {
    case 'running': return PowerState.RUNNING;
    case 'paused': case 'inmigrate': case 'postmigrate': case 'prelaunch': case 'finish-migrate': case 'restore-vm':
    case 'save-vm': case 'suspended': case 'debug': case 'io-error': case 'watchdog': case 'colo':
      return PowerState.PAUSED;
    case 'shutdown': return PowerState.SHUTDOWN;
    case 'guest-panicked': case 'internal-error': return PowerState.CRASHED;
    default: return PowerState.NOSTATE;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The instance.json in `dir`, or null when there is none (or it is unreadable). */
async function readRecord(dir: string): Promise<InstanceRecord | null> {
  return readInstanceRecord(dir).catch(() => null);
}

export class QemuDriver implements VirtDriver {
  readonly name = 'qemu';
  readonly capabilities: DriverCapabilities = QEMU_CAPABILITIES;
  readonly instancesPath: string;
  /** @internal (migration.ts) */ readonly images: ImageCache;
  /** @internal (migration.ts) */ readonly instances = new Map<string, QemuInstance>();
  /** One operation at a time per instance (spawn, destroy, power changes). */
  private readonly queues = new Map<string, Promise<unknown>>();
  /** @internal (migration.ts) */ readonly launch: LaunchSettings;
  private readonly shutdownTimeoutSeconds: number;
  private readonly forceConfigDrive: boolean;
  private readonly logger: Logger;
  private readonly conductor: ReturnType<typeof conductorClient>;
  /** Per-instance CPU (and optionally memory) limits. */
  readonly cgroups: InstanceCgroups;
  private reportTimer: NodeJS.Timeout | undefined;
  private readonly vncProxyClientAddress: string;
  private closed = false;
  /** Live migrations in and out of this host (migration.ts). */
  private readonly migrations = new LiveMigrations(this);
  /** Resize and cold migration (moves.ts). */
  private readonly coldMigrations = new ColdMigrations(this);

  constructor(readonly options: QemuDriverOptions) {
    const { config } = options;
    this.logger = options.logger;
    this.instancesPath = resolve(config.get('compute', 'instances_path', join(options.dataDir ?? process.cwd(), 'instances')));
    // QEMU option strings separate with commas and the metadata helper runs through a shell: keep the path plain.
    if (/[,\s'"\\$`;&|<>]/.test(this.instancesPath)) throw new BadRequest(`[compute] instances_path must not contain commas, spaces or shell characters: ${this.instancesPath}`);
    if (join(this.instancesPath, '00000000-0000-0000-0000-000000000000', 'console.sock').length > MAX_SOCKET_PATH) {
      throw new BadRequest(`[compute] instances_path is too long for unix socket paths (at most ${MAX_SOCKET_PATH - 50} characters): ${this.instancesPath}`);
    }
    this.conductor = conductorClient(options.bus, config.getInt('DEFAULT', 'rpc_response_timeout', 60) * 1000);
    this.images = new ImageCache(join(this.instancesPath, '_base'), this.conductor);
    this.launch = { emulator: options.qemu.emulator, accelerator: options.qemu.accelerator, vncListen: config.get('vnc', 'server_listen', '127.0.0.1') };
    this.shutdownTimeoutSeconds = config.getInt('DEFAULT', 'shutdown_timeout', 60);
    this.forceConfigDrive = config.getBool('DEFAULT', 'force_config_drive', false);
    this.cgroups = new InstanceCgroups(cgroupSettings(config));
    // Nova's [vnc] server_proxyclient_address: where the console proxy connects (a wildcard listen is reached on loopback).
    const listen = this.launch.vncListen;
    this.vncProxyClientAddress = config.get('vnc', 'server_proxyclient_address', listen === '0.0.0.0' ? '127.0.0.1' : listen === '::' ? '::1' : listen);
  }

  // ---- lifecycle of the driver -------------------------------------------------------

  /** Re-adopts the instances in instances_path: running QEMUs whose QMP answers, the others as they lie on disk. */
  async init(): Promise<void> {
    this.closed = false;
    await mkdir(this.instancesPath, { recursive: true });
    await this.migrations.serve({ heldDisks: ({ uuid }: { uuid: string }) => this.coldMigrations.heldDisks(uuid) });
    for (const entry of await readdir(this.instancesPath, { withFileTypes: true })) {
      if (!entry.isDirectory() || entry.name.startsWith('_') || entry.name.startsWith('.')) continue;
      const dir = join(this.instancesPath, entry.name);
      // No record: not an instance (or a spawn that died before writing it), reconciliation cannot name it.
      const record = await readRecord(dir);
      if (record?.spec?.uuid !== entry.name) continue;
      if (!this.owns(record)) {
        // Evacuated to another host sharing instances_path while this one was down: not ours any more.
        await this.killOwnStaleQemu(dir);
        continue;
      }
      const instance: QemuInstance = { uuid: entry.name, dir, record, qmp: null, pid: runningPid(dir), metadataProxy: null };
      this.instances.set(instance.uuid, instance);
      // Snapshots are held in the agent's memory: the files of the last run's are nobody's now.
      for (const file of await readdir(dir)) if (/^snapshot-[0-9a-f]+\.qcow2$/.test(file)) await rm(join(dir, file), { force: true });
      if (instance.pid !== null) {
        try {
          await this.connect(instance, 3000);
          await this.startMetadata(instance);
          this.logger.info('re-adopted a running QEMU', { uuid: instance.uuid, pid: instance.pid });
        } catch (err) {
          this.logger.warn('a QEMU of this host does not answer QMP; it is reported as it is', { uuid: instance.uuid, pid: instance.pid, error: (err as Error).message });
        }
      }
    }
    // What changed while no agent watched (a guest that powered off) reaches the conductor once the agent registered.
    if (this.instances.size > 0) this.schedulePowerReport(3000);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.reportTimer) clearTimeout(this.reportTimer);
    this.reportTimer = undefined;
    await this.migrations.close();
    await this.coldMigrations.close();
    for (const instance of this.instances.values()) {
      const client = instance.qmp;
      instance.qmp = null;
      client?.close();
      await instance.metadataProxy?.close().catch(() => undefined);
      instance.metadataProxy = null;
    }
    this.instances.clear();
  }

  async hostResources(): Promise<HostResources> {
    const fs = await statfs(this.instancesPath).catch(() => null);
    const { qemu } = this.options;
    const virtType = qemu.accelerator === 'kvm' ? 'kvm' : 'qemu';
    return {
      hypervisorType: QEMU_HYPERVISOR_TYPE,
      hypervisorVersion: qemu.version,
      vcpus: cpus().length,
      memoryMb: Math.floor(totalmem() / (1024 * 1024)),
      localGb: fs ? Math.floor((fs.blocks * fs.bsize) / 1024 ** 3) : 0,
      cpuInfo: {
        arch: 'x86_64', model: qemu.accelerator === 'kvm' ? 'host' : 'qemu64', vendor: cpus()[0]?.model ?? 'unknown',
        topology: { cells: 1, sockets: 1, cores: cpus().length, threads: 1 }, features: [],
        accelerator: qemu.accelerator, accelerator_reason: qemu.acceleratorReason, qemu_version: qemu.versionText,
      },
      supportedInstances: [['x86_64', virtType, 'hvm'], ['i686', virtType, 'hvm']],
      traits: [...QEMU_TRAITS],
    };
  }

  // ---- instances ---------------------------------------------------------------------

  async spawn(spec: InstanceSpec): Promise<void> {
    return this.serialized(spec.uuid, async () => {
      if (this.instances.has(spec.uuid)) return; // a repeated spawn (a resumed workflow)
      if (!/^[0-9a-fA-F-]{36}$/.test(spec.uuid)) throw new BadRequest(`invalid instance uuid ${spec.uuid}`);
      const dir = join(this.instancesPath, spec.uuid);
      const existing = await readRecord(dir);
      // Evacuation onto shared storage (Nova's on_shared_storage): another host's instance directory is here, disk and all.
      if (existing?.spec?.uuid === spec.uuid && !this.owns(existing) && existsSync(instanceFiles(dir).disk)) return this.spawnOnSharedStorage(spec, dir, existing);
      await rm(dir, { recursive: true, force: true }); // a leftover of a spawn that died with its agent
      const record: InstanceRecord = {
        spec,
        nics: spawnNics(spec.vifs ?? []),
        disks: { ephemeral: spec.flavor.ephemeralGb > 0, swap: spec.flavor.swapMb > 0, configDrive: spec.configDrive || this.forceConfigDrive },
        vncPort: null,
      };
      const instance: QemuInstance = { uuid: spec.uuid, dir, record, qmp: null, pid: null, metadataProxy: null };
      const started = Date.now();
      try {
        await mkdir(dir, { recursive: true, mode: 0o700 });
        const f = instanceFiles(dir);
        if (spec.image) {
          const image = await this.images.get(spec.image.id);
          await createRootDisk(f.disk, image, spec.flavor.rootGb);
        } else {
          await createBlankDisk(f.disk, Math.max(1, spec.flavor.rootGb) * 1024 ** 3);
        }
        if (record.disks.ephemeral) await createEphemeralDisk(f.ephemeral, spec.flavor.ephemeralGb);
        if (record.disks.swap) await createSwapDisk(f.swap, spec.flavor.swapMb);
        if (record.disks.configDrive) await writeConfigDrive(this.options.bus, spec.uuid, f.config);
        await this.saveRecord(instance);
        this.instances.set(spec.uuid, instance);
        await this.startMetadata(instance);
        await this.start(instance);
        this.logger.info('spawned', { uuid: spec.uuid, ms: Date.now() - started, vncPort: instance.record.vncPort });
      } catch (err) {
        this.instances.delete(spec.uuid);
        await this.teardown(instance);
        throw err;
      }
    });
  }

  /**
   * Evacuated onto shared storage: the disks stay as they are (the guest's only copy), the record gets the new
   * spec and this host as its owner, and QEMU boots from the existing disk. A failure leaves the directory.
   */
  private async spawnOnSharedStorage(spec: InstanceSpec, dir: string, existing: InstanceRecord): Promise<void> {
    const record: InstanceRecord = { ...existing, spec, vncPort: null };
    const instance: QemuInstance = { uuid: spec.uuid, dir, record, qmp: null, pid: null, metadataProxy: null };
    const f = instanceFiles(dir);
    try {
      await rm(f.state, { force: true }); // an evacuated guest boots afresh
      if (record.disks.configDrive) await writeConfigDrive(this.options.bus, spec.uuid, f.config);
      await this.saveRecord(instance);
      this.instances.set(spec.uuid, instance);
      await this.startMetadata(instance);
      await this.start(instance);
      this.logger.info('spawned from the disk on shared storage (evacuation)', { uuid: spec.uuid, from: existing.host });
    } catch (err) {
      this.instances.delete(spec.uuid);
      if (instance.pid !== null) await this.kill(instance).catch(() => false);
      await instance.metadataProxy?.close().catch(() => undefined);
      await this.cgroups.remove(spec.uuid);
      // The directory goes back to its previous owner, so the destroy that follows a failed spawn leaves the disk.
      const path = instanceFiles(dir).spec;
      await writeFile(`${path}.tmp`, JSON.stringify(existing, null, 1), { mode: 0o600 }).then(() => rename(`${path}.tmp`, path)).catch(() => undefined);
      throw err;
    }
  }

  /** Whether this host owns an instance directory (see InstanceRecord.host). */
  private owns(record: InstanceRecord): boolean {
    return !record.host || record.host === this.options.host;
  }

  /** Ends the QEMU this host started in `dir` when it still runs and is not the owner's; never touches the owner's files. */
  private async killOwnStaleQemu(dir: string): Promise<void> {
    const marker = startedByFile(dir, this.options.host);
    const pid = Number((await readFile(marker, 'utf8').catch(() => '')).trim());
    if (Number.isInteger(pid) && pid > 0 && pid !== runningPid(dir) && isInstanceProcess(pid, dir)) {
      this.logger.info('ending this host\'s QEMU of an instance another host owns now', { dir, pid });
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone meanwhile */ }
      for (let i = 0; i < 50 && isInstanceProcess(pid, dir); i++) await sleep(100);
    }
    await rm(marker, { force: true });
  }

  /**
   * Destroy on a host that no longer owns the (shared) directory: only what is this host's own goes — its QEMU if
   * one still runs, its QMP connection, its metadata proxy, its cgroups. The directory and the owner's QEMU stay.
   */
  private async letGo(instance: QemuInstance): Promise<void> {
    this.forgetProcess(instance);
    await this.killOwnStaleQemu(instance.dir);
    if (instance.metadataProxy) {
      // Closing our proxy removes the socket path, which is the owner's proxy's now: keep that aside meanwhile.
      const path = instanceFiles(instance.dir).metadata;
      const aside = `${path}.keep`;
      const moved = await rename(path, aside).then(() => true, () => false);
      await instance.metadataProxy.close().catch(() => undefined);
      if (moved) await rename(aside, path).catch(() => undefined);
      instance.metadataProxy = null;
    }
    await this.cgroups.remove(instance.uuid);
    this.logger.info('let go of an instance another host owns now (shared storage)', { uuid: instance.uuid });
  }

  async destroy(uuid: string): Promise<void> {
    return this.serialized(uuid, async () => {
      const instance = this.instances.get(uuid) ?? { uuid, dir: join(this.instancesPath, uuid), record: null as unknown as InstanceRecord, qmp: null, pid: null, metadataProxy: null };
      this.instances.delete(uuid);
      if (!/^[0-9a-fA-F-]{36}$/.test(uuid)) return; // nothing of ours can have such a name
      const onDisk = await readRecord(instance.dir);
      if (onDisk && !this.owns(onDisk)) return this.letGo(instance);
      await this.teardown(instance);
      await rm(join(this.instancesPath, `${uuid}_resize`), { recursive: true, force: true }); // a copy held for a resize
    });
  }

  async powerState(uuid: string): Promise<PowerStateValue | null> {
    const instance = this.instances.get(uuid);
    if (!instance) return null;
    return this.currentState(instance);
  }

  async listInstances(): Promise<string[]> {
    return [...this.instances.keys()];
  }

  async changePower(uuid: string, operation: PowerOperation, options: { timeoutSeconds?: number } = {}): Promise<PowerStateValue> {
    return this.serialized(uuid, async () => {
      const instance = this.get(uuid);
      const state = await this.currentState(instance, true);
      const timeoutSeconds = options.timeoutSeconds ?? this.shutdownTimeoutSeconds;
      const refuse = () => { throw new Conflict(`Cannot ${operation} instance ${uuid} in power state ${state}`); };
      switch (operation) {
        case 'stop':
          if (state === PowerState.SUSPENDED) await rm(instanceFiles(instance.dir).state, { force: true });
          else if (state !== PowerState.SHUTDOWN) await this.powerOff(instance, state === PowerState.RUNNING ? timeoutSeconds : 0);
          break;
        case 'start':
          if (state === PowerState.RUNNING) break;
          if (state !== PowerState.SHUTDOWN && state !== PowerState.CRASHED && state !== PowerState.NOSTATE) refuse();
          await this.powerOff(instance, 0); // a crashed QEMU still runs: end it first
          await this.start(instance);
          break;
        case 'reboot-soft':
          if (state !== PowerState.RUNNING) refuse();
          // As Nova's libvirt driver: ask the guest to power off, boot it again; a guest that does not answer is reset hard.
          if (!(await this.powerOff(instance, timeoutSeconds, false))) {
            await this.qmp(instance).execute('system_reset');
            break;
          }
          await this.start(instance);
          break;
        case 'reboot-hard':
          if (state === PowerState.RUNNING || state === PowerState.PAUSED) {
            await this.qmp(instance).execute('system_reset');
            if (state === PowerState.PAUSED) await this.qmp(instance).execute('cont');
          } else {
            await rm(instanceFiles(instance.dir).state, { force: true }); // a hard reboot forgets a suspended guest's memory
            await this.powerOff(instance, 0);
            await this.start(instance);
          }
          break;
        case 'pause':
          if (state === PowerState.PAUSED) break;
          if (state !== PowerState.RUNNING) refuse();
          await this.qmp(instance).execute('stop');
          break;
        case 'unpause':
          if (state === PowerState.RUNNING) break;
          if (state !== PowerState.PAUSED) refuse();
          await this.qmp(instance).execute('cont');
          break;
        case 'suspend':
          if (state === PowerState.SUSPENDED) break;
          if (state !== PowerState.RUNNING && state !== PowerState.PAUSED) refuse();
          await this.saveState(instance);
          break;
        case 'resume':
          if (state === PowerState.RUNNING) break;
          if (state !== PowerState.SUSPENDED) refuse();
          await this.restoreState(instance);
          break;
        default:
          throw new BadRequest(`unknown power operation ${operation as string}`);
      }
      return this.currentState(instance, true);
    });
  }

  async consoleOutput(uuid: string, length?: number): Promise<string> {
    const instance = this.get(uuid);
    const file = await open(instanceFiles(instance.dir).consoleLog, 'r').catch(() => null);
    if (!file) return '';
    let text: string;
    try {
      const { size } = await file.stat();
      const start = Math.max(0, size - MAX_CONSOLE_BYTES);
      const buffer = Buffer.alloc(size - start);
      await file.read(buffer, 0, buffer.length, start);
      text = buffer.toString('utf8');
      if (start > 0) text = text.slice(text.indexOf('\n') + 1); // drop the partial first line
    } finally {
      await file.close();
    }
    if (length === undefined) return text;
    const lines = text.split('\n');
    if (lines[lines.length - 1] === '') lines.pop();
    return lines.slice(Math.max(0, lines.length - length)).join('\n') + (lines.length > 0 && length > 0 ? '\n' : '');
  }

  async setAdminPassword(uuid: string): Promise<void> {
    this.get(uuid);
    // Nova's libvirt driver needs the QEMU guest agent (hw_qemu_guest_agent) for this; these guests have none.
    throw new Conflict(`Failed to set admin password on ${uuid} because QEMU guest agent is not enabled`);
  }

  async triggerCrashDump(uuid: string): Promise<void> {
    return this.serialized(uuid, async () => {
      const instance = this.get(uuid);
      if ((await this.currentState(instance, true)) !== PowerState.RUNNING) throw new Conflict(`Instance ${uuid} is not running.`);
      await this.qmp(instance).execute('inject-nmi');
    });
  }

  // ---- os-interface: NIC hot-plug (ACPI PCI hotplug on the pc machine's bus 0) ----

  async attachInterface(uuid: string, vif: InstanceVif): Promise<void> {
    return this.serialized(uuid, async () => {
      const instance = this.get(uuid);
      const { record } = instance;
      if (record.nics.some((n) => n.portId === vif.portId)) return;
      const nic: InstanceNic = { mac: vif.macAddress, portId: vif.portId, slot: freeNicSlot(record.nics) };
      const nics = [...record.nics, nic].sort((a, b) => a.slot - b.slot);
      // A stopped guest gets the NIC at its next launch, from the record.
      if (await this.runsQemu(instance, 'attach an interface to')) await this.hotPlugNic(instance, nic, nics);
      record.nics = nics;
      await this.saveRecord(instance);
      this.logger.info('attached an interface', { uuid, portId: vif.portId, slot: nic.slot });
    });
  }

  async detachInterface(uuid: string, portId: string): Promise<void> {
    return this.serialized(uuid, async () => {
      const instance = this.get(uuid);
      const nic = instance.record.nics.find((n) => n.portId === portId);
      if (!nic) return;
      if (await this.runsQemu(instance, 'detach an interface from')) await this.hotUnplugNic(instance, nic);
      instance.record.nics = instance.record.nics.filter((n) => n !== nic);
      await this.saveRecord(instance);
      this.logger.info('detached an interface', { uuid, portId, slot: nic.slot });
    });
  }

  /** Whether the instance's QEMU runs (devices change live) or not (only the record changes); a saved state refuses. */
  private async runsQemu(instance: QemuInstance, what: string): Promise<boolean> {
    const state = await this.currentState(instance, true);
    // A suspended guest's saved devices must match the command line it is restored into.
    if (state === PowerState.SUSPENDED) throw new Conflict(`Cannot ${what} instance ${instance.uuid} while it is suspended`);
    return state !== PowerState.SHUTDOWN;
  }

  private async hotPlugNic(instance: QemuInstance, nic: InstanceNic, nics: InstanceNic[]): Promise<void> {
    const client = this.qmp(instance);
    const { guestfwd, ...netdev } = userNetdev(nic, nics, instanceFiles(instance.dir).metadata);
    await client.execute('netdev_add', { type: 'user', ...netdev, ...(guestfwd ? { guestfwd: [{ str: guestfwd }] } : {}) });
    try {
      await client.execute('device_add', nicDevice(nic));
    } catch (err) {
      await client.execute('netdev_del', { id: netdev.id }).catch(() => undefined);
      throw new Conflict(`Failed to attach network adapter device to ${instance.uuid}: ${(err as Error).message}`);
    }
  }

  /** device_del, then the guest ejects the device (ACPI) and QEMU sends DEVICE_DELETED; then netdev_del. */
  private async hotUnplugNic(instance: QemuInstance, nic: InstanceNic): Promise<void> {
    const client = this.qmp(instance);
    const { netdev, device } = nicIds(nic);
    // The event comes twice (the virtio backend's path first, then the device with its id): match the id.
    const deleted = client.waitEvent('DEVICE_DELETED', NIC_DETACH_TIMEOUT_MS, (e) => e.data?.device === device);
    deleted.catch(() => undefined);
    let gone = false;
    await client.execute('device_del', { id: device }).catch((err) => {
      // An earlier detach timed out and the guest released the device later: nothing left to wait for.
      if (err instanceof QmpError && err.errorClass === 'DeviceNotFound') gone = true;
      else throw new Conflict(`Failed to detach network adapter device from ${instance.uuid}: ${(err as Error).message}`);
    });
    if (!gone) {
      await deleted.catch(() => {
        throw new Conflict(`Device detach failed for ${nic.mac}: the guest of ${instance.uuid} did not release the network device within ${NIC_DETACH_TIMEOUT_MS / 1000} s`);
      });
    }
    await client.execute('netdev_del', { id: netdev }).catch((err) => {
      if (!(err instanceof QmpError && err.errorClass === 'DeviceNotFound')) throw err;
    });
  }

  async getVncConsole(uuid: string): Promise<VncConsole> {
    const instance = this.get(uuid);
    if (instance.qmp && !instance.qmp.closed) await this.readVncPort(instance).catch(() => undefined);
    return { host: this.vncProxyClientAddress, port: instance.record.vncPort, internalAccessPath: null };
  }

  async diagnostics(uuid: string): Promise<InstanceDiagnostics> {
    const instance = this.get(uuid);
    const pid = runningPid(instance.dir);
    if (pid === null) throw new Conflict(`Instance ${uuid} is not running`);
    const client = instance.qmp && !instance.qmp.closed ? instance.qmp : await this.connect(instance, 2000);
    return qemuDiagnostics(client, pid, { configDrive: instance.record.disks.configDrive, memoryMb: instance.record.spec.flavor.memoryMb });
  }

  // ---- live migration (migration.ts) ----

  async prepareIncomingMigration(instance: InstanceSpec, sourceHost: string): Promise<void> { return this.migrations.prepare(instance, sourceHost); }
  async liveMigrate(uuid: string, destHost: string, options: { blockMigration: boolean; migrationUuid: string }): Promise<void> { return this.migrations.start(uuid, destHost, options); }
  async liveMigrationJob(uuid: string): Promise<LiveMigrationJob | null> { return this.migrations.job(uuid); }
  async abortLiveMigration(uuid: string): Promise<void> { return this.migrations.abort(uuid); }
  async forceCompleteLiveMigration(uuid: string): Promise<void> { return this.migrations.forceComplete(uuid); }
  async finishIncomingMigration(uuid: string, powerState: PowerStateValue): Promise<PowerStateValue> { return this.migrations.finish(uuid, powerState); }
  async rollbackIncomingMigration(uuid: string): Promise<void> { return this.migrations.rollback(uuid); }
  // ---- rescue, unrescue, rebuild (rescue.ts) ----

  async rescue(uuid: string, image: { id: string; properties: Record<string, string> }): Promise<PowerStateValue> {
    return this.serialized(uuid, () => rescueInstance(this, uuid, image));
  }
  async unrescue(uuid: string): Promise<PowerStateValue> { return this.serialized(uuid, () => unrescueInstance(this, uuid)); }
  async rebuild(instance: InstanceSpec, options: { preserveEphemeral: boolean }): Promise<PowerStateValue> {
    if (!this.instances.has(instance.uuid)) {
      await this.spawn(instance); // as the contract says: an instance this host does not have is spawned
      return this.currentState(this.get(instance.uuid));
    }
    return this.serialized(instance.uuid, () => rebuildInstance(this, instance, { ...options, shutdownTimeoutSeconds: this.shutdownTimeoutSeconds }));
  }

  // ---- snapshot, resize and cold migration (moves.ts) ----

  async snapshot(uuid: string): Promise<DiskSnapshot> { return this.serialized(uuid, () => snapshotDisk(this, uuid)); }

  async migrateDiskAndPowerOff(uuid: string, flavor: InstanceSpec['flavor'], options: { timeoutSeconds?: number } = {}): Promise<void> { return this.coldMigrations.migrateDiskAndPowerOff(uuid, flavor, options); }
  async finishMigration(instance: InstanceSpec, powerOn: boolean, options: { sourceHost?: string } = {}): Promise<PowerStateValue> { return this.coldMigrations.finishMigration(instance, powerOn, options.sourceHost); }
  async confirmMigration(uuid: string): Promise<void> { return this.coldMigrations.confirmMigration(uuid); }
  async revertMigration(uuid: string): Promise<void> { return this.coldMigrations.revertMigration(uuid); }
  async finishRevertMigration(uuid: string, powerOn: boolean): Promise<PowerStateValue> { return this.coldMigrations.finishRevertMigration(uuid, powerOn); }

  // ---- internals ---------------------------------------------------------------------

  /** @internal (migration.ts) */ get(uuid: string): QemuInstance {
    const instance = this.instances.get(uuid);
    if (!instance) throw new NotFound(`Instance ${uuid} could not be found on this host.`);
    return instance;
  }

  /** @internal (migration.ts) */ serialized<T>(uuid: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.queues.get(uuid) ?? Promise.resolve();
    const run = previous.catch(() => undefined).then(fn);
    const tail = run.catch(() => undefined);
    this.queues.set(uuid, tail);
    void tail.then(() => { if (this.queues.get(uuid) === tail) this.queues.delete(uuid); });
    return run;
  }

  /** @internal (migration.ts) */ async saveRecord(instance: QemuInstance): Promise<void> {
    instance.record.host = this.options.host; // whoever writes the record runs the instance
    const path = instanceFiles(instance.dir).spec;
    await writeFile(`${path}.tmp`, JSON.stringify(instance.record, null, 1), { mode: 0o600 });
    await rename(`${path}.tmp`, path);
  }

  /**
   * The power state from QEMU itself (query-status), else from what lies on disk. Outside the instance's
   * operations only; while one runs (QEMU may be between two launches) others get observedState.
   */
  /** @internal (migration.ts) */ async currentState(instance: QemuInstance, fromOperation = false): Promise<PowerStateValue> {
    if (!fromOperation && this.queues.has(instance.uuid)) return this.observedState(instance);
    if (instance.pid !== null && runningPid(instance.dir) === null) this.forgetProcess(instance);
    if (instance.pid === null) {
      instance.pid = runningPid(instance.dir);
      if (instance.pid === null) return existsSync(instanceFiles(instance.dir).state) ? PowerState.SUSPENDED : PowerState.SHUTDOWN;
    }
    try {
      const client = instance.qmp && !instance.qmp.closed ? instance.qmp : await this.connect(instance, 2000);
      const status = await client.execute<{ status: string }>('query-status', undefined, 5000);
      return powerStateOfStatus(status.status);
    } catch (err) {
      if (runningPid(instance.dir) === null) {
        this.forgetProcess(instance);
        return existsSync(instanceFiles(instance.dir).state) ? PowerState.SUSPENDED : PowerState.SHUTDOWN;
      }
      this.logger.warn('QEMU runs but QMP does not answer', { uuid: instance.uuid, error: (err as Error).message });
      return PowerState.NOSTATE;
    }
  }

  /** The power state as it looks now, touching nothing (no reconnect, no forgetting): NOSTATE while in between. */
  private async observedState(instance: QemuInstance): Promise<PowerStateValue> {
    if (runningPid(instance.dir) === null) return existsSync(instanceFiles(instance.dir).state) ? PowerState.SUSPENDED : PowerState.SHUTDOWN;
    const client = instance.qmp;
    if (!client || client.closed) return PowerState.NOSTATE;
    try {
      return powerStateOfStatus((await client.execute<{ status: string }>('query-status', undefined, 5000)).status);
    } catch {
      return PowerState.NOSTATE;
    }
  }

  /** @internal (migration.ts) */ forgetProcess(instance: QemuInstance): void {
    const client = instance.qmp;
    instance.qmp = null;
    client?.close();
    instance.pid = null;
  }

  /** Sends every instance's power state to the conductor soon (several triggers in a row make one report). */
  private schedulePowerReport(delayMs = 1000): void {
    if (this.closed || this.reportTimer) return;
    this.reportTimer = setTimeout(() => {
      this.reportTimer = undefined;
      void this.reportPowerStates().catch((err) => this.logger.warn('reporting power states failed', { error: (err as Error).message }));
    }, delayMs);
    this.reportTimer.unref();
  }

  private async reportPowerStates(): Promise<void> {
    const states: Record<string, PowerStateValue> = {};
    for (const instance of [...this.instances.values()]) states[instance.uuid] = await this.currentState(instance);
    if (this.closed) return;
    await this.conductor.syncPowerStates({ host: this.options.host, states });
  }

  /** @internal (migration.ts) */ qmp(instance: QemuInstance): QmpClient {
    if (!instance.qmp || instance.qmp.closed) throw new Conflict(`Instance ${instance.uuid} is not running`);
    return instance.qmp;
  }

  /** Connects to the instance's QMP socket, retrying while QEMU sets it up. */
  /** @internal (migration.ts) */ async connect(instance: QemuInstance, timeoutMs: number): Promise<QmpClient> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const client = await QmpClient.connect(instanceFiles(instance.dir).qmp, Math.max(500, deadline - Date.now()));
        const previous = instance.qmp;
        instance.qmp = client;
        previous?.close();
        client.onClose(() => {
          if (instance.qmp !== client) return; // replaced or closed by this driver
          instance.qmp = null;
          // QEMU went away by itself (the guest powered off, or the process died): tell the conductor now
          // rather than at the next periodic sync. During an operation of ours, the operation reports.
          if (!this.queues.has(instance.uuid)) this.schedulePowerReport();
        });
        return client;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await sleep(50);
      }
    }
  }

  /** @internal (migration.ts) */ async readVncPort(instance: QemuInstance): Promise<void> {
    const vnc = await this.qmp(instance).execute<{ service?: string; enabled: boolean }>('query-vnc');
    const port = vnc.enabled && vnc.service ? Number(vnc.service) : null;
    if (port !== instance.record.vncPort) {
      instance.record.vncPort = port;
      await this.saveRecord(instance);
    }
  }

  /** Launches the instance's QEMU (restoring `incoming` state when given) and connects to it. */
  /** @internal (migration.ts) */ async start(instance: QemuInstance, incoming?: string): Promise<void> {
    const f = instanceFiles(instance.dir);
    await rm(f.pid, { force: true });
    const cgroupProcs = await this.cgroups.prepare(instance.record.spec);
    instance.pid = await launchQemu(this.launch.emulator, qemuArgs(instance.dir, instance.record, this.launch, incoming), cgroupProcs);
    await writeFile(startedByFile(instance.dir, this.options.host), `${instance.pid}\n`);
    await this.connect(instance, 10_000);
    await this.readVncPort(instance);
  }

  /** @internal (migration.ts) */ async startMetadata(instance: QemuInstance): Promise<void> {
    if (instance.metadataProxy) return;
    instance.metadataProxy = await startMetadataProxy({ bus: this.options.bus, uuid: instance.uuid, socketPath: instanceFiles(instance.dir).metadata });
  }

  /** Waits until the instance's QEMU has exited; false when it still runs after timeoutMs. */
  private async waitExit(instance: QemuInstance, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (runningPid(instance.dir) !== null) {
      if (Date.now() >= deadline) return false;
      await sleep(100);
    }
    this.forgetProcess(instance);
    return true;
  }

  /**
   * Powers the guest off: ACPI power button first when timeoutSeconds > 0, then (when `force`) quit and SIGKILL.
   * Resolves whether the QEMU is gone.
   */
  /** @internal (moves.ts) */ async powerOff(instance: QemuInstance, timeoutSeconds: number, force = true): Promise<boolean> {
    if (runningPid(instance.dir) === null) {
      this.forgetProcess(instance);
      return true;
    }
    if (timeoutSeconds > 0 && instance.qmp && !instance.qmp.closed) {
      await instance.qmp.execute('system_powerdown').catch(() => undefined);
      if (await this.waitExit(instance, timeoutSeconds * 1000)) return true;
      this.logger.info('the guest did not power off in time', { uuid: instance.uuid, timeoutSeconds });
    }
    if (!force) return false;
    return this.kill(instance);
  }

  /** Ends the QEMU: quit over QMP, SIGKILL when that does not work within 3 s. */
  /** @internal (migration.ts) */ async kill(instance: QemuInstance): Promise<boolean> {
    const pid = runningPid(instance.dir);
    if (pid === null) {
      this.forgetProcess(instance);
      return true;
    }
    const client = instance.qmp && !instance.qmp.closed ? instance.qmp : await this.connect(instance, 1000).catch(() => null);
    await client?.execute('quit', undefined, 2000).catch(() => undefined);
    if (await this.waitExit(instance, 3000)) return true;
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone meanwhile */ }
    return this.waitExit(instance, 5000);
  }

  /** Suspend: stop the guest, save its memory and device state to vm.state (gzip), end QEMU. */
  private async saveState(instance: QemuInstance): Promise<void> {
    const f = instanceFiles(instance.dir);
    const client = this.qmp(instance);
    const partial = `${f.state}.partial`;
    await client.execute('stop');
    // The status comes from MIGRATION events: a QEMU that arrived by live migration answers query-migrate with its
    // incoming migration's status ("completed"). A live migration's capabilities stay set: undo them (migration.ts).
    let status = 'setup';
    const off = client.onEvent((event) => { if (event.event === 'MIGRATION') status = String(event.data?.status ?? status); });
    try {
      await client.execute('migrate-set-capabilities', { capabilities: [{ capability: 'events', state: true }, { capability: 'pause-before-switchover', state: false }, { capability: 'auto-converge', state: false }] });
      await client.execute('migrate-set-parameters', { 'max-bandwidth': 8 * 1024 * 1024 * 1024 });
      await client.execute('migrate', { uri: `exec:gzip -1 -c > ${partial}` });
      for (;;) {
        const info = { ...(await client.execute<{ status?: string; 'error-desc'?: string }>('query-migrate')), status };
        if (info.status === 'completed') break;
        if (info.status === 'failed' || info.status === 'cancelled') throw new Conflict(`Suspending ${instance.uuid} failed: ${info['error-desc'] ?? info.status}`);
        await sleep(100);
      }
      off();
      await rename(partial, f.state);
    } catch (err) {
      off();
      await rm(partial, { force: true });
      await client.execute('cont').catch(() => undefined);
      throw err;
    }
    await this.kill(instance);
  }

  /** Resume: a new QEMU with the same command line loads vm.state, then runs on. */
  private async restoreState(instance: QemuInstance): Promise<void> {
    const f = instanceFiles(instance.dir);
    await this.start(instance, `exec:gzip -dc ${f.state}`);
    const client = this.qmp(instance);
    const deadline = Date.now() + 120_000;
    for (;;) {
      const { status } = await client.execute<{ status: string }>('query-status');
      if (status !== 'inmigrate') break;
      if (Date.now() > deadline) throw new Conflict(`Resuming ${instance.uuid}: the saved state did not load within 120 s`);
      await sleep(100);
    }
    const migrate = await client.execute<{ status?: string }>('query-migrate');
    if (migrate.status === 'failed') {
      await this.kill(instance);
      throw new Conflict(`Resuming ${instance.uuid}: the saved state could not be loaded`);
    }
    await client.execute('cont');
    await rm(f.state, { force: true });
  }

  /** Ends QEMU and the metadata proxy and removes the instance directory; never throws. */
  /** @internal (migration.ts) */ async teardown(instance: QemuInstance): Promise<void> {
    try {
      await this.kill(instance);
    } catch (err) {
      this.logger.warn('ending QEMU failed', { uuid: instance.uuid, error: (err as Error).message });
    }
    await instance.metadataProxy?.close().catch(() => undefined);
    instance.metadataProxy = null;
    await rm(instance.dir, { recursive: true, force: true }).catch((err) => this.logger.warn('removing the instance directory failed', { uuid: instance.uuid, error: (err as Error).message }));
    await this.cgroups.remove(instance.uuid);
  }
}

