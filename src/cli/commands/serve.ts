import { startServer } from "../../server";
import { openChain, homeOf } from "../context";
import { type CommandContext } from "../main";

export function registerServe({ program, run }: CommandContext): void {
  program
    .command("serve")
    .description("publish models, protocols, inputs and states over HTTPS with the registered certificate")
    .option("--host <host>", "interface to listen on (default: from the identity)")
    .option("--port <port>", "port (default: from the identity)")
    .addHelpText("after", "\nStays in the foreground until Ctrl-C.\nExample:\n  $ statetrail serve --port 8443")
    .action((options: { host?: string; port?: string }) =>
      run(async (globals) => {
        const home = homeOf(globals);
        const chain = await openChain(globals);
        chain.provider.destroy();
        const server = await startServer({
          home,
          host: options.host,
          port: options.port === undefined ? undefined : Number(options.port),
          wellKnown: { registries: chain.registries },
          log: globals.output.log,
        });
        globals.output.result({ url: server.url, fingerprint: server.fingerprint }, `serving ${server.url}`);
        await new Promise<void>((resolve) => {
          process.once("SIGINT", resolve);
          process.once("SIGTERM", resolve);
        });
        await server.close();
      }),
    );
}
