// Rescue, unrescue and rebuild on QEMU. A rescued instance boots from disk.rescue (an overlay on the rescue image)
// with its own disk attached second (/dev/vdb), as Nova's libvirt driver does; the file's presence is the rescue
// state. Rebuild powers the guest off, makes the root disk anew from the spec's image (and the ephemeral disk unless
// preserved, and the config drive), and boots it.
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { NotFound } from '../../../core/errors.js';
import { writeConfigDrive } from '../../../metadata/config-drive.js';
import type { InstanceSpec, PowerStateValue } from '../../rpc.js';
import { createEphemeralDisk, createRootDisk, qemuImg } from './disks.js';
import type { QemuDriver, QemuInstance } from './driver.js';
import { instanceFiles, launchQemu, qemuArgs } from './process.js';

const rescueDisk = (dir: string) => join(dir, 'disk.rescue');

/** The instance's command line with the rescue disk first and its own disk second. */
function rescueArgs(driver: QemuDriver, instance: QemuInstance): string[] {
  const f = instanceFiles(instance.dir);
  const args = qemuArgs(instance.dir, instance.record, driver.launch)
    .map((a) => a === `driver=file,filename=${f.disk},node-name=disk0-file` ? `driver=file,filename=${rescueDisk(instance.dir)},node-name=disk0-file` : a);
  const device = args.indexOf('virtio-blk-pci,drive=disk0,id=virtio-disk0,bootindex=1');
  args.splice(device + 1, 0,
    '-blockdev', `driver=file,filename=${f.disk},node-name=orig0-file`,
    '-blockdev', 'driver=qcow2,file=orig0-file,node-name=orig0',
    '-device', 'virtio-blk-pci,drive=orig0,id=virtio-disk1');
  return args;
}

export async function rescueInstance(driver: QemuDriver, uuid: string, image: { id: string }): Promise<PowerStateValue> {
  const instance = driver.get(uuid);
  const pid = await driver.currentState(instance);
  if (existsSync(rescueDisk(instance.dir)) && instance.pid !== null) return pid; // rescued already (a repeat)
  await driver.powerOff(instance, 0);
  await rm(instanceFiles(instance.dir).state, { force: true });
  const cached = await driver.images.get(image.id);
  await rm(rescueDisk(instance.dir), { force: true });
  await qemuImg(['create', '-q', '-f', 'qcow2', '-b', cached.path, '-F', cached.format, rescueDisk(instance.dir), String(cached.virtualSize)]);
  try {
    await rm(instanceFiles(instance.dir).pid, { force: true });
    const cgroupProcs = await driver.cgroups.prepare(instance.record.spec);
    instance.pid = await launchQemu(driver.launch.emulator, rescueArgs(driver, instance), cgroupProcs);
    await driver.connect(instance, 10_000);
    await driver.readVncPort(instance).catch(() => undefined);
  } catch (err) {
    await rm(rescueDisk(instance.dir), { force: true });
    throw err;
  }
  return driver.currentState(instance);
}

export async function unrescueInstance(driver: QemuDriver, uuid: string): Promise<PowerStateValue> {
  const instance = driver.get(uuid);
  if (!existsSync(rescueDisk(instance.dir))) return driver.currentState(instance); // not rescued: the end state holds
  await driver.powerOff(instance, 0);
  await rm(rescueDisk(instance.dir), { force: true });
  await driver.start(instance);
  return driver.currentState(instance);
}

/** Rebuild of an instance this driver has (the caller spawns one it does not have). */
export async function rebuildInstance(driver: QemuDriver, spec: InstanceSpec, options: { preserveEphemeral: boolean; shutdownTimeoutSeconds: number }): Promise<PowerStateValue> {
  const instance = driver.instances.get(spec.uuid);
  if (!instance) throw new NotFound(`Instance ${spec.uuid} could not be found on this host.`);
  const f = instanceFiles(instance.dir);
  const state = await driver.currentState(instance);
  await driver.powerOff(instance, state === 1 ? options.shutdownTimeoutSeconds : 0);
  await rm(f.state, { force: true });
  await rm(rescueDisk(instance.dir), { force: true });
  await rm(f.disk, { force: true });
  if (spec.image) await createRootDisk(f.disk, await driver.images.get(spec.image.id), spec.flavor.rootGb);
  else await qemuImg(['create', '-q', '-f', 'qcow2', f.disk, String(Math.max(1, spec.flavor.rootGb) * 1024 ** 3)]);
  if (instance.record.disks.ephemeral && !options.preserveEphemeral) {
    await rm(f.ephemeral, { force: true });
    await createEphemeralDisk(f.ephemeral, spec.flavor.ephemeralGb);
  }
  instance.record.spec = spec;
  if (instance.record.disks.configDrive) {
    await rm(f.config, { force: true });
    await writeConfigDrive(driver.options.bus, spec.uuid, f.config);
  }
  await driver.saveRecord(instance);
  await driver.start(instance);
  return driver.currentState(instance);
}
