// The HTTP client of `nubo bench image`, run as a child process (child_process.fork) so that
// its memory and CPU are not counted as the server's. It takes one transfer at a time over
// IPC: an upload streams a file from disk as the body of a PUT, a download streams a GET's
// body into nothing, counting bytes. Neither ever holds more than a few chunks in memory.
import { createReadStream, statSync } from 'node:fs';
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { watchUsage, type ProcessUsage } from './measure.js';

export type TransferJob =
  | { kind: 'upload'; url: string; token: string; file: string }
  | { kind: 'download'; url: string; token: string; expectBytes: number };

export interface TransferResult {
  kind: 'upload' | 'download';
  bytes: number;
  /** From the first byte sent (upload) or the request (download) to the end of the response. */
  seconds: number;
  status: number;
  usage: ProcessUsage;
  peakRssBytes: number;
}

export type TransferMessage = { type: 'result'; result: TransferResult } | { type: 'error'; message: string };

const CHUNK = 1 << 20;

async function upload(job: Extract<TransferJob, { kind: 'upload' }>): Promise<TransferResult> {
  const size = statSync(job.file).size;
  const usageSince = watchUsage();
  const started = performance.now();
  const request = http.request(job.url, {
    method: 'PUT',
    headers: { 'x-auth-token': job.token, 'content-type': 'application/octet-stream', 'content-length': String(size) },
  });
  const response = new Promise<http.IncomingMessage>((resolve, reject) => {
    request.on('response', resolve);
    request.on('error', reject);
  });
  await pipeline(createReadStream(job.file, { highWaterMark: CHUNK }), request);
  const res = await response;
  const body = await readSmallBody(res);
  const seconds = (performance.now() - started) / 1000;
  if (res.statusCode !== 204) throw new Error(`upload: HTTP ${res.statusCode}: ${body.slice(0, 300)}`);
  return { kind: 'upload', bytes: size, seconds, status: res.statusCode, usage: usageSince(), peakRssBytes: process.resourceUsage().maxRSS * 1024 };
}

async function download(job: Extract<TransferJob, { kind: 'download' }>): Promise<TransferResult> {
  const usageSince = watchUsage();
  const started = performance.now();
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
    http.get(job.url, { headers: { 'x-auth-token': job.token } }, resolve).on('error', reject);
  });
  if (res.statusCode !== 200) throw new Error(`download: HTTP ${res.statusCode}: ${(await readSmallBody(res)).slice(0, 300)}`);
  let bytes = 0;
  await pipeline(res, new Writable({
    highWaterMark: CHUNK,
    write(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length;
      callback();
    },
  }));
  const seconds = (performance.now() - started) / 1000;
  if (bytes !== job.expectBytes) throw new Error(`download: got ${bytes} bytes, expected ${job.expectBytes}`);
  return { kind: 'download', bytes, seconds, status: res.statusCode, usage: usageSince(), peakRssBytes: process.resourceUsage().maxRSS * 1024 };
}

async function readSmallBody(res: http.IncomingMessage): Promise<string> {
  let text = '';
  for await (const chunk of res) if (text.length < 4096) text += (chunk as Buffer).toString('utf8');
  return text;
}

process.on('message', (job: TransferJob) => {
  (job.kind === 'upload' ? upload(job) : download(job)).then(
    (result) => process.send!({ type: 'result', result } satisfies TransferMessage),
    (err: unknown) => process.send!({ type: 'error', message: err instanceof Error ? err.message : String(err) } satisfies TransferMessage),
  );
});
// The parent going away ends the client.
process.on('disconnect', () => process.exit(0));
