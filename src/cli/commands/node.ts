import { type CommandContext } from "../main";

export function registerNode({ program, run }: CommandContext): void {
  program
    .command("node")
    .description("start a local chain (a hardhat node process) with the registries and ENS deployed, or reuse one")
    .option("--port <port>", "JSON-RPC port on 127.0.0.1", "8545")
    .addHelpText("after", "\nStays in the foreground until Ctrl-C.\nExample:\n  $ statetrail node --port 8545")
    .action((options: { port: string }) =>
      run(async (globals) => {
        // Loaded here, not for --help (lazy loading: src/cli/lazy.ts).
        const { ensureLocalChain } = await import("../../chain/local");
        const { formatDeployment } = await import("../../chain/deploy");
        const { clearNodeRpc, recordNodeRpc } = await import("../context");
        const chain = await ensureLocalChain({ port: Number(options.port), log: globals.output.log });
        globals.output.result(
          { url: chain.node.url, started: chain.started, deployed: chain.deployed, deployment: chain.deployment },
          `${formatDeployment(chain.deployment)}\nJSON-RPC: ${chain.node.url}`,
        );
        chain.provider.destroy();
        if (!chain.started) return;
        // Later commands find this node without --rpc (deployments/<network>/node.json), until it stops.
        recordNodeRpc(globals.network, chain.node.url);
        globals.output.log("chain running; press Ctrl-C to stop");
        await new Promise<void>((resolve) => {
          process.once("SIGINT", resolve);
          process.once("SIGTERM", resolve);
        });
        await chain.node.stop();
        clearNodeRpc(globals.network);
      }),
    );
}
