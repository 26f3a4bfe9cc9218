// The metadata service and config drive (see service.ts); agents use proxy.ts and config-drive.ts.
import type { Bus } from '../bus/types.js';
import { readFileSync } from 'node:fs';
import type { Config } from '../core/config.js';
import type { Logger } from '../core/log.js';
import type { ComputeServices } from '../compute/index.js';
import { MetadataService, type NetworkInfoProvider } from './service.js';
import { serveMetadata } from './rpc.js';

export { MetadataService, type MetadataServiceDeps, type NetworkInfoProvider, type GuestRequest, type GuestResponse, type InstanceFiles } from './service.js';
export { METADATA_TOPIC, serveMetadata, metadataClient, type MetadataRpc } from './rpc.js';
export { startMetadataProxy, type MetadataProxy } from './proxy.js';
export { buildConfigDrive, writeConfigDrive } from './config-drive.js';

/**
 * The metadata service of a controller process, served on the bus. network_data.json and the
 * EC2 addresses come from the instance's ports, as the compute service sees them (its VIFs).
 */
export async function startMetadataService(options: { config: Config; bus: Bus; compute: ComputeServices; logger?: Logger }): Promise<{ service: MetadataService; close(): Promise<void> }> {
  const service = new MetadataService({
    instances: options.compute.instances,
    keypairs: options.compute.keypairs,
    serverPasswords: options.compute.serverPasswords,
    networkInfo: (uuid) => options.compute.networking.vifs(uuid),
    dhcpDomain: options.config.get('api', 'dhcp_domain', 'novalocal'),
    defaultAvailabilityZone: options.config.get('DEFAULT', 'default_availability_zone', 'nova'),
    staticVendorData: staticVendorData(options.config.getOptional('api', 'vendordata_jsonfile_path'), options.logger),
  });
  const subscription = await serveMetadata(options.bus, service);
  return { service, close: () => subscription.close() };
}

/** Nova's JsonFileVendorData: the file's JSON object, {} (with a warning) when it cannot be read or is not one. */
function staticVendorData(path: string | undefined, logger?: Logger): () => Record<string, unknown> {
  return () => {
    if (!path) return {};
    try {
      const data = JSON.parse(readFileSync(path, 'utf8'));
      if (data !== null && typeof data === 'object' && !Array.isArray(data)) return data;
      logger?.warn(`vendordata_jsonfile_path ${path} does not hold a JSON object; serving {}`);
    } catch (err) {
      logger?.warn(`cannot read vendordata_jsonfile_path ${path}: ${err instanceof Error ? err.message : String(err)}; serving {}`);
    }
    return {};
  };
}
