// Snapshots an agent has taken and the conductor is still reading (snapshotInstance →
// readSnapshotChunk … → releaseSnapshot). A conductor that stops mid-upload never releases its
// snapshot, so one left unread for IDLE_MS is discarded; so are an instance's when it is destroyed.
import { randomUUID } from 'node:crypto';
import { NotFound } from '../../core/errors.js';
import type { DiskSnapshot } from '../virt/driver.js';

const IDLE_MS = 10 * 60_000;

interface Held {
  uuid: string;
  snapshot: DiskSnapshot;
  timer: NodeJS.Timeout;
}

export class HeldSnapshots {
  private readonly held = new Map<string, Held>();

  constructor(private readonly idleMs = IDLE_MS) {}

  /** Keeps `snapshot` of instance `uuid`; returns the id to read it by. */
  hold(uuid: string, snapshot: DiskSnapshot): string {
    const id = randomUUID();
    this.held.set(id, { uuid, snapshot, timer: this.idleTimer(id) });
    return id;
  }

  async read(id: string, offset: number, length: number): Promise<Buffer> {
    const held = this.held.get(id);
    if (!held) throw new NotFound(`Snapshot ${id} is not held here (released, timed out, or its instance is gone)`);
    clearTimeout(held.timer);
    held.timer = this.idleTimer(id);
    return held.snapshot.read(offset, length);
  }

  async release(id: string): Promise<void> {
    const held = this.held.get(id);
    if (!held) return;
    this.held.delete(id);
    clearTimeout(held.timer);
    await held.snapshot.discard();
  }

  async releaseInstance(uuid: string): Promise<void> {
    for (const [id, held] of this.held) if (held.uuid === uuid) await this.release(id);
  }

  private idleTimer(id: string): NodeJS.Timeout {
    const timer = setTimeout(() => void this.release(id).catch(() => undefined), this.idleMs);
    timer.unref();
    return timer;
  }
}
