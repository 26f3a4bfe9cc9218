// Image data over HTTP: streaming upload and download, Range requests, hashes, the status
// machine, format safety with qemu-img, and interrupted uploads.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertError, qemuImg, scratchDir, sleep, startImageCloud, type ImageCloud } from './harness.js';

let ic: ImageCloud;
let scratch: string;
before(async () => {
  ic = await startImageCloud();
  scratch = scratchDir();
});
after(async () => { await ic?.close(); });

describe('image data', () => {
  it('uploads, computes size and hashes, and downloads whole or by Range', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 17);
    const image = await ic.create({ name: 'blob' });
    assertError(await ic.get(`/v2/images/${image.id}/file`.replace('/file', '/filez')), 404);
    const empty = await ic.get(`/v2/images/${image.id}/file`);
    assert.equal(empty.status, 204, 'an image without data answers 204');
    assert.equal((await ic.upload(image.id, data)).status, 204);
    const shown = await ic.image(image.id);
    assert.equal(shown.status, 'active');
    assert.equal(shown.size, data.length);
    assert.equal(shown.checksum, createHash('md5').update(data).digest('hex'));
    assert.equal(shown.os_hash_algo, 'sha512');
    assert.equal(shown.os_hash_value, createHash('sha512').update(data).digest('hex'));
    assert.equal(shown.virtual_size, data.length);

    const whole = await fetch(ic.url(`/v2/images/${image.id}/file`), { headers: { 'X-Auth-Token': ic.adminToken } });
    assert.equal(whole.status, 200);
    assert.equal(whole.headers.get('content-md5'), shown.checksum);
    assert.equal(whole.headers.get('content-type'), 'application/octet-stream');
    assert.ok(Buffer.from(await whole.arrayBuffer()).equals(data));

    const part = await fetch(ic.url(`/v2/images/${image.id}/file`), { headers: { 'X-Auth-Token': ic.adminToken, Range: 'bytes=10-19' } });
    assert.equal(part.status, 206);
    assert.equal(part.headers.get('content-range'), `bytes 10-19/${data.length}`);
    assert.ok(Buffer.from(await part.arrayBuffer()).equals(data.subarray(10, 20)));
    const tail = await fetch(ic.url(`/v2/images/${image.id}/file`), { headers: { 'X-Auth-Token': ic.adminToken, Range: 'bytes=-5' } });
    assert.equal(tail.status, 206);
    assert.ok(Buffer.from(await tail.arrayBuffer()).equals(data.subarray(data.length - 5)));
    const beyond = await ic.get(`/v2/images/${image.id}/file`, { headers: { Range: `bytes=${data.length}-` } });
    assert.equal(beyond.status, 416);
    assert.equal(beyond.headers.get('content-range'), `bytes */${data.length}`);

    assertError(await ic.upload(image.id, data), 409, 'active');
    assertError(await ic.call('PUT', `/v2/images/${image.id}/file`, { data: 'x', headers: { 'Content-Type': 'text/plain' } }), 415);
    assert.deepEqual(ic.storedFiles(), [image.id]);
    assert.equal((await ic.delete(`/v2/images/${image.id}`)).status, 204);
    assert.deepEqual(ic.storedFiles(), []);
  });

  it('needs disk and container formats before data', async () => {
    const res = await ic.post('/v2/images', { name: 'no-formats' });
    assertError(await ic.upload(res.body.id, new Uint8Array(10)), 400, 'disk_format, container_format must be set');
    assert.equal((await ic.image(res.body.id)).status, 'queued');
  });

  it('accepts a real qcow2 and reports its virtual size', async () => {
    const file = join(scratch, 'good.qcow2');
    qemuImg('create', '-f', 'qcow2', file, '16M');
    const image = await ic.create({ disk_format: 'qcow2' });
    assert.equal((await ic.upload(image.id, readFileSync(file))).status, 204);
    const shown = await ic.image(image.id);
    assert.equal(shown.status, 'active');
    assert.equal(shown.virtual_size, 16 * 1024 * 1024);
  });

  it('refuses content that is not its declared format, backing files and data files', async () => {
    const base = join(scratch, 'base.qcow2');
    const overlay = join(scratch, 'overlay.qcow2');
    const withDataFile = join(scratch, 'datafile.qcow2');
    qemuImg('create', '-f', 'qcow2', base, '1M');
    qemuImg('create', '-f', 'qcow2', '-b', base, '-F', 'qcow2', overlay);
    qemuImg('create', '-f', 'qcow2', '-o', `data_file=${join(scratch, 'external.raw')}`, withDataFile, '1M');
    const cases: [string, string, Buffer, RegExp][] = [
      ['raw bytes declared qcow2', 'qcow2', randomBytes(64 * 1024), /content is raw/],
      ['qcow2 declared raw', 'raw', readFileSync(base), /disk_format is 'raw' but its content is qcow2/],
      ['qcow2 with a backing file', 'qcow2', readFileSync(overlay), /backing file/],
      ['qcow2 with an external data file', 'qcow2', readFileSync(withDataFile), /data file/],
      ['qcow2 declared vmdk', 'vmdk', readFileSync(base), /content is qcow2/],
    ];
    for (const [what, diskFormat, data, reason] of cases) {
      const image = await ic.create({ name: what, disk_format: diskFormat });
      assertError(await ic.upload(image.id, data), 400, reason);
      assert.equal((await ic.image(image.id)).status, 'killed', what);
      assert.ok(!ic.storedFiles().includes(image.id), `${what}: no data kept`);
      assertError(await ic.upload(image.id, data), 409);
    }
    assert.ok(ic.storedFiles().every((f) => !f.startsWith('.partial')));
  });

  it('an interrupted upload leaves the image killed and no bytes in the store', async () => {
    const image = await ic.create({ name: 'interrupted' });
    const before = ic.storedFiles();
    const url = new URL(ic.url(`/v2/images/${image.id}/file`));
    await new Promise<void>((resolve) => {
      const req = httpRequest({
        host: url.hostname, port: url.port, path: url.pathname, method: 'PUT',
        headers: { 'X-Auth-Token': ic.adminToken, 'Content-Type': 'application/octet-stream', 'Content-Length': String(8 * 1024 * 1024) },
      });
      req.on('error', () => resolve());
      req.write(randomBytes(1024 * 1024), () => {
        setTimeout(() => { req.destroy(); resolve(); }, 200);
      });
    });
    let status = '';
    for (let i = 0; i < 50; i++) {
      status = (await ic.image(image.id)).status;
      if (status !== 'saving') break;
      await sleep(50);
    }
    assert.equal(status, 'killed');
    assert.deepEqual(ic.storedFiles(), before);
  });
});
