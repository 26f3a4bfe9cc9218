// os-server-diagnostics: the instance's counters from its host (Nova's compute API get_diagnostics and
// get_instance_diagnostics plus the compute manager's part). Only a running guest has diagnostics.
import type { Bus } from '../bus/types.js';
import { Conflict, NuboError } from '../core/errors.js';
import type { HostService } from './hosts.js';
import type { Instance } from './instances.js';
import { agentClient, POWER_STATE_NAMES, PowerState } from './rpc.js';
import type { InstanceDiagnostics } from './virt/driver.js';

/** A 501, as Nova's common.raise_feature_not_supported answers a driver's NotImplementedError. */
export class DiagnosticsNotSupported extends NuboError {
  constructor(message = 'The requested functionality is not supported.') { super(501, 'Not Implemented', message); }
}

export interface ServerDiagnosticsDeps {
  bus: Bus;
  hosts: HostService;
  rpcTimeoutMs: number;
}

export class ServerDiagnostics {
  constructor(private readonly deps: ServerDiagnosticsDeps) {}

  /**
   * The instance's diagnostics from its host. 409 while it has no host (building, shelved offloaded), when its
   * host is down, and when the guest is not running ("... while it is in power state shutdown"); 501 when the
   * host's driver has no diagnostics.
   */
  async get(instance: Instance): Promise<InstanceDiagnostics> {
    // Nova's check_instance_host: an instance without a host is not ready.
    const host = instance.host;
    if (!host) throw new Conflict(`Instance ${instance.id} is not ready`);
    if (!(await this.deps.hosts.isHostUp(host))) throw new Conflict(`Instance ${instance.id} is not ready: the compute service on ${host} is down`);
    const answer = await agentClient(this.deps.bus, host, this.deps.rpcTimeoutMs).getDiagnostics({ uuid: instance.id }).catch((err: Error) => {
      throw new Conflict(`Instance ${instance.id} is not ready: ${err.message}`);
    });
    if (!answer.diagnostics) {
      // Power state first, as the compute manager checks it before it asks the driver.
      if (answer.powerState === PowerState.RUNNING && !answer.supported) throw new DiagnosticsNotSupported();
      const state = POWER_STATE_NAMES[answer.powerState] ?? String(answer.powerState);
      throw new Conflict(`Cannot 'get_diagnostics' instance ${instance.id} while it is in power state ${state}`);
    }
    return answer.diagnostics;
  }
}
