// RabbitMQ driver, laid out like oslo.messaging's rabbit driver:
//   call/cast  -> topic exchange `nubo`, routing key = topic, one shared queue `nubo_<topic>`
//                 that every server of the topic consumes from (RabbitMQ round-robins);
//   fanout     -> fanout exchange `nubo_fanout_<topic>`, one exclusive auto-delete queue per server;
//   replies    -> one exclusive reply queue per bus, matched to calls by correlation id;
//   notify     -> topic exchange `nubo_notifications`, routing key = eventType.
// Bodies are JSON. Messages are consumed without acks: RPC is at-most-once, as in oslo, so a
// server dying mid-request never makes another server run it a second time.
//
// The bus owns its connection: it connects in the background to the first broker URL that
// works, and when the connection drops it reconnects with backoff (trying the URLs in turn),
// declares everything again and resubscribes every current server and listener. Calls in
// flight when the connection drops fail with ServiceUnavailable (they may or may not have
// run); anything published while disconnected waits for the reconnect, up to its timeout.

import { randomUUID } from 'node:crypto';
import amqp from 'amqplib';
import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';
import { InternalError, ServiceUnavailable } from '../core/errors.js';
import { createLogger } from '../core/log.js';
import { callTimeout, handlerFor, rebuildError, serializeError } from './errors.js';
import { defaultPublisherId, newNotification, type NotifyOptions } from './notification.js';
import type { Bus, BusOptions, CallOptions, Notification, RpcContext, RpcHandler, Subscription } from './types.js';

const log = createLogger('bus.amqp');

const RPC_EXCHANGE = 'nubo';
const NOTIFY_EXCHANGE = 'nubo_notifications';
const fanoutExchange = (topic: string) => `nubo_fanout_${topic}`;
/** An unused topic queue disappears after 30 minutes (oslo's rabbit_transient_queues_ttl). */
const TOPIC_QUEUE_TTL_MS = 30 * 60 * 1000;
const CONNECT_TIMEOUT_MS = 10000;
const RECONNECT_MIN_MS = 250;
const RECONNECT_MAX_MS = 10000;

interface Request { method: string; args: unknown; context?: RpcContext }

interface PendingCall {
  topic: string;
  method: string;
  resolve: (value: any) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
  /** Published; false while still waiting for a connection. */
  sent: boolean;
}

interface Server {
  topic: string;
  handlers: Record<string, RpcHandler>;
  /** The channel it is subscribed on, and its consumer tags there. */
  ch?: Channel;
  tags: string[];
}

interface Listener {
  prefix: string;
  listener: (n: Notification) => void | Promise<void>;
  ch?: Channel;
  tags: string[];
}

interface Waiter { resolve: (ch: Channel) => void; reject: (err: Error) => void; timer: NodeJS.Timeout }

export class AmqpBus implements Bus {
  private readonly urls: string[];
  private readonly timeoutMs: number;
  private readonly publisherId: string;
  /** Renamed on every connection: the broker may still hold the old exclusive queue for a moment. */
  private replyQueue = '';

  private urlIndex = 0;
  private conn: ChannelModel | null = null;
  /** Set only once everything is declared and subscribed on the current connection. */
  private ch: Channel | null = null;
  private lastError: Error | null = null;
  private closing = false;
  private connecting: Promise<void> | null = null;
  private wakeUp: (() => void) | null = null;

  private readonly pending = new Map<string, PendingCall>();
  private readonly servers = new Set<Server>();
  private readonly listeners = new Set<Listener>();
  private readonly waiters = new Set<Waiter>();
  /** Declarations and subscriptions run one at a time, so a reconnect never races a serve(). */
  private lock: Promise<unknown> = Promise.resolve();

  /** `urls`: amqp:// URLs of the brokers of one cluster, tried in order. Connecting starts at once. */
  constructor(urls: string[], options: BusOptions = {}) {
    if (!urls.length) throw new Error('AmqpBus needs at least one broker URL');
    this.urls = urls;
    this.timeoutMs = options.timeoutMs ?? 60000;
    this.publisherId = options.publisherId ?? defaultPublisherId();
    this.startConnecting();
  }

