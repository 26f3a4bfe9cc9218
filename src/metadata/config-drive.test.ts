import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { buildConfigDrive } from './config-drive.js';

/** One file of the ISO, read with isoinfo through its Rock Ridge name. */
function isoFile(iso: string, path: string): Buffer {
  return execFileSync('isoinfo', ['-R', '-i', iso, '-x', `/${path}`]);
}

test('buildConfigDrive makes an ISO labelled config-2 holding the tree, binary files included', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'nubo-cd-test-'));
  try {
    const iso = join(dir, 'disk.config');
    const meta = JSON.stringify({ uuid: '8a3c5a4e-0000-4000-8000-000000000001', hostname: 'vm.novalocal', name: 'vm' });
    const binary = Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0xff, 0xfe]);
    await buildConfigDrive({
      'openstack/latest/meta_data.json': meta,
      'openstack/2012-08-10/meta_data.json': meta,
      'ec2/latest/meta-data.json': '{"hostname":"vm.novalocal"}',
    }, iso, { 'openstack/latest/user_data': binary.toString('base64') });
    assert.ok(existsSync(iso));
    assert.ok(!existsSync(`${iso}.partial`));
    const probe = execFileSync('blkid', ['-o', 'export', iso], { encoding: 'utf8' });
    assert.match(probe, /^LABEL=config-2$/m);
    assert.match(probe, /^TYPE=iso9660$/m);
    assert.equal(isoFile(iso, 'openstack/latest/meta_data.json').toString('utf8'), meta);
    assert.deepEqual(JSON.parse(isoFile(iso, 'ec2/latest/meta-data.json').toString('utf8')), { hostname: 'vm.novalocal' });
    assert.deepEqual(isoFile(iso, 'openstack/latest/user_data'), binary);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('buildConfigDrive refuses a path that leaves the drive and leaves nothing behind', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'nubo-cd-test-'));
  try {
    const iso = join(dir, 'disk.config');
    await assert.rejects(buildConfigDrive({ '../escape': 'x' }, iso), /leaves the drive/);
    assert.ok(!existsSync(iso));
    assert.ok(!existsSync(join(tmpdir(), 'escape')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
