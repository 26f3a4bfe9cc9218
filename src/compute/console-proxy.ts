// The browser console (Nova's nova-novncproxy, served by the cloud's own HTTP server): a noVNC
// page at /vnc/vnc_lite.html, the noVNC client modules from the @novnc/novnc package under
// /vnc/novnc/, and a websockify-style websocket proxy. A websocket upgrade carrying a console
// token (query `token`, or noVNC's `token` cookie) is checked before the upgrade — unknown or
// expired token, or a console that moved: 401; an Origin of another host: 403; VNC server not
// reachable: 502 — then the websocket's binary frames and the VNC server's TCP stream are
// piped both ways. Nova serves the websocket at the root (`ws://host:6080/?token=...`, what stock
// noVNC pages open); this page opens /vnc/websockify?token=... next to itself. Both are accepted.
import { readFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { createRequire } from 'node:module';
import { connect, type Socket } from 'node:net';
import { dirname, join, normalize, sep } from 'node:path';
import type { Duplex } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { WebSocketServer, type WebSocket, type RawData } from 'ws';
import type { Config } from '../core/config.js';
import type { Logger } from '../core/log.js';
import type { ConsoleService, ProxiedConsole } from './consoles.js';

/** Where the noVNC page is served; `[vnc] novncproxy_base_url` defaults to it under the public endpoint. */
export const CONSOLE_PAGE_PATH = '/vnc/vnc_lite.html';
/** The websocket the page opens (beside the page, so a path prefix in front of the cloud is kept). */
export const WEBSOCKIFY_PATH = '/vnc/websockify';
const NOVNC_PREFIX = '/vnc/novnc/';

const CONNECT_TIMEOUT_MS = 10_000;
/** Above this many bytes queued towards the browser the VNC server is paused until the queue drains. */
const HIGH_WATER_BYTES = 1024 * 1024;

export interface ConsoleProxyDeps {
  app: FastifyInstance;
  consoles: ConsoleService;
  config: Config;
  logger: Logger;
}

/** The directory of the @novnc/novnc package (its core/ and vendor/ are what a browser loads). */
function novncRoot(): string {
  const entry = createRequire(import.meta.url).resolve('@novnc/novnc'); // <root>/core/rfb.js
  return dirname(dirname(entry));
}

/**
 * Registers the page, the noVNC modules and the websocket proxy on `app` (before it listens).
 * Open console sessions are ended when the app closes.
 */
export function mountConsoleProxy(deps: ConsoleProxyDeps): void {
  const { app, consoles, logger } = deps;
  const root = novncRoot();
  const allowedOrigins = deps.config.getList('console', 'allowed_origins', []);
  const sessions = new Set<{ ws: WebSocket; vnc: Socket }>();
  const files = new Map<string, Buffer>();

  app.get(CONSOLE_PAGE_PATH, async (_request, reply) => {
    reply.header('Cache-Control', 'no-store').type('text/html; charset=utf-8');
    return PAGE;
  });

  // Only the client's own modules: core/**.js and vendor/**.js, nothing else of the package or outside it.
  app.get(`${NOVNC_PREFIX}*`, async (request, reply) => {
    const relative = normalize((request.params as { '*': string })['*']);
    if (!/^(core|vendor)\//.test(relative.split(sep).join('/')) || !relative.endsWith('.js') || relative.includes('..')) {
      return reply.code(404).type('text/plain').send('Not Found');
    }
    let body = files.get(relative);
    if (!body) {
      try {
        body = await readFile(join(root, relative));
      } catch {
        return reply.code(404).type('text/plain').send('Not Found');
      }
      files.set(relative, body);
    }
    return reply.header('Cache-Control', 'max-age=3600').type('text/javascript; charset=utf-8').send(body);
  });

  // websockify speaks binary frames; noVNC offers the 'binary' subprotocol, a plain client none.
  const wss = new WebSocketServer({
    noServer: true, perMessageDeflate: false,
    handleProtocols: (protocols) => (protocols.has('binary') ? 'binary' : false),
  });

  const refuse = (socket: Duplex, status: number, reason: string, message: string, request: IncomingMessage) => {
    logger.warn(`console connection refused: ${message}`, { status, remote: request.socket.remoteAddress });
    if (socket.writable) {
      const body = `${reason}: ${message}\n`;
      socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    }
    socket.destroy();
  };

  const upgrade = (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(request.url ?? '/', 'http://localhost');
    const ours = url.pathname === WEBSOCKIFY_PATH || (url.pathname === '/' && (url.searchParams.has('token') || !!tokenCookie(request)));
    if (!ours) {
      // Another upgrade listener may own the path; with none, say so rather than leave the socket hanging.
      if (app.server.listenerCount('upgrade') === 1) refuse(socket, 404, 'Not Found', `no websocket at ${url.pathname}`, request);
      return;
    }
    socket.on('error', () => socket.destroy());
    void (async () => {
      const token = url.searchParams.get('token') || tokenCookie(request) || '';
      const found = await consoles.connectionFor(token);
      if ('refused' in found) return refuse(socket, 401, 'Unauthorized', `invalid console token (${found.refused})`, request);
      const target = found.console;
      const originProblem = checkOrigin(request, target, allowedOrigins);
      if (originProblem) return refuse(socket, 403, 'Forbidden', originProblem, request);
      let vnc: Socket;
      try {
        vnc = await openVnc(target);
      } catch (err) {
        return refuse(socket, 502, 'Bad Gateway', `the VNC server of ${target.instanceUuid} at ${addressOf(target)} is not reachable: ${(err as Error).message}`, request);
      }
      if (socket.destroyed) {
        vnc.destroy();
        return;
      }
      wss.handleUpgrade(request, socket, head, (ws) => {
        const session = { ws, vnc };
        sessions.add(session);
        logger.info(`console of ${target.instanceUuid} opened to ${addressOf(target)}`, { remote: request.socket.remoteAddress });
        pipe(ws, vnc, () => {
          if (!sessions.delete(session)) return;
          logger.info(`console of ${target.instanceUuid} closed`);
        });
      });
    })().catch((err: Error) => refuse(socket, 500, 'Internal Server Error', err.message, request));
  };
  app.server.on('upgrade', upgrade);

  app.addHook('preClose', async () => {
    app.server.off('upgrade', upgrade);
    for (const { ws, vnc } of sessions) {
      ws.terminate();
      vnc.destroy();
    }
    sessions.clear();
    wss.close();
  });
}

/** noVNC's old convention: the page copies the token into a cookie the websocket request then carries. */
function tokenCookie(request: IncomingMessage): string | undefined {
  for (const part of (request.headers.cookie ?? '').split(';')) {
    const [name, ...value] = part.trim().split('=');
    if (name === 'token') return decodeURIComponent(value.join('='));
  }
  return undefined;
}

/**
 * Nova's origin check (websocketproxy verify_origin): a browser's Origin must name this host (its Host header) or
 * one of [console] allowed_origins, with the scheme the console URL was issued for. No Origin: not a browser, fine.
 */
function checkOrigin(request: IncomingMessage, target: ProxiedConsole, allowedOrigins: string[]): string | undefined {
  const origin = request.headers.origin;
  if (origin === undefined) return undefined;
  let parsed: URL;
  try {
    parsed = new URL(origin);
  } catch {
    return 'Origin header not valid.';
  }
  const hostname = (name: string) => name.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  const expected = [...allowedOrigins.map(hostname)];
  const host = request.headers.host;
  if (host) expected.push(hostname(new URL(`http://${host}`).hostname));
  if (!parsed.hostname || !expected.includes(hostname(parsed.hostname))) return 'Origin header does not match this host.';
  const forwarded = request.headers['x-forwarded-proto'];
  const scheme = (typeof forwarded === 'string' ? forwarded : parsed.protocol.replace(/:$/, '')).toLowerCase();
  let issuedFor: string;
  try {
    issuedFor = new URL(target.accessUrlBase).protocol.replace(/:$/, '');
  } catch {
    return undefined;
  }
  const allowed = issuedFor === 'ws' ? ['ws', 'http'] : issuedFor === 'wss' ? ['wss', 'https'] : [issuedFor];
  return allowed.includes(scheme) ? undefined : 'Origin header protocol does not match this host.';
}

const addressOf = (target: ProxiedConsole) => (target.port === null ? `unix:${target.internalAccessPath}` : `${target.host}:${target.port}`);

/**
 * A paused TCP (or unix) connection to the VNC server, its greeting still unread. With both a port and an
 * internal_access_path, the path is asked for with an HTTP CONNECT first, as Nova's proxy does.
 */
function openVnc(target: ProxiedConsole): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const viaUnix = target.port === null;
    if (viaUnix && !target.internalAccessPath) return reject(new Error('the console has neither a port nor a socket path'));
    const socket = viaUnix ? connect({ path: target.internalAccessPath! }) : connect({ host: target.host, port: target.port! });
    const fail = (err: Error) => {
      socket.destroy();
      reject(err);
    };
    socket.setTimeout(CONNECT_TIMEOUT_MS, () => fail(new Error('timed out')));
    socket.once('error', fail);
    socket.once('connect', () => {
      socket.setNoDelay(true);
      if (viaUnix || !target.internalAccessPath) {
        socket.pause();
        socket.setTimeout(0);
        socket.off('error', fail);
        return resolve(socket);
      }
      socket.write(`CONNECT ${target.internalAccessPath} HTTP/1.1\r\n\r\n`);
      let answer = Buffer.alloc(0);
      const onData = (chunk: Buffer) => {
        answer = Buffer.concat([answer, chunk]);
        const end = answer.indexOf('\r\n\r\n');
        if (end < 0) {
          if (answer.length > 16 * 1024) fail(new Error('no answer to CONNECT'));
          return;
        }
        socket.off('data', onData);
        socket.pause();
        const status = answer.subarray(0, answer.indexOf('\r\n')).toString('latin1');
        if (!/^HTTP\/1\.[01] 200\b/.test(status)) return fail(new Error(`CONNECT ${target.internalAccessPath} answered ${status}`));
        socket.setTimeout(0);
        socket.off('error', fail);
        // Bytes after the CONNECT answer are already the VNC server's.
        const rest = answer.subarray(end + 4);
        if (rest.length) socket.unshift(rest);
        resolve(socket);
      };
      socket.on('data', onData);
    });
  });
}

