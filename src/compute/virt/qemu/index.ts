// The QEMU driver's registry entry ([compute] driver = qemu): the probe finds the emulator and
// the accelerator once per process (a KVM test boot can take its whole time box), and every
// driver built in this process uses that answer.
import type { Config } from '../../../core/config.js';
import { BadRequest } from '../../../core/errors.js';
import type { VirtDriverFactory } from '../index.js';
import { QemuDriver } from './driver.js';
import { probeQemuHost, type QemuHost } from './host.js';

export { QemuDriver, QEMU_CAPABILITIES, QEMU_HYPERVISOR_TYPE } from './driver.js';

let probing: Promise<QemuHost> | undefined;
/** The probe's answer once it succeeded (createVirtDriver probes before it creates). */
let probed: QemuHost | undefined;

async function probeOnce(config: Config): Promise<QemuHost> {
  probing ??= probeQemuHost(config);
  try {
    probed = await probing;
    return probed;
  } catch (err) {
    probing = undefined; // a missing binary may be installed later; probe again next time
    throw err;
  }
}

export const qemuDriverFactory: VirtDriverFactory = {
  probe: async (config) => {
    try {
      const host = await probeOnce(config);
      return { operational: true, info: `QEMU ${host.versionText}, ${host.accelerator.toUpperCase()} (${host.acceleratorReason})` };
    } catch (err) {
      return { operational: false, info: (err as Error).message };
    }
  },
  create: (context) => {
    if (!context.bus) throw new BadRequest('the QEMU driver needs the message bus (image data and metadata come over it)');
    if (!probed) throw new BadRequest('the QEMU driver was created before its probe succeeded');
    return new QemuDriver({ config: context.config, host: context.host, logger: context.logger, bus: context.bus, dataDir: context.dataDir, qemu: probed });
  },
};
