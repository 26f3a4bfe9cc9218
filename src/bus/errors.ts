// Errors crossing the bus. A handler's error travels as {name, message, status} and is
// rebuilt on the caller's side, so `err instanceof NotFound` and `err.status` hold there
// exactly as if the handler had run in the caller's process. Both drivers use these
// helpers, so memory and AMQP behave the same.

import * as coreErrors from '../core/errors.js';
import { InternalError, NuboError, Timeout } from '../core/errors.js';
import type { RpcHandler } from './types.js';

export interface SerializedError {
  name: string;
  message: string;
  /** Present for NuboError and its subclasses. */
  status?: number;
  title?: string;
}

/** A call or cast named a method the server does not have (a version mismatch, usually). */
export class NoSuchMethod extends InternalError {
  constructor(message: string) { super(message); }
}

type ErrorClass = new (message: string) => NuboError;

// Classes known by name. Every NuboError subclass of core takes just a message.
const known = new Map<string, ErrorClass>();
for (const value of Object.values(coreErrors)) {
  if (typeof value === 'function' && value.prototype instanceof NuboError) known.set(value.name, value as ErrorClass);
}
known.set(NoSuchMethod.name, NoSuchMethod);

/** Let a service's own NuboError subclass (constructor taking a message) be rebuilt as itself. */
export function registerRemoteError(cls: ErrorClass): void {
  known.set(cls.name, cls);
}

export function serializeError(err: unknown): SerializedError {
  if (err instanceof NuboError) return { name: err.name, message: err.message, status: err.status, title: err.title };
  if (err instanceof Error) return { name: err.name, message: err.message };
  return { name: 'Error', message: String(err) };
}

export function rebuildError(e: SerializedError): Error {
  const message = String(e?.message ?? 'unknown error');
  const name = String(e?.name ?? 'Error');
  const Cls = known.get(name);
  if (Cls) {
    const err = new Cls(message);
    err.message = message; // in case a subclass builds its own text
    return err;
  }
  // A NuboError subclass we do not know: keep name and status so HTTP renders it right.
  const err = typeof e?.status === 'number' ? new NuboError(e.status, e.title ?? name, message) : new Error(message);
  err.name = name;
  return err;
}

export function callTimeout(topic: string, method: string, timeoutMs: number): Timeout {
  return new Timeout(`RPC call ${topic}.${method} timed out after ${timeoutMs} ms: no server answered`);
}

/** The handler for `method`; only own properties count, so `toString` is not a method. */
export function handlerFor(topic: string, handlers: Record<string, RpcHandler>, method: string): RpcHandler {
  const handler = Object.hasOwn(handlers, method) ? handlers[method] : undefined;
  if (typeof handler !== 'function') throw new NoSuchMethod(`RPC method ${method} is not served on topic ${topic}`);
  return handler;
}
