// One contract, every driver: the same cases run against the memory bus and, when
// NUBO_TEST_RABBIT_URL is set (e.g. rabbit://guest:guest@127.0.0.1:5672/), against RabbitMQ.

import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { BadRequest, NotFound, Conflict, ServiceUnavailable, Timeout } from '../core/errors.js';
import { AmqpBus, MemoryBroker, MemoryBus, NoSuchMethod, createBus, type Bus, type BusOptions, type Notification } from './index.js';

const rabbitUrl = process.env.NUBO_TEST_RABBIT_URL ?? '';
const runId = randomBytes(4).toString('hex');
let counter = 0;
/** A topic (or event namespace) no other test or run uses. */
const unique = (name: string) => `t${runId}_${name}_${++counter}`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function eventually(check: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(20);
  }
}

interface Driver { name: string; skip?: string; make(options: BusOptions): Bus }

const memoryBroker = new MemoryBroker();
const drivers: Driver[] = [
  { name: 'memory', make: (options) => new MemoryBus({ ...options, broker: memoryBroker }) },
  {
    name: 'amqp',
    skip: rabbitUrl ? undefined : 'NUBO_TEST_RABBIT_URL is not set (e.g. rabbit://guest:guest@127.0.0.1:5672/)',
    make: (options) => createBus(rabbitUrl, options),
  },
];

/** Buses made by a test, closed after it so the process can exit. */
function busFactory(driver: Driver) {
  const open: Bus[] = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((b) => b.close()));
  });
  return (options: BusOptions = {}) => {
    const bus = driver.make({ timeoutMs: 5000, ...options });
    open.push(bus);
    return bus;
  };
}

