import { startServer } from "../../server";
import { ensReaderFromProvider, trustedFromDeployment } from "../../verify";
import { openChain, homeOf } from "../context";
import { type CommandContext } from "../main";

export function registerServe({ program, run }: CommandContext): void {
  program
    .command("serve")
    .description("publish models, protocols, inputs and states over HTTPS with the registered certificate")
    .option("--host <host>", "interface to listen on (default: from the identity)")
    .option("--port <port>", "port (default: from the identity)")
    .option("--no-timeline", "no timeline page at / (only the JSON API)")
    .addHelpText(
      "after",
      "\nStays in the foreground until Ctrl-C. The timeline page is at https://<host>:<port>/.\nExample:\n  $ statetrail serve --port 8443",
    )
    .action((options: { host?: string; port?: string; timeline: boolean }) =>
      run(async (globals) => {
        const home = homeOf(globals);
        const chain = await openChain(globals);
        // The timeline page's verification runs with this connection; without the page it is not needed.
        if (!options.timeline) chain.provider.destroy();
        const server = await startServer({
          home,
          host: options.host,
          port: options.port === undefined ? undefined : Number(options.port),
          wellKnown: { registries: chain.registries },
          timeline: options.timeline && {
            verify: {
              provider: chain.provider,
              trusted: trustedFromDeployment(chain.deployment),
              ens: ensReaderFromProvider(chain.provider),
            },
          },
          log: globals.output.log,
        });
        globals.output.result({ url: server.url, fingerprint: server.fingerprint }, `serving ${server.url}`);
        await new Promise<void>((resolve) => {
          process.once("SIGINT", resolve);
          process.once("SIGTERM", resolve);
        });
        await server.close();
        if (options.timeline) chain.provider.destroy();
      }),
    );
}