/** Pipes both ways with back-pressure; either side ending ends the other, then `done` runs once. */
function pipe(ws: WebSocket, vnc: Socket, done: () => void): void {
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    vnc.destroy();
    if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.close(1000);
    done();
  };
  vnc.on('data', (chunk: Buffer) => {
    ws.send(chunk, { binary: true }, () => {
      if (vnc.isPaused() && ws.bufferedAmount < HIGH_WATER_BYTES / 2 && !finished) vnc.resume();
    });
    if (ws.bufferedAmount > HIGH_WATER_BYTES) vnc.pause();
  });
  ws.on('message', (data: RawData) => {
    const chunks = Buffer.isBuffer(data) ? [data] : Array.isArray(data) ? data : [Buffer.from(data)];
    let flowing = true;
    for (const chunk of chunks) flowing = vnc.write(chunk) && flowing;
    if (!flowing) {
      ws.pause();
      vnc.once('drain', () => ws.resume());
    }
  });
  vnc.on('end', finish);
  vnc.on('close', finish);
  vnc.on('error', finish);
  ws.on('close', finish);
  ws.on('error', finish);
  vnc.resume();
}

/**
 * The console page: noVNC's RFB client on the whole window. Like noVNC's vnc_lite.html it reads `path` (Nova puts
 * `?token=...` there), `token`, `password` and `scale` from its query; the websocket is opened beside the page.
 */