  async serve(topic: string, handlers: Record<string, RpcHandler>): Promise<Subscription> {
    const server: Server = { topic, handlers, tags: [] };
    return this.subscribe(`serve ${topic}`, this.servers, server, (ch) => this.subscribeServer(ch, server));
  }

  async onNotification(prefix: string, listener: (n: Notification) => void | Promise<void>): Promise<Subscription> {
    const entry: Listener = { prefix, listener, tags: [] };
    return this.subscribe(`listen to ${prefix || 'all'} notifications`, this.listeners, entry, (ch) => this.subscribeListener(ch, entry));
  }

  async call<T = unknown>(topic: string, method: string, args: unknown, options: CallOptions = {}): Promise<T> {
    this.assertOpen();
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const deadline = deadlineIn(timeoutMs);
    const body = encode({ method, args, context: options.context ?? {} } satisfies Request);
    const id = randomUUID();
    const answer = new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        const call = this.pending.get(id);
        if (!call) return;
        this.pending.delete(id);
        reject(call.sent ? callTimeout(topic, method, timeoutMs) : this.unavailable(`RPC call ${topic}.${method}`, timeoutMs));
      }, timeoutMs);
      this.pending.set(id, { topic, method, resolve, reject, timer, sent: false });
    });
    // Publish in the background: the answer (or its timeout) settles the call either way.
    this.publish(`RPC call ${topic}.${method}`, deadline, () => this.pending.has(id), (ch) => {
      ch.publish(RPC_EXCHANGE, topic, body, {
        correlationId: id,
        replyTo: this.replyQueue,
        contentType: 'application/json',
        // Nobody should run a request whose caller has given up.
        expiration: String(Math.max(1, deadline.at - Date.now())),
      });
      const call = this.pending.get(id);
      if (call) call.sent = true;
    }).catch((err) => this.settle(id, err as Error));
    return answer;
  }

  async cast(topic: string, method: string, args: unknown, context: RpcContext = {}): Promise<void> {
    this.assertOpen();
    const body = encode({ method, args, context } satisfies Request);
    await this.publish(`RPC cast ${topic}.${method}`, deadlineIn(this.timeoutMs), null, (ch) => {
      ch.publish(RPC_EXCHANGE, topic, body, { contentType: 'application/json' });
    });
  }

  async fanout(topic: string, method: string, args: unknown, context: RpcContext = {}): Promise<void> {
    this.assertOpen();
    const body = encode({ method, args, context } satisfies Request);
    await this.publish(`RPC fanout ${topic}.${method}`, deadlineIn(this.timeoutMs), null, async (ch) => {
      // Publishing to a missing exchange would kill the channel; declaring is idempotent.
      await ch.assertExchange(fanoutExchange(topic), 'fanout', { durable: false, autoDelete: true });
      ch.publish(fanoutExchange(topic), '', body, { contentType: 'application/json' });
    });
  }

  async notify(eventType: string, payload: unknown, options: NotifyOptions = {}): Promise<void> {
    this.assertOpen();
    const body = encode(newNotification(eventType, payload, options, this.publisherId));
    await this.publish(`notification ${eventType}`, deadlineIn(this.timeoutMs), null, (ch) => {
      ch.publish(NOTIFY_EXCHANGE, eventType, body, { contentType: 'application/json' });
    });
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.wakeUp?.();
    const closed = new ServiceUnavailable('Message bus closed');
    for (const w of this.waiters) { clearTimeout(w.timer); w.reject(closed); }
    this.waiters.clear();
    for (const id of [...this.pending.keys()]) this.settle(id, new ServiceUnavailable('Message bus closed before the RPC call was answered'));
    this.servers.clear();
    this.listeners.clear();
    const conn = this.conn;
    this.conn = null;
    this.ch = null;
    if (conn) await conn.close().catch(() => {});
    await this.connecting; // a connection attempt in progress sees `closing` and cleans up
  }

  /** Tests only: break the connection abruptly, as a broker restart or network cut would. */
  dropConnectionForTest(): void {
    const conn = this.conn;
    if (!conn) return;
    const err = new Error('connection dropped for test');
    (conn as any).connection?.stream?.destroy(err);
    // Handle the loss now rather than when the socket events arrive, so the test is deterministic.
    this.lost(conn, err);
  }

  // ---- connection management ----

  private startConnecting(): void {
    if (this.connecting || this.closing) return;
    this.connecting = this.connectLoop()
      .catch((err) => log.error('message bus reconnect loop failed', { error: (err as Error).message }))
      .finally(() => { this.connecting = null; });
  }

  private async connectLoop(): Promise<void> {
    for (let round = 0; !this.closing; round++) {
      for (let i = 0; i < this.urls.length && !this.closing; i++) {
        const url = this.urls[this.urlIndex];
        try {
          await this.open(url);
          return;
        } catch (err) {
          this.lastError = err as Error;
          if (!this.closing) log.warn('cannot connect to message broker', { broker: redact(url), error: (err as Error).message });
          this.urlIndex = (this.urlIndex + 1) % this.urls.length;
        }
      }
      const base = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** round);
      await this.sleep(base * (0.8 + Math.random() * 0.4)); // jitter so many agents do not reconnect in lockstep
    }
  }

  private async open(url: string): Promise<void> {
    const conn = await amqp.connect(url, { timeout: CONNECT_TIMEOUT_MS });
    if (this.closing) {
      await conn.close().catch(() => {});
      return;
    }
    // An 'error' event without a listener would crash the process. 'close' normally follows it;
    // treating both as a loss is harmless since lost() acts once per connection.
    conn.on('error', (err: Error) => {
      if (this.conn === conn) log.warn('message broker connection error', { broker: redact(url), error: err.message });
      this.lost(conn, err);
    });
    conn.on('close', (err?: Error) => this.lost(conn, err ?? new Error('connection closed')));
    this.conn = conn;
    await this.exclusive(() => this.setUp(conn)).catch((err) => {
      // Do not leave a half-set-up connection behind when trying the next broker.
      if (this.conn === conn) this.conn = null;
      conn.close().catch(() => {});
      throw err;
    });
    log.info('connected to message broker', { broker: redact(url) });
  }

  /** Declare everything, resubscribe every server and listener, then let waiting publishes go. */
  private async setUp(conn: ChannelModel): Promise<void> {
    const ch = await conn.createChannel();
    ch.on('error', (err: Error) => log.warn('message bus channel error', { error: err.message }));
    // A channel the broker closed is useless; start over with a fresh connection. Deferred so
    // that when the whole connection went, its own event (with the broker's reason) comes first.
    ch.on('close', () => setImmediate(() => this.lost(conn, new Error('channel closed by the broker'))));
    await ch.assertExchange(RPC_EXCHANGE, 'topic', { durable: false });
    await ch.assertExchange(NOTIFY_EXCHANGE, 'topic', { durable: false });
    const replyQueue = `nubo_reply_${randomUUID()}`;
    await ch.assertQueue(replyQueue, { exclusive: true, autoDelete: true });
    await ch.consume(replyQueue, (msg) => this.onReply(msg), { noAck: true });
    for (const server of this.servers) await this.subscribeServer(ch, server);
    for (const listener of this.listeners) await this.subscribeListener(ch, listener);
    if (this.conn !== conn) throw new Error('connection lost while setting up');
    this.replyQueue = replyQueue;
    this.ch = ch;
    for (const w of this.waiters) { clearTimeout(w.timer); w.resolve(ch); }
    this.waiters.clear();
  }

  /** The connection `conn` is gone (or its channel is): fail calls in flight, reconnect. */
  private lost(conn: ChannelModel, err: Error): void {
    if (this.conn !== conn) return; // already handled, or an old connection
    this.conn = null;
    this.ch = null;
    conn.close().catch(() => {}); // if only the channel died, do not leak the connection
    this.lastError = err;
    for (const [id, call] of this.pending) {
      if (!call.sent) continue; // not published yet: it waits for the reconnect
      this.settle(id, new ServiceUnavailable(
        `RPC call ${call.topic}.${call.method} failed: connection to the message bus was lost (${err.message}); it may or may not have run`,
      ));
    }
    if (this.closing) return;
    log.warn('message broker connection lost; reconnecting', { error: err.message });
    this.startConnecting();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wakeUp = () => { clearTimeout(timer); resolve(); };
    });
  }

  /** The channel, once connected; waits for a (re)connect until `deadline`. */
  private waitReady(deadline: Deadline, what: string): Promise<Channel> {
    if (this.closing) return Promise.reject(new ServiceUnavailable('Message bus is closed'));
    if (this.ch) return Promise.resolve(this.ch);
    const waitMs = Math.max(0, deadline.at - Date.now());
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters.delete(waiter);
          reject(this.unavailable(what, deadline.ms));
        }, waitMs),
      };
      this.waiters.add(waiter);
    });
  }

  /** Publish once connected; if the channel breaks under us, wait for the reconnect and retry. */
  private async publish(what: string, deadline: Deadline, wanted: (() => boolean) | null, send: (ch: Channel) => void | Promise<void>): Promise<void> {
    for (;;) {
      const ch = await this.waitReady(deadline, what);
      if (wanted && !wanted()) return; // e.g. the call timed out while we waited
      try {
        await send(ch);
        return;
      } catch (err) {
        if (this.closing) throw new ServiceUnavailable('Message bus is closed');
        // Force the reconnect now, so the next waitReady does not hand back the same dead channel.
        if (this.ch === ch && this.conn) this.lost(this.conn, err as Error);
      }
    }
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lock.then(fn, fn);
    this.lock = run.catch(() => {});
    return run;
  }

  // ---- servers and listeners ----

  /** Register `entry` (so reconnects resubscribe it) and subscribe it on the live connection. */
  private async subscribe<E extends Server | Listener>(what: string, set: Set<E>, entry: E, attach: (ch: Channel) => Promise<void>): Promise<Subscription> {
    this.assertOpen();
    set.add(entry);
    const subscription: Subscription = { close: () => this.unsubscribe(set, entry) };
    const deadline = deadlineIn(this.timeoutMs);
    try {
      for (;;) {
        await this.waitReady(deadline, what);
        const done = await this.exclusive(async () => {
          const ch = this.ch;
          if (!ch) return false; // lost again: the reconnect will subscribe it
          if (entry.ch === ch) return true; // the reconnect already did
          try {
            await attach(ch);
            return true;
          } catch (err) {
            if (this.ch === ch && !this.closing) throw err;
            return false; // connection lost meanwhile; wait for the reconnect
          }
        });
        if (done) return subscription;
      }
    } catch (err) {
      await subscription.close();
      throw err;
    }
  }

  private async unsubscribe<E extends Server | Listener>(set: Set<E>, entry: E): Promise<void> {
    if (!set.delete(entry)) return;
    await this.exclusive(async () => {
      const ch = entry.ch;
      entry.ch = undefined;
      if (!ch || ch !== this.ch) return; // the broker dropped those consumers with the old connection
      // Exclusive auto-delete queues go away with their consumer.
      for (const tag of entry.tags) await ch.cancel(tag);
    }).catch((err) => log.debug('unsubscribe failed; the connection is gone anyway', { error: (err as Error).message }));
  }

  private async subscribeServer(ch: Channel, server: Server): Promise<void> {
    const { topic } = server;
    const queue = `nubo_${topic}`;
    // Not auto-delete: casts sent while every server is restarting wait for them.
    await ch.assertQueue(queue, { durable: false, arguments: { 'x-expires': TOPIC_QUEUE_TTL_MS } });
    await ch.bindQueue(queue, RPC_EXCHANGE, topic);
    await ch.assertExchange(fanoutExchange(topic), 'fanout', { durable: false, autoDelete: true });
    // A fresh name each time: the broker may still hold the previous connection's queue.
    const own = `${fanoutExchange(topic)}_${randomUUID()}`;
    await ch.assertQueue(own, { exclusive: true, autoDelete: true });
    await ch.bindQueue(own, fanoutExchange(topic), '');
    const onMessage = (msg: ConsumeMessage | null) => void this.onRequest(server, msg);
    const shared = await ch.consume(queue, onMessage, { noAck: true });
    const mine = await ch.consume(own, onMessage, { noAck: true });
    server.tags = [shared.consumerTag, mine.consumerTag];
    server.ch = ch;
  }

  private async subscribeListener(ch: Channel, entry: Listener): Promise<void> {
    const queue = `nubo_notify_${randomUUID()}`;
    await ch.assertQueue(queue, { exclusive: true, autoDelete: true });
    await ch.bindQueue(queue, NOTIFY_EXCHANGE, bindingPattern(entry.prefix));
    const { consumerTag } = await ch.consume(queue, (msg) => void this.onNotificationMessage(entry, msg), { noAck: true });
    entry.tags = [consumerTag];
    entry.ch = ch;
  }

  // ---- incoming messages ----

  private async onRequest(server: Server, msg: ConsumeMessage | null): Promise<void> {
    if (!msg) return; // consumer cancelled by the broker; a reconnect resubscribes
    const { replyTo, correlationId } = msg.properties;
    let request: Request;
    try {
      request = JSON.parse(msg.content.toString('utf8'));
    } catch {
      return log.warn('dropping malformed RPC message', { topic: server.topic });
    }
    let reply: Buffer;
    try {
      const result = await handlerFor(server.topic, server.handlers, request.method)(request.args, request.context ?? {});
      reply = encode({ result });
    } catch (err) {
      reply = encode({ error: serializeError(err) });
      if (!replyTo) log.warn('cast handler failed', { topic: server.topic, method: request.method, error: serializeError(err) });
    }
    if (!replyTo) return;
    // Through publish(): if our connection dropped meanwhile, the caller may still be waiting.
    await this.publish(`RPC reply ${server.topic}.${request.method}`, deadlineIn(this.timeoutMs), null, (ch) => {
      ch.sendToQueue(replyTo, reply, { correlationId, contentType: 'application/json' });
    }).catch((err) => {
      if (!this.closing) log.warn('cannot send RPC reply', { topic: server.topic, method: request.method, error: (err as Error).message });
    });
  }

  private onReply(msg: ConsumeMessage | null): void {
    if (!msg) return;
    const id = msg.properties.correlationId as string;
    if (!this.pending.has(id)) return; // a late answer to a call that already timed out
    let body: { result?: unknown; error?: ReturnType<typeof serializeError> };
    try {
      body = JSON.parse(msg.content.toString('utf8'));
    } catch {
      return this.settle(id, new InternalError('Malformed RPC reply'));
    }
    if (body.error) this.settle(id, rebuildError(body.error));
    else this.settle(id, null, body.result);
  }

  private async onNotificationMessage(entry: Listener, msg: ConsumeMessage | null): Promise<void> {
    if (!msg) return;
    try {
      const notification = JSON.parse(msg.content.toString('utf8')) as Notification;
      // The binding pattern is coarser than a string prefix; this is the exact filter.
      if (!notification.eventType?.startsWith(entry.prefix)) return;
      await entry.listener(notification);
    } catch (err) {
      log.warn('notification listener failed', { prefix: entry.prefix, error: serializeError(err) });
    }
  }

  // ---- helpers ----

  private settle(id: string, err: Error | null, result?: unknown): void {
    const call = this.pending.get(id);
    if (!call) return;
    this.pending.delete(id);
    clearTimeout(call.timer);
    if (err) call.reject(err);
    else call.resolve(result);
  }

  private unavailable(what: string, waitedMs: number): ServiceUnavailable {
    const brokers = this.urls.map(redact).join(', ');
    const last = this.lastError ? `; last error: ${this.lastError.message}` : '';
    return new ServiceUnavailable(`${what}: no connection to the message bus (${brokers}) within ${waitedMs} ms${last}`);
  }

  private assertOpen(): void {
    if (this.closing) throw new ServiceUnavailable('Message bus is closed');
  }
}

/** When to give up, and the timeout it came from (for error messages). */
interface Deadline { at: number; ms: number }
const deadlineIn = (ms: number): Deadline => ({ at: Date.now() + ms, ms });

function encode(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value) ?? 'null', 'utf8');
}

/**
 * The AMQP topic pattern that covers every eventType starting with `prefix`. Only whole words
 * can be matched, so a trailing partial word is left to `#` ("compute.inst" -> "compute.#").
 */
export function bindingPattern(prefix: string): string {
  const words = prefix.split('.');
  words.pop(); // the last word may be partial ('' when the prefix ends with a dot)
  return words.length ? `${words.join('.')}.#` : '#';
}

/** A broker URL without credentials, for logs and error messages. */
function redact(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || '5672'}`;
  } catch {
    return '(invalid broker URL)';
  }
}
