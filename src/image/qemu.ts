// qemu-img, the reference tool for disk image formats: inspect uploaded data (format
// safety, virtual size) and convert images during import.
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';

/** Glance disk_format → qemu-img format name, for formats qemu-img understands. */
const QEMU_FORMAT: Record<string, string> = {
  raw: 'raw', qcow2: 'qcow2', vmdk: 'vmdk', vhd: 'vpc', vhdx: 'vhdx', vdi: 'vdi', ploop: 'parallels',
};
/** Formats that are raw bytes as far as qemu-img is concerned. */
const RAW_LIKE = new Set(['raw', 'iso', 'aki', 'ari', 'ami']);
/** VMDK subformats Glance accepts ([image_format] vmdk_allowed_types). */
const VMDK_ALLOWED_TYPES = new Set(['streamOptimized', 'monolithicSparse']);

export const QEMU_IMG_TIMEOUT_MS = 60_000;

export class QemuImgError extends Error {}

interface QemuInfo {
  format: string;
  'virtual-size'?: number;
  'backing-filename'?: string;
  'full-backing-filename'?: string;
  'format-specific'?: { type: string; data?: Record<string, unknown> };
}

function run(args: string[]): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    execFile('qemu-img', args, { timeout: QEMU_IMG_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024, env: { ...process.env, LC_ALL: 'C' } }, (err, stdout, stderr) => {
      if (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') reject(new QemuImgError('qemu-img is not installed on this host (install qemu-utils)'));
        else reject(new QemuImgError((stderr || err.message).trim().split('\n').pop() ?? 'qemu-img failed'));
        return;
      }
      resolvePromise(stdout);
    });
  });
}

async function info(path: string, format?: string): Promise<QemuInfo> {
  const args = ['info', '--output=json'];
  if (format) args.push('-f', format);
  args.push(path);
  const out = await run(args);
  try {
    return JSON.parse(out) as QemuInfo;
  } catch {
    throw new QemuImgError('qemu-img printed no JSON');
  }
}

export interface Inspection {
  /** The virtual size, for formats that have one (null for raw-like and container formats). */
  virtualSize: number | null;
}

/**
 * Checks that the file really is in its declared disk_format and is self-contained. Throws
 * an Error whose message says why not: a format mismatch (e.g. qcow2 declared raw — the
 * known attack where a guest reads host files through a backing file), a backing file, an
 * external data file, or VMDK extents/subformats outside the image.
 */
export async function inspectImage(path: string, diskFormat: string): Promise<Inspection> {
  const qemuFormat = QEMU_FORMAT[diskFormat];
  const detected = await info(path).catch((err) => {
    throw new Error(`Image data could not be inspected: ${(err as Error).message}`);
  });
  if (RAW_LIKE.has(diskFormat)) {
    if (detected.format !== 'raw') {
      throw new Error(`Image disk_format is '${diskFormat}' but its content is ${detected.format}; refusing it.`);
    }
    // qemu-img rounds raw sizes up to whole sectors; the service uses the byte size for raw.
    return { virtualSize: null };
  }
  if (!qemuFormat) return { virtualSize: null };
  if (detected.format !== qemuFormat) {
    throw new Error(`Image disk_format is '${diskFormat}' but its content is ${detected.format}; refusing it.`);
  }
  const declared = await info(path, qemuFormat).catch((err) => {
    throw new Error(`Image data is not valid ${diskFormat}: ${(err as Error).message}`);
  });
  if (declared['backing-filename'] || declared['full-backing-filename']) {
    throw new Error(`Image has a backing file (${declared['backing-filename'] ?? declared['full-backing-filename']}); refusing it.`);
  }
  const specific = declared['format-specific']?.data ?? {};
  if (typeof specific['data-file'] === 'string') {
    throw new Error(`Image names an external data file (${specific['data-file']}); refusing it.`);
  }
  if (diskFormat === 'vmdk') {
    const createType = String(specific['create-type'] ?? '');
    if (!VMDK_ALLOWED_TYPES.has(createType)) throw new Error(`VMDK subformat '${createType}' is not allowed (only ${[...VMDK_ALLOWED_TYPES].join(', ')}).`);
    const extents = Array.isArray(specific.extents) ? (specific.extents as { filename?: string }[]) : [];
    for (const extent of extents) {
      const file = extent.filename ?? '';
      if (resolve(file) !== resolve(path)) {
        throw new Error(`VMDK image has an extent outside the image (${file}); refusing it.`);
      }
    }
  }
  return { virtualSize: declared['virtual-size'] ?? null };
}

/** qemu-img convert from one Glance disk_format to another. */
export async function convertImage(source: string, sourceFormat: string, target: string, targetFormat: string): Promise<void> {
  const from = QEMU_FORMAT[sourceFormat] ?? (RAW_LIKE.has(sourceFormat) ? 'raw' : undefined);
  const to = QEMU_FORMAT[targetFormat];
  if (!from || !to) throw new Error(`Cannot convert from ${sourceFormat} to ${targetFormat}.`);
  await run(['convert', '-f', from, '-O', to, source, target]);
}

/** Whether qemu-img can convert this disk_format at all. */
export function convertible(diskFormat: string): boolean {
  return diskFormat in QEMU_FORMAT || RAW_LIKE.has(diskFormat);
}