const PAGE = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Nubo console</title>
<style>
  html, body { margin: 0; height: 100%; background: #282828; font-family: sans-serif; }
  body { display: flex; flex-direction: column; }
  #bar { display: flex; gap: 1em; align-items: center; padding: 4px 10px; background: #6e84a3; color: #fff; font-size: 14px; }
  #status { flex: 1; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
  #bar button { font-size: 13px; }
  #screen { flex: 1; overflow: hidden; }
</style>
<script type="module">
import RFB from './novnc/core/rfb.js';

const query = new URLSearchParams(window.location.search);
const status = (text) => { document.getElementById('status').textContent = text; };

// noVNC's convention: 'path' is the websocket path; Nova's URLs carry only '?token=...' in it.
let path = query.get('path') ?? (query.has('token') ? '?token=' + encodeURIComponent(query.get('token')) : '');
if (path === '' || path.startsWith('?')) path = 'websockify' + path;
const url = new URL(path, window.location.href);
url.protocol = window.location.protocol === 'https:' ? 'wss:' : 'ws:';

status('Connecting');
const rfb = new RFB(document.getElementById('screen'), url.href, {
  credentials: { password: query.get('password') ?? undefined },
  wsProtocols: ['binary'],
});
rfb.scaleViewport = query.get('scale') !== 'false';
// The server names its desktop during the handshake, before 'connect'.
let desktop = '';
let connected = false;
const showConnected = () => status('Connected' + (desktop ? ' to ' + desktop : ''));
rfb.addEventListener('desktopname', (e) => {
  desktop = e.detail.name;
  document.title = desktop + ' - Nubo console';
  if (connected) showConnected();
});
rfb.addEventListener('connect', () => { connected = true; showConnected(); });
rfb.addEventListener('disconnect', (e) => status(e.detail.clean ? 'Disconnected' : 'Something went wrong, the connection is closed'));
rfb.addEventListener('credentialsrequired', () => {
  const password = window.prompt('Password required:');
  if (password !== null) rfb.sendCredentials({ password });
});
rfb.addEventListener('securityfailure', (e) => status('Security failure: ' + (e.detail.reason ?? e.detail.status)));
document.getElementById('cad').addEventListener('click', () => rfb.sendCtrlAltDel());
window.nuboConsole = rfb;
</script>
</head>
<body>
<div id="bar"><div id="status">Loading</div><button id="cad" type="button">Send Ctrl+Alt+Del</button></div>
<div id="screen"></div>
</body>
</html>
`;
