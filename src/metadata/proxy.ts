// Agent side of the metadata service: one HTTP server per instance on a unix socket in the
// instance's directory. QEMU's guestfwd runs `socat STDIO UNIX-CONNECT:<socket>` for each guest
// connection to 169.254.169.254:80, so whatever arrives on this socket comes from that guest, and
// the proxy asks the controller for that instance only: the uuid is fixed here, never read from
// the request, which is what keeps one guest from reading another's data.
import { existsSync, lstatSync, unlinkSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Bus } from '../bus/types.js';
import { metadataClient } from './rpc.js';

/** Bodies larger than this are refused before they reach the controller (the password POST is 1020 bytes at most). */
const MAX_BODY_BYTES = 64 * 1024;

export interface MetadataProxy {
  socketPath: string;
  /** Stops the server and removes the socket. */
  close(): Promise<void>;
}

export async function startMetadataProxy(options: { bus: Bus; uuid: string; socketPath: string; timeoutMs?: number }): Promise<MetadataProxy> {
  const { uuid, socketPath } = options;
  const client = metadataClient(options.bus, options.timeoutMs ?? 30_000);
  removeStaleSocket(socketPath);

  const server = createServer((request, response) => {
    handle(request, response).catch((err) => {
      if (!response.headersSent) response.writeHead(500, { 'Content-Type': 'text/plain; charset=UTF-8' });
      response.end(`500 Internal Server Error\n\n${err instanceof Error ? err.message : String(err)}\n`);
    });
  });
  // socat closes the guest side when the answer is done; keep idle connections short anyway.
  server.keepAliveTimeout = 5_000;

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const body = await readBody(request);
    if (body === undefined) {
      response.writeHead(413, { 'Content-Type': 'text/plain; charset=UTF-8', Connection: 'close' });
      response.end('413 Request Entity Too Large\n\nRequest is too large.\n\n   ');
      return;
    }
    const headers: Record<string, string> = {};
    for (const [key, value] of Object.entries(request.headers)) if (typeof value === 'string') headers[key] = value;
    const answer = await client.guestRequest({ uuid, method: request.method ?? 'GET', path: request.url ?? '/', headers, body });
    const payload = answer.encoding === 'base64' ? Buffer.from(answer.body, 'base64') : Buffer.from(answer.body, 'utf8');
    response.writeHead(answer.status, { 'Content-Type': answer.contentType, 'Content-Length': payload.length });
    response.end(request.method === 'HEAD' ? undefined : payload);
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });

  let closed = false;
  return {
    socketPath,
    close: async () => {
      if (closed) return;
      closed = true;
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      removeStaleSocket(socketPath);
    },
  };
}

/** The request body as text, or undefined when it is larger than MAX_BODY_BYTES. */
function readBody(request: IncomingMessage): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    request.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) tooLarge = true;
      else chunks.push(chunk);
    });
    request.on('end', () => resolve(tooLarge ? undefined : Buffer.concat(chunks).toString('utf8')));
    request.on('error', reject);
  });
}

/** A socket left by a previous agent run would make listen fail with EADDRINUSE. */
function removeStaleSocket(path: string): void {
  if (!existsSync(path)) return;
  if (!lstatSync(path).isSocket()) throw new Error(`${path} exists and is not a socket`);
  unlinkSync(path);
}
