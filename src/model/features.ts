import { StatetrailError } from "../errors";
import { forEachState, joinPointer } from "./validate";

/** A feature of a definition, with the JSON Pointer where it is used. */
export interface FeatureFinding {
  path: string;
  feature: string;
  message: string;
}

export interface LocalSupport {
  /** Features the local interpreter (aws-local-stepfunctions) would silently ignore: runs are refused. */
  unsupported: FeatureFinding[];
  /** Features that run locally but may not behave as on AWS. */
  warnings: FeatureFinding[];
}

/** State fields of the JSONata query language and of variables, ignored by the local interpreter. */
const STATE_FIELDS: Record<string, string> = {
  Arguments: "JSONata Arguments",
  Output: "JSONata Output",
  Assign: "variables (Assign)",
  Items: "JSONata Map Items",
  ItemReader: "Distributed Map ItemReader",
  ResultWriter: "Distributed Map ResultWriter",
  ItemBatcher: "Distributed Map ItemBatcher",
  ToleratedFailureCount: "Distributed Map ToleratedFailureCount",
  ToleratedFailureCountPath: "Distributed Map ToleratedFailureCountPath",
  ToleratedFailurePercentage: "Distributed Map ToleratedFailurePercentage",
  ToleratedFailurePercentagePath: "Distributed Map ToleratedFailurePercentagePath",
};

/** Fields of Choice rules and Catchers the local interpreter ignores. */
const RULE_FIELDS: Record<string, string> = {
  Condition: "JSONata Condition",
  Assign: "variables (Assign)",
  Output: "JSONata Output",
};

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function isJsonataExpression(value: string): boolean {
  const trimmed = value.trim();
  return trimmed.startsWith("{%") && trimmed.endsWith("%}");
}

/**
 * Lists what aws-local-stepfunctions would silently ignore, producing a wrong run, an endless loop or a
 * false success: the JSONata query language at any level, `{% … %}` expressions, Arguments / Output /
 * Condition / Assign / Items, and Distributed Map (ProcessorConfig.Mode DISTRIBUTED, ItemReader,
 * ResultWriter, ItemBatcher, ToleratedFailure*). `.waitForTaskToken` integrations are warnings: they run
 * locally against a handler, with the Context Object's task token.
 */
export function analyzeLocalSupport(definition: unknown): LocalSupport {
  const unsupported: FeatureFinding[] = [];
  const warnings: FeatureFinding[] = [];
  if (!isObject(definition)) return { unsupported, warnings };

  const queryLanguage = (value: unknown, path: string): void => {
    if (value === undefined || value === "JSONPath") return;
    unsupported.push({
      path,
      feature: value === "JSONata" ? "JSONata query language" : `query language ${JSON.stringify(value)}`,
      message: `QueryLanguage ${JSON.stringify(value)} is not implemented by the local interpreter`,
    });
  };
  queryLanguage(definition.QueryLanguage, "/QueryLanguage");

  forEachState(definition, ({ state, pointer }) => {
    queryLanguage(state.QueryLanguage, joinPointer(pointer, "QueryLanguage"));
    for (const [field, feature] of Object.entries(STATE_FIELDS)) {
      if (state[field] !== undefined) {
        unsupported.push({
          path: joinPointer(pointer, field),
          feature,
          message: `${feature} is ignored by the local interpreter`,
        });
      }
    }
    const processor = state.ItemProcessor;
    if (state.Type === "Map" && isObject(processor) && isObject(processor.ProcessorConfig)) {
      const mode = processor.ProcessorConfig.Mode;
      if (mode === "DISTRIBUTED") {
        unsupported.push({
          path: joinPointer(pointer, "ItemProcessor", "ProcessorConfig", "Mode"),
          feature: "Distributed Map",
          message: "a DISTRIBUTED Map runs child executions the local interpreter does not implement",
        });
      }
    }
    for (const list of ["Choices", "Catch"]) {
      const rules = state[list];
      if (!Array.isArray(rules)) continue;
      rules.forEach((rule, index) => {
        if (!isObject(rule)) return;
        for (const [field, feature] of Object.entries(RULE_FIELDS)) {
          if (rule[field] !== undefined) {
            unsupported.push({
              path: joinPointer(pointer, list, index, field),
              feature,
              message: `${feature} is ignored by the local interpreter`,
            });
          }
        }
      });
    }
    if (typeof state.Resource === "string" && state.Resource.endsWith(".waitForTaskToken")) {
      warnings.push({
        path: joinPointer(pointer, "Resource"),
        feature: "callback task (.waitForTaskToken)",
        message:
          "locally the handler's return value completes the task at once; it can read the token from $$.Task.Token",
      });
    }
  });

  const strings = (value: unknown, path: string): void => {
    if (typeof value === "string") {
      if (isJsonataExpression(value)) {
        unsupported.push({
          path,
          feature: "JSONata expression",
          message: `${JSON.stringify(value)} would be used as a literal string`,
        });
      }
    } else if (Array.isArray(value)) {
      value.forEach((item, index) => strings(item, joinPointer(path, index)));
    } else if (isObject(value)) {
      for (const [key, item] of Object.entries(value)) strings(item, joinPointer(path, key));
    }
  };
  strings(definition, "");
  return { unsupported, warnings };
}

/** Features the local engine refuses, each with its JSON Pointer. */
export function unsupportedForLocal(definition: unknown): FeatureFinding[] {
  return analyzeLocalSupport(definition).unsupported;
}

/** Features the local engine runs with a caveat. */
export function localWarnings(definition: unknown): FeatureFinding[] {
  return analyzeLocalSupport(definition).warnings;
}

/** Throws ASL_UNSUPPORTED listing every unsupported feature; returns the warnings. */
export function assertLocalSupported(definition: unknown, source = "the model"): FeatureFinding[] {
  const { unsupported, warnings } = analyzeLocalSupport(definition);
  if (unsupported.length > 0) {
    const lines = unsupported.map((f) => `  ${f.path || "/"}: ${f.message}`).join("\n");
    throw new StatetrailError(
      "ASL_UNSUPPORTED",
      `${source} uses ${unsupported.length} feature${unsupported.length === 1 ? "" : "s"} the local engine cannot run faithfully:\n${lines}`,
      { hint: "run it on AWS Step Functions with --engine aws" },
    );
  }
  return warnings;
}
