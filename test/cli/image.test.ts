// Compatibility of the image service (Glance v2) with Debian's real `openstack` CLI: one
// `nubo up` cloud, driven command by command as an operator would. The tests run in order
// and build on each other (the image uploaded first is changed, shared, deactivated and
// deleted later). Where the CLI cannot show the server's behaviour, the same token talks HTTP
// directly: an upload cut off half way (node:http, socket destroyed mid-body), refused uploads
// without the SDK's clean-up, status codes of refused downloads. What the file store keeps
// is checked on disk, under the cloud's DIR/images.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openstack, openstackCliSkipReason, openstackFails, openstackJson, openstackOk, repoRoot, startCloud, type Cloud, type Env } from '../support/cloud.js';

/** Why the suite cannot run: no CLI, or no qemu-img (installed by scripts/install-system-deps.sh). */
function skipReason(): string | undefined {
  const cli = openstackCliSkipReason();
  if (cli) return cli;
  const probe = () => spawnSync('qemu-img', ['--version'], { encoding: 'utf8' }).status === 0;
  if (probe()) return undefined;
  spawnSync('bash', [join(repoRoot, 'scripts', 'install-system-deps.sh')], { encoding: 'utf8' });
  return probe() ? undefined : 'qemu-img is missing and scripts/install-system-deps.sh could not install it';
}
const skip = skipReason();

const md5 = (data: Buffer) => createHash('md5').update(data).digest('hex');
const sha512 = (data: Buffer) => createHash('sha512').update(data).digest('hex');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Every regular file below `dir` (none when it does not exist) with its size. */
function filesUnder(dir: string): Array<{ path: string; size: number }> {
  if (!existsSync(dir)) return [];
  const found: Array<{ path: string; size: number }> = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) found.push(...filesUnder(path));
    else if (entry.isFile()) found.push({ path, size: statSync(path).size });
  }
  return found;
}

function qemuImg(args: string[]): void {
  const result = spawnSync('qemu-img', args, { encoding: 'utf8' });
  assert.equal(result.status, 0, `qemu-img ${args.join(' ')} failed:\n${result.stderr}`);
}

