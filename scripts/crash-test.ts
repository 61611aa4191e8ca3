/**
 * Crash campaign (issue 7): `statetrail run` processes killed with SIGKILL at random points against a real
 * `hardhat node` process, each finished with `run --resume` and checked (chain = journal, no state twice,
 * protocol valid or correctly aborted). Usage: npx ts-node --transpile-only scripts/crash-test.ts [kills] [workers]
 */
import { freePort, startNode } from "../src/chain/node";
import { crashCampaign } from "../test/helpers/crash";

async function main(): Promise<number> {
  const kills = Number(process.argv[2] ?? 50);
  const workers = Number(process.argv[3] ?? 3);
  const seed = Number(process.env.CRASH_SEED ?? Date.now() % 1_000_000);
  const node = await startNode({ hostname: "127.0.0.1", port: await freePort() });
  const started = Date.now();
  try {
    console.log(`crash campaign: ${kills} kills, ${workers} workers, seed ${seed}, node ${node.url}`);
    const result = await crashCampaign({
      rpcUrl: node.url,
      kills,
      workers,
      seed,
      log: (line) => console.log(line),
    });
    const byStatus = new Map<string, number>();
    for (const run of result.runs) byStatus.set(run.status, (byStatus.get(run.status) ?? 0) + 1);
    console.log(
      `\n${result.kills} SIGKILLs over ${result.runs.length} runs in ${((Date.now() - started) / 1000).toFixed(0)} s; ` +
        `outcomes: ${[...byStatus].map(([s, n]) => `${n} ${s}`).join(", ")}; ` +
        `valid: ${result.runs.filter((r) => r.verdict === "valid").length}/${result.runs.length}; problems: ${result.problems.length}`,
    );
    for (const problem of result.problems) console.log(`PROBLEM ${problem}`);
    return result.problems.length === 0 && result.kills >= kills ? 0 : 1;
  } finally {
    await node.stop();
  }
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
