// The Nubo test guest (scripts/build-test-image): finding and running the build, and registering
// the result as the public demo image `nubo-test-guest` when `nubo up` starts.
import { execFile, execFileSync } from 'node:child_process';
import { createReadStream, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../core/log.js';
import type { IdentityService } from '../identity/service.js';
import type { ImageService } from '../image/service.js';

export const TEST_GUEST_IMAGE_NAME = 'nubo-test-guest';

/** A first build takes about 7 s; a loaded machine gets plenty of slack before we call it failed. */
const BUILD_TIMEOUT_MS = 300_000;

/** scripts/build-test-image of this checkout: the nearest folder above this file that holds it. */
export function testGuestScript(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'scripts', 'build-test-image');
    if (existsSync(candidate)) return candidate;
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`scripts/build-test-image not found above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}

/** The qcow2 path the script printed as its last line, checked to exist. */
function builtPath(stdout: string): string {
  const path = stdout.trim().split('\n').pop()?.trim() ?? '';
  if (!path || !existsSync(path)) throw new Error(`scripts/build-test-image printed no image path (stdout: ${JSON.stringify(stdout.slice(-500))})`);
  return path;
}

function buildError(err: unknown, stderr: string): Error {
  const detail = stderr.trim().split('\n').slice(-5).join('\n');
  return new Error(`scripts/build-test-image failed: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}${detail ? `: ${detail.replace(/\n/g, ' | ')}` : ''}`);
}

/** Builds the test guest (or finds the cached build) and returns the qcow2 path. */
export function buildTestGuest(): Promise<string> {
  const script = testGuestScript();
  return new Promise((resolve, reject) => {
    execFile('bash', [script], { timeout: BUILD_TIMEOUT_MS, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err) reject(buildError(err, String(stderr)));
      else {
        try {
          resolve(builtPath(String(stdout)));
        } catch (e) {
          reject(e);
        }
      }
    });
  });
}

/** The same, blocking (test support: one build per process, before any guest boots). */
export function buildTestGuestSync(): string {
  try {
    return builtPath(execFileSync('bash', [testGuestScript()], { timeout: BUILD_TIMEOUT_MS, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }));
  } catch (err) {
    if (err instanceof Error && err.message.startsWith('scripts/build-test-image printed')) throw err;
    throw buildError(err, String((err as { stderr?: unknown }).stderr ?? ''));
  }
}

/**
 * Registers the test guest as the public image `nubo-test-guest` (qcow2/bare, owned by the admin
 * project) unless an active image of that name exists. Leftovers of an interrupted registration
 * (an image of that name that never became active) are removed first. Never throws: a cloud
 * without the guest still works, so failures are logged with the reason.
 */
export async function registerTestGuest(options: { images: ImageService; identity: IdentityService; logger: Logger }): Promise<string | undefined> {
  const { images, identity, logger } = options;
  try {
    const admin = { projectId: (await identity.findProjectByName('admin', 'default')).id, isAdmin: true };
    const existing = await images.listImages(admin, { name: TEST_GUEST_IMAGE_NAME, visibility: 'all', sort: [{ key: 'created_at', dir: 'asc' }] });
    const active = existing.find((image) => image.status === 'active');
    if (active) return active.id;
    for (const stale of existing) await images.deleteImage(admin, stale.id);

    const path = await buildTestGuest();
    const image = await images.createImage(admin, {
      name: TEST_GUEST_IMAGE_NAME, disk_format: 'qcow2', container_format: 'bare', visibility: 'public',
      os_type: 'linux', os_distro: 'nubo-test-guest', hw_disk_bus: 'virtio',
    });
    try {
      await images.upload(admin, image.id, createReadStream(path));
    } catch (err) {
      await images.deleteImage(admin, image.id).catch(() => undefined);
      throw err;
    }
    logger.info(`registered the test guest as image ${TEST_GUEST_IMAGE_NAME} (${image.id}) from ${path}`);
    return image.id;
  } catch (err) {
    logger.warn(`not registering the test guest image ${TEST_GUEST_IMAGE_NAME}: ${err instanceof Error ? err.message : String(err)}`);
    return undefined;
  }
}