for (const driver of drivers) {
  describe(`bus contract: ${driver.name}`, { skip: driver.skip }, () => {
    const bus = busFactory(driver);

    it('call returns the handler result, as JSON carries it', async () => {
      const topic = unique('call');
      const server = bus();
      const client = bus();
      let ran = false;
      await server.serve(topic, {
        add: ({ a, b }: { a: number; b: number }) => { ran = true; return a + b; },
        echo: async (args, context) => ({ args, requestId: context.requestId }),
      });
      const answer = client.call<number>(topic, 'add', { a: 2, b: 3 });
      assert.equal(ran, false, 'the handler must not run inside call()');
      assert.equal(await answer, 5);
      const when = new Date('2024-01-02T03:04:05Z');
      assert.deepEqual(await client.call(topic, 'echo', { when, list: [1, 'x'] }, { context: { requestId: 'req-1' } }), {
        args: { when: when.toISOString(), list: [1, 'x'] },
        requestId: 'req-1',
      });
    });

    it('call rebuilds handler errors with their class and status', async () => {
      const topic = unique('errors');
      const server = bus();
      const client = bus();
      await server.serve(topic, {
        missing: () => { throw new NotFound('Flavor 42 could not be found.'); },
        busy: async () => { throw new Conflict('Instance is locked'); },
        broken: () => { throw new TypeError('cannot read x of undefined'); },
      });
      await assert.rejects(client.call(topic, 'missing', {}), (err: any) => {
        assert.ok(err instanceof NotFound);
        assert.equal(err.status, 404);
        assert.equal(err.name, 'NotFound');
        assert.equal(err.message, 'Flavor 42 could not be found.');
        return true;
      });
      await assert.rejects(client.call(topic, 'busy', {}), (err: any) => err instanceof Conflict && err.status === 409);
      await assert.rejects(client.call(topic, 'broken', {}), (err: any) => {
        assert.ok(err instanceof Error);
        assert.equal(err.name, 'TypeError');
        assert.equal(err.message, 'cannot read x of undefined');
        return true;
      });
    });

    it('call to a topic nobody serves times out naming topic and method', async () => {
      const topic = unique('nobody');
      const client = bus();
      await assert.rejects(client.call(topic, 'spawn', {}, { timeoutMs: 300 }), (err: any) => {
        assert.ok(err instanceof Timeout);
        assert.equal(err.status, 504);
        assert.equal(err.message, `RPC call ${topic}.spawn timed out after 300 ms: no server answered`);
        return true;
      });
    });

    it('call to a handler that answers too late times out', async () => {
      const topic = unique('slow');
      const server = bus();
      const client = bus();
      await server.serve(topic, { slow: () => sleep(400).then(() => 'late') });
      await assert.rejects(client.call(topic, 'slow', {}, { timeoutMs: 100 }), Timeout);
      await sleep(400); // let the handler finish before the buses close
    });

    it('call to an unknown method fails', async () => {
      const topic = unique('unknown');
      const server = bus();
      const client = bus();
      await server.serve(topic, { known: () => 1 });
      for (const method of ['nope', 'toString']) {
        await assert.rejects(client.call(topic, method, {}), (err: any) => {
          assert.ok(err instanceof NoSuchMethod);
          assert.match(err.message, new RegExp(`${method} is not served on topic ${topic}`));
          return true;
        });
      }
    });

    it('cast reaches exactly one server, and servers share the load', async () => {
      const topic = unique('cast');
      const hits = [0, 0];
      const [a, b, client] = [bus(), bus(), bus()];
      await a.serve(topic, { hit: () => { hits[0]++; } });
      await b.serve(topic, { hit: () => { hits[1]++; } });
      await client.cast(topic, 'hit', {});
      await eventually(() => hits[0] + hits[1] >= 1);
      await sleep(200);
      assert.equal(hits[0] + hits[1], 1);
      for (let i = 0; i < 9; i++) await client.cast(topic, 'hit', {});
      await eventually(() => hits[0] + hits[1] >= 10);
      await sleep(200);
      assert.equal(hits[0] + hits[1], 10);
      assert.ok(hits[0] > 0 && hits[1] > 0, `both servers should get casts, got ${hits}`);
    });

    it('fanout reaches every server of the topic', async () => {
      const topic = unique('fanout');
      const got: string[] = [];
      const [a, b, client] = [bus(), bus(), bus()];
      await a.serve(topic, { refresh: ({ v }: { v: number }) => { got.push(`a${v}`); } });
      await a.serve(topic, { refresh: ({ v }: { v: number }) => { got.push(`a2${v}`); } });
      await b.serve(topic, { refresh: ({ v }: { v: number }) => { got.push(`b${v}`); } });
      await client.fanout(topic, 'refresh', { v: 1 });
      await eventually(() => got.length >= 3);
      await sleep(200);
      assert.deepEqual(got.sort(), ['a1', 'a21', 'b1']);
    });

    it('notifications reach the listeners whose prefix matches, and only those', async () => {
      const ns = unique('ev');
      const publisher = bus({ publisherId: 'test.publisher' });
      const listening = bus();
      const seen: Record<string, string[]> = { compute: [], inst: [], identity: [], all: [] };
      const record = (key: string) => (n: Notification) => {
        if (n.eventType.startsWith(ns)) seen[key].push(n.eventType);
      };
      await listening.onNotification(`${ns}.compute.`, record('compute'));
      await listening.onNotification(`${ns}.compute.inst`, record('inst')); // a partial last word
      await listening.onNotification(`${ns}.identity`, record('identity'));
      await listening.onNotification('', record('all'));
      let received: Notification | undefined;
      await listening.onNotification(`${ns}.identity.user.created`, (n) => { received = n; });

      await publisher.notify(`${ns}.compute.instance.create.end`, { id: 'vm1' });
      await publisher.notify(`${ns}.compute.image.upload`, {});
      await publisher.notify(`${ns}.identity.user.created`, { id: 'u1' }, { priority: 'WARN' });
      await publisher.notify(`${ns}.network.port.create`, {});
      await eventually(() => seen.all.length >= 4 && received !== undefined);
      await sleep(200);
      assert.deepEqual(seen.compute.sort(), [`${ns}.compute.image.upload`, `${ns}.compute.instance.create.end`]);
      assert.deepEqual(seen.inst, [`${ns}.compute.instance.create.end`]);
      assert.deepEqual(seen.identity, [`${ns}.identity.user.created`]);
      assert.equal(seen.all.length, 4);
      assert.equal(received!.publisherId, 'test.publisher');
      assert.equal(received!.priority, 'WARN');
      assert.deepEqual(received!.payload, { id: 'u1' });
      assert.ok(!Number.isNaN(Date.parse(received!.timestamp)));
      assert.ok(received!.messageId);
    });

    it('closing a subscription stops delivery', async () => {
      const topic = unique('closing');
      const ns = unique('ev');
      const server = bus();
      const client = bus();
      const sub = await server.serve(topic, { ping: () => 'pong' });
      const events: string[] = [];
      const listener = await server.onNotification(ns, (n) => { events.push(n.eventType); });
      assert.equal(await client.call(topic, 'ping', {}), 'pong');
      await client.notify(`${ns}.one`, {});
      await eventually(() => events.length === 1);

      await sub.close();
      await listener.close();
      await assert.rejects(client.call(topic, 'ping', {}, { timeoutMs: 300 }), Timeout);
      await client.notify(`${ns}.two`, {});
      await sleep(200);
      assert.deepEqual(events, [`${ns}.one`]);
    });

    it('concurrent calls each get their own answer', async () => {
      const topic = unique('many');
      const [a, b, client] = [bus(), bus(), bus()];
      const handlers = { double: async ({ i }: { i: number }) => { await sleep(Math.random() * 20); return { i, twice: i * 2 }; } };
      await a.serve(topic, handlers);
      await b.serve(topic, handlers);
      const answers = await Promise.all(Array.from({ length: 200 }, (_, i) => client.call(topic, 'double', { i })));
      answers.forEach((answer, i) => assert.deepEqual(answer, { i, twice: i * 2 }));
    });
  });
}

