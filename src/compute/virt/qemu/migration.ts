// Live migration between two QEMU agents (dataplane-facts §6), without libvirt:
//   shared storage  both agents see the instance directory (the same [compute] instances_path): the destination
//                   runs a second QEMU on the same disk with its own sockets and pid file (renamed into place once
//                   the source QEMU is gone), and both append to the same console.log;
//   block           the destination makes an overlay on its own cached copy of the image, exports it over NBD, the
//                   source mirrors its disks there (sync top), pauses before switchover, finishes the mirrors and
//                   lets the last of the RAM go; its console log is appended to the destination's meanwhile.
// The destination QEMU waits with -incoming defer; the migration and NBD ports are picked free for each migration on
// the destination's [DEFAULT] my_ip. The agents find each other on the bus topic qemu-migration.<host>.
//   [libvirt] live_migration_bandwidth (0 MiB/s = unlimited)          max-bandwidth
//   [libvirt] live_migration_downtime (500 ms)                        downtime-limit
//   [libvirt] live_migration_permit_auto_converge (false)             auto-converge
//   [libvirt] live_migration_completion_timeout (800 s per GiB)       then live_migration_timeout_action abort|force_complete
import { existsSync } from 'node:fs';
import { appendFile, mkdir, readFile, rename, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import type { RpcHandler, Subscription } from '../../../bus/types.js';
import { BadRequest, Conflict, NotFound } from '../../../core/errors.js';
import { writeConfigDrive } from '../../../metadata/config-drive.js';
import { startMetadataProxy } from '../../../metadata/proxy.js';
import { PowerState, type InstanceSpec, type PowerStateValue } from '../../rpc.js';
import type { LiveMigrationJob } from '../driver.js';
import { qemuImg, qemuImgInfo } from './disks.js';
import type { QemuDriver, QemuInstance } from './driver.js';
import { instanceFiles, launchQemu, qemuArgs, runningPid, type InstanceRecord } from './process.js';
import { QmpClient } from './qmp.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const MIB = 1024 * 1024;
/** Suffix of the destination QEMU's own sockets and pid file in a shared instance directory. */
const INCOMING = '.incoming';

export const migrationTopic = (host: string) => `qemu-migration.${host}`;

/** What the destination tells the source (Nova's migrate_data). */
export interface IncomingInfo {
  shared: boolean;
  address: string;
  migrationPort: number;
  nbdPort: number | null;
  /** Node names exported over NBD (block migration): the source mirrors its node of the same name there. */
  exports: string[];
}

/** What the source tells the destination so the new QEMU's devices match the old one's. */
interface OutgoingInfo {
  record: InstanceRecord;
  rootSize: number;
}

interface Incoming {
  uuid: string;
  dir: string;
  record: InstanceRecord;
  shared: boolean;
  pid: number;
  qmp: QmpClient;
  info: IncomingInfo;
  metadataClose: (() => Promise<void>) | null;
}

interface Outgoing {
  job: LiveMigrationJob & { totalTimeMs?: number; downtimeMs?: number };
  mirrors: string[];
  forced: boolean;
  aborted: boolean;
}

/** The writable disks of a record: QMP node name → file. */
function writableDisks(dir: string, record: InstanceRecord): { node: string; path: string }[] {
  const f = instanceFiles(dir);
  return [
    { node: 'disk0', path: f.disk },
    ...(record.disks.ephemeral ? [{ node: 'eph0', path: f.ephemeral }] : []),
    ...(record.disks.swap ? [{ node: 'swap0', path: f.swap }] : []),
  ];
}

/** A TCP port free on `address` now (the destination QEMU binds it a moment later). */
function freePort(address: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, address, () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** The instance's QEMU arguments with its sockets and pid file renamed, so a second QEMU can run in the same directory. */
function incomingArgs(args: string[], dir: string): string[] {
  const f = instanceFiles(dir);
  return args.map((a) => a
    .replace(`path=${f.consoleSocket},`, `path=${f.consoleSocket}${INCOMING},`)
    .replace(`unix:${f.qmp},`, `unix:${f.qmp}${INCOMING},`)
    .replace(new RegExp(`^${f.pid.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`), `${f.pid}${INCOMING}`));
}

export class LiveMigrations {
  private readonly incoming = new Map<string, Incoming>();
  private readonly outgoing = new Map<string, Outgoing>();
  private subscription: Subscription | null = null;
  constructor(private readonly driver: QemuDriver) {}

  /** Where this host's incoming migrations listen: its host_ip. */
  private get address(): string { return this.config.get('DEFAULT', 'my_ip', '127.0.0.1'); }

  private get config() { return this.driver.options.config; }
  private get bus() { return this.driver.options.bus; }
  private get logger() { return this.driver.options.logger; }

  /** Serves this host's side of migrations on the bus (plus `extra` methods: the cold migrations' heldDisks). */
  async serve(extra: Record<string, RpcHandler> = {}): Promise<void> {
    if (this.subscription) return;
    this.subscription = await this.bus.serve(migrationTopic(this.driver.options.host), {
      ...extra,
      incoming: ({ uuid }: { uuid: string }) => {
        const entry = this.incoming.get(uuid);
        if (!entry) throw new NotFound(`Instance ${uuid} is not prepared for a live migration to this host`);
        return entry.info;
      },
      outgoing: async ({ uuid }: { uuid: string }): Promise<OutgoingInfo> => {
        const instance = this.driver.get(uuid);
        const info = await qemuImgInfo(instanceFiles(instance.dir).disk, 'qcow2');
        return { record: instance.record, rootSize: info['virtual-size'] };
      },
      appendConsole: async ({ uuid, data }: { uuid: string; data: string }) => {
        const entry = this.incoming.get(uuid);
        if (!entry) throw new NotFound(`Instance ${uuid} is not prepared for a live migration to this host`);
        if (!entry.shared) await appendFile(instanceFiles(entry.dir).consoleLog, Buffer.from(data, 'base64'));
        return {};
      },
    });
  }

  async close(): Promise<void> {
    await this.subscription?.close().catch(() => undefined);
    this.subscription = null;
    for (const entry of this.incoming.values()) entry.qmp.close();
  }

  // ---- destination ----

  async prepare(spec: InstanceSpec, sourceHost: string): Promise<void> {
    if (this.incoming.has(spec.uuid)) return;
    if (this.driver.instances.has(spec.uuid)) throw new Conflict(`Instance ${spec.uuid} already runs on this host`);
    const dir = join(this.driver.instancesPath, spec.uuid);
    const f = instanceFiles(dir);
    const shared = existsSync(f.spec) && existsSync(f.disk);
    const source = await this.bus.call<OutgoingInfo>(migrationTopic(sourceHost), 'outgoing', { uuid: spec.uuid }, { timeoutMs: 30_000 });
    const record: InstanceRecord = { ...source.record, spec, vncPort: null };
    let pid = 0;
    let qmp: QmpClient | null = null;
    try {
      if (!shared) {
        await rm(dir, { recursive: true, force: true });
        await mkdir(dir, { recursive: true, mode: 0o700 });
        if (spec.image) {
          const image = await this.driver.images.get(spec.image.id);
          await qemuImg(['create', '-q', '-f', 'qcow2', '-b', image.path, '-F', image.format, f.disk, String(source.rootSize)]);
        } else {
          await qemuImg(['create', '-q', '-f', 'qcow2', f.disk, String(source.rootSize)]);
        }
        if (record.disks.ephemeral) await qemuImg(['create', '-q', '-f', 'raw', f.ephemeral, String(spec.flavor.ephemeralGb * 1024 ** 3)]);
        if (record.disks.swap) await qemuImg(['create', '-q', '-f', 'raw', f.swap, String(spec.flavor.swapMb * MIB)]);
        if (record.disks.configDrive) await writeConfigDrive(this.bus, spec.uuid, f.config);
      }
      let args = qemuArgs(dir, record, this.driver.launch, 'defer');
      if (shared) args = incomingArgs(args, dir);
      const cgroupProcs = await this.driver.cgroups.prepare(spec);
      pid = await launchQemu(this.driver.launch.emulator, args, cgroupProcs);
      qmp = await QmpClient.connect(shared ? `${f.qmp}${INCOMING}` : f.qmp, 10_000);
      const migrationPort = await freePort(this.address);
      let nbdPort: number | null = null;
      const exports: string[] = [];
      if (!shared) {
        nbdPort = await freePort(this.address);
        await qmp.execute('nbd-server-start', { addr: { type: 'inet', data: { host: this.address, port: String(nbdPort) } } });
        for (const disk of writableDisks(dir, record)) {
          await qmp.execute('block-export-add', { type: 'nbd', id: `export-${disk.node}`, 'node-name': disk.node, name: disk.node, writable: true });
          exports.push(disk.node);
        }
      }
      await qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'events', state: true }] });
      await qmp.execute('migrate-incoming', { uri: `tcp:${this.address.includes(':') ? `[${this.address}]` : this.address}:${migrationPort}` });
      let metadataClose: (() => Promise<void>) | null = null;
      if (!shared) {
        const proxy = await startMetadataProxy({ bus: this.bus, uuid: spec.uuid, socketPath: f.metadata });
        metadataClose = () => proxy.close();
      }
      this.incoming.set(spec.uuid, {
        uuid: spec.uuid, dir, record, shared, pid, qmp, metadataClose,
        info: { shared, address: this.address, migrationPort, nbdPort, exports },
      });
      this.logger.info('prepared for an incoming live migration', { uuid: spec.uuid, shared, migrationPort, nbdPort });
    } catch (err) {
      qmp?.close();
      if (pid) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
      if (shared) await this.removeIncomingFiles(dir);
      else await rm(dir, { recursive: true, force: true });
      throw err;
    }
  }

  private async removeIncomingFiles(dir: string): Promise<void> {
    const f = instanceFiles(dir);
    for (const path of [f.qmp, f.consoleSocket, f.pid]) await rm(`${path}${INCOMING}`, { force: true });
  }

  async finish(uuid: string, powerState: PowerStateValue): Promise<PowerStateValue> {
    const entry = this.incoming.get(uuid);
    if (!entry) {
      const instance = this.driver.instances.get(uuid);
      if (instance) return this.driver.currentState(instance); // a repeat
      throw new NotFound(`Instance ${uuid} was not prepared for a live migration to this host`);
    }
    const deadline = Date.now() + 60_000;
    for (;;) {
      const { status } = await entry.qmp.execute<{ status: string }>('query-status');
      if (status !== 'inmigrate') break;
      if (Date.now() > deadline) throw new Conflict(`Instance ${uuid}: the migrated state did not arrive within 60 s`);
      await sleep(50);
    }
    const f = instanceFiles(entry.dir);
    if (!entry.shared) await entry.qmp.execute('nbd-server-stop').catch(() => undefined);
    else {
      // The source QEMU is gone (and took its sockets and pid file with it): ours take the usual names.
      for (const path of [f.qmp, f.consoleSocket, f.pid]) await rename(`${path}${INCOMING}`, path);
    }
    entry.qmp.close();
    this.incoming.delete(uuid);
    const instance: QemuInstance = { uuid, dir: entry.dir, record: entry.record, qmp: null, pid: entry.pid, metadataProxy: null };
    this.driver.instances.set(uuid, instance);
    await this.driver.saveRecord(instance);
    const client = await this.driver.connect(instance, 5000);
    if (entry.metadataClose) {
      // Hand the proxy over to the driver's instance (close and reopen on the same socket).
      await entry.metadataClose();
    }
    await this.driver.startMetadata(instance);
    await this.driver.readVncPort(instance).catch(() => undefined);
    const { status } = await client.execute<{ status: string }>('query-status');
    if (powerState === PowerState.RUNNING && status === 'paused') await client.execute('cont');
    if (powerState === PowerState.PAUSED && status === 'running') await client.execute('stop');
    return this.driver.currentState(instance);
  }

  async rollback(uuid: string): Promise<void> {
    const entry = this.incoming.get(uuid);
    if (!entry) return; // nothing prepared (or it already runs here, which a rollback never removes)
    this.incoming.delete(uuid);
    await entry.qmp.execute('quit', undefined, 2000).catch(() => undefined);
    entry.qmp.close();
    for (let i = 0; i < 30 && isAlive(entry.pid); i++) await sleep(100);
    if (isAlive(entry.pid)) { try { process.kill(entry.pid, 'SIGKILL'); } catch { /* gone */ } }
    await entry.metadataClose?.().catch(() => undefined);
    if (entry.shared) await this.removeIncomingFiles(entry.dir);
    else await rm(entry.dir, { recursive: true, force: true });
  }

  // ---- source ----

  job(uuid: string): LiveMigrationJob | null {
    const entry = this.outgoing.get(uuid);
    return entry ? { ...entry.job } : null;
  }

  async start(uuid: string, destHost: string, options: { blockMigration: boolean; migrationUuid: string }): Promise<void> {
    const previous = this.outgoing.get(uuid);
    if (previous?.job.status === 'running') {
      if (previous.job.migrationUuid === options.migrationUuid) return; // a repeat
      throw new Conflict(`Instance ${uuid} is being live-migrated already`);
    }
    if (previous?.job.migrationUuid === options.migrationUuid) return;
    const instance = this.driver.get(uuid);
    const state = await this.driver.currentState(instance);
    if (state !== PowerState.RUNNING && state !== PowerState.PAUSED) throw new Conflict(`Instance ${uuid} in power state ${state} cannot be live-migrated`);
    const client = this.driver.qmp(instance);
    const info = await this.bus.call<IncomingInfo>(migrationTopic(destHost), 'incoming', { uuid }, { timeoutMs: 30_000 });
    if (!info.shared && !options.blockMigration) {
      throw new BadRequest(`${destHost} is not on shared storage: Shared storage live-migration requires either shared storage or boot-from-volume with no local disks.`);
    }
    const bandwidth = this.config.getInt('libvirt', 'live_migration_bandwidth', 0);
    const downtime = this.config.getInt('libvirt', 'live_migration_downtime', 500);
    const autoConverge = this.config.getBool('libvirt', 'live_migration_permit_auto_converge', false);
    const block = !info.shared;
    await client.execute('migrate-set-parameters', {
      'max-bandwidth': bandwidth > 0 ? bandwidth * MIB : 1024 * MIB * 8,
      'downtime-limit': Math.max(1, downtime),
    });
    await client.execute('migrate-set-capabilities', {
      capabilities: [
        { capability: 'events', state: true },
        { capability: 'auto-converge', state: autoConverge },
        { capability: 'pause-before-switchover', state: block },
      ],
    });
    const memoryGb = instance.record.spec.flavor.memoryMb / 1024;
    const diskGb = block ? instance.record.spec.flavor.rootGb : 0;
    const entry: Outgoing = {
      job: {
        status: 'running', migrationUuid: options.migrationUuid, destHost,
        memoryTotal: instance.record.spec.flavor.memoryMb * MIB, memoryProcessed: 0, memoryRemaining: instance.record.spec.flavor.memoryMb * MIB,
        diskTotal: 0, diskProcessed: 0, diskRemaining: 0,
      },
      mirrors: [], forced: false, aborted: false,
    };
    this.outgoing.set(uuid, entry);
    const completionSeconds = this.config.getInt('libvirt', 'live_migration_completion_timeout', 800) * Math.max(1, memoryGb + diskGb);
    void this.run(instance, client, info, entry, completionSeconds, state === PowerState.PAUSED).catch((err) => {
      entry.job.status = 'failed';
      entry.job.error = (err as Error).message;
      this.logger.warn('live migration failed', { uuid, error: (err as Error).message });
    });
  }

  /** Drives one outgoing migration to its end (mirrors, RAM, switchover, source teardown). */
  private async run(instance: QemuInstance, client: QmpClient, info: IncomingInfo, entry: Outgoing, completionSeconds: number, wasPaused: boolean): Promise<void> {
    const { uuid } = instance;
    const started = Date.now();
    const timeoutAction = this.config.get('libvirt', 'live_migration_timeout_action', 'abort');
    const host = info.address.includes(':') ? `[${info.address}]` : info.address;
    let stopListening = () => {};
    try {
      if (info.exports.length > 0) {
        for (const node of info.exports) {
          await client.execute('blockdev-add', { driver: 'nbd', 'node-name': `migration-${node}`, server: { type: 'inet', host: info.address, port: String(info.nbdPort) }, export: node });
          await client.execute('blockdev-mirror', { 'job-id': `migration-${node}`, device: node, target: `migration-${node}`, sync: node === 'disk0' ? 'top' : 'full' });
          entry.mirrors.push(node);
        }
        // The disks first: RAM goes once every mirror is in step.
        for (;;) {
          const jobs = await client.execute<{ device: string; len: number; offset: number; ready: boolean }[]>('query-block-jobs');
          const ours = jobs.filter((j) => j.device.startsWith('migration-'));
          entry.job.diskTotal = ours.reduce((n, j) => n + j.len, 0);
          entry.job.diskProcessed = ours.reduce((n, j) => n + j.offset, 0);
          entry.job.diskRemaining = entry.job.diskTotal - entry.job.diskProcessed;
          if (entry.aborted) throw new Cancelled('the live migration was aborted');
          if (ours.length === entry.mirrors.length && ours.every((j) => j.ready)) break;
          if (ours.length < entry.mirrors.length) throw new Error('a disk mirror to the destination ended early');
          if ((Date.now() - started) / 1000 > completionSeconds) throw new Error(`Live migration not completed after ${completionSeconds} sec (disk mirror)`);
          await sleep(100);
        }
      }
      // The status comes from MIGRATION events: on a QEMU that itself arrived by migration, query-migrate's
      // status is its incoming migration's ("completed") whatever the outgoing one does.
      let status = 'setup';
      const off = client.onEvent((event) => { if (event.event === 'MIGRATION') status = String((event.data as { status?: string } | undefined)?.status ?? status); });
      stopListening = off;
      await client.execute('migrate', { uri: `tcp:${host}:${info.migrationPort}` });
      let acted = false;
      let continued = false;
      for (;;) {
        const m = { ...(await client.execute<MigrateInfo>('query-migrate')), status };
        if (m.ram) {
          entry.job.memoryTotal = m.ram.total;
          entry.job.memoryRemaining = m.ram.remaining;
          entry.job.memoryProcessed = Math.max(0, m.ram.total - m.ram.remaining);
        }
        if (m.status === 'pre-switchover' && !continued) {
          continued = true;
          // Guest paused: its last console lines, then the disks' last writes, then the rest of the RAM.
          await this.sendConsoleLog(instance, entry.job.destHost);
          await this.finishMirrors(client, entry);
          await client.execute('migrate-continue', { state: 'pre-switchover' });
        } else if (m.status === 'completed') {
          // QEMU announces "completed" a moment before it has worked out the total time and downtime.
          let stats: MigrateInfo = m;
          for (let i = 0; i < 50 && (!stats['total-time'] || stats.downtime === undefined); i++) {
            await sleep(10);
            stats = await client.execute<MigrateInfo>('query-migrate');
          }
          entry.job.totalTimeMs = stats['total-time'];
          entry.job.downtimeMs = stats.downtime;
          entry.job.memoryRemaining = 0;
          entry.job.memoryProcessed = entry.job.memoryTotal;
          entry.job.diskProcessed = entry.job.diskTotal;
          entry.job.diskRemaining = 0;
          break;
        } else if (m.status === 'failed' || m.status === 'cancelled') {
          throw entry.aborted || m.status === 'cancelled' && !acted ? new Cancelled('the live migration was aborted') : new Error(`Live migration failed: ${m['error-desc'] ?? m.status}`);
        }
        if (!acted && (Date.now() - started) / 1000 > completionSeconds) {
          acted = true;
          if (timeoutAction === 'force_complete') {
            this.logger.info('live migration not completed in time: pausing the guest', { uuid, completionSeconds });
            entry.forced = true;
            await client.execute('stop');
          } else {
            this.logger.info('live migration not completed in time: aborting', { uuid, completionSeconds });
            await client.execute('migrate_cancel');
            entry.job.error = `Live migration not completed after ${completionSeconds} sec`;
            entry.aborted = false;
            for (let i = 0; i < 200 && !['cancelled', 'failed', 'completed'].includes(status); i++) await sleep(50);
            throw new Error(entry.job.error);
          }
        }
        await sleep(50);
      }
    } catch (err) {
      stopListening();
      await this.cancelMirrors(client, entry);
      if (entry.forced && !wasPaused) await client.execute('cont').catch(() => undefined);
      entry.job.status = err instanceof Cancelled ? 'cancelled' : 'failed';
      entry.job.error = (err as Error).message;
      this.logger.warn('live migration ended without moving the instance', { uuid, status: entry.job.status, error: entry.job.error });
      return;
    }
    stopListening();
    // The destination runs it now: this host lets go (the shared directory stays, it is the destination's too).
    this.logger.info('live migration completed', { uuid, totalTimeMs: entry.job.totalTimeMs, downtimeMs: entry.job.downtimeMs, shared: info.shared });
    await this.driver.serialized(uuid, async () => {
      this.driver.instances.delete(uuid);
      await this.driver.kill(instance).catch(() => undefined);
      await instance.metadataProxy?.close().catch(() => undefined);
      instance.metadataProxy = null;
      if (!info.shared) await rm(instance.dir, { recursive: true, force: true }).catch(() => undefined);
    });
    entry.job.status = 'completed';
  }

  /** The source's console log, appended to the destination's (block migration: the destination has its own directory). */
  private async sendConsoleLog(instance: QemuInstance, destHost: string): Promise<void> {
    const data = await readFile(instanceFiles(instance.dir).consoleLog).catch(() => Buffer.alloc(0));
    const tail = data.subarray(Math.max(0, data.length - 256 * 1024));
    await this.bus.call(migrationTopic(destHost), 'appendConsole', { uuid: instance.uuid, data: tail.toString('base64') }, { timeoutMs: 10_000 })
      .catch((err) => this.logger.warn('the console log did not reach the destination', { uuid: instance.uuid, error: (err as Error).message }));
  }

  /** Cancelling a READY mirror completes it cleanly: the destination has every write. */
  private async finishMirrors(client: QmpClient, entry: Outgoing): Promise<void> {
    if (entry.mirrors.length === 0) return;
    const jobs = await client.execute<{ device: string; len: number; offset: number }[]>('query-block-jobs');
    const ours = jobs.filter((j) => j.device.startsWith('migration-'));
    entry.job.diskTotal = Math.max(entry.job.diskTotal, ours.reduce((n, j) => n + j.len, 0));
    for (const node of entry.mirrors) await client.execute('block-job-cancel', { device: `migration-${node}` });
    await this.waitMirrorsGone(client);
    for (const node of entry.mirrors) await client.execute('blockdev-del', { 'node-name': `migration-${node}` }).catch(() => undefined);
    entry.mirrors = [];
  }

  private async cancelMirrors(client: QmpClient, entry: Outgoing): Promise<void> {
    if (entry.mirrors.length === 0 || client.closed) return;
    for (const node of entry.mirrors) await client.execute('block-job-cancel', { device: `migration-${node}`, force: true }).catch(() => undefined);
    await this.waitMirrorsGone(client).catch(() => undefined);
    for (const node of entry.mirrors) await client.execute('blockdev-del', { 'node-name': `migration-${node}` }).catch(() => undefined);
    entry.mirrors = [];
  }

  private async waitMirrorsGone(client: QmpClient): Promise<void> {
    for (let i = 0; i < 3000; i++) {
      const jobs = await client.execute<{ device: string }[]>('query-block-jobs');
      if (!jobs.some((j) => j.device.startsWith('migration-'))) return;
      await sleep(5);
    }
    throw new Error('the disk mirrors did not finish');
  }

  async abort(uuid: string): Promise<void> {
    const entry = this.outgoing.get(uuid);
    if (!entry || entry.job.status !== 'running') throw new Conflict(`Instance ${uuid} has no live migration in progress`);
    entry.aborted = true;
    const instance = this.driver.instances.get(uuid);
    if (instance?.qmp && !instance.qmp.closed) await instance.qmp.execute('migrate_cancel');
  }

  async forceComplete(uuid: string): Promise<void> {
    const entry = this.outgoing.get(uuid);
    if (!entry || entry.job.status !== 'running') throw new Conflict(`Instance ${uuid} has no live migration in progress`);
    const instance = this.driver.get(uuid);
    entry.forced = true;
    // Pausing the guest stops it dirtying memory: what is left goes at once.
    const { status } = await this.driver.qmp(instance).execute<{ status: string }>('query-status');
    if (status === 'running') await this.driver.qmp(instance).execute('stop');
  }
}

interface MigrateInfo {
  status?: string;
  'total-time'?: number;
  downtime?: number;
  'error-desc'?: string;
  ram?: { total: number; remaining: number; transferred: number };
}

class Cancelled extends Error {}

function isAlive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

export { runningPid };
