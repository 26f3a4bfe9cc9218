// `nubo bench <what>`: throughput measurements whose results go to docs/BENCHMARKS.md.
import { parseArgs } from 'node:util';
import { benchIdentity, formatIdentityReport } from './bench/identity.js';
import { benchImage, formatImageReport } from './bench/image.js';
import { benchBoot, formatBootReport } from './bench/boot.js';
import { benchPlacement, formatPlacementReport } from './bench/placement.js';
import { benchVm, formatVmReport } from './bench/vm.js';

const USAGE = `usage: nubo bench identity|image|boot|placement|vm [options]

nubo bench identity
  token issue and validation, in-process and over HTTP, on a throwaway all-in-one cloud
  --duration SECONDS   length of each measurement (default 5, after a warm-up of up to 1 s)
  --concurrency N      requests in flight over HTTP (default 32)
  --database URL       run on PostgreSQL or MariaDB (a database of its own: bootstrap resets
                       the admin password) instead of SQLite in a temporary directory
  --json               print the results as JSON

nubo bench image
  upload and download of one image over HTTP beside cp of the same file, and the server's
  peak RSS, on a throwaway all-in-one cloud (the HTTP client is a separate process)
  --size-mb N          size of the image file in MiB (default 1024)
  --json               print the results as JSON

nubo bench boot
  servers booted to ACTIVE (then boot-and-delete cycles) on fake compute hosts through the
  whole stack, on a throwaway all-in-one cloud
  --hosts H            fake compute hosts (default 1000)
  --servers N          servers to boot (default 1000)
  --concurrency C      boots in flight (default 50)
  --scheduler NAME     [scheduler] driver: filter, random or caching (default filter)
  --database URL       PostgreSQL or MariaDB instead of SQLite in a temporary directory
  --json               print the results as JSON

nubo bench placement
  GET /allocation_candidates latency (p50/p95/p99) with P providers, in-process and over HTTP
  --providers P        resource providers to create (default 1000)
  --requests N         requests measured per case (default 200)
  --database URL       an empty PostgreSQL or MariaDB database instead of SQLite in a temporary directory
  --json               print the results as JSON

nubo bench vm
  real guests under QEMU (the test guest from scripts/build-test-image) on a throwaway all-in-one
  cloud: POST /servers → ACTIVE → ready marker beside the driver's QEMU command line started by
  hand (API overhead), and live migration of a 256 MiB guest between two QEMU agents, block and
  shared storage (total time, QEMU's downtime, the guest's heartbeat gap)
  --runs N             boots measured on each side (default 3; medians reported)
  --only PART          boot or migration (default both)
  --migrations N       live migrations per mode, back and forth (default 3; medians in the aims)
  --downtime-limit MS  [libvirt] live_migration_downtime for the migrations (default the driver's, 500)
  --json               print the results as JSON
`;

/**
 * `what` is what main() took for positionals; its lenient parse cannot know that
 * `--duration 5` takes a value, so the command line is parsed again here with the options.
 */
export async function runBench(_what: string[], argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      duration: { type: 'string', default: '5' },
      concurrency: { type: 'string' },
      database: { type: 'string' },
      'size-mb': { type: 'string', default: '1024' },
      hosts: { type: 'string', default: '1000' },
      servers: { type: 'string', default: '1000' },
      scheduler: { type: 'string' },
      providers: { type: 'string', default: '1000' },
      requests: { type: 'string', default: '200' },
      runs: { type: 'string', default: '3' },
      only: { type: 'string' },
      'downtime-limit': { type: 'string' },
      migrations: { type: 'string', default: '3' },
      json: { type: 'boolean', default: false },
    },
  });
  const what = positionals.slice(positionals.indexOf('bench') + 1).join(' ');
  const progress = (line: string) => process.stderr.write(`${line}\n`);
  if (what === 'image') {
    const sizeMb = Number(values['size-mb']);
    if (!Number.isInteger(sizeMb) || sizeMb < 1) throw new Error(`--size-mb must be a positive integer, got ${values['size-mb']}`);
    const report = await benchImage({ sizeMb }, progress);
    process.stdout.write(values.json ? JSON.stringify(report, null, 2) + '\n' : formatImageReport(report));
    return;
  }
  const positive = (name: string, text: string | undefined) => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got ${text}`);
    return n;
  };
  if (what === 'boot') {
    const report = await benchBoot({
      hosts: positive('hosts', values.hosts), servers: positive('servers', values.servers),
      concurrency: positive('concurrency', values.concurrency ?? '50'),
      database: values.database, scheduler: values.scheduler,
    }, progress);
    process.stdout.write(values.json ? JSON.stringify(report, null, 2) + '\n' : formatBootReport(report));
    return;
  }
  if (what === 'placement') {
    const report = await benchPlacement({ providers: positive('providers', values.providers), requests: positive('requests', values.requests), database: values.database }, progress);
    process.stdout.write(values.json ? JSON.stringify(report, null, 2) + '\n' : formatPlacementReport(report));
    return;
  }
  if (what === 'vm') {
    if (values.only !== undefined && values.only !== 'boot' && values.only !== 'migration') throw new Error(`--only must be boot or migration, got ${values.only}`);
    const downtimeLimitMs = values['downtime-limit'] === undefined ? undefined : positive('downtime-limit', values['downtime-limit']);
    const report = await benchVm({ runs: positive('runs', values.runs), only: values.only as 'boot' | 'migration' | undefined, downtimeLimitMs, migrations: positive('migrations', values.migrations) }, progress);
    process.stdout.write(values.json ? JSON.stringify(report, null, 2) + '\n' : formatVmReport(report));
    return;
  }
  if (what !== 'identity') throw new Error(`unknown benchmark: ${what || '(none)'}\n${USAGE}`);
  const durationSeconds = Number(values.duration);
  if (!Number.isFinite(durationSeconds) || durationSeconds <= 0) throw new Error(`--duration must be a positive number of seconds, got ${values.duration}`);
  const concurrency = Number(values.concurrency ?? '32');
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new Error(`--concurrency must be a positive integer, got ${values.concurrency}`);

  const report = await benchIdentity({ durationSeconds, concurrency, database: values.database }, progress);
  process.stdout.write(values.json ? JSON.stringify(report, null, 2) + '\n' : formatIdentityReport(report));
}
