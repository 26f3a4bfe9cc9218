// Suites that drive real programs (QEMU, qemu-img, socat, genisoimage) skip on machines without them.
import { spawnSync } from 'node:child_process';

/** Why a suite cannot run here: the first of `tools` that is not installed, or undefined when all are. */
export function missingTool(...tools: string[]): string | undefined {
  const absent = tools.find((tool) => spawnSync(tool, [tool === 'socat' ? '-V' : '--version'], { stdio: 'ignore' }).status !== 0);
  return absent && `${absent} is not installed (scripts/install-system-deps.sh installs it)`;
}
