// Server diagnostics with Debian's real `openstack` CLI against a `nubo up` cloud (one fake host):
// `server show --diagnostics` as admin at 2.1 (the flat dict) and at the announced maximum (the
// standard shape), and the member's refusal.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openstackCliSkipReason, openstackFails, openstackJson, startCloud, type Cloud, type Env } from '../support/cloud.js';

const skip = openstackCliSkipReason();

describe('openstack CLI: server diagnostics', { skip }, () => {
  let cloud: Cloud;
  let work: string;
  let latest = '';
  let serverId = '';

  before(async () => {
    if (skip) return;
    work = mkdtempSync(join(tmpdir(), 'nubo-diag-cli-'));
    cloud = await startCloud({ env: { NUBO_COMPUTE__FAKE_HOSTS: '1', NUBO_COMPUTE__DRIVER: 'fake' } });
    const endpoints = await openstackJson<Array<{ URL: string }>>(cloud.adminEnv, ['endpoint', 'list', '--service', 'compute', '--interface', 'public']);
    const doc = (await (await fetch(endpoints[0]!.URL.replace(/\/$/, ''), { headers: { accept: 'application/json' } })).json()) as { version: { version: string } };
    latest = doc.version.version;
    const disk = join(work, 'disk.raw');
    writeFileSync(disk, Buffer.alloc(1 << 20));
    const image = await openstackJson(cloud.adminEnv, ['image', 'create', '--file', disk, '--disk-format', 'raw', '--container-format', 'bare', '--public', 'diag-img']);
    const server = await openstackJson({ ...cloud.demoEnv, OS_COMPUTE_API_VERSION: latest }, ['server', 'create', '--flavor', 'm1.tiny', '--image', image.id, '--nic', 'none', '--wait', 'diag-cli']);
    assert.equal(server.status, 'ACTIVE', JSON.stringify(server));
    serverId = server.id;
  });
  after(async () => {
    await cloud?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('shows the standard shape at the latest microversion and the flat dict at 2.1', async () => {
    const admin: Env = { ...cloud.adminEnv, OS_COMPUTE_API_VERSION: latest };
    const standard = await openstackJson(admin, ['server', 'show', '--diagnostics', serverId]);
    assert.equal(standard.state, 'running', JSON.stringify(standard));
    assert.equal(standard.num_cpus, 1);
    assert.ok(Array.isArray(standard.cpu_details) || typeof standard.cpu_details === 'string', JSON.stringify(standard));

    const legacy = await openstackJson({ ...cloud.adminEnv, OS_COMPUTE_API_VERSION: '2.1' }, ['server', 'show', '--diagnostics', serverId]);
    assert.equal(Number(legacy.memory), 512 * 1024, JSON.stringify(legacy));
    assert.ok('cpu0_time' in legacy && 'vda_read' in legacy, JSON.stringify(legacy));
  });

  it('refuses a project member', async () => {
    await openstackFails({ ...cloud.demoEnv, OS_COMPUTE_API_VERSION: latest }, ['server', 'show', '--diagnostics', serverId], /os-server-diagnostics|HTTP 403|403/);
  });
});
