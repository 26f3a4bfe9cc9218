// The virt driver contract (after Nova's virt/driver.py). A compute agent runs one driver.
// Capabilities default to false; the conductor asks them before it starts a workflow and
// answers 409 with a reason when the driver cannot do it.
import type { InstanceSpec, PowerStateValue } from '../rpc.js';

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
  hypervisorType: string;
  hypervisorVersion: number;
  vcpus: number;
  memoryMb: number;
  localGb: number;
  cpuInfo: Record<string, unknown>;
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
   * Destination: creates the instance from the migrated disk with the spec's (new) flavor, running when
   * `powerOn`, shut off otherwise; resolves with its power state. When the instance already exists here
   * (a repeat) it answers its power state. A failure cleans up what it created.
   */
  finishMigration(instance: InstanceSpec, powerOn: boolean): Promise<PowerStateValue>;
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
