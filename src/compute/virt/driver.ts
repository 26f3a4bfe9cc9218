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
}
