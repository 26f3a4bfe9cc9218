// Resize and cold migration on QEMU (Nova's migrate_disk_and_power_off, finish_migration, confirm_migration,
// finish_revert_migration). The source powers the guest off and keeps its directory as <uuid>_resize (the held
// copy, as Nova's libvirt driver does; not an instance, so reconciliation leaves it alone). The destination asks the
// source on the bus (qemu-migration.<source>, see migration.ts) for one-time tokens and pulls the disks over HTTP from
// the source's disk server ([compute] migration_listen_address, default [DEFAULT] my_ip; [compute] migration_port,
// default a free port): the root disk's qcow2 overlay (rebased onto the destination's own cached copy of the image and
// grown to the new flavor with qemu-img resize) and the ephemeral disk. Swap and the config drive are made anew.
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { createServer, get as httpGet, type Server } from 'node:http';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { BadRequest, Conflict, NotFound } from '../../../core/errors.js';
import { writeConfigDrive } from '../../../metadata/config-drive.js';
import { PowerState, type InstanceSpec, type PowerStateValue } from '../../rpc.js';
import { createSwapDisk, qemuImg, qemuImgInfo } from './disks.js';
import type { QemuDriver, QemuInstance } from './driver.js';
import type { DiskSnapshot } from '../driver.js';
import { migrationTopic } from './migration.js';
import { instanceFiles, readInstanceRecord, upgradeRecord, type InstanceRecord } from './process.js';

const GIB = 1024 ** 3;
const TOKEN_TTL_MS = 10 * 60_000;

/** What the source answers the destination: the held copy's record and where to fetch each disk. */
export interface HeldDisks {
  record: InstanceRecord;
  /** file name in the instance directory → URL with a one-time token */
  files: Record<string, string>;
}

export class ColdMigrations {
  private server: Server | null = null;
  private serverUrl: Promise<string> | null = null;
  private readonly tokens = new Map<string, { path: string; expires: number }>();

  constructor(private readonly driver: QemuDriver) {}

  private get config() { return this.driver.options.config; }
  private heldDir(uuid: string): string { return join(this.driver.instancesPath, `${uuid}_resize`); }

