// `nubo up` registers the test guest as the public image nubo-test-guest (src/cli/test-guest.ts):
// against the real in-process cloud, the image is active, public and qcow2/bare, another project sees
// it over the Image API, a second registration reuses it, and a leftover that never became active is
// replaced.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { Cloud } from '../../src/cli/cloud.js';
import { createLogger } from '../../src/core/log.js';
import { registerTestGuest, TEST_GUEST_IMAGE_NAME } from '../../src/cli/test-guest.js';
import { newProjectUser, send, startTestCloud, type ProjectToken } from '../support/in-process.js';
import { testGuestImage } from '../support/guest.js';

describe('nubo up registers the test guest image', () => {
  let cloud: Cloud;
  let dataDir: string;
  let other: ProjectToken;
  const logger = createLogger('test-guest-image');

  before(async () => {
    testGuestImage(); // build (or find) it first, so a build failure shows its own reason
    ({ cloud, dataDir } = await startTestCloud('test-guest-image', {}, async (c, d) => ({ cloud: c, dataDir: d })));
    other = await newProjectUser(cloud, 'guest-viewer');
  });

  after(async () => {
    await cloud?.close();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  const listByName = async (token: string) => {
    const res = await send(`${cloud.url}/image/v2/images?name=${TEST_GUEST_IMAGE_NAME}`, 'GET', { 'X-Auth-Token': token });
    assert.equal(res.status, 200, res.text);
    return res.body.images as Array<Record<string, any>>;
  };

  it('replaces a leftover that never became active, then registers an active public qcow2 image', async () => {
    const images = cloud.image.images;
    const admin = { projectId: (await cloud.identity.identity.findProjectByName('admin', 'default')).id, isAdmin: true };
    const leftover = await images.createImage(admin, { name: TEST_GUEST_IMAGE_NAME, disk_format: 'qcow2', container_format: 'bare' });

    const id = await registerTestGuest({ images, identity: cloud.identity.identity, logger });
    assert.ok(id, 'registration failed (see the warning above)');
    assert.notEqual(id, leftover.id);
    const seen = await listByName(other.token);
    assert.equal(seen.length, 1);
    assert.equal(seen[0].id, id);
    assert.equal(seen[0].status, 'active');
    assert.equal(seen[0].visibility, 'public');
    assert.equal(seen[0].disk_format, 'qcow2');
    assert.equal(seen[0].container_format, 'bare');
    assert.equal(seen[0].virtual_size, 64 * 1024 * 1024);
  });

  it('does not register it twice', async () => {
    const first = (await listByName(other.token))[0].id;
    assert.equal(await registerTestGuest({ images: cloud.image.images, identity: cloud.identity.identity, logger }), first);
    assert.equal((await listByName(other.token)).length, 1);
  });
});
