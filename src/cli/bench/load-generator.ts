// The HTTP load generator of `nubo bench`, run as a child process (child_process.fork) so
// that the client and the server under test each get their own core. It takes jobs over
// IPC, runs each as a closed loop of keep-alive requests (node:http, one socket per loop),
// and answers with the measurement and how busy it was during the measured window.
import http from 'node:http';
import { runClosedLoop, watchUsage, type LoopResult, type ProcessUsage } from './measure.js';

export interface LoadJob {
  url: string;
  method: 'GET' | 'POST';
  headers: Record<string, string>;
  body?: string;
  /** The status every response must have; anything else counts as an error. */
  expectStatus: number;
  concurrency: number;
  warmupMs: number;
  durationMs: number;
}

/** What the generator sends back: window-start/-end as they happen, then the result. */
export type LoadMessage =
  | { type: 'window-start' }
  | { type: 'window-end' }
  | { type: 'result'; result: LoopResult; usage: ProcessUsage; peakRssBytes: number };

function send(agent: http.Agent, url: URL, job: LoadJob): Promise<void> {
  return new Promise((resolve, reject) => {
    const request = http.request(url, { method: job.method, headers: job.headers, agent }, (response) => {
      const unexpected = response.statusCode !== job.expectStatus;
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => {
        if (unexpected) chunks.push(chunk); // only a failure's body is worth keeping
      });
      response.on('error', reject);
      response.on('end', () => {
        if (!unexpected) return resolve();
        reject(new Error(`HTTP ${response.statusCode}: ${Buffer.concat(chunks).toString('utf8').slice(0, 300)}`));
      });
    });
    request.on('error', reject);
    request.end(job.body);
  });
}

async function run(job: LoadJob): Promise<LoadMessage> {
  const url = new URL(job.url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: job.concurrency });
  const headers = job.body === undefined ? job.headers : { ...job.headers, 'content-length': String(Buffer.byteLength(job.body)) };
  let usageSince = watchUsage();
  let usage: ProcessUsage = { cpuPercent: NaN, eventLoopPercent: NaN };
  try {
    const result = await runClosedLoop(() => send(agent, url, { ...job, headers }), {
      concurrency: job.concurrency,
      warmupMs: job.warmupMs,
      durationMs: job.durationMs,
      onWindowStart: () => {
        usageSince = watchUsage();
        process.send!({ type: 'window-start' } satisfies LoadMessage);
      },
      onWindowEnd: () => {
        usage = usageSince();
        process.send!({ type: 'window-end' } satisfies LoadMessage);
      },
    });
    return { type: 'result', result, usage, peakRssBytes: process.resourceUsage().maxRSS * 1024 };
  } finally {
    agent.destroy();
  }
}

process.on('message', (job: LoadJob) => {
  run(job).then(
    (message) => process.send!(message),
    (err) => {
      console.error(err);
      process.exit(1);
    },
  );
});
// The parent going away ends the generator.
process.on('disconnect', () => process.exit(0));
