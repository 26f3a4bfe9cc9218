// GET /servers/{id}/diagnostics (os-server-diagnostics, admin only by default). Before 2.48 the driver's
// own flat dict, in the shape Nova's libvirt driver gives (cpu0_time, memory, vda_read, tap..._rx, ...);
// from 2.48 the standard shape every driver shares (nova/api/openstack/compute/views/server_diagnostics.py).
import type { FastifyInstance } from 'fastify';
import { NotFound } from '../../core/errors.js';
import { atLeast } from '../../http/microversion.js';
import type { InstanceDiagnostics } from '../virt/driver.js';
import { authorize, callerOf, type ComputeApiDeps } from './common.js';

const POLICY = 'os_compute_api:os-server-diagnostics';

/** The 2.48 body: every field always present, null where the hypervisor gives nothing. */
export function standardDiagnostics(d: InstanceDiagnostics): Record<string, unknown> {
  return {
    state: d.state, driver: d.driver, hypervisor: d.hypervisor, hypervisor_os: d.hypervisorOs, uptime: d.uptime,
    config_drive: d.configDrive, num_cpus: d.cpuDetails.length, num_disks: d.diskDetails.length, num_nics: d.nicDetails.length,
    memory_details: { maximum: d.memoryDetails.maximum, used: d.memoryDetails.used },
    cpu_details: d.cpuDetails.map((c) => ({ id: c.id, time: c.time, utilisation: c.utilisation })),
    disk_details: d.diskDetails.map((k) => ({
      read_bytes: k.readBytes, read_requests: k.readRequests, write_bytes: k.writeBytes, write_requests: k.writeRequests, errors_count: k.errorsCount,
    })),
    nic_details: d.nicDetails.map((n) => ({
      mac_address: n.macAddress, rx_octets: n.rxOctets, rx_errors: n.rxErrors, rx_drop: n.rxDrop, rx_packets: n.rxPackets, rx_rate: n.rxRate,
      tx_octets: n.txOctets, tx_errors: n.txErrors, tx_drop: n.txDrop, tx_packets: n.txPackets, tx_rate: n.txRate,
    })),
  };
}

/**
 * The pre-2.48 body, keyed as Nova's libvirt get_diagnostics: cpu<N>_time (ns), memory (KiB), memory-rss (KiB),
 * <disk>_read/_read_req/_write/_write_req/_errors, <nic>_rx/_rx_packets/_rx_errors/_rx_drop/_tx/... Counters the
 * hypervisor does not give are left out, except <disk>_errors, which libvirt reports as -1 then.
 */
export function legacyDiagnostics(d: InstanceDiagnostics): Record<string, number> {
  const out: Record<string, number> = {};
  const put = (key: string, value: number | null) => { if (value !== null) out[key] = value; };
  for (const cpu of d.cpuDetails) put(`cpu${cpu.id}_time`, cpu.time);
  put('memory', d.memoryDetails.maximum === null ? null : d.memoryDetails.maximum * 1024);
  put('memory-rss', d.memoryDetails.used === null ? null : d.memoryDetails.used * 1024);
  for (const disk of d.diskDetails) {
    put(`${disk.name}_read`, disk.readBytes);
    put(`${disk.name}_read_req`, disk.readRequests);
    put(`${disk.name}_write`, disk.writeBytes);
    put(`${disk.name}_write_req`, disk.writeRequests);
    out[`${disk.name}_errors`] = disk.errorsCount ?? -1;
  }
  for (const nic of d.nicDetails) {
    put(`${nic.name}_rx`, nic.rxOctets);
    put(`${nic.name}_rx_packets`, nic.rxPackets);
    put(`${nic.name}_rx_errors`, nic.rxErrors);
    put(`${nic.name}_rx_drop`, nic.rxDrop);
    put(`${nic.name}_tx`, nic.txOctets);
    put(`${nic.name}_tx_packets`, nic.txPackets);
    put(`${nic.name}_tx_errors`, nic.txErrors);
    put(`${nic.name}_tx_drop`, nic.txDrop);
  }
  return out;
}

export function diagnosticsRoutes(app: FastifyInstance, deps: ComputeApiDeps): void {
  deps.policy.register({ [POLICY]: 'rule:admin_api' });

  app.get('/servers/:id/diagnostics', async (request) => {
    const { id } = request.params as { id: string };
    const instance = await deps.compute.servers.get(callerOf(request), id).catch((err) => {
      // A caller who may not see the server is refused by policy first, as Nova checks it on the project's target.
      if (err instanceof NotFound) authorize(deps, request, POLICY);
      throw err;
    });
    authorize(deps, request, POLICY, { project_id: instance.projectId, user_id: instance.userId });
    const diagnostics = await deps.compute.diagnostics.get(instance);
    return atLeast(request, '2.48') ? standardDiagnostics(diagnostics) : legacyDiagnostics(diagnostics);
  });
}
