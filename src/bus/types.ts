// The message bus contract. Services talk to their agents over it: `call` waits for one
// answer, `cast` is fire-and-forget to one server of a topic, `fanout` reaches every
// server of a topic, notifications are events anyone may listen to.

export type RpcHandler = (args: any, context: RpcContext) => Promise<unknown> | unknown;
export interface RpcContext {
  /** Request id of the API call that caused this message, for logs. */
  requestId?: string;
}

export interface Notification {
  eventType: string;          // e.g. "identity.user.created", "compute.instance.create.end"
  publisherId: string;        // e.g. "identity.controller-1"
  priority: 'INFO' | 'WARN' | 'ERROR';
  payload: unknown;
  timestamp: string;          // ISO 8601
  messageId: string;
}

export interface CallOptions {
  /** Milliseconds to wait for an answer; a Timeout error names the topic and method. */
  timeoutMs?: number;
  context?: RpcContext;
}

export interface Subscription { close(): Promise<void> }

export interface Bus {
  /** Serve methods on a topic. Several servers of one topic share call/cast load; each gets every fanout. */
  serve(topic: string, handlers: Record<string, RpcHandler>): Promise<Subscription>;
  call<T = unknown>(topic: string, method: string, args: unknown, options?: CallOptions): Promise<T>;
  cast(topic: string, method: string, args: unknown, context?: RpcContext): Promise<void>;
  fanout(topic: string, method: string, args: unknown, context?: RpcContext): Promise<void>;
  notify(eventType: string, payload: unknown, options?: { publisherId?: string; priority?: Notification['priority'] }): Promise<void>;
  /** Listen to notifications whose eventType starts with `prefix` ('' for all). */
  onNotification(prefix: string, listener: (n: Notification) => void | Promise<void>): Promise<Subscription>;
  close(): Promise<void>;
}

/** Options every driver takes (createBus passes them through). */
export interface BusOptions {
  /** Default `call` timeout in milliseconds; 60000 when unset. */
  timeoutMs?: number;
  /** publisherId of notifications sent without one; `nubo.<hostname>` when unset. */
  publisherId?: string;
}
