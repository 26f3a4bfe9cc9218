// The metadata path across a real broker, as it runs when agents are separate processes: the cloud
// serves the metadata topic on RabbitMQ and the proxy uses a bus connection of its own (the agent's),
// so requests, answers and errors travel as AMQP messages. Each run gets its own vhost (the AMQP
// driver's names are fixed). Needs NUBO_TEST_RABBIT_URL and rabbitmqctl; skips without.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createBus, type Bus } from '../../src/bus/index.js';
import { NotFound } from '../../src/core/errors.js';
import { metadataClient, startMetadataProxy, type MetadataProxy } from '../../src/metadata/index.js';
import { startComputeCloud, type ComputeCloud } from '../compute/harness.js';
import { createVhost, ctl, rabbitmqctl, rabbitUrl, transportUrlFor } from '../support/processes.js';

const skip = !rabbitUrl ? 'NUBO_TEST_RABBIT_URL is not set (e.g. rabbit://guest:guest@127.0.0.1:5672/)'
  : !rabbitmqctl ? 'rabbitmqctl is not available: it is needed to give this run a RabbitMQ vhost of its own'
  : undefined;

function get(socketPath: string, path: string, method = 'GET', body?: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('metadata over RabbitMQ: controller and agent on separate bus connections', { skip, timeout: 60_000 }, () => {
  const vhost = `nubo_test_md_${randomBytes(5).toString('hex')}`;
  let vhostCreated = false;
  let cc: ComputeCloud;
  let agentBus: Bus;
  let proxy: MetadataProxy;
  let dir: string;
  let server: any;

  before(async () => {
    const { url, user } = transportUrlFor(rabbitUrl, vhost);
    await createVhost(vhost, user, () => (vhostCreated = true));
    cc = await startComputeCloud({ messaging: { transport_url: url } }, 1);
    agentBus = createBus(url);
    dir = mkdtempSync(join(tmpdir(), 'nubo-metadata-amqp-'));
    server = await cc.bootActive({ name: 'rabbit-vm', imageRef: await cc.createImage(), user_data: Buffer.from('hello').toString('base64') });
    proxy = await startMetadataProxy({ bus: agentBus, uuid: server.id, socketPath: join(dir, 'metadata.sock') });
  });

  after(async () => {
    await proxy?.close();
    await agentBus?.close();
    await cc?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (vhostCreated) await ctl(['delete_vhost', vhost]);
  });

  it('answers guest requests, the password POST and errors through the broker', async () => {
    assert.equal(JSON.parse((await get(proxy.socketPath, '/openstack/latest/meta_data.json')).text).uuid, server.id);
    assert.equal((await get(proxy.socketPath, '/openstack/latest/user_data')).text, 'hello');
    assert.equal((await get(proxy.socketPath, '/latest/meta-data/hostname')).text, 'rabbit-vm.novalocal');
    assert.equal((await get(proxy.socketPath, '/latest/meta-data/nothing')).status, 404);
    assert.equal((await get(proxy.socketPath, '/openstack/latest/password', 'POST', 'c2VjcmV0')).status, 200);
    assert.equal((await get(proxy.socketPath, '/openstack/latest/password', 'POST', 'c2VjcmV0')).status, 409);
    const { files } = await metadataClient(agentBus).instanceFiles({ uuid: server.id });
    assert.equal(JSON.parse(files['openstack/latest/meta_data.json']).uuid, server.id);
    await assert.rejects(metadataClient(agentBus).instanceFiles({ uuid: '00000000-0000-4000-8000-000000000000' }), (err) => err instanceof NotFound);
  });
});