  async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    this.serverUrl = null;
    this.tokens.clear();
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }

  // ---- source ----

  async migrateDiskAndPowerOff(uuid: string, flavor: InstanceSpec['flavor'], options: { timeoutSeconds?: number }): Promise<void> {
    return this.driver.serialized(uuid, async () => {
      const instance = this.driver.instances.get(uuid);
      if (!instance) {
        if (existsSync(join(this.heldDir(uuid), 'instance.json'))) return; // a repeat
        throw new NotFound(`Instance ${uuid} could not be found on this host.`);
      }
      const f = instanceFiles(instance.dir);
      const current = (await qemuImgInfo(f.disk, 'qcow2'))['virtual-size'];
      if (flavor.rootGb > 0 && flavor.rootGb * GIB < current) throw new BadRequest('Unable to resize disk down.');
      if (instance.record.disks.ephemeral && flavor.ephemeralGb < instance.record.spec.flavor.ephemeralGb) throw new BadRequest('Unable to resize disk down.');
      const state = await this.driver.currentState(instance);
      await this.driver.powerOff(instance, state === PowerState.RUNNING ? (options.timeoutSeconds ?? 60) : 0);
      await instance.metadataProxy?.close().catch(() => undefined);
      instance.metadataProxy = null;
      await rm(f.state, { force: true }); // a suspended guest's memory does not move (Nova powers it off too)
      await rm(this.heldDir(uuid), { recursive: true, force: true });
      await rename(instance.dir, this.heldDir(uuid));
      this.driver.instances.delete(uuid);
    });
  }

  /** Bus method: one-time URLs for the held copy's disks (asked by the destination). */
  async heldDisks(uuid: string): Promise<HeldDisks> {
    const dir = this.heldDir(uuid);
    const record = await readInstanceRecord(dir).catch(() => {
      throw new NotFound(`Instance ${uuid} has no disks held for a migration on this host`);
    });
    const base = await this.url();
    const files: Record<string, string> = {};
    for (const name of ['disk', ...(record.disks.ephemeral ? ['disk.eph0'] : [])]) {
      const token = randomBytes(24).toString('hex');
      this.tokens.set(token, { path: join(dir, name), expires: Date.now() + TOKEN_TTL_MS });
      files[name] = `${base}/disk/${token}`;
    }
    return { record, files };
  }

  /** The disk server: GET /disk/<token> streams the file the token names, once. */
  private url(): Promise<string> {
    this.serverUrl ??= new Promise((resolve, reject) => {
      const server = createServer((req, res) => {
        const token = /^\/disk\/([0-9a-f]{48})$/.exec(req.url ?? '')?.[1];
        const grant = token ? this.tokens.get(token) : undefined;
        if (token) this.tokens.delete(token);
        if (req.method !== 'GET' || !grant || grant.expires < Date.now()) {
          res.writeHead(403).end();
          return;
        }
        res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
        pipeline(createReadStream(grant.path), res).catch(() => res.destroy());
      });
      const address = this.config.get('compute', 'migration_listen_address', this.config.get('DEFAULT', 'my_ip', '127.0.0.1'));
      const port = this.config.getInt('compute', 'migration_port', 0);
      server.once('error', reject);
      server.listen(port, address, () => {
        this.server = server;
        const bound = server.address() as { port: number };
        resolve(`http://${address.includes(':') ? `[${address}]` : address}:${bound.port}`);
      });
    });
    return this.serverUrl;
  }

  async confirmMigration(uuid: string): Promise<void> {
    await rm(this.heldDir(uuid), { recursive: true, force: true });
  }

  async finishRevertMigration(uuid: string, powerOn: boolean): Promise<PowerStateValue> {
    return this.driver.serialized(uuid, async () => {
      const held = this.heldDir(uuid);
      const existing = this.driver.instances.get(uuid);
      if (existing && !existsSync(held)) return this.driver.currentState(existing); // a repeat
      if (!existsSync(held)) throw new NotFound(`Instance ${uuid} has no copy held on this host`);
      if (existing) {
        // A resize to the same host: the new copy goes first.
        this.driver.instances.delete(uuid);
        await this.driver.teardown(existing);
      }
      const dir = join(this.driver.instancesPath, uuid);
      await rm(dir, { recursive: true, force: true });
      await rename(held, dir);
      const record = await readInstanceRecord(dir);
      const instance: QemuInstance = { uuid, dir, record, qmp: null, pid: null, metadataProxy: null };
      this.driver.instances.set(uuid, instance);
      await this.driver.startMetadata(instance);
      if (powerOn) await this.driver.start(instance);
      return this.driver.currentState(instance);
    });
  }

  // ---- destination ----

  async finishMigration(spec: InstanceSpec, powerOn: boolean, sourceHost: string | undefined): Promise<PowerStateValue> {
    return this.driver.serialized(spec.uuid, async () => {
      const existing = this.driver.instances.get(spec.uuid);
      if (existing) return this.driver.currentState(existing); // a repeat
      if (!sourceHost) throw new BadRequest('finishMigration on QEMU needs the source host');
      const held = await this.driver.options.bus.call<HeldDisks>(migrationTopic(sourceHost), 'heldDisks', { uuid: spec.uuid }, { timeoutMs: 30_000 });
      const dir = join(this.driver.instancesPath, spec.uuid);
      const f = instanceFiles(dir);
      const record: InstanceRecord = {
        spec, nics: upgradeRecord(held.record).nics, vncPort: null, // upgraded: the source may be an agent of before NIC slots
        disks: { ephemeral: held.record.disks.ephemeral, swap: spec.flavor.swapMb > 0, configDrive: held.record.disks.configDrive },
      };
      const instance: QemuInstance = { uuid: spec.uuid, dir, record, qmp: null, pid: null, metadataProxy: null };
      try {
        await rm(dir, { recursive: true, force: true });
        await mkdir(dir, { recursive: true, mode: 0o700 });
        for (const [name, url] of Object.entries(held.files)) await download(url, join(dir, name));
        if (spec.image) {
          // The overlay names the source's cache; this host has its own copy of the same image.
          const image = await this.driver.images.get(spec.image.id);
          await qemuImg(['rebase', '-u', '-f', 'qcow2', '-b', image.path, '-F', image.format, f.disk]);
        }
        const size = (await qemuImgInfo(f.disk, 'qcow2'))['virtual-size'];
        if (spec.flavor.rootGb * GIB > size) await qemuImg(['resize', '-q', '-f', 'qcow2', f.disk, String(spec.flavor.rootGb * GIB)]);
        if (record.disks.ephemeral && spec.flavor.ephemeralGb * GIB > (await qemuImgInfo(f.ephemeral, 'raw'))['virtual-size']) {
          await qemuImg(['resize', '-q', '-f', 'raw', f.ephemeral, String(spec.flavor.ephemeralGb * GIB)]);
        }
        if (record.disks.swap) await createSwapDisk(f.swap, spec.flavor.swapMb);
        if (record.disks.configDrive) await writeConfigDrive(this.driver.options.bus, spec.uuid, f.config);
        await this.driver.saveRecord(instance);
        this.driver.instances.set(spec.uuid, instance);
        await this.driver.startMetadata(instance);
        if (powerOn) await this.driver.start(instance);
        return await this.driver.currentState(instance);
      } catch (err) {
        this.driver.instances.delete(spec.uuid);
        await this.driver.teardown(instance);
        throw err;
      }
    });
  }

  async revertMigration(uuid: string): Promise<void> {
    return this.driver.serialized(uuid, async () => {
      const instance = this.driver.instances.get(uuid);
      if (!instance) return;
      this.driver.instances.delete(uuid);
      await this.driver.teardown(instance); // the held copy is <uuid>_resize: never touched here
    });
  }
}

