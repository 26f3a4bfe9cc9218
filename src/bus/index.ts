// Pick a bus driver from an oslo-style transport_url:
//   memory://                                              in-process (the default)
//   rabbit://user:pass@host1:5672,user:pass@host2:5672/vhost   RabbitMQ cluster (amqp:// too)

import { BadRequest } from '../core/errors.js';
import { AmqpBus } from './amqp.js';
import { MemoryBus, type MemoryBusOptions } from './memory.js';
import type { Bus } from './types.js';

export type * from './types.js';
export { MemoryBus, MemoryBroker, type MemoryBusOptions } from './memory.js';
export { AmqpBus } from './amqp.js';
export { NoSuchMethod, registerRemoteError, serializeError, rebuildError, type SerializedError } from './errors.js';

export function createBus(transportUrl: string = '', options: MemoryBusOptions = {}): Bus {
  const url = transportUrl.trim();
  if (url === '' || /^memory:\/\/\/?$/.test(url)) return new MemoryBus(options);
  const m = /^(rabbit|amqp):\/\/(.*)$/.exec(url);
  if (!m) throw new BadRequest(`Unsupported transport_url ${describe(url)}: use memory:// or rabbit://user:pass@host:5672/vhost`);
  return new AmqpBus(brokerUrls(m[2], url), options);
}

/** One amqp:// URL per host of `user:pass@host1:5672,user:pass@host2:5672/vhost?query`. */
function brokerUrls(rest: string, url: string): string[] {
  const q = rest.indexOf('?');
  const query = q >= 0 ? rest.slice(q) : '';
  const beforeQuery = q >= 0 ? rest.slice(0, q) : rest;
  const slash = beforeQuery.indexOf('/', beforeQuery.lastIndexOf('@') + 1);
  const hosts = slash >= 0 ? beforeQuery.slice(0, slash) : beforeQuery;
  const vhost = slash >= 0 ? beforeQuery.slice(slash) : '';
  const urls = hosts.split(',').map((h) => h.trim()).filter(Boolean).map((h) => `amqp://${h}${vhost}${query}`);
  for (const u of urls) {
    try {
      new URL(u);
    } catch {
      throw new BadRequest(`Invalid transport_url ${describe(url)}: cannot parse broker ${describe(u)}`);
    }
  }
  if (!urls.length) throw new BadRequest(`Invalid transport_url ${describe(url)}: no broker host`);
  return urls;
}

/** The URL with passwords masked, fit for an error message. */
function describe(url: string): string {
  return url.replace(/:[^:@/,]*@/g, ':***@');
}
