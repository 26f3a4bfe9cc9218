// A real guest with Debian's `openstack` CLI against `nubo up` running the QEMU driver (TCG):
// server create --config-drive --user-data --wait, console log show (markers, --lines), console
// url show (a noVNC URL), stop/start, delete --wait.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { testGuestImage } from '../support/guest.js';
import { openstack, openstackCliSkipReason, openstackJson, openstackOk, startCloud, type Cloud } from '../support/cloud.js';
import { missingTool } from '../support/tools.js';

const skip = missingTool('qemu-system-x86_64', 'genisoimage', 'socat') ?? openstackCliSkipReason();

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('openstack CLI with the QEMU driver', { skip, timeout: 300_000 }, () => {
  let cloud: Cloud;
  let work: string;
  let serverId = '';

  const waitFor = async <T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = await probe();
      if (value !== undefined) return value;
      if (Date.now() > deadline) assert.fail(`${what}: not within ${timeoutMs / 1000} s`);
      await sleep(500);
    }
  };
  const status = async () => (await openstackJson(cloud.demoEnv, ['server', 'show', serverId])).status as string;

  before(async () => {
    if (skip) return;
    work = mkdtempSync(join(tmpdir(), 'nubo-qemu-cli-'));
    cloud = await startCloud({ env: { NUBO_COMPUTE__DRIVER: 'qemu', NUBO_QEMU__ACCELERATOR: 'tcg' } });
    await openstackJson(cloud.adminEnv, ['image', 'create', '--file', testGuestImage(), '--disk-format', 'qcow2', '--container-format', 'bare', '--public', 'cli-guest']);
  });

  after(async () => {
    // QEMUs outlive `nubo up`: delete the server before the cloud stops.
    if (serverId) await openstack(cloud.demoEnv, ['server', 'delete', '--wait', serverId]);
    await cloud?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('creates a server with a config drive and user data, and its console shows the guest read them', async () => {
    const userData = join(work, 'user-data');
    writeFileSync(userData, '#!/bin/sh\necho hi\n');
    // --nic none needs microversion 2.37 or later in this client.
    const server = await openstackJson({ ...cloud.demoEnv, OS_COMPUTE_API_VERSION: '2.79' }, ['server', 'create', '--flavor', 'm1.tiny', '--image', 'cli-guest', '--nic', 'none',
      '--config-drive', 'true', '--user-data', userData, '--wait', 'cli-vm'], { timeoutMs: 180_000 });
    assert.equal(server.status, 'ACTIVE', JSON.stringify(server));
    serverId = server.id;
    const log = await waitFor('NUBO-GUEST-READY in console log show', 90_000, async () => {
      const out = await openstackOk(cloud.demoEnv, ['console', 'log', 'show', serverId]);
      return /NUBO-GUEST-READY/.test(out) && /NUBO-HEARTBEAT/.test(out) ? out : undefined;
    });
    assert.match(log, new RegExp(`NUBO-CONFIG-DRIVE-UUID ${serverId}`));
    assert.match(log, new RegExp(`NUBO-METADATA-UUID ${serverId}`));
    assert.match(log, /NUBO-USER-DATA-BYTES 18/);
    const tail = await openstackOk(cloud.demoEnv, ['console', 'log', 'show', '--lines', '2', serverId]);
    assert.ok(tail.trim().split('\n').length <= 2, tail);
  });

  it('shows a noVNC console URL', async () => {
    const consoleUrl = await openstackJson(cloud.demoEnv, ['console', 'url', 'show', '--novnc', serverId]);
    assert.match(consoleUrl.url, /vnc_lite\.html\?path=%3Ftoken%3D/);
  });

  it('stops and starts the server', async () => {
    await openstackOk(cloud.demoEnv, ['server', 'stop', serverId]);
    await waitFor('SHUTOFF', 60_000, async () => ((await status()) === 'SHUTOFF' ? true : undefined));
    await openstackOk(cloud.demoEnv, ['server', 'start', serverId]);
    await waitFor('ACTIVE', 60_000, async () => ((await status()) === 'ACTIVE' ? true : undefined));
  });

  it('deletes the server and waits for it', async () => {
    await openstackOk(cloud.demoEnv, ['server', 'delete', '--wait', serverId]);
    serverId = '';
  });
});
