// The config drive: an ISO9660 image labelled config-2 holding the same openstack/ and ec2/ trees
// as the metadata service, made with genisoimage and Nova's flags (nova/virt/configdrive.py).
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, normalize, sep } from 'node:path';
import { promisify } from 'node:util';
import type { Bus } from '../bus/types.js';
import { metadataClient } from './rpc.js';

const run = promisify(execFile);

/** Nova's [DEFAULT] mkisofs_cmd default, and the publisher line Nova writes (product name and version). */
const MKISOFS = process.env.NUBO_MKISOFS ?? 'genisoimage';
const PUBLISHER = 'Nubo metadata service';

/**
 * Writes `files` (path → UTF-8 text) and `binaryFiles` (path → base64) to a temporary tree and makes
 * the ISO at isoPath (written next to it first, then moved, so a half-made image is never seen).
 */
export async function buildConfigDrive(files: Record<string, string>, isoPath: string, binaryFiles: Record<string, string> = {}): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'nubo-configdrive-'));
  const partial = `${isoPath}.partial`;
  try {
    const write = (path: string, data: Buffer) => {
      const target = normalize(join(dir, path));
      if (!target.startsWith(dir + sep)) throw new Error(`config drive path ${path} leaves the drive`);
      mkdirSync(dirname(target), { recursive: true });
      writeFileSync(target, data);
    };
    for (const [path, text] of Object.entries(files)) write(path, Buffer.from(text, 'utf8'));
    for (const [path, base64] of Object.entries(binaryFiles)) write(path, Buffer.from(base64, 'base64'));
    await run(MKISOFS, ['-o', partial, '-ldots', '-allow-lowercase', '-allow-multidot', '-l', '-publisher', PUBLISHER, '-quiet', '-J', '-r', '-V', 'config-2', dir]);
    renameSync(partial, isoPath);
  } catch (err) {
    rmSync(partial, { force: true });
    throw err;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Asks the controller for the instance's tree and builds its config drive at isoPath (what a virt driver calls). */
export async function writeConfigDrive(bus: Bus, uuid: string, isoPath: string, timeoutMs?: number): Promise<void> {
  const { files, binaryFiles } = await metadataClient(bus, timeoutMs).instanceFiles({ uuid });
  await buildConfigDrive(files, isoPath, binaryFiles);
}
