import path from "node:path";

/**
 * Where a JSONPath appears, as asl-path-validator (the grammar asl-validator checks paths with) names it.
 * A Reference Path addresses one node (no filters, wildcards, recursive descent); a Result Path is where a
 * result is written; a payload template value (`"x.$"`) may also be an intrinsic function call.
 */
export type PathContext = "path" | "reference_path" | "result_path" | "payload_template";

export type PathVerdict = { valid: true } | { valid: true; relaxed: string } | { valid: false; reason: string };

type ValidatePath = (p: string, context: string) => { isValid: boolean; code?: string };

// asl-validator's own path grammar: the one copy installed, which asl-validator requires too (test/cli/bundle.test.ts
// checks that both resolve to the same file). Required by name so that the CLI's bundle holds it (scripts/build-cli.js):
// compiled through V8's code cache instead of from node_modules at every `verify` (some 10 ms of V9's modules).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { validatePath } = require("asl-path-validator") as { validatePath: ValidatePath };

// The JSONPath engine the interpreter evaluates paths with (its filter expressions are parsed by jsep): required
// when a filter first needs it, which most models never do.
interface SafeScriptClass {
  new (code: string): unknown;
}
let safeScript: SafeScriptClass | undefined;
function safeScriptClass(): SafeScriptClass {
  if (!safeScript) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { JSONPath } = require(
      require.resolve("jsonpath-plus", { paths: [path.dirname(require.resolve("aws-local-stepfunctions"))] }),
    ) as { JSONPath: { prototype: { safeVm: { Script: SafeScriptClass } } } };
    safeScript = JSONPath.prototype.safeVm.Script;
  }
  return safeScript;
}

/**
 * Checks a path the way AWS and the interpreter read it, more generously than asl-validator's grammar:
 *
 * 1. `.[` (a dot before a bracket, `$.[0]`, `$.Snapshots.[0].State`, `$.[?(@.OU > 0)]`) is read as `[`, as the
 *    service's JSONPath (Jayway) reads it; the rest must then pass asl-validator's grammar.
 * 2. A filter `[?(…)]` asl-validator's grammar can't parse (`[?(@.Type.Text == 'X')]`) is accepted when the
 *    interpreter's JSONPath engine parses its expression and the path around it passes the grammar.
 *
 * Where a Reference Path is expected, a general Path is accepted (a filter in a Choice `Variable`), as before.
 * A Result Path is never relaxed. Returns `relaxed` (why) when the path passes only through these rules.
 */
export function checkPath(value: string, context: PathContext): PathVerdict {
  if (validatePath(value, context).isValid) return { valid: true };
  if (context === "result_path") return { valid: false, reason: "not a Reference Path" };
  const contexts: PathContext[] = context === "reference_path" ? ["reference_path", "path"] : [context];
  const notes: string[] = [];
  let candidate = value;
  const undotted = withoutDotBeforeBracket(value);
  if (undotted === null) return { valid: false, reason: "unbalanced brackets, parentheses or quotes" };
  if (undotted !== value) {
    candidate = undotted;
    notes.push(
      "`.[` is read as `[` (as AWS reads it); the local interpreter reads it as `..[` (recursive descent), which " +
        "gives the same value unless a deeper node matches too",
    );
  }
  if (contexts.some((c) => validatePath(candidate, c).isValid)) return relaxed(value, notes, context);
  const filters = extractFilters(candidate);
  if (filters === null) return { valid: false, reason: "unbalanced brackets, parentheses or quotes" };
  if (filters.expressions.length > 0) {
    for (const expression of filters.expressions) {
      if (!filterParses(expression)) return { valid: false, reason: `the filter ?(${expression}) does not parse` };
    }
    if (contexts.some((c) => validatePath(filters.skeleton, c).isValid)) {
      notes.push("its filter is beyond asl-validator's grammar and was parsed by the interpreter's JSONPath engine");
      return relaxed(value, notes, context);
    }
  }
  return { valid: false, reason: "not a JSONPath" };
}

function relaxed(value: string, notes: string[], context: PathContext): PathVerdict {
  const beyond =
    context === "reference_path" && !validatePath(withoutDotBeforeBracket(value) ?? value, "reference_path").isValid
      ? ["a Path is accepted where a Reference Path is expected (filter, wildcard or recursive descent)"]
      : [];
  const why = [...notes, ...beyond];
  return {
    valid: true,
    relaxed: `${JSON.stringify(value)} is refused by asl-validator's path grammar and accepted by the relaxed path check${why.length > 0 ? `: ${why.join("; ")}` : ""}`,
  };
}

/**
 * Scans `value` outside string literals, calling `visit` at each character. Returns false when a quote is
 * not closed.
 */
function scan(value: string, visit: (i: number, c: string) => void): boolean {
  let quote: string | null = null;
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (quote !== null) {
      if (c === "\\") i += 1;
      else if (c === quote) quote = null;
      continue;
    }
    if (c === "'" || c === '"') {
      quote = c;
      continue;
    }
    visit(i, c);
  }
  return quote === null;
}

/** `value` with every single `.` before `[` removed (outside string literals); `..[` is kept. Null if unbalanced. */
export function withoutDotBeforeBracket(value: string): string | null {
  const drop = new Set<number>();
  let depth = 0;
  let balanced = true;
  const closed = scan(value, (i, c) => {
    if (c === "[" || c === "(") depth += 1;
    else if (c === "]" || c === ")") {
      depth -= 1;
      if (depth < 0) balanced = false;
    } else if (c === "." && value[i + 1] === "[" && value[i - 1] !== ".") drop.add(i);
  });
  if (!closed || !balanced || depth !== 0) return null;
  return [...value].filter((_, i) => !drop.has(i)).join("");
}

/**
 * The filter expressions `[?(…)]` of a path, and the path with each filter replaced by `[*]`. Null when a
 * filter is not closed.
 */
function extractFilters(value: string): { expressions: string[]; skeleton: string } | null {
  const expressions: string[] = [];
  let skeleton = "";
  let from = 0;
  let open = -1;
  let depth = 0;
  let broken = false;
  const closed = scan(value, (i, c) => {
    if (broken) return;
    if (open < 0) {
      if (c === "[" && value[i + 1] === "?" && value[i + 2] === "(") {
        open = i;
        depth = 0;
      }
      return;
    }
    if (c === "(") depth += 1;
    else if (c === ")") {
      depth -= 1;
      if (depth === 0) {
        if (value[i + 1] !== "]") {
          broken = true;
          return;
        }
        expressions.push(value.slice(open + 3, i));
        skeleton += value.slice(from, open) + "[*]";
        from = i + 2;
        open = -1;
      }
    }
  });
  if (!closed || broken || open >= 0) return null;
  return { expressions, skeleton: skeleton + value.slice(from) };
}

/** Does the interpreter's JSONPath engine parse the filter expression (as it rewrites it before evaluating)? */
function filterParses(expression: string): boolean {
  if (expression.trim() === "") return false;
  const script = expression
    .replaceAll("@parentProperty", "_$_parentProperty")
    .replaceAll("@parent", "_$_parent")
    .replaceAll("@property", "_$_property")
    .replaceAll("@root", "_$_root")
    .replaceAll("@path", "_$_path")
    .replaceAll(/@([.\s)[]|$)/gu, "_$_v$1");
  try {
    const Script = safeScriptClass();
    new Script(script);
    return true;
  } catch {
    return false;
  }
}
