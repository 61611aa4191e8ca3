import { DEFAULT_MAX_MODEL_BYTES, loadModel } from "../../model/load";
import { validateModel } from "../../model/validate";
import { Tracker } from "../../tracker/tracker";
import { engineFromOptions, positiveInt } from "./run";
import { openIssuer } from "../context";
import { type CommandContext } from "../main";

export function registerModel({ program, run }: CommandContext): void {
  const model = program.command("model").description("deploy and hash executable models (ASL state machines)");

  model
    .command("hash <file>")
    .description("print the model hash: SHA-256 of the file's exact bytes")
    .option("--max-model-bytes <n>", "refuse a model file larger than this", String(DEFAULT_MAX_MODEL_BYTES))
    .addHelpText("after", "\nExample:\n  $ statetrail model hash examples/order-fulfilment.asl.json")
    .action((file: string, options: { maxModelBytes: string }) =>
      run(async (globals) => {
        const loaded = await loadModel(file, { maxBytes: positiveInt(options.maxModelBytes, "--max-model-bytes") });
        globals.output.result({ model_hash: loaded.hash, bytes: loaded.bytes.length }, loaded.hash);
      }),
    );

  model
    .command("deploy <file>")
    .description("validate the ASL, register its hash on-chain and store it for publication")
    .option("--engine <engine>", "also prepare the model on this engine: local | aws", "local")
    .option("--max-model-bytes <n>", "refuse a model file larger than this", String(DEFAULT_MAX_MODEL_BYTES))
    .option("--role-arn <arn>", "IAM role for CreateStateMachine (aws engine)")
    .option("--region <region>", "AWS region (aws engine; default from the AWS settings)")
    .option("--endpoint <url>", "Step Functions endpoint (aws engine)")
    .addHelpText("after", "\nExample:\n  $ statetrail model deploy examples/order-fulfilment.asl.json")
    .action(
      (
        file: string,
        options: { engine: string; roleArn?: string; region?: string; endpoint?: string; maxModelBytes: string },
      ) =>
        run(async (globals) => {
          const loaded = await loadModel(file, { maxBytes: positiveInt(options.maxModelBytes, "--max-model-bytes") });
          validateModel(loaded);
          const issuer = await openIssuer(globals);
          const engine = engineFromOptions({ ...options, taskHandler: "echo", skipWaits: true });
          if (options.engine === "aws") await engine.prepare(loaded);
          const tracker = new Tracker({
            home: issuer.home,
            signer: issuer.signer,
            identity: issuer.identity,
            registries: issuer.registries,
            chainId: issuer.deployment.chainId,
            engine,
            log: globals.output.log,
          });
          const outcome = await tracker.deployModel(loaded);
          const url = `${issuer.identity.url}/models/${loaded.hash}`;
          globals.output.result(
            {
              model_hash: loaded.hash,
              url,
              newly_registered: outcome.registered,
              transaction_hash: outcome.transactionHash,
            },
            `${loaded.hash}\n${outcome.registered ? `registered in ${outcome.transactionHash}` : "already registered"}\n${url}`,
          );
          issuer.provider.destroy();
        }),
    );
}
