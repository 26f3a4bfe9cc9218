// The QMP client against a scripted QMP server on a unix socket: greeting and capabilities
// negotiation, replies matched by id while events arrive in between (even mid-line), errors,
// and pending commands failing when the connection drops.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { QmpClient, QmpClosed, QmpError } from './qmp.js';

describe('QmpClient', () => {
  let dir: string;
  let server: Server;
  let path: string;
  let peer: Socket | undefined;
  const received: any[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'nubo-qmp-'));
    path = join(dir, 'qmp.sock');
    server = createServer((socket) => {
      peer = socket;
      socket.write('{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": ["oob"]}}\r\n');
      let buffer = '';
      socket.on('data', (chunk) => {
        buffer += chunk.toString();
        let nl: number;
        while ((nl = buffer.indexOf('\n')) >= 0) {
          const msg = JSON.parse(buffer.slice(0, nl));
          buffer = buffer.slice(nl + 1);
          received.push(msg);
          if (msg.execute === 'qmp_capabilities') socket.write(`{"return": {}, "id": ${JSON.stringify(msg.id)}}\r\n`);
          else if (msg.execute === 'query-status') {
            // An event first, split across writes, then the reply.
            socket.write('{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "ST');
            setTimeout(() => socket.write(`OP"}\r\n{"return": {"status": "paused", "running": false}, "id": ${JSON.stringify(msg.id)}}\r\n`), 20);
          } else if (msg.execute === 'bogus') socket.write(`{"error": {"class": "CommandNotFound", "desc": "The command bogus has not been found"}, "id": ${JSON.stringify(msg.id)}}\r\n`);
          // 'hang' gets no answer.
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(path, resolve));
  });

  after(async () => {
    await new Promise((resolve) => server.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  it('negotiates, matches replies to commands and hands events to listeners', async () => {
    const client = await QmpClient.connect(path);
    assert.equal(received[0].execute, 'qmp_capabilities');
    const events: string[] = [];
    client.onEvent((e) => events.push(e.event));
    const stopped = client.waitEvent('STOP', 1000);
    const status = await client.execute('query-status');
    assert.deepEqual(status, { status: 'paused', running: false });
    assert.equal((await stopped).event, 'STOP');
    assert.deepEqual(events, ['STOP']);
    await assert.rejects(client.execute('bogus'), (err: Error) => err instanceof QmpError && err.errorClass === 'CommandNotFound' && /bogus/.test(err.message));
    client.close();
    assert.ok(client.closed);
    await assert.rejects(client.execute('query-status'), QmpClosed);
  });

  it('fails pending commands and waits when the connection drops', async () => {
    const client = await QmpClient.connect(path);
    const pending = client.execute('hang');
    const waiting = client.waitEvent('SHUTDOWN', 5000);
    let closed = false;
    client.onClose(() => { closed = true; });
    peer!.destroy();
    await assert.rejects(pending, QmpClosed);
    await assert.rejects(waiting, QmpClosed);
    assert.ok(closed && client.closed);
  });

  it('times out a command nobody answers', async () => {
    const client = await QmpClient.connect(path);
    await assert.rejects(client.execute('hang', undefined, 100), /no answer within 100 ms/);
    client.close();
  });

  it('rejects when nothing listens', async () => {
    await assert.rejects(QmpClient.connect(join(dir, 'missing.sock'), 500));
  });
});
