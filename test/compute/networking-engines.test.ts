// Servers' ports on every engine: one create of several servers on a network builds them at
// once, each port made and recorded in one transaction (with the project's default security
// group made on first use inside it); every server gets its own address, and deleting the
// servers deletes their ports.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { testEngines } from '../../src/db/testing.js';
import { startComputeCloud, unique } from './harness.js';

for (const engine of testEngines()) {
  describe(`server ports on ${engine.engine}`, { skip: engine.skip }, () => {
    it('gives concurrently built servers distinct ports and frees them on delete', async () => {
      const target = await engine.create();
      const cc = await startComputeCloud({ database: { connection: target.connection } }, 2);
      const net = (path: string) => `${cc.cloud.url}/networking/v2.0${path}`;
      try {
        const imageId = await cc.createImage({ visibility: 'public' });
        const user = await cc.projectUser(unique('engines'));
        const network = await cc.post(net('/networks'), { network: { name: 'private' } }, { token: user.token });
        assert.equal(network.status, 201, network.text);
        const subnet = await cc.post(net('/subnets'), { subnet: { network_id: network.body.network.id, ip_version: 4, cidr: '10.60.0.0/24' } }, { token: user.token });
        assert.equal(subnet.status, 201, subnet.text);
        const created = await cc.post('/servers', { server: { name: 'many', flavorRef: '1', imageRef: imageId, networks: 'auto', min_count: 4, return_reservation_id: true } }, { token: user.token, microversion: '2.79' });
        assert.equal(created.status, 202, created.text);
        const listed = await cc.get(`/servers?reservation_id=${created.body.reservation_id}`, { token: user.token });
        assert.equal(listed.body.servers.length, 4);
        const servers = await Promise.all(listed.body.servers.map((s: any) => cc.waitServer(s.id, undefined, user.token)));
        for (const server of servers) assert.equal(server.status, 'ACTIVE', JSON.stringify(server.fault));
        const addresses = servers.map((s) => s.addresses.private[0].addr as string);
        assert.equal(new Set(addresses).size, 4, addresses.join(' '));
        const ports = (await cc.get(net(`/ports?network_id=${network.body.network.id}&device_owner=compute:nova`))).body.ports;
        assert.equal(ports.length, 4);
        for (const server of servers) assert.equal((await cc.delete(`/servers/${server.id}`, { token: user.token })).status, 204);
        for (const server of servers) await cc.waitServer(server.id, (s) => s.status === 'DELETED', user.token);
        const left = (await cc.get(net(`/ports?network_id=${network.body.network.id}&device_owner=compute:nova`))).body.ports;
        assert.deepEqual(left, []);
      } finally {
        await cc.close();
        await target.drop();
      }
    });
  });
}
