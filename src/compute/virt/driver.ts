// The virt driver contract (after Nova's virt/driver.py). A compute agent runs one driver.
// Capabilities default to false; the conductor asks them before it starts a workflow and
// answers 409 with a reason when the driver cannot do it.
import type { InstanceSpec, InstanceVif, PowerStateValue } from '../rpc.js';

export interface DriverCapabilities {
  supportsPause: boolean;
  supportsSuspend: boolean;
  supportsSnapshot: boolean;
  supportsRescue: boolean;
  supportsResize: boolean;
  supportsLiveMigration: boolean;
  supportsEvacuate: boolean;
  supportsConsoleLog: boolean;
  supportsVncConsole: boolean;
}

export const NO_CAPABILITIES: DriverCapabilities = {
  supportsPause: false, supportsSuspend: false, supportsSnapshot: false, supportsRescue: false, supportsResize: false,
  supportsLiveMigration: false, supportsEvacuate: false, supportsConsoleLog: false, supportsVncConsole: false,
};

/** What the driver reports about the host it runs on. */
export interface HostResources {
  hypervisorType: string;           // 'QEMU', 'fake'
  hypervisorVersion: number;        // e.g. 7002000 for 7.2.0
  vcpus: number;
  memoryMb: number;
  localGb: number;
  cpuInfo: Record<string, unknown>;
  /** [[arch, hypervisor_type, vm_mode]], e.g. [['x86_64', 'qemu', 'hvm']] */
  supportedInstances: [string, string, string][];
  /** Traits beyond the standard ones the agent adds (e.g. COMPUTE_STATUS_DISABLED is managed elsewhere). */
  traits: string[];
}

/**
 * Power operations on a running or stopped instance, as Nova's power_off/power_on/reboot/
 * pause/unpause/suspend/resume. `stop` asks the guest first (ACPI) and forces it off after
 * the timeout; `reboot-soft` asks the guest, `reboot-hard` resets it.
 */
export type PowerOperation = 'stop' | 'start' | 'reboot-soft' | 'reboot-hard' | 'pause' | 'unpause' | 'suspend' | 'resume';

/** A VNC server's address as the console proxy connects to it (Nova's ctype.ConsoleVNC). */
export interface VncConsole {
  host: string;
  port: number | null;
  internalAccessPath: string | null;
}

/** A root disk as image data (VirtDriver.snapshot), read range by range until it is discarded. */
export interface DiskSnapshot {
  /** Bytes of image data. */
  size: number;
  /** The Glance formats of the data (raw/bare for the fake driver, qcow2/bare for QEMU). */
  diskFormat: string;
  containerFormat: string;
  /** Bytes [offset, offset + length), shorter at the end. */
  read(offset: number, length: number): Promise<Buffer>;
  /** Frees what holds the data (QEMU: a file in the instance directory); a second call does nothing. */
  discard(): Promise<void>;
}

/** Where a live migration job on the source host is (Nova's libvirt job info, reduced). */
export interface LiveMigrationJob {
  status: 'running' | 'completed' | 'failed' | 'cancelled';
  /** The migration record the job carries out (so a resumed conductor does not mistake an older job for it). */
  migrationUuid: string;
  /** The host the instance goes to. */
  destHost: string;
  memoryTotal: number;
  memoryProcessed: number;
  memoryRemaining: number;
  diskTotal: number;
  diskProcessed: number;
  diskRemaining: number;
  /** Why it failed, when it did. */
  error?: string;
  /** When the hypervisor reports them (QEMU's query-migrate total-time and downtime), for `nubo bench vm`. */
  totalTimeMs?: number;
  downtimeMs?: number;
}

/**
 * One instance's diagnostics in Nova's standard shape (nova/objects/diagnostics.py, the API from 2.48).
 * Counters are totals since the guest started. `name` on disks and NICs is the device name the
 * pre-2.48 flat dict uses as its key prefix (vda_read, tap0_rx, ...); it is not shown from 2.48.
 * A counter the hypervisor does not give is null.
 */
