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
  /** Stops whatever the driver runs in this process (not the instances, which outlive the agent where they can). */
  close(): Promise<void>;
}
