// A QMP client (QEMU Machine Protocol) over a unix socket: read the greeting, negotiate with
// qmp_capabilities, then one JSON object per line each way. Replies carry the id of their
// command; events ({"event": ...}) arrive in between and go to listeners.
import { connect, type Socket } from 'node:net';

export interface QmpEvent {
  event: string;
  data?: Record<string, any>;
  timestamp?: { seconds: number; microseconds: number };
}

/** An error QEMU answered for a command ({"error": {"class", "desc"}}). */
export class QmpError extends Error {
  constructor(readonly errorClass: string, message: string) {
    super(message);
  }
}

/** The connection is gone (QEMU exited or closed the socket). */
export class QmpClosed extends Error {}

interface Pending { resolve(value: any): void; reject(err: Error): void; timer: NodeJS.Timeout }

export class QmpClient {
  private buffer = '';
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  private readonly listeners = new Set<(event: QmpEvent) => void>();
  private closedError: Error | null = null;
  private readonly closeListeners = new Set<() => void>();

  private constructor(private readonly socket: Socket) {}

  /** Connects, waits for the greeting and enters command mode; rejects within timeoutMs. */
  static async connect(path: string, timeoutMs = 5000): Promise<QmpClient> {
    const socket = connect(path);
    const client = new QmpClient(socket);
    let onGreeting!: (line: any) => void;
    const greeting = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`QMP ${path}: no greeting within ${timeoutMs} ms`)), timeoutMs);
      onGreeting = (msg) => { clearTimeout(timer); if (msg.QMP) resolve(); else reject(new Error(`QMP ${path}: unexpected greeting ${JSON.stringify(msg)}`)); };
      socket.once('error', (err) => { clearTimeout(timer); reject(err); });
      socket.once('close', () => { clearTimeout(timer); reject(new QmpClosed(`QMP ${path}: closed before the greeting`)); });
    });
    client.greetingHandler = onGreeting;
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => client.receive(chunk));
    socket.on('error', (err) => client.fail(err));
    socket.on('close', () => client.fail(new QmpClosed(`QMP ${path}: connection closed`)));
    try {
      await greeting;
      await client.execute('qmp_capabilities', undefined, timeoutMs);
    } catch (err) {
      socket.destroy();
      throw err;
    }
    return client;
  }

  private greetingHandler: ((msg: any) => void) | null = null;

  get closed(): boolean {
    return this.closedError !== null;
  }

  /** Runs one command and resolves with its "return" value. */
  execute<T = any>(command: string, args?: Record<string, unknown>, timeoutMs = 30_000): Promise<T> {
    if (this.closedError) return Promise.reject(new QmpClosed(this.closedError.message));
    const id = String(this.nextId++);
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`QMP ${command}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.socket.write(JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id }) + '\n');
    });
  }

  /** Calls `listener` for every event until the returned function is called. */
  onEvent(listener: (event: QmpEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Calls `listener` once when the connection ends. */
  onClose(listener: () => void): void {
    if (this.closedError) listener();
    else this.closeListeners.add(listener);
  }

  /** Resolves with the first event named `name` (and matching `match`), or rejects after timeoutMs or when the connection ends. */
  waitEvent(name: string, timeoutMs: number, match: (event: QmpEvent) => boolean = () => true): Promise<QmpEvent> {
    return new Promise((resolve, reject) => {
      const done = () => { clearTimeout(timer); off(); this.closeListeners.delete(onClose); };
      const off = this.onEvent((event) => { if (event.event === name && match(event)) { done(); resolve(event); } });
      const onClose = () => { done(); reject(new QmpClosed(`QMP closed while waiting for ${name}`)); };
      const timer = setTimeout(() => { done(); reject(new Error(`QMP: no ${name} event within ${timeoutMs} ms`)); }, timeoutMs);
      this.onClose(onClose);
    });
  }

  close(): void {
    this.socket.destroy();
    this.fail(new QmpClosed('QMP connection closed by the client'));
  }

  private receive(chunk: string): void {
    this.buffer += chunk;
    let newline: number;
    while ((newline = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, newline).trim();
      this.buffer = this.buffer.slice(newline + 1);
      if (!line) continue;
      let msg: any;
      try {
        msg = JSON.parse(line);
      } catch {
        continue; // QMP only sends JSON; ignore anything else rather than tear the connection down
      }
      this.dispatch(msg);
    }
  }

  private dispatch(msg: any): void {
    if (this.greetingHandler) {
      const handler = this.greetingHandler;
      this.greetingHandler = null;
      handler(msg);
      return;
    }
    if (typeof msg.event === 'string') {
      for (const listener of [...this.listeners]) {
        try { listener(msg as QmpEvent); } catch { /* a listener's bug must not break the connection */ }
      }
      return;
    }
    const id = msg.id === undefined ? undefined : String(msg.id);
    const pending = id === undefined ? undefined : this.pending.get(id);
    if (!pending || id === undefined) return;
    this.pending.delete(id);
    clearTimeout(pending.timer);
    if (msg.error) pending.reject(new QmpError(msg.error.class ?? 'GenericError', msg.error.desc ?? JSON.stringify(msg.error)));
    else pending.resolve(msg.return);
  }

  private fail(err: Error): void {
    if (this.closedError) return;
    this.closedError = err;
    for (const [id, pending] of this.pending) {
      clearTimeout(pending.timer);
      pending.reject(err instanceof QmpClosed ? err : new QmpClosed(err.message));
      this.pending.delete(id);
    }
    for (const listener of [...this.closeListeners]) listener();
    this.closeListeners.clear();
    this.listeners.clear();
  }
}
