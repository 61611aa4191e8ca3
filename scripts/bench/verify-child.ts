/**
 * One verification in a process of its own, so that its peak RSS is its own: reads a JSON job from argv[2],
 * verifies the protocol against the node with the file-backed fetcher, and prints one JSON line: the verdict,
 * the time of verifyProtocol, each step's time, the peak RSS, and the RSS before verifying (Node and the
 * modules loaded).
 */
import { connect } from "../../src/chain/provider";
import { type TrustedSetup } from "../../src/verify/chain";
// The pipeline itself, not src/verify/index.ts: that also loads the mirror (AWS SDK), HTML report and watch modules.
import { verifyProtocol } from "../../src/verify/pipeline";
import { fileFetcher } from "./common";

interface Job {
  rpcUrl: string;
  home: string;
  protocolUrl: string;
  trusted: TrustedSetup;
  conformance: boolean;
  maxProtocolBytes: number;
}

async function main(): Promise<void> {
  const job = JSON.parse(process.argv[2]) as Job;
  const provider = await connect({ rpcUrl: job.rpcUrl, expectedChainId: job.trusted.chainId, ensRegistry: null });
  const fetcher = fileFetcher(job.home);
  if (global.gc) global.gc();
  const baseline = process.memoryUsage().rss;
  const started = performance.now();
  const report = await verifyProtocol({
    input: { url: job.protocolUrl },
    provider,
    trusted: job.trusted,
    fetcher,
    ens: null,
    optional: ["V2", ...(job.conformance ? [] : (["V9"] as const))],
    conformance: job.conformance,
    maxBytes: { protocol: job.maxProtocolBytes },
  });
  const seconds = (performance.now() - started) / 1000;
  provider.destroy();
  process.stdout.write(
    JSON.stringify({
      verdict: report.verdict,
      seconds,
      steps: report.steps.map((step) => ({
        id: step.id,
        status: step.status,
        ms: step.durationMs,
        detail: step.detail,
      })),
      peak_rss_mb: process.resourceUsage().maxRSS / 1024,
      baseline_rss_mb: baseline / 2 ** 20,
    }) + "\n",
  );
}

main().catch((error: unknown) => {
  process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
  process.exitCode = 1;
});
