// The metadata service over the bus: every controller process serves METADATA_TOPIC (calls are
// shared between them); compute agents call it, the per-instance proxy for guest requests and the
// virt driver for the config drive's files. Agents never read the database themselves.
import type { Bus, Subscription } from '../bus/types.js';
import type { GuestRequest, GuestResponse, InstanceFiles, MetadataService } from './service.js';

export const METADATA_TOPIC = 'metadata';

/** Methods the controller serves on METADATA_TOPIC. */
export interface MetadataRpc {
  /** The whole config-drive tree of an instance; NotFound when it does not exist (or is deleted). */
  instanceFiles(args: { uuid: string }): Promise<InstanceFiles>;
  /** One guest HTTP request for that instance; never throws for a bad path (404 in the answer). */
  guestRequest(args: GuestRequest): Promise<GuestResponse>;
}

/** Serves the metadata methods on the bus; close the subscription to stop. */
export function serveMetadata(bus: Bus, service: MetadataService): Promise<Subscription> {
  const handlers: MetadataRpc = {
    instanceFiles: ({ uuid }) => service.instanceFiles(uuid),
    guestRequest: (args) => service.guestRequest(args),
  };
  return bus.serve(METADATA_TOPIC, handlers as unknown as Record<string, (args: any) => Promise<unknown>>);
}

/** A typed client for the metadata methods. */
export function metadataClient(bus: Bus, timeoutMs = 30_000): MetadataRpc {
  const call = (method: string) => (args: unknown) => bus.call(METADATA_TOPIC, method, args, { timeoutMs }) as Promise<any>;
  return { instanceFiles: call('instanceFiles'), guestRequest: call('guestRequest') };
}