export interface InstanceDiagnostics {
  /** 'pending' | 'running' | 'paused' | 'shutdown' | 'crashed' | 'suspended' (Nova's power state names). */
  state: string;
  /** The virt driver ('fake', 'qemu'). */
  driver: string;
  /** The hypervisor ('fake', 'qemu' under TCG, 'kvm'). */
  hypervisor: string | null;
  hypervisorOs: string | null;
  /** Seconds since the guest started. */
  uptime: number | null;
  configDrive: boolean;
  /** MiB: maximum is the guest's memory size, used what the host really backs it with (RSS) where known. */
  memoryDetails: { maximum: number | null; used: number | null };
  /** Per vCPU: time in nanoseconds, utilisation in percent (null when not measured). */
  cpuDetails: { id: number; time: number | null; utilisation: number | null }[];
  diskDetails: { name: string; readBytes: number | null; readRequests: number | null; writeBytes: number | null; writeRequests: number | null; errorsCount: number | null }[];
  nicDetails: {
    name: string; macAddress: string | null;
    rxOctets: number | null; rxErrors: number | null; rxDrop: number | null; rxPackets: number | null; rxRate: number | null;
    txOctets: number | null; txErrors: number | null; txDrop: number | null; txPackets: number | null; txRate: number | null;
  }[];
}

export interface VirtDriver {
  readonly name: string;
  readonly capabilities: DriverCapabilities;
  /** Called once when the agent starts (probe, re-adopt running instances). */
  init(): Promise<void>;
  hostResources(): Promise<HostResources>;
  /** Builds and starts the instance. A failed spawn cleans up fully before it throws. */
  spawn(instance: InstanceSpec): Promise<void>;
  /** Removes the instance and its files. Must succeed if the instance is already gone. */
  destroy(uuid: string): Promise<void>;
  /** The instance's power state, or null when this driver does not have it. */
  powerState(uuid: string): Promise<PowerStateValue | null>;
  /** Every instance this driver has. */
  listInstances(): Promise<string[]>;
  /**
   * Applies a power operation and resolves with the power state the instance is in afterwards.
   * Applying an operation whose end state already holds (stop a stopped instance) succeeds.
   * NotFound when the driver does not have the instance.
   */
  changePower(uuid: string, operation: PowerOperation, options?: { timeoutSeconds?: number }): Promise<PowerStateValue>;
  /** The tail of the instance's console log (`length` lines; all when undefined). */
  consoleOutput(uuid: string, length?: number): Promise<string>;
  /** Sets the guest's administrator password (needs a guest agent; the fake driver records it). */
  setAdminPassword(uuid: string, password: string): Promise<void>;
  /** Injects an NMI so the guest's kernel dumps (Nova's trigger_crash_dump). */
  triggerCrashDump(uuid: string): Promise<void>;
  /**
   * Hot-plugs a port (os-interface attach) into the instance, running or stopped; attaching a VIF it
   * already has is a no-op. NotFound when the driver does not have the instance. Optional: a driver
   * without it refuses interface attach (the agent answers 409).
   */
  attachInterface?(uuid: string, vif: InstanceVif): Promise<void>;
  /** Unplugs a port from the instance; succeeds when it is not plugged. */
  detachInterface?(uuid: string, portId: string): Promise<void>;
  /**
   * Where the instance's VNC server can be reached from the console proxy: a host and TCP port, or a unix socket
   * path in internalAccessPath (port null). NotFound when the driver does not have the instance. A stopped guest
   * still answers (as Nova's libvirt driver does): the proxy then finds nothing listening.
   */
  getVncConsole(uuid: string): Promise<VncConsole>;
  /**
   * The running instance's diagnostics (Nova's get_instance_diagnostics). Optional: an agent whose driver
   * lacks it answers "not supported" and the API a 501, as Nova does for a driver's NotImplementedError.
   * NotFound when the driver does not have the instance.
   */
  diagnostics?(uuid: string): Promise<InstanceDiagnostics>;
  /**
   * The instance's root disk as it is now, as image data (Nova's snapshot). The instance keeps
   * running (or stays stopped/paused); NotFound when the driver does not have it. The caller reads
   * the data in ranges (the agent serves them to the conductor) and then discards it.
   */
  snapshot(uuid: string): Promise<DiskSnapshot>;
  /**
   * Rescue: the instance boots from `image` with its own disk attached as a second disk, the
   * rescue system's password set to `adminPass`. Resolves with the power state (running).
   * A rescue that fails leaves the instance as it was where it can; rescuing again from the same
   * image succeeds (a resumed workflow).
   */
  rescue(uuid: string, image: { id: string; properties: Record<string, string> }, adminPass: string | null): Promise<PowerStateValue>;
  /** Leaves rescue: the instance boots from its own disk again. Succeeds when it is not rescued (the end state holds). */
  unrescue(uuid: string): Promise<PowerStateValue>;
  /**
   * Rebuild: the root disk is re-created from `instance.image` (name, metadata, key, user data and
   * password from the spec), the instance keeps its identity and resources, and it is started.
   * `preserveEphemeral` keeps the ephemeral disk. An instance the driver does not have is spawned.
   */
  rebuild(instance: InstanceSpec, options: { preserveEphemeral: boolean }): Promise<PowerStateValue>;

