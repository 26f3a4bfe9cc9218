// The test guest image (scripts/build-test-image) for suites that boot real VMs. The script caches
// its build per machine (${NUBO_CACHE_DIR:-~/.cache/nubo}/test-guest/<hash>/), so after the first
// build this costs one short bash run per test process.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { buildTestGuestSync } from '../../src/cli/test-guest.js';
import type { ConfigValues } from '../../src/core/config.js';
import { ADMIN_PASSWORD, ComputeCloud, sleep } from '../compute/harness.js';
import { send, startTestCloud } from './in-process.js';

let built: string | undefined;

/** Path of the test guest's qcow2, built on first use (once per process; throws with the script's reason). */
export function testGuestImage(): string {
  built ??= buildTestGuestSync();
  return built;
}

/**
 * The all-in-one cloud in-process on the QEMU driver (TCG), admin token only, with the test guest
 * uploaded as the public image `nubo-test-guest`. `config` adds to (or overrides) that setup.
 */
export async function startQemuCloud(name: string, config: ConfigValues = {}): Promise<{ cc: ComputeCloud; imageId: string }> {
  const guest = testGuestImage();
  const cc = await startTestCloud(name, { ...config, compute: { driver: 'qemu', ...config.compute }, qemu: { accelerator: 'tcg', ...config.qemu } }, async (cloud, dataDir) => {
    const c = new ComputeCloud(cloud, dataDir);
    const admin = await c.token('admin', ADMIN_PASSWORD, 'admin');
    Object.assign(c, { adminToken: admin.token, adminProject: admin.projectId, adminUser: admin.userId });
    return c;
  });
  const created = await cc.post('/image/v2/images', { name: 'nubo-test-guest', disk_format: 'qcow2', container_format: 'bare', visibility: 'public' });
  assert.equal(created.status, 201, created.text);
  const imageId = created.body.id as string;
  const upload = await send(cc.url(`/image/v2/images/${imageId}/file`), 'PUT', { 'X-Auth-Token': cc.adminToken, 'Content-Type': 'application/octet-stream' }, readFileSync(guest));
  assert.equal(upload.status, 204, upload.text);
  return { cc, imageId };
}

/** A server's console log through os-getConsoleOutput (`length` lines; all when undefined). */
export async function guestConsole(cc: ComputeCloud, serverId: string, length?: number): Promise<string> {
  const res = await cc.act(serverId, { 'os-getConsoleOutput': length === undefined ? {} : { length } });
  assert.equal(res.status, 200, res.text);
  return res.body.output as string;
}

/** The guest's NUBO-HEARTBEAT counters in a console log, in order. */
export const heartbeats = (text: string): number[] => [...text.matchAll(/NUBO-HEARTBEAT (\d+)/g)].map((m) => Number(m[1]));

/** Polls the server's console log until `done` holds; returns the log, or fails with its tail. */
export async function waitForConsole(cc: ComputeCloud, serverId: string, what: string, done: (text: string) => boolean, timeoutMs = 90_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = await guestConsole(cc, serverId);
    if (done(text)) return text;
    if (Date.now() > deadline) assert.fail(`${what}: not seen within ${timeoutMs / 1000} s; console tail:\n${text.slice(-2000)}`);
    await sleep(250);
  }
}
