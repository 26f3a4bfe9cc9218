// The test guest image (scripts/build-test-image) for suites that boot real VMs. The script caches
// its build per machine (${NUBO_CACHE_DIR:-~/.cache/nubo}/test-guest/<hash>/), so after the first
// build this costs one short bash run per test process.
import { buildTestGuestSync } from '../../src/cli/test-guest.js';

let built: string | undefined;

/** Path of the test guest's qcow2, built on first use (once per process; throws with the script's reason). */
export function testGuestImage(): string {
  built ??= buildTestGuestSync();
  return built;
}
