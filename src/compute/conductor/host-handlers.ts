// The conductor's RPC handlers for what agents report about their hosts: registration and
// heartbeats (ConductorRpc.registerHost / heartbeat). The conductor spreads them into what it
// serves on CONDUCTOR_TOPIC; they go straight to the HostService.
import type { RpcContext } from '../../bus/types.js';
import type { HostService } from '../hosts.js';
import type { ConductorRpc, HostReport } from '../rpc.js';

export interface HostHandlers {
  registerHost(args: { report: HostReport }, context?: RpcContext): ReturnType<ConductorRpc['registerHost']>;
  heartbeat(args: { host: string }, context?: RpcContext): ReturnType<ConductorRpc['heartbeat']>;
}

export function hostHandlers(hosts: HostService): HostHandlers {
  return {
    registerHost: (args) => hosts.registerHost(args?.report),
    heartbeat: (args) => hosts.heartbeat(args?.host),
  };
}