describe('openstack CLI: image', { skip }, () => {
  let cloud: Cloud;
  let admin: Env;
  let demo: Env;
  let work: string;
  let imagesDir: string;

  before(async () => {
    if (skip) return;
    work = mkdtempSync(join(tmpdir(), 'nubo-image-cli-'));
    cloud = await startCloud();
    admin = cloud.adminEnv;
    demo = cloud.demoEnv;
    imagesDir = join(cloud.dataDir, 'images');
  });
  after(async () => {
    await cloud?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  const json = <T = any>(env: Env, args: string[]) => openstackJson<T>(env, args);
  const ok = openstackOk;
  const fails = openstackFails;
  const listNames = async (env: Env, extra: string[] = []) => (await json<Array<{ Name: string }>>(env, ['image', 'list', ...extra])).map((row) => row.Name);
  /** Paths below DIR/images that belong to the image: the file store names its files by image id. */
  const storedFilesOf = (imageId: string) => filesUnder(imagesDir).filter((file) => file.path.includes(imageId));

  // The image API over plain HTTP, with tokens the CLI issued (admin, or the demo member).
  const apiAccess = new Map<Env, Promise<{ endpoint: string; token: string }>>();
  const imageApi = (env: Env = admin) => {
    let access = apiAccess.get(env);
    if (!access) {
      access = (async () => {
        const token = await json<{ id: string }>(env, ['token', 'issue']);
        const endpoints = await json<Array<{ URL: string }>>(admin, ['endpoint', 'list', '--service', 'image', '--interface', 'public']);
        assert.equal(endpoints.length, 1, `one public image endpoint expected: ${JSON.stringify(endpoints)}`);
        return { endpoint: endpoints[0]!.URL.replace(/\/$/, ''), token: token.id };
      })();
      apiAccess.set(env, access);
    }
    return access;
  };
  /** One request to the image API; JSON bodies are sent and parsed, a Buffer is sent as octet-stream. */
  const apiCall = async (method: string, path: string, body?: unknown, env: Env = admin): Promise<{ status: number; body: any; bytes: Buffer }> => {
    const { endpoint, token } = await imageApi(env);
    const binary = Buffer.isBuffer(body);
    const response = await fetch(`${endpoint}${path}`, {
      method,
      headers: {
        'x-auth-token': token,
        accept: 'application/json',
        ...(body === undefined ? {} : { 'content-type': binary ? 'application/octet-stream' : 'application/json' }),
      },
      body: body === undefined ? undefined : binary ? new Uint8Array(body as Buffer) : JSON.stringify(body),
    });
    const bytes = Buffer.from(await response.arrayBuffer());
    let parsed: any;
    try {
      parsed = bytes.length ? JSON.parse(bytes.toString('utf8')) : undefined;
    } catch {
      parsed = undefined;
    }
    return { status: response.status, body: parsed, bytes };
  };
  const apiJson = (method: string, path: string, body?: unknown) => apiCall(method, path, body);

  let qcow2: string;
  let qcow2Bytes: Buffer;
  let imageId = '';

  it('uploads a qcow2 image with image create --file and shows it active with its checksums', async () => {
    qcow2 = join(work, 'disk.qcow2');
    qemuImg(['create', '-q', '-f', 'qcow2', qcow2, '64M']);
    qcow2Bytes = readFileSync(qcow2);

    const created = await json(admin, [
      'image', 'create', '--file', qcow2, '--disk-format', 'qcow2', '--container-format', 'bare',
      '--property', 'os_distro=cirros', '--property', 'nubo_test=one', 'cli-image',
    ]);
    imageId = created.id;
    assert.match(imageId, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);

    const shown = await json(admin, ['image', 'show', imageId]);
    assert.equal(shown.name, 'cli-image');
    assert.equal(shown.status, 'active');
    assert.equal(shown.disk_format, 'qcow2');
    assert.equal(shown.container_format, 'bare');
    assert.equal(shown.size, qcow2Bytes.length);
    assert.equal(shown.virtual_size, 64 * 2 ** 20, 'virtual_size is the qcow2 disk size qemu-img reports');
    assert.equal(shown.checksum, md5(qcow2Bytes));
    assert.equal(shown.properties.os_hash_algo, 'sha512');
    assert.equal(shown.properties.os_hash_value, sha512(qcow2Bytes));
    assert.equal(shown.properties.os_distro, 'cirros');
    assert.equal(shown.properties.nubo_test, 'one');
    assert.equal(shown.protected, false);
    assert.equal(shown.owner, (await json(admin, ['project', 'show', 'admin'])).id);
    assert.deepEqual(shown.tags, []);

    const rows = await json<Array<{ ID: string; Name: string; Status: string }>>(admin, ['image', 'list']);
    assert.deepEqual(rows.filter((row) => row.ID === imageId), [{ ID: imageId, Name: 'cli-image', Status: 'active' }]);
    const long = await json<any[]>(admin, ['image', 'list', '--long', '--name', 'cli-image']);
    assert.equal(long.length, 1);
    assert.equal(long[0].Checksum, md5(qcow2Bytes));
    assert.equal(long[0].Size, qcow2Bytes.length);
    assert.equal(long[0]['Disk Format'], 'qcow2');
  });

  it('downloads the same bytes with image save', async () => {
    const saved = join(work, 'saved.qcow2');
    await ok(admin, ['image', 'save', '--file', saved, imageId]);
    assert.ok(readFileSync(saved).equals(qcow2Bytes), 'image save wrote other bytes than were uploaded');
  });

  it('changes name, properties, tags and protection with image set, and removes them with image unset', async () => {
    await ok(admin, ['image', 'set', '--name', 'cli-image-renamed', '--property', 'nubo_test=two', '--property', 'hw_disk_bus=virtio', '--tag', 'red', '--tag', 'blue', imageId]);
    let shown = await json(admin, ['image', 'show', imageId]);
    assert.equal(shown.name, 'cli-image-renamed');
    assert.equal(shown.properties.nubo_test, 'two');
    assert.equal(shown.properties.hw_disk_bus, 'virtio');
    assert.equal(shown.properties.os_distro, 'cirros');
    assert.deepEqual([...shown.tags].sort(), ['blue', 'red']);
    assert.equal(shown.checksum, md5(qcow2Bytes), 'metadata changes keep the data');
    assert.deepEqual((await json<any[]>(admin, ['image', 'list', '--tag', 'red'])).map((row) => row.ID), [imageId]);
    assert.deepEqual(await json<any[]>(admin, ['image', 'list', '--tag', 'green']), []);

    await ok(admin, ['image', 'unset', '--property', 'hw_disk_bus', '--tag', 'blue', imageId]);
    shown = await json(admin, ['image', 'show', imageId]);
    assert.equal(shown.properties.hw_disk_bus, undefined);
    assert.equal(shown.properties.nubo_test, 'two');
    assert.deepEqual(shown.tags, ['red']);

    await ok(admin, ['image', 'set', '--protected', imageId]);
    assert.equal((await json(admin, ['image', 'show', imageId])).protected, true);
  });

  it('refuses to delete a protected image', async () => {
    await fails(admin, ['image', 'delete', imageId], /protected|HTTP 403|Forbidden|Failed to delete/i);
    assert.equal((await json(admin, ['image', 'show', imageId])).status, 'active');
    assert.equal(storedFilesOf(imageId).length > 0, true, `the data of ${imageId} should still be stored under ${imagesDir}`);
  });

  it('shares the image with the demo project, which sees it once it accepts', async () => {
    const demoProject = (await json(admin, ['project', 'show', 'demo'])).id;
    assert.ok(!(await listNames(demo)).includes('cli-image-renamed'), 'a private/shared image is not listed for another project before sharing');

    const member = await json(admin, ['image', 'add', 'project', imageId, 'demo']);
    assert.equal(member.member_id, demoProject);
    assert.equal(member.image_id, imageId);
    assert.equal(member.status, 'pending');

    const members = await json<Array<Record<string, string>>>(admin, ['image', 'member', 'list', imageId]);
    assert.deepEqual(members, [{ 'Image ID': imageId, 'Member ID': demoProject, Status: 'pending' }]);
    // A pending member does not get the image in its default list.
    assert.ok(!(await listNames(demo)).includes('cli-image-renamed'), 'a pending share is not in the default list');

    await ok(demo, ['image', 'set', '--accept', imageId]);
    assert.deepEqual(await json(admin, ['image', 'member', 'list', imageId]), [{ 'Image ID': imageId, 'Member ID': demoProject, Status: 'accepted' }]);
    assert.ok((await listNames(demo)).includes('cli-image-renamed'), 'the accepted image is listed for demo');
    assert.equal((await json(demo, ['image', 'show', imageId])).checksum, md5(qcow2Bytes));

    // Members read, but do not change, the image.
    await fails(demo, ['image', 'set', '--name', 'stolen', imageId], /\b403\b|Forbidden|not authorized/i);
    assert.equal((await json(admin, ['image', 'show', imageId])).name, 'cli-image-renamed');
    const saved = join(work, 'demo-saved.qcow2');
    await ok(demo, ['image', 'save', '--file', saved, imageId]);
    assert.ok(readFileSync(saved).equals(qcow2Bytes));
  });

  it('deactivates the image: data download refused to the member', async () => {
    await ok(admin, ['image', 'set', '--deactivate', imageId]);
    assert.equal((await json(admin, ['image', 'show', imageId])).status, 'deactivated');

    const refusedGet = await apiCall('GET', `/v2/images/${imageId}/file`, undefined, demo);
    assert.equal(refusedGet.status, 403, `GET file of a deactivated image as a member: ${refusedGet.bytes.toString('utf8').slice(0, 300)}`);
    assert.ok(!refusedGet.bytes.equals(qcow2Bytes));
    // openstacksdk 0.101 does not check the status of a download: it fails on the checksum of the error body.
    const blocked = join(work, 'blocked.qcow2');
    const refused = await openstack(demo, ['image', 'save', '--file', blocked, imageId]);
    assert.notEqual(refused.code, 0, `image save of a deactivated image should fail for a non-admin; stderr:\n${refused.stderr}`);
    assert.ok(!existsSync(blocked) || !readFileSync(blocked).equals(qcow2Bytes), 'the image bytes were written');
    // The metadata stays readable.
    assert.equal((await json(demo, ['image', 'show', imageId])).status, 'deactivated');
  });

  // Glance's download(): `if image.status == 'deactivated' and not req.context.is_admin: raise Forbidden`.
  it('lets the admin download a deactivated image, as Glance does', async () => {
    const adminGet = await apiCall('GET', `/v2/images/${imageId}/file`);
    assert.equal(adminGet.status, 200, `GET file of a deactivated image as admin: ${adminGet.bytes.toString('utf8').slice(0, 300)}`);
    assert.ok(adminGet.bytes.equals(qcow2Bytes));
  });

  it('reactivates the image with --activate: the member downloads it again', async () => {
    await ok(admin, ['image', 'set', '--activate', imageId]);
    assert.equal((await json(admin, ['image', 'show', imageId])).status, 'active');
    const again = join(work, 'again.qcow2');
    await ok(demo, ['image', 'save', '--file', again, imageId]);
    assert.ok(readFileSync(again).equals(qcow2Bytes));
  });

  it('deletes the image once unprotected, with its stored data', async () => {
    await ok(admin, ['image', 'set', '--unprotected', imageId]);
    await ok(admin, ['image', 'delete', imageId]);
    await fails(admin, ['image', 'show', imageId], /No Image found|Could not find|HTTP 404|Not Found/i);
    assert.ok(!(await listNames(admin)).includes('cli-image-renamed'));
    assert.deepEqual(storedFilesOf(imageId), [], 'the deleted image left data behind');
  });

  /**
   * `image create --file` of content the server must refuse: the CLI fails with the server's 400
   * (openstacksdk then deletes the image record it made), and nothing is stored.
   */
  const cliRefuses = async (file: string, name: string, reason: RegExp) => {
    const result = await openstack(admin, ['image', 'create', '--file', file, '--disk-format', 'qcow2', '--container-format', 'bare', name]);
    assert.notEqual(result.code, 0, `image create of ${name} should fail; stdout:\n${result.stdout}`);
    assert.match(result.stderr, /\b400\b/);
    assert.match(result.stderr, reason);
    const id = /\/v2\/images\/([0-9a-f-]{36})\/file/.exec(result.stderr)?.[1];
    assert.ok(id, `the upload URL should be in stderr:\n${result.stderr}`);
    const rows = await json<Array<{ ID: string; Status: string }>>(admin, ['image', 'list', '--name', name]);
    assert.ok(rows.every((row) => row.Status !== 'active'), `${name} must not be active: ${JSON.stringify(rows)}`);
    assert.deepEqual(storedFilesOf(id!), [], 'the refused data was stored');
  };
  /** The same over HTTP, where no client cleans up: the PUT is a 400 and the image keeps no data. */
  const apiRefuses = async (content: Buffer, name: string) => {
    const created = await apiJson('POST', '/v2/images', { name, disk_format: 'qcow2', container_format: 'bare' });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const id: string = created.body.id;
    const put = await apiCall('PUT', `/v2/images/${id}/file`, content);
    assert.equal(put.status, 400, `PUT file of ${name}: ${put.bytes.toString('utf8').slice(0, 300)}`);
    const image = (await apiJson('GET', `/v2/images/${id}`)).body;
    assert.ok(['queued', 'killed'].includes(image.status), `${name} should be queued or killed, got ${image.status}`);
    assert.ok(!image.size, `no size should be recorded, got ${image.size}`);
    assert.ok(!image.checksum, `no checksum should be recorded, got ${image.checksum}`);
    assert.deepEqual(storedFilesOf(id), [], 'the refused data was stored');
    const download = await apiCall('GET', `/v2/images/${id}/file`);
    assert.notEqual(download.status, 200, 'a refused image has no data to serve');
    assert.ok(!download.bytes.equals(content));
  };

  it('refuses a qcow2 whose content names a backing file, storing nothing', async () => {
    const base = join(work, 'base.qcow2');
    const overlay = join(work, 'overlay.qcow2');
    qemuImg(['create', '-q', '-f', 'qcow2', base, '64M']);
    qemuImg(['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', overlay]);
    await cliRefuses(overlay, 'cli-backing-file', /backing file/i);
    await apiRefuses(readFileSync(overlay), 'http-backing-file');
  });

  it('refuses content that does not match disk_format qcow2, storing nothing', async () => {
    const notQcow2 = join(work, 'random.bin');
    writeFileSync(notQcow2, randomBytes(256 * 1024));
    await cliRefuses(notQcow2, 'cli-not-qcow2', /qcow2/i);
    await apiRefuses(readFileSync(notQcow2), 'http-not-qcow2');
  });

  it('an upload cut off half way leaves no active image and no stored bytes', async () => {
    const created = await apiJson('POST', '/v2/images', { name: 'http-interrupted', disk_format: 'raw', container_format: 'bare' });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const id: string = created.body.id;
    assert.equal(created.body.status, 'queued');

    const total = 16 * 2 ** 20;
    const half = randomBytes(total / 2);
    const { endpoint, token } = await imageApi();
    const url = new URL(`${endpoint}/v2/images/${id}/file`);
    const responded: string[] = [];
    const request = http.request(url, {
      method: 'PUT',
      headers: { 'x-auth-token': token, 'content-type': 'application/octet-stream', 'content-length': String(total) },
    });
    request.on('response', (response) => {
      responded.push(String(response.statusCode));
      response.resume();
    });
    const socketClosed = new Promise<void>((resolve) => request.on('close', () => resolve()));
    request.on('error', () => {}); // the destroy below is the point of the test
    await new Promise<void>((resolve, reject) => request.write(half, (err) => (err ? reject(err) : resolve())));

    // Wait until the server is taking the data (status saving), then cut the connection.
    let sawSaving = false;
    for (let i = 0; i < 100 && !sawSaving; i++) {
      sawSaving = (await apiJson('GET', `/v2/images/${id}`)).body.status === 'saving';
      if (!sawSaving) await sleep(50);
    }
    assert.ok(sawSaving, 'the image should be in status saving while its data arrives');
    assert.deepEqual(responded, [], 'the server must not answer before the body is complete');
    request.destroy();
    await socketClosed;

    // The server notices the reset; give it a few seconds to clean up.
    let image: any;
    for (let i = 0; i < 100; i++) {
      image = (await apiJson('GET', `/v2/images/${id}`)).body;
      if (image.status !== 'saving') break;
      await sleep(100);
    }
    assert.ok(['queued', 'killed'].includes(image.status), `after a cut-off upload the image should be queued or killed, got ${image.status}`);
    assert.ok(!image.size, `no size should be recorded, got ${image.size}`);
    assert.ok(!image.checksum, `no checksum should be recorded, got ${image.checksum}`);
    let leftovers = storedFilesOf(id);
    for (let i = 0; i < 50 && leftovers.length > 0; i++) {
      await sleep(100);
      leftovers = storedFilesOf(id);
    }
    assert.deepEqual(leftovers, [], 'the half upload left data under DIR/images');
    const rows = await json<Array<{ ID: string; Status: string }>>(admin, ['image', 'list', '--name', 'http-interrupted']);
    assert.equal(rows.length, 1);
    assert.notEqual(rows[0]!.Status, 'active');
  });

  it('keeps, across all the cases above, no stored bytes for images that are not active', async () => {
    // Only active images may own data; everything else refused or cut off must be gone.
    const images = await json<Array<{ ID: string; Status: string }>>(admin, ['image', 'list']);
    const active = new Set(images.filter((row) => row.Status === 'active').map((row) => row.ID));
    const orphans = filesUnder(imagesDir).filter((file) => ![...active].some((id) => file.path.includes(id)));
    assert.deepEqual(orphans, [], `files under ${imagesDir} that belong to no active image`);
  });
});
