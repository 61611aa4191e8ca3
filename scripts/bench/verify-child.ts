/**
 * One verification in a process of its own, so that its peak RSS is its own: reads a JSON job from argv[2],
 * verifies the protocol against the node with the file-backed fetcher, and prints one JSON line: the verdict,
 * the time of verifyProtocol, each step's time, the peak RSS, the RSS before verifying (Node and the modules
 * loaded), the peaks of the V8 heap and of memory outside it (sampled), what was read (head, pages, state bodies),
 * and, with `trace`, the memory samples over time.
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
  /** Memory samples (every 100 ms) in the output. */
  trace: boolean;
}

async function main(): Promise<void> {
  const job = JSON.parse(process.argv[2]) as Job;
  const provider = await connect({ rpcUrl: job.rpcUrl, expectedChainId: job.trusted.chainId, ensRegistry: null });
  const read = { head: 0, pages: 0, page_bytes: 0, states: 0, state_bytes: 0, other: 0 };
  const fetcher = fileFetcher(job.home, (url, bytes) => {
    if (url.includes("/protocol/pages/")) {
      read.pages += 1;
      read.page_bytes += bytes;
    } else if (url.endsWith("/protocol")) read.head += 1;
    else if (url.includes("/states/")) {
      read.states += 1;
      read.state_bytes += bytes;
    } else read.other += 1;
  });
  if (global.gc) global.gc();
  const baseline = process.memoryUsage().rss;
  const peaks = { heap_used: 0, external: 0, array_buffers: 0 };
  const samples: Array<[number, number, number, number]> = [];
  const started = performance.now();
  const cpuBefore = process.cpuUsage();
  const sample = (): void => {
    const usage = process.memoryUsage();
    peaks.heap_used = Math.max(peaks.heap_used, usage.heapUsed);
    peaks.external = Math.max(peaks.external, usage.external);
    peaks.array_buffers = Math.max(peaks.array_buffers, usage.arrayBuffers);
    if (job.trace) {
      const mb = (n: number): number => Math.round(n / 2 ** 20);
      samples.push([Math.round(performance.now() - started), mb(usage.rss), mb(usage.heapUsed), mb(usage.external)]);
    }
  };
  const sampler = setInterval(sample, 100);
  const report = await verifyProtocol({
    input: { url: job.protocolUrl },
    provider,
    trusted: job.trusted,
    fetcher,
    ens: null,
    optional: ["V2", ...(job.conformance ? [] : (["V9"] as const))],
    conformance: job.conformance,
  });
  const seconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  clearInterval(sampler);
  sample();
  provider.destroy();
  const mb = (n: number): number => n / 2 ** 20;
  process.stdout.write(
    JSON.stringify({
      verdict: report.verdict,
      seconds,
      cpu_seconds: (cpu.user + cpu.system) / 1e6,
      steps: report.steps.map((step) => ({
        id: step.id,
        status: step.status,
        ms: step.durationMs,
        detail: step.detail,
      })),
      peak_rss_mb: process.resourceUsage().maxRSS / 1024,
      baseline_rss_mb: baseline / 2 ** 20,
      peak_heap_used_mb: mb(peaks.heap_used),
      peak_external_mb: mb(peaks.external),
      peak_array_buffers_mb: mb(peaks.array_buffers),
      read,
      ...(job.trace ? { samples } : {}),
    }) + "\n",
  );
}

main().catch((error: unknown) => {
  process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
  process.exitCode = 1;
});
