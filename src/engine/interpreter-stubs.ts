import { StatetrailError } from "../errors";

/**
 * What the bundled CLI (dist/statetrail.cjs, built by scripts/build-cli.js) gives aws-local-stepfunctions in place
 * of three packages it requires when it is loaded but statetrail never uses: @aws-sdk/client-lambda and
 * @aws-sdk/credential-providers (the library invokes a Task's Lambda function only when the Task has no local
 * handler; statetrail gives every Task one: the local engine refuses a model with a Task it has no handler for, and
 * V9's replay answers every Task from the protocol) and asl-validator (the library validates a definition only
 * without `validationOptions.noValidate`, which statetrail always sets; statetrail's own validation loads
 * asl-validator itself, from src/model/validate.ts). Loading them cost about 270 ms at every start. Anything that
 * reaches these stubs anyway fails with ENGINE_FAILED instead of calling AWS.
 */
function notBundled(what: string): never {
  throw new StatetrailError(
    "ENGINE_FAILED",
    `the embedded interpreter tried to use ${what}, which statetrail never calls`,
    {
      hint: "this is a bug in statetrail (every Task must have a local handler and definitions are validated by statetrail); please report it",
    },
  );
}

export class LambdaClient {
  constructor() {
    notBundled("AWS Lambda (@aws-sdk/client-lambda)");
  }
}

export class InvokeCommand {
  constructor() {
    notBundled("AWS Lambda (@aws-sdk/client-lambda)");
  }
}

export function fromCognitoIdentityPool(): never {
  return notBundled("AWS credentials (@aws-sdk/credential-providers)");
}

export function aslValidator(): never {
  return notBundled("its own definition validation (asl-validator)");
}
