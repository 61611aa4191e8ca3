import { type AslProblem } from "../../model/validate";
import { DEFAULT_MAX_MODEL_BYTES } from "../../protocol/limits";
import { engineFromOptions, positiveInt } from "./run";
import { type CommandContext } from "../main";

export function registerModel({ program, run }: CommandContext): void {
  const model = program.command("model").description("deploy and hash executable models (ASL state machines)");

  model
    .command("hash <file>")
    .description(
      "print the model hash: SHA-256 of the file's exact bytes (any file); whether it is a valid model is a warning",
    )
    .option(
      "--max-model-bytes <n>",
      "warn when the file is larger than a model may be",
      String(DEFAULT_MAX_MODEL_BYTES),
    )
    .addHelpText(
      "after",
      "\nThe hash is printed for any bytes, exit 0; a file that is not a model statetrail accepts (not JSON, invalid\n" +
        "ASL, too large) gets a warning on stderr (and `validation` in --json).\n\nExample:\n" +
        "  $ statetrail model hash examples/order-fulfilment.asl.json",
    )
    .action((file: string, options: { maxModelBytes: string }) =>
      run(async (globals) => {
        const { inspectModelFile } = await import("../../model/load");
        const inspected = await inspectModelFile(file, {
          maxBytes: positiveInt(options.maxModelBytes, "--max-model-bytes"),
        });
        if (inspected.problem) {
          globals.output.log(
            `warning ${inspected.problem.code}: not a model statetrail accepts: ${inspected.problem.message}`,
          );
          if (inspected.problem.hint) globals.output.log(`  what to do: ${inspected.problem.hint}`);
        }
        logWarnings(globals.output.log, inspected.warnings);
        globals.output.result(
          {
            model_hash: inspected.hash,
            bytes: inspected.size,
            valid_model: inspected.problem === null,
            validation: inspected.problem,
            warnings: inspected.warnings,
          },
          inspected.hash,
        );
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
          // Loaded here, not for --help (lazy loading: src/cli/lazy.ts).
          const { loadModel } = await import("../../model/load");
          const { validateModel } = await import("../../model/validate");
          const { Tracker } = await import("../../tracker/tracker");
          const { issuerTrackerOptions, openIssuer } = await import("../context");
          // With --engine aws, AWS Step Functions is the authority on validity: what asl-validator refuses is a
          // warning, structural problems still refuse the model (the model keeps the strictness it was loaded with).
          const strictness = options.engine === "aws" ? "aws" : "local";
          const loaded = await loadModel(file, {
            maxBytes: positiveInt(options.maxModelBytes, "--max-model-bytes"),
            strictness,
          });
          logWarnings(globals.output.log, validateModel(loaded));
          const issuer = await openIssuer(globals);
          const engine = engineFromOptions({ ...options, taskHandler: "echo", skipWaits: true }, (message) =>
            globals.output.log(`warning: ${message}`),
          );
          if (options.engine === "aws") await engine.prepare(loaded);
          const tracker = new Tracker({
            ...issuerTrackerOptions(issuer),
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

function logWarnings(log: (message: string) => void, warnings: AslProblem[]): void {
  for (const warning of warnings) log(`warning ${warning.code}: ${warning.path || "/"}: ${warning.message}`);
}
