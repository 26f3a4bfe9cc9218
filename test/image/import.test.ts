// Interoperable import (glance-direct) with conversion to the configured format, and
// per-project quotas (image count, stored bytes) answered with 413.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertError, qemuImg, scratchDir, sleep, startImageCloud, type ImageCloud } from './harness.js';

let ic: ImageCloud;
let scratch: string;
before(async () => {
  ic = await startImageCloud({ image_conversion: { output_format: 'qcow2' }, image: { image_count_total: '4', image_size_total: '2' } });
  scratch = scratchDir();
});
after(async () => { await ic?.close(); });

async function waitWhile(id: string, statuses: string[], token?: string): Promise<any> {
  for (let i = 0; i < 200; i++) {
    const image = await ic.image(id, token);
    if (!statuses.includes(image.status)) return image;
    await sleep(50);
  }
  throw new Error(`image ${id} stayed in ${statuses.join('/')}`);
}

describe('interoperable import', () => {
  it('says which methods and stores exist (web-download is not offered)', async () => {
    const info = (await ic.get('/v2/info/import')).body;
    assert.deepEqual(info['import-methods'].value, ['glance-direct']);
    assert.match(info['import-methods'].description, /web-download is not offered/);
    const stores = (await ic.get('/v2/info/stores')).body.stores;
    assert.deepEqual(stores.map((s: any) => [s.id, s.default]), [['file', true]]);
  });

  it('stages a vmdk, imports it and converts it to qcow2', async () => {
    const vmdk = join(scratch, 'disk.vmdk');
    qemuImg('create', '-f', 'vmdk', vmdk, '8M');
    const image = await ic.create({ name: 'from-vmware', disk_format: 'vmdk' }, ic.demoToken);
    assertError(await ic.post(`/v2/images/${image.id}/import`, { method: { name: 'glance-direct' } }, { token: ic.demoToken }), 409, 'staged');
    assert.equal((await ic.call('PUT', `/v2/images/${image.id}/stage`, { data: readFileSync(vmdk), token: ic.demoToken })).status, 204);
    assert.equal((await ic.image(image.id, ic.demoToken)).status, 'uploading');
    assert.deepEqual(ic.stagedFiles(), [image.id]);
    assertError(await ic.post(`/v2/images/${image.id}/import`, { method: { name: 'web-download' }, uri: 'http://example.com/x' }, { token: ic.demoToken }), 400, 'web-download');
    assertError(await ic.post(`/v2/images/${image.id}/import`, {}, { token: ic.demoToken }), 400);
    const started = await ic.post(`/v2/images/${image.id}/import`, { method: { name: 'glance-direct' } }, { token: ic.demoToken });
    assert.equal(started.status, 202, started.text);
    const done = await waitWhile(image.id, ['importing'], ic.demoToken);
    assert.equal(done.status, 'active');
    assert.equal(done.disk_format, 'qcow2');
    assert.equal(done.virtual_size, 8 * 1024 * 1024);
    assert.deepEqual(ic.stagedFiles(), []);
    const data = Buffer.from(await (await fetch(ic.url(`/v2/images/${image.id}/file`), { headers: { 'X-Auth-Token': ic.demoToken } })).arrayBuffer());
    const out = join(scratch, 'downloaded');
    writeFileSync(out, data);
    assert.equal(JSON.parse(execFileSync('qemu-img', ['info', '--output=json', out], { encoding: 'utf8' })).format, 'qcow2');
    assert.equal((await ic.delete(`/v2/images/${image.id}`, { token: ic.demoToken })).status, 204);
  });

  it('an import of unsafe data ends killed with nothing kept', async () => {
    const base = join(scratch, 'b.qcow2');
    const overlay = join(scratch, 'o.qcow2');
    qemuImg('create', '-f', 'qcow2', base, '1M');
    qemuImg('create', '-f', 'qcow2', '-b', base, '-F', 'qcow2', overlay);
    const image = await ic.create({ disk_format: 'qcow2' }, ic.demoToken);
    assert.equal((await ic.call('PUT', `/v2/images/${image.id}/stage`, { data: readFileSync(overlay), token: ic.demoToken })).status, 204);
    assert.equal((await ic.post(`/v2/images/${image.id}/import`, { method: { name: 'glance-direct' } }, { token: ic.demoToken })).status, 202);
    assert.equal((await waitWhile(image.id, ['importing'], ic.demoToken)).status, 'killed');
    assert.deepEqual(ic.stagedFiles(), []);
    assert.ok(!ic.storedFiles().includes(image.id));
    await ic.delete(`/v2/images/${image.id}`, { token: ic.demoToken });
  });
});

describe('image quotas', () => {
  it('refuses data beyond image_size_total (413) while streaming, and images beyond image_count_total', async () => {
    const small = await ic.create({ name: 'q1' }, ic.demoToken);
    assert.equal((await ic.upload(small.id, randomBytes(1024 * 1024), ic.demoToken)).status, 204);
    const big = await ic.create({ name: 'q2' }, ic.demoToken);
    const res = await ic.upload(big.id, randomBytes(1024 * 1024 + 1), ic.demoToken);
    assertError(res, 413, 'image_size_total');
    assert.equal((await ic.image(big.id, ic.demoToken)).status, 'killed');
    assert.ok(!ic.storedFiles().includes(big.id));
    assert.ok(ic.storedFiles().every((f) => !f.startsWith('.partial')));

    // Four images allowed per project: q1, q2 and two more.
    await ic.create({ name: 'q3' }, ic.demoToken);
    await ic.create({ name: 'q4' }, ic.demoToken);
    assertError(await ic.post('/v2/images', { name: 'q5' }, { token: ic.demoToken }), 413, 'image_count_total');
    // Other projects have their own quota.
    await ic.create({ name: 'admin-q' });
  });
});