/** GET url into path (the source's disk server). */
function download(url: string, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    httpGet(url, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Conflict(`fetching a disk from the source host answered ${res.statusCode}`));
        return;
      }
      pipeline(res, createWriteStream(path, { mode: 0o600 })).then(resolve, reject);
    }).once('error', reject);
  });
}

/**
 * The instance's root disk as one self-contained qcow2 (Nova's snapshot): a point-in-time drive-backup while QEMU
 * runs (or is paused), qemu-img convert -U when it is off. The qcow2 stays in the instance directory, read in
 * ranges from the file, until it is discarded.
 */
export async function snapshotDisk(driver: QemuDriver, uuid: string): Promise<DiskSnapshot> {
  const instance = driver.get(uuid);
  const f = instanceFiles(instance.dir);
  const target = join(instance.dir, `snapshot-${randomBytes(6).toString('hex')}.qcow2`);
  try {
    const state = await driver.currentState(instance);
    if ((state === PowerState.RUNNING || state === PowerState.PAUSED) && instance.qmp && !instance.qmp.closed) {
      const client = instance.qmp;
      const jobId = `snapshot-${randomBytes(4).toString('hex')}`;
      const done = client.waitEvent('BLOCK_JOB_COMPLETED', 600_000, (e) => e.data?.device === jobId);
      done.catch(() => undefined);
      await client.execute('drive-backup', { 'job-id': jobId, device: 'disk0', target, sync: 'full', format: 'qcow2', 'auto-dismiss': true });
      const event = await done;
      if (event.data?.error) throw new Conflict(`Snapshot of ${uuid} failed: ${String(event.data.error)}`);
    } else {
      await qemuImg(['convert', '-U', '-f', 'qcow2', '-O', 'qcow2', f.disk, target]);
    }
    return {
      size: (await stat(target)).size, diskFormat: 'qcow2', containerFormat: 'bare',
      read: async (offset, length) => {
        const file = await open(target, 'r');
        try {
          const buffer = Buffer.alloc(length);
          const { bytesRead } = await file.read(buffer, 0, length, offset);
          return buffer.subarray(0, bytesRead);
        } finally {
          await file.close();
        }
      },
      discard: () => rm(target, { force: true }),
    };
  } catch (err) {
    await rm(target, { force: true });
    throw err;
  }
}