  // ---- live migration (capability supportsLiveMigration) ----
  // The conductor drives the steps: prepareIncomingMigration on the destination (Nova's
  // pre_live_migration), liveMigrate on the source (starts the transfer and returns), then it
  // polls liveMigrationJob on the source. When the job completed, the source has dropped the
  // instance and finishIncomingMigration makes the destination run it; when it failed or was
  // cancelled, the source still runs it unchanged and rollbackIncomingMigration removes what
  // the destination prepared. Every step may be repeated (a resumed workflow).
  /** Destination: makes ready to receive the instance (paused, not running). Repeating it is a no-op. */
  prepareIncomingMigration(instance: InstanceSpec, sourceHost: string): Promise<void>;
  /** Source: starts transferring the instance to destHost; resolves once the job runs. Conflict when one runs already. */
  liveMigrate(uuid: string, destHost: string, options: { blockMigration: boolean; migrationUuid: string }): Promise<void>;
  /** Source: the instance's migration job (the last one, also once it ended), or null when there is none. */
  liveMigrationJob(uuid: string): Promise<LiveMigrationJob | null>;
  /** Source: cancels a running job; the instance keeps running here. Conflict when no job runs. */
  abortLiveMigration(uuid: string): Promise<void>;
  /** Source: finishes a running job now (pauses the guest so the last memory goes at once). Conflict when no job runs. */
  forceCompleteLiveMigration(uuid: string): Promise<void>;
  /** Destination: the transfer completed; run the instance in the given power state. NotFound when nothing was prepared or received. */
  finishIncomingMigration(uuid: string, powerState: PowerStateValue): Promise<PowerStateValue>;
  /** Destination: forgets what prepareIncomingMigration made (succeeds when there is nothing). Never removes a running instance. */
  rollbackIncomingMigration(uuid: string): Promise<void>;
  /** Stops whatever the driver runs in this process (not the instances, which outlive the agent where they can). */
  close(): Promise<void>;

  // Cold migration and resize (Nova's migrate_disk_and_power_off, finish_migration, confirm_migration,
  // finish_revert_migration). The source keeps a powered-off copy of a moved instance until the move is
  // confirmed or reverted; that copy is not one of listInstances() (reconciliation must not remove it),
  // and destroy() removes it too. Every step succeeds when repeated after it already happened (a resumed
  // workflow repeats its last step), so each one reads what the host already has.
  /**
   * Source: powers the instance off and makes its disk ready for `flavor` on the destination; the
   * instance becomes the held source copy. Throws ResizeError-like BadRequest "Unable to resize disk
   * down." when the new root disk is smaller (nothing changed then). Succeeds when the instance is
   * already held as a source copy; NotFound when the driver has neither.
   */
  migrateDiskAndPowerOff(uuid: string, flavor: InstanceSpec['flavor'], options?: { timeoutSeconds?: number }): Promise<void>;
  /**
   * Destination: creates the instance from the migrated disk (fetched from `options.sourceHost`, which the QEMU driver needs) with the spec's (new) flavor, running when
   * `powerOn`, shut off otherwise; resolves with its power state. When the instance already exists here
   * (a repeat) it answers its power state. A failure cleans up what it created.
   */
  finishMigration(instance: InstanceSpec, powerOn: boolean, options?: { sourceHost?: string }): Promise<PowerStateValue>;
  /** Source, on confirm: removes the held source copy. Succeeds when there is none. */
  confirmMigration(uuid: string): Promise<void>;
  /** Destination, on revert: removes the instance created by finishMigration, never a held source copy. Succeeds when gone. */
  revertMigration(uuid: string): Promise<void>;
  /**
   * Source, on revert: the held source copy becomes the instance again, running when `powerOn`;
   * resolves with its power state. When it already is the instance (a repeat) it answers its power state.
   */
  finishRevertMigration(uuid: string, powerOn: boolean): Promise<PowerStateValue>;
}
