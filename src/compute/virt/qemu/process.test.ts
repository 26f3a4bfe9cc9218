// The NICs of an instance's QEMU command line: explicit PCI slots, ids from the slot, the metadata
// forward on the first NIC only, and records of before NIC slots (`macs`) read as NICs.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { InstanceSpec } from '../../rpc.js';
import { FIRST_NIC_SLOT, freeNicSlot, qemuArgs, spawnNics, upgradeRecord, type InstanceRecord } from './process.js';

const spec = {
  uuid: '11111111-2222-3333-4444-555555555555', name: 'vm', flavor: { vcpus: 1, memoryMb: 256 },
  vifs: [{ portId: 'port-a', macAddress: 'fa:16:3e:00:00:0a' }],
} as unknown as InstanceSpec;
const settings = { emulator: 'qemu-system-x86_64', accelerator: 'tcg' as const, vncListen: '127.0.0.1' };
const disks = { ephemeral: false, swap: false, configDrive: false };

/** The values following each `flag` in args. */
const valuesOf = (args: string[], flag: string) => args.flatMap((a, i) => (a === flag ? [args[i + 1]] : []));

describe('QEMU command line: NICs', () => {
  it('puts each NIC at its slot with ids from the slot; only the first forwards the metadata address', () => {
    const record: InstanceRecord = {
      spec, disks, vncPort: null,
      nics: [{ mac: 'fa:16:3e:00:00:0a', portId: 'port-a', slot: 0x10 }, { mac: 'fa:16:3e:00:00:0b', portId: 'port-b', slot: 0x12 }],
    };
    const args = qemuArgs('/i/vm', record, settings);
    assert.deepEqual(valuesOf(args, '-device').filter((d) => d.startsWith('virtio-net-pci')), [
      'virtio-net-pci,netdev=net16,mac=fa:16:3e:00:00:0a,id=nic16,addr=0x10',
      'virtio-net-pci,netdev=net18,mac=fa:16:3e:00:00:0b,id=nic18,addr=0x12',
    ]);
    assert.deepEqual(valuesOf(args, '-netdev'), [
      'user,id=net16,net=169.254.0.0/16,host=169.254.0.2,dhcpstart=169.254.0.15,guestfwd=tcp:169.254.169.254:80-cmd:socat STDIO UNIX-CONNECT:/i/vm/metadata.sock',
      'user,id=net18,net=169.254.0.0/16,host=169.254.0.2,dhcpstart=169.254.0.15',
    ]);
    assert.equal(freeNicSlot(record.nics), 0x11);
  });

  it('reads a record of before NIC slots: one NIC per MAC from the first slot, with the port of its vif', () => {
    const legacy = { spec, disks, vncPort: null, macs: ['fa:16:3e:00:00:0a', '52:54:00:12:34:56'] } as unknown as InstanceRecord;
    const record = upgradeRecord(legacy);
    assert.deepEqual(record.nics, [
      { mac: 'fa:16:3e:00:00:0a', portId: 'port-a', slot: FIRST_NIC_SLOT },
      { mac: '52:54:00:12:34:56', portId: null, slot: FIRST_NIC_SLOT + 1 },
    ]);
    assert.ok(!('macs' in record));
    assert.equal(upgradeRecord(record), record, 'a current record is read as it is');
  });

  it('gives a new instance one NIC per port from the first slot, and refuses more ports than slots', () => {
    const vifs = Array.from({ length: 16 }, (_, i) => ({ portId: `port-${i}`, macAddress: `fa:16:3e:00:00:${i.toString(16).padStart(2, '0')}` }));
    assert.deepEqual(spawnNics(vifs).map((n) => n.slot), vifs.map((_, i) => FIRST_NIC_SLOT + i));
    assert.throws(() => spawnNics([...vifs, { portId: 'one-more', macAddress: 'fa:16:3e:00:01:00' }]), /No free PCI slot/);
    const [generated] = spawnNics([]);
    assert.equal(generated.portId, null);
    assert.match(generated.mac, /^52:54:00:/);
  });
});
