// In-process bus: what `nubo up` and the integration tests use. It keeps the semantics of
// the AMQP driver so code tested here behaves the same on RabbitMQ: handlers run later
// (never inside call()), arguments and results go through JSON, errors are rebuilt from
// {name, message, status}, and a call nobody answers times out.

import { ServiceUnavailable } from '../core/errors.js';
import { createLogger } from '../core/log.js';
import { callTimeout, handlerFor, rebuildError, serializeError, type SerializedError } from './errors.js';
import { defaultPublisherId, newNotification, type NotifyOptions } from './notification.js';
import type { Bus, BusOptions, CallOptions, Notification, RpcContext, RpcHandler, Subscription } from './types.js';

const log = createLogger('bus.memory');

interface Server { topic: string; handlers: Record<string, RpcHandler> }
interface Listener { prefix: string; listener: (n: Notification) => void | Promise<void> }

/** The routing tables. Buses sharing one broker see each other, like processes on one RabbitMQ. */
export class MemoryBroker {
  private readonly servers = new Map<string, Server[]>();
  private readonly turn = new Map<string, number>();
  readonly listeners = new Set<Listener>();

  add(server: Server): void {
    this.servers.set(server.topic, [...(this.servers.get(server.topic) ?? []), server]);
  }
  remove(server: Server): void {
    const left = (this.servers.get(server.topic) ?? []).filter((s) => s !== server);
    if (left.length) this.servers.set(server.topic, left);
    else this.servers.delete(server.topic);
  }
  all(topic: string): Server[] {
    return this.servers.get(topic) ?? [];
  }
  /** The next server of a topic, round-robin. */
  pick(topic: string): Server | undefined {
    const list = this.all(topic);
    if (!list.length) return undefined;
    const n = this.turn.get(topic) ?? 0;
    this.turn.set(topic, n + 1);
    return list[n % list.length];
  }
}

export interface MemoryBusOptions extends BusOptions {
  /** Share one broker between several buses; each bus gets its own when unset. */
  broker?: MemoryBroker;
}

type Reply = { result?: unknown; error?: SerializedError };

export class MemoryBus implements Bus {
  readonly broker: MemoryBroker;
  private readonly timeoutMs: number;
  private readonly publisherId: string;
  private readonly subscriptions = new Set<Subscription>();
  private readonly pending = new Set<{ reject: (err: Error) => void; timer: NodeJS.Timeout }>();
  private closed = false;

  constructor(options: MemoryBusOptions = {}) {
    this.broker = options.broker ?? new MemoryBroker();
    this.timeoutMs = options.timeoutMs ?? 60000;
    this.publisherId = options.publisherId ?? defaultPublisherId();
  }

  async serve(topic: string, handlers: Record<string, RpcHandler>): Promise<Subscription> {
    this.assertOpen();
    const server: Server = { topic, handlers };
    this.broker.add(server);
    return this.track(() => this.broker.remove(server));
  }

  async call<T = unknown>(topic: string, method: string, args: unknown, options: CallOptions = {}): Promise<T> {
    this.assertOpen();
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const message = { args: jsonCopy(args), context: jsonCopy(options.context ?? {}) as RpcContext };
    return new Promise<T>((resolve, reject) => {
      const entry = {
        reject,
        timer: setTimeout(() => {
          this.pending.delete(entry);
          reject(callTimeout(topic, method, timeoutMs));
        }, timeoutMs),
      };
      this.pending.add(entry);
      setImmediate(async () => {
        // Chosen at delivery time, so a server that closed meanwhile is not picked.
        const server = this.broker.pick(topic);
        if (!server) return; // nobody serves the topic: the caller times out, as on RabbitMQ
        const reply = await invoke(server, method, message.args, message.context);
        if (!this.pending.delete(entry)) return; // timed out or bus closed meanwhile
        clearTimeout(entry.timer);
        if (reply.error) reject(rebuildError(reply.error));
        else resolve(reply.result as T);
      });
    });
  }

  async cast(topic: string, method: string, args: unknown, context: RpcContext = {}): Promise<void> {
    this.assertOpen();
    const message = { args: jsonCopy(args), context: jsonCopy(context) as RpcContext };
    setImmediate(async () => {
      const server = this.broker.pick(topic);
      if (!server) return log.debug('cast dropped: nobody serves the topic', { topic, method });
      const reply = await invoke(server, method, message.args, message.context);
      if (reply.error) log.warn('cast handler failed', { topic, method, error: reply.error });
    });
  }

  async fanout(topic: string, method: string, args: unknown, context: RpcContext = {}): Promise<void> {
    this.assertOpen();
    const message = JSON.stringify({ args, context });
    setImmediate(() => {
      for (const server of this.broker.all(topic)) {
        const { args: copy, context: ctx } = JSON.parse(message); // each server gets its own copy
        void invoke(server, method, copy, ctx ?? {}).then((reply) => {
          if (reply.error) log.warn('fanout handler failed', { topic, method, error: reply.error });
        });
      }
    });
  }

  async notify(eventType: string, payload: unknown, options: NotifyOptions = {}): Promise<void> {
    this.assertOpen();
    const text = JSON.stringify(newNotification(eventType, payload, options, this.publisherId));
    setImmediate(() => {
      for (const l of this.broker.listeners) {
        if (!eventType.startsWith(l.prefix)) continue;
        void (async () => l.listener(JSON.parse(text)))().catch((err) =>
          log.warn('notification listener failed', { eventType, error: serializeError(err) }),
        );
      }
    });
  }

  async onNotification(prefix: string, listener: (n: Notification) => void | Promise<void>): Promise<Subscription> {
    this.assertOpen();
    const entry: Listener = { prefix, listener };
    this.broker.listeners.add(entry);
    return this.track(() => this.broker.listeners.delete(entry));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const sub of [...this.subscriptions]) await sub.close();
    for (const entry of this.pending) {
      clearTimeout(entry.timer);
      entry.reject(new ServiceUnavailable('Message bus closed before the RPC call was answered'));
    }
    this.pending.clear();
  }

  private track(undo: () => void): Subscription {
    const sub: Subscription = {
      close: async () => {
        if (this.subscriptions.delete(sub)) undo();
      },
    };
    this.subscriptions.add(sub);
    return sub;
  }

  private assertOpen(): void {
    if (this.closed) throw new ServiceUnavailable('Message bus is closed');
  }
}

/** Run a handler and turn its outcome into what would travel back over the wire. */
async function invoke(server: Server, method: string, args: unknown, context: RpcContext): Promise<Reply> {
  try {
    const result = await handlerFor(server.topic, server.handlers, method)(args, context);
    return { result: jsonCopy(result) };
  } catch (err) {
    return { error: serializeError(err) };
  }
}

/** A copy as JSON would carry it (Dates become strings, undefined fields vanish). */
function jsonCopy(value: unknown): unknown {
  const text = JSON.stringify(value);
  return text === undefined ? undefined : JSON.parse(text);
}