describe('amqp connection handling', { skip: drivers[1].skip }, () => {
  const bus = busFactory(drivers[1]);
  /** The test URL with a dead broker listed first. */
  const withDeadBrokerFirst = () => rabbitUrl.replace(/^(\w+):\/\//, '$1://guest:guest@127.0.0.1:1,');

  it('fails over to the next broker URL when the first does not answer', async () => {
    const topic = unique('failover');
    const server = createBus(withDeadBrokerFirst(), { timeoutMs: 5000 });
    const client = createBus(withDeadBrokerFirst(), { timeoutMs: 5000 });
    try {
      assert.ok(server instanceof AmqpBus);
      await server.serve(topic, { ping: () => 'pong' });
      assert.equal(await client.call(topic, 'ping', {}), 'pong');
    } finally {
      await Promise.all([server.close(), client.close()]);
    }
  });

  it('reconnects after the connection drops, resubscribing servers and listeners', async () => {
    const topic = unique('reconnect');
    const ns = unique('ev');
    const server = bus() as AmqpBus;
    const client = bus() as AmqpBus;
    const events: string[] = [];
    await server.serve(topic, { ping: () => 'pong' });
    await server.onNotification(ns, (n) => { events.push(n.eventType); });
    assert.equal(await client.call(topic, 'ping', {}), 'pong');

    client.dropConnectionForTest();
    server.dropConnectionForTest();
    // Sent while both are reconnecting: the publish waits, the server picks it up once back.
    assert.equal(await client.call(topic, 'ping', {}, { timeoutMs: 15000 }), 'pong');
    // The listener's queue was exclusive to the old connection; it must have been re-created.
    await eventually(async () => {
      await client.notify(`${ns}.after`, {});
      await sleep(100);
      return events.length > 0;
    }, 15000);
    assert.equal(events[0], `${ns}.after`);
  });

  it('fails calls in flight when the connection drops, with ServiceUnavailable', async () => {
    const topic = unique('inflight');
    const server = bus();
    const client = bus() as AmqpBus;
    let started = false;
    await server.serve(topic, { slow: async () => { started = true; await sleep(300); return 'done'; } });
    const answer = client.call(topic, 'slow', {});
    await eventually(() => started);
    client.dropConnectionForTest();
    await assert.rejects(answer, (err: any) => {
      assert.ok(err instanceof ServiceUnavailable);
      assert.match(err.message, new RegExp(`RPC call ${topic}.slow failed: connection to the message bus was lost`));
      return true;
    });
    assert.equal(await client.call(topic, 'slow', {}), 'done');
  });

  it('without any reachable broker, calls wait for the timeout then fail with ServiceUnavailable', async () => {
    const client = createBus('rabbit://guest:guest@127.0.0.1:1/', { timeoutMs: 300 });
    try {
      await assert.rejects(client.call('anything', 'spawn', {}), (err: any) => {
        assert.ok(err instanceof ServiceUnavailable);
        assert.match(err.message, /RPC call anything\.spawn: no connection to the message bus \(127\.0\.0\.1:1\) within 300 ms/);
        return true;
      });
      await assert.rejects(client.cast('anything', 'spawn', {}), ServiceUnavailable);
    } finally {
      await client.close();
    }
  });
});

describe('createBus', () => {
  it('makes a memory bus by default and for memory://', async () => {
    for (const url of ['', 'memory://']) {
      const bus = createBus(url);
      assert.ok(bus instanceof MemoryBus);
      await bus.close();
    }
  });

  it('refuses unknown transports with BadRequest', () => {
    assert.throws(() => createBus('kafka://broker:9092'), (err: any) => {
      assert.ok(err instanceof BadRequest);
      assert.match(err.message, /Unsupported transport_url kafka:\/\/broker:9092/);
      return true;
    });
    assert.throws(() => createBus('rabbit://'), BadRequest);
  });

  it('masks passwords in error messages', () => {
    assert.throws(() => createBus('zmq://admin:s3cret@host'), (err: any) => !err.message.includes('s3cret'));
  });
});
