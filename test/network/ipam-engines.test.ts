// IP address management under concurrency on every engine: many port creates at once on one
// subnet, through the real API of the in-process cloud on SQLite, PostgreSQL and MariaDB, never
// hand out an address twice; once the pool is used up the next creates answer 409
// IpAddressGenerationFailure and leave no port behind. Concurrent creates against a quota make
// exactly the limit.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { testEngines } from '../../src/db/testing.js';
import { assertNeutronError, startNetworkCloud } from './harness.js';

for (const engine of testEngines()) {
  describe(`IPAM on ${engine.engine}`, { skip: engine.skip }, () => {
    it('gives 40 concurrent ports on a /26 distinct addresses and refuses the ones past the pool', async () => {
      const target = await engine.create();
      const nc = await startNetworkCloud({ database: { connection: target.connection } });
      try {
        const network = await nc.network({ name: 'busy', port_security_enabled: false }, nc.demoToken);
        const subnet = await nc.subnet(network.id, { cidr: '10.50.0.0/26' }, nc.demoToken);
        const poolSize = 61; // .2 - .62: all but the network, gateway and broadcast addresses
        const create = () => nc.post('/ports', { port: { network_id: network.id } }, { token: nc.demoToken });

        const first = await Promise.all(Array.from({ length: 40 }, create));
        for (const res of first) assert.equal(res.status, 201, res.text);
        const addresses = first.map((res) => res.body.port.fixed_ips[0].ip_address as string);
        assert.equal(new Set(addresses).size, 40, `duplicates among ${addresses.join(' ')}`);
        for (const ip of addresses) {
          const last = Number(ip.split('.')[3]);
          assert.ok(ip.startsWith('10.50.0.') && last >= 2 && last <= 62, ip);
        }

        // The remaining 21 plus 4 too many, again all at once.
        const rest = await Promise.all(Array.from({ length: poolSize - 40 + 4 }, create));
        const made = rest.filter((res) => res.status === 201);
        const refused = rest.filter((res) => res.status !== 201);
        assert.equal(made.length, poolSize - 40, rest.filter((r) => r.status !== 201 && r.status !== 409).map((r) => r.text).join('\n'));
        assert.equal(refused.length, 4);
        for (const res of refused) assertNeutronError(res, 409, 'IpAddressGenerationFailure');
        const all = [...addresses, ...made.map((res) => res.body.port.fixed_ips[0].ip_address as string)];
        assert.equal(new Set(all).size, poolSize);

        const listed = await nc.get(`/ports?network_id=${network.id}`, { token: nc.demoToken });
        assert.equal(listed.body.ports.length, poolSize, 'refused creates left no port behind');
        assert.ok(listed.body.ports.every((p: any) => p.fixed_ips.length === 1 && p.fixed_ips[0].subnet_id === subnet.id));
      } finally {
        await nc.close();
        await target.drop();
      }
    });

    it('keeps concurrent networks, pool subnets and overlapping subnets apart', async () => {
      const target = await engine.create();
      const nc = await startNetworkCloud({ database: { connection: target.connection } });
      try {
        // Concurrent tenant networks get distinct VXLAN ids.
        const networks = await Promise.all(Array.from({ length: 8 }, (_, i) => nc.post('/networks', { network: { name: `n${i}` } })));
        for (const res of networks) assert.equal(res.status, 201, res.text);
        const vnis = networks.map((res) => res.body.network['provider:segmentation_id']);
        assert.equal(new Set(vnis).size, 8, `duplicate VNIs ${vnis.join(' ')}`);

        // Concurrent subnets from one pool get distinct prefixes.
        const pool = (await nc.post('/subnetpools', { subnetpool: { name: 'p', prefixes: ['10.60.0.0/16'], default_prefixlen: 24 } })).body.subnetpool;
        const fromPool = await Promise.all(networks.map((res) => nc.post('/subnets', { subnet: { network_id: res.body.network.id, ip_version: 4, subnetpool_id: pool.id } })));
        for (const res of fromPool) assert.equal(res.status, 201, res.text);
        const cidrs = fromPool.map((res) => res.body.subnet.cidr);
        assert.equal(new Set(cidrs).size, 8, `duplicate prefixes ${cidrs.join(' ')}`);

        // Overlapping subnets on one network at once: one wins, the others are refused.
        const network = networks[0].body.network.id;
        const overlapping = await Promise.all(['10.70.0.0/24', '10.70.0.0/25', '10.70.0.0/26', '10.70.0.0/16'].map((cidr) =>
          nc.post('/subnets', { subnet: { network_id: network, ip_version: 4, cidr } })));
        const won = overlapping.filter((res) => res.status === 201);
        assert.equal(won.length, 1, overlapping.map((r) => `${r.status} ${r.text}`).join('\n'));
        for (const res of overlapping.filter((r) => r.status !== 201)) assertNeutronError(res, 400, 'InvalidInput', 'overlaps');

        // Concurrent creates against a quota: exactly the limit is made, the rest are 409 OverQuota.
        assert.equal((await nc.put(`/quotas/${nc.demoProject}`, { quota: { network: 3, security_group: 2 } })).status, 200);
        const limited = await Promise.all(Array.from({ length: 8 }, (_, i) => nc.post('/networks', { network: { name: `q${i}` } }, { token: nc.demoToken })));
        assert.equal(limited.filter((res) => res.status === 201).length, 3, limited.map((r) => `${r.status} ${r.text}`).join('\n'));
        for (const res of limited.filter((r) => r.status !== 201)) assertNeutronError(res, 409, 'OverQuota');
        // The project's default group counts too: one more group fits.
        const groups = await Promise.all(Array.from({ length: 6 }, (_, i) => nc.post('/security-groups', { security_group: { name: `g${i}` } }, { token: nc.demoToken })));
        assert.equal(groups.filter((res) => res.status === 201).length, 1, groups.map((r) => `${r.status} ${r.text}`).join('\n'));
        const listed = await nc.get(`/security-groups?project_id=${nc.demoProject}`, { token: nc.demoToken });
        assert.equal(listed.body.security_groups.length, 2, listed.text);
      } finally {
        await nc.close();
        await target.drop();
      }
    });
  });
}
