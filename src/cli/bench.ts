// `nubo bench <what>`: throughput measurements whose results go to docs/BENCHMARKS.md.
export async function runBench(what: string[], _argv: string[]): Promise<void> {
  throw new Error(`unknown benchmark: ${what.join(' ')}`);
}
