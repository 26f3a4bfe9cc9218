// Instance disks with qemu-img: the root disk is a qcow2 overlay on the cached image, grown to
// the flavor's root_gb; ephemeral and swap disks are new sparse files formatted as Nova does
// (ext4 labelled ephemeral0, mkswap), when the host has the tools.
import { execFile } from 'node:child_process';
import { open, rm } from 'node:fs/promises';
import { BadRequest, InternalError } from '../../../core/errors.js';

const GIB = 1024 * 1024 * 1024;
const MIB = 1024 * 1024;

export interface QemuImgInfo {
  format: string;
  'virtual-size': number;
  'actual-size'?: number;
  'backing-filename'?: string;
  'full-backing-filename'?: string;
}

/** Runs a program and resolves with its stdout; rejects with its last stderr line. */
export function run(program: string, args: string[], timeoutMs = 120_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(program, args, { timeout: timeoutMs, maxBuffer: 16 * MIB, env: { ...process.env, LC_ALL: 'C' } }, (err, stdout, stderr) => {
      if (err) {
        const code = (err as NodeJS.ErrnoException).code;
        const detail = code === 'ENOENT' ? `${program} is not installed on this host` : (String(stderr).trim().split('\n').pop() || err.message);
        reject(new InternalError(`${program} ${args[0] ?? ''}: ${detail}`));
        return;
      }
      resolve(String(stdout));
    });
  });
}

export const qemuImg = (args: string[]) => run('qemu-img', args);

/** qemu-img info of a file of a known format (-U: readable while a VM has it open). */
export async function qemuImgInfo(path: string, format?: string): Promise<QemuImgInfo> {
  const out = await qemuImg(['info', '-U', '--output=json', ...(format ? ['-f', format] : []), path]);
  return JSON.parse(out) as QemuImgInfo;
}

/**
 * The root disk: a qcow2 overlay on `backing`, as large as the flavor's root disk (or the image's
 * virtual size when root_gb is 0, as Nova does). Refuses a root disk smaller than the image.
 */
export async function createRootDisk(path: string, backing: { path: string; format: string; virtualSize: number }, rootGb: number): Promise<void> {
  const size = rootGb > 0 ? rootGb * GIB : backing.virtualSize;
  if (size < backing.virtualSize) {
    throw new BadRequest(`Flavor's disk is too small for requested image. Flavor disk is ${size} bytes, image is ${backing.virtualSize} bytes.`);
  }
  await qemuImg(['create', '-q', '-f', 'qcow2', '-b', backing.path, '-F', backing.format, path, String(size)]);
}

/** A blank qcow2 disk (root disk of an instance without an image). */
export async function createBlankDisk(path: string, sizeBytes: number): Promise<void> {
  await qemuImg(['create', '-q', '-f', 'qcow2', path, String(sizeBytes)]);
}

/** A sparse raw file of the given size. */
async function sparseFile(path: string, sizeBytes: number): Promise<void> {
  const file = await open(path, 'w', 0o600);
  try {
    await file.truncate(sizeBytes);
  } finally {
    await file.close();
  }
}

/** The ephemeral disk: raw, ext4 labelled ephemeral0 (Nova's default for Linux guests); left blank without mkfs.ext4. */
export async function createEphemeralDisk(path: string, gb: number): Promise<void> {
  await sparseFile(path, gb * GIB);
  await run('mkfs.ext4', ['-F', '-q', '-L', 'ephemeral0', path]).catch(async (err) => {
    if (!String((err as Error).message).includes('not installed')) {
      await rm(path, { force: true });
      throw err;
    }
  });
}

/** The swap disk: raw, made a swap area with mkswap. */
export async function createSwapDisk(path: string, mb: number): Promise<void> {
  await sparseFile(path, mb * MIB);
  await run('mkswap', ['-L', 'swap0', path]).catch(async (err) => {
    if (!String((err as Error).message).includes('not installed')) {
      await rm(path, { force: true });
      throw err;
    }
  });
}
