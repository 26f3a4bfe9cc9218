// The notification envelope, built the same way by every driver.
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Notification } from './types.js';

export type NotifyOptions = { publisherId?: string; priority?: Notification['priority'] };

/** Who publishes when a bus is not told: this host. */
export const defaultPublisherId = (): string => `nubo.${hostname()}`;

export function newNotification(eventType: string, payload: unknown, options: NotifyOptions, publisherId: string): Notification {
  return {
    eventType,
    publisherId: options.publisherId ?? publisherId,
    priority: options.priority ?? 'INFO',
    payload,
    timestamp: new Date().toISOString(),
    messageId: randomUUID(),
  };
}
