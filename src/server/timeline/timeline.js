/* global document, window, location, navigator, EventSource, TextEncoder */
/*
 * statetrail timeline page: plain DOM, no framework, no inline code (the page's CSP allows only scripts,
 * styles and connections of this origin). Everything shown is built with textContent: protocol data is
 * untrusted and never becomes markup.
 *
 *   #/                      the issuer, its models and instances (the list refreshes every 5 s)
 *   #/instances/<hash>      one instance: status, the verifier's checks, the timeline of states with
 *                           Map/Parallel nesting; live over Server-Sent Events. Also /instances/<hash>/timeline,
 *                           which the server renders from the head and one page for readers without JavaScript.
 *
 * An instance may have a million states: the page never loads them all. It reads the head, then the pages it shows
 * (`/instances/<h>/protocol/pages/<k>`, JSON lines): the latest first, older ones on demand ("load older", a jump to
 * a seq), at most MAX_SHOWN_PAGES at once, and the state documents of the entries shown (`/states/<h>`, JSON lines:
 * the state data with each field's digest, then the disclosures this reader was granted). Each field shows its value
 * where disclosed (checked against its digest), else "redacted" and the digest. Each page shown is checked in the
 * browser against the accumulator chain (SubtleCrypto), labelled as a convenience, not a verification.
 *
 * Every verdict shown is computed by the issuer's own server, so it is labelled as the issuer's claim, next to the
 * command that checks it independently (the page's #trust banner has the issuer's form of it without JavaScript).
 */
"use strict";

(function () {
  var EXPLORERS = { 1: "https://etherscan.io", 11155111: "https://sepolia.etherscan.io" };
  var STATUS_TEXT = { pass: "PASS", fail: "FAIL", skip: "SKIP", error: "ERROR" };
  var VERDICT_TEXT = {
    valid: ["VALID", "every required check passed"],
    invalid: ["INVALID", "the protocol is contradicted by the evidence"],
    "could-not-verify": ["COULD NOT VERIFY", "a required check could not be performed"],
  };
  var app = document.getElementById("app");
  var current = null;
  var trust = document.getElementById("trust");
  var pageTarget = {
    network: (trust && trust.getAttribute("data-network")) || null,
    ensName: (trust && trust.getAttribute("data-ens-name")) || null,
    issuerUrl: (trust && trust.getAttribute("data-issuer-url")) || null,
  };
  var bannerCommand = document.getElementById("verify-command");
  var bannerNote = document.getElementById("verify-command-note");
  var issuerCommand = bannerCommand ? bannerCommand.textContent : "";
  var issuerNote = bannerNote ? bannerNote.textContent : "";

  /** Builds an element: props are attributes (className, dataset via data-*), children are nodes or text. */
  function h(tag, props, children) {
    var node = document.createElement(tag);
    var key;
    for (key in props || {}) {
      if (!Object.prototype.hasOwnProperty.call(props, key) || props[key] === undefined || props[key] === null)
        continue;
      if (key === "className") node.className = props[key];
      else if (key === "text") node.textContent = props[key];
      else node.setAttribute(key, String(props[key]));
    }
    (children || []).forEach(function (child) {
      if (child === null || child === undefined || child === false) return;
      node.appendChild(
        typeof child === "string" || typeof child === "number" ? document.createTextNode(String(child)) : child,
      );
    });
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function code(value, className) {
    return h("code", { className: className, title: value }, [value]);
  }

  function shortHex(value) {
    return value.length > 18 ? value.slice(0, 12) + "…" + value.slice(-4) : value;
  }

  function isoTime(seconds) {
    return new Date(seconds * 1000).toISOString().replace(".000Z", "Z");
  }

  function safeHref(url) {
    return /^https?:\/\//i.test(url) ? url : "#";
  }

  /** A link to the block explorer of public networks, or the plain content. */
  function explorerLink(chainId, path, content) {
    var base = EXPLORERS[chainId];
    if (base) return h("a", { href: base + path, rel: "noreferrer", target: "_blank" }, [content]);
    return typeof content === "string" ? document.createTextNode(content) : content;
  }

  /** A word the shell takes as it is (ENS names, URLs), else single-quoted; as the server's verifyCommand. */
  function shellWord(value) {
    return /^[A-Za-z0-9._:/@%+=,~-]+$/.test(value) ? value : "'" + value.replace(/'/g, "'\\''") + "'";
  }

  /** The command that checks `instance` without trusting this server (timeline/index.ts verifyCommand). */
  function verifyCommand(target, instance) {
    var parts = ["npx", "statetrail", "verify"];
    if (target.ensName) {
      parts.push(shellWord(target.ensName), "--instance", instance);
    } else {
      var base = target.issuerUrl ? shellWord(target.issuerUrl.replace(/\/+$/, "")) : "<this server's URL>";
      parts.push(base + "/instances/" + instance + "/protocol");
    }
    parts.push("--network", target.network ? shellWord(target.network) : "<network>");
    return parts.join(" ");
  }

  /** A button copying the text of `source`; without clipboard access it selects the text instead. */
  function copyButton(source) {
    var button = h("button", { type: "button", className: "copy-command", text: "copy" });
    button.addEventListener("click", function () {
      var done = function (label) {
        button.textContent = label;
        setTimeout(function () {
          button.textContent = "copy";
        }, 2000);
      };
      var select = function () {
        var range = document.createRange();
        range.selectNodeContents(source);
        var selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        done("selected: press Ctrl+C");
      };
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(source.textContent).then(function () {
          done("copied");
        }, select);
      } else select();
    });
    return button;
  }

  /** The banner's command: the issuer's form on the index, this instance's on an instance page. */
  function setBannerCommand(command, note) {
    if (bannerCommand) bannerCommand.textContent = command;
    if (bannerNote) bannerNote.textContent = note;
  }

  async function getJson(url) {
    var response = await fetch(url, { headers: { accept: "application/json" }, cache: "no-store" });
    var body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (!response.ok) {
      var message = body && body.error && body.error.message ? body.error.message : "HTTP " + response.status;
      var failure = new Error(message);
      failure.status = response.status;
      throw failure;
    }
    return body;
  }

  function meta(rows) {
    var list = h("dl", { className: "meta" });
    rows.forEach(function (row) {
      list.appendChild(h("dt", { text: row[0] }));
      list.appendChild(h("dd", null, [row[1]]));
    });
    return list;
  }

  function issuerPanel(issuer) {
    return meta([
      ["issuer", explorerLink(issuer.chain_id, "/address/" + issuer.address, code(issuer.address))],
      [
        "ENS name",
        issuer.ens_name
          ? h("span", { id: "issuer-ens", text: issuer.ens_name })
          : h("span", { className: "muted", text: "none" }),
      ],
      ["server", code(issuer.url)],
      ["certificate", code(issuer.certificate_fingerprint, "hash")],
      [
        "chain",
        String(issuer.chain_id) +
          (EXPLORERS[issuer.chain_id] ? " (" + new URL(EXPLORERS[issuer.chain_id]).host + ")" : ""),
      ],
    ]);
  }

  // ---------------------------------------------------------------- index: issuer, models, instances

  function indexView() {
    var closed = false;
    var timer = null;
    setBannerCommand(issuerCommand, issuerNote);
    clear(app);
    var issuerBox = h("section", { id: "issuer" }, [
      h("h2", { text: "Issuer" }),
      h("p", { className: "muted", text: "Loading…" }),
    ]);
    var modelsBox = h("section", { id: "models" }, [h("h2", { text: "Models" })]);
    var instancesBox = h("section", { id: "instances" }, [h("h2", { text: "Instances" })]);
    app.appendChild(issuerBox);
    app.appendChild(modelsBox);
    app.appendChild(instancesBox);

    getJson("/.well-known/statetrail.json").then(
      function (doc) {
        if (closed) return;
        clear(issuerBox);
        issuerBox.appendChild(h("h2", { text: "Issuer" }));
        issuerBox.appendChild(
          issuerPanel({
            address: doc.issuer,
            ens_name: doc.ens_name,
            url: doc.url,
            certificate_fingerprint: doc.certificate_fingerprint,
            chain_id: doc.chain_id,
          }),
        );
      },
      function (error) {
        if (closed) return;
        clear(issuerBox);
        issuerBox.appendChild(h("h2", { text: "Issuer" }));
        issuerBox.appendChild(h("p", { className: "muted", text: "No identity document: " + error.message }));
      },
    );

    var counts = {};

    function loadModels() {
      return getJson("/models").then(function (models) {
        if (closed) return;
        clear(modelsBox);
        modelsBox.appendChild(h("h2", { text: "Models (" + models.length + ")" }));
        if (models.length === 0) {
          modelsBox.appendChild(h("p", { className: "muted", text: "No model is published." }));
          return;
        }
        var body = h("tbody");
        models.forEach(function (model) {
          body.appendChild(
            h("tr", { className: "model", "data-model": model.model_hash }, [
              h("td", null, [
                h("a", { href: "/models/" + model.model_hash }, [code(shortHex(model.model_hash), "hash")]),
              ]),
              h("td", { text: model.comment || "" }),
              h("td", { text: model.states + " states, " + model.bytes + " bytes" }),
              h("td", { text: String(counts[model.model_hash] || 0) }),
            ]),
          );
        });
        modelsBox.appendChild(
          h("table", { className: "list" }, [
            h("thead", null, [
              h("tr", null, [
                h("th", { text: "model hash" }),
                h("th", { text: "comment" }),
                h("th", { text: "size" }),
                h("th", { text: "instances" }),
              ]),
            ]),
            body,
          ]),
        );
      });
    }

    function loadInstances() {
      return getJson("/instances").then(function (rows) {
        if (closed) return;
        counts = {};
        rows.forEach(function (row) {
          counts[row.model_hash] = (counts[row.model_hash] || 0) + 1;
        });
        clear(instancesBox);
        instancesBox.appendChild(h("h2", { text: "Instances (" + rows.length + ")" }));
        if (rows.length === 0)
          return void instancesBox.appendChild(h("p", { className: "muted", text: "No instance yet." }));
        var body = h("tbody");
        rows.forEach(function (row) {
          body.appendChild(
            h("tr", { className: "instance", "data-instance": row.instance_hash }, [
              h("td", null, [
                h("a", { href: "#/instances/" + row.instance_hash }, [code(shortHex(row.instance_hash), "hash")]),
              ]),
              h("td", null, [code(shortHex(row.model_hash), "hash")]),
              h("td", null, [h("span", { className: "instance-status status-" + row.status, text: row.status })]),
              h("td", { text: String(row.states) }),
              h("td", { text: String(row.created_block) }),
            ]),
          );
        });
        instancesBox.appendChild(
          h("table", { className: "list" }, [
            h("thead", null, [
              h("tr", null, [
                h("th", { text: "instance" }),
                h("th", { text: "model" }),
                h("th", { text: "status" }),
                h("th", { text: "states" }),
                h("th", { text: "created in block" }),
              ]),
            ]),
            body,
          ]),
        );
      });
    }

    function refresh() {
      loadInstances()
        .then(loadModels)
        .catch(function (error) {
          if (!closed)
            instancesBox.appendChild(h("p", { className: "muted", text: "Could not load: " + error.message }));
        })
        .then(function () {
          if (!closed) timer = setTimeout(refresh, 5000);
        });
    }
    refresh();

    return {
      close: function () {
        closed = true;
        clearTimeout(timer);
      },
    };
  }

  // ---------------------------------------------------------------- pages of a protocol (docs/PROTOCOL.md)

  /** Pages shown at once: "load older"/"load newer" past this drop a page at the other end. */
  var MAX_SHOWN_PAGES = 8;

  function hexToBytes(hex) {
    var bytes = new Uint8Array(hex.length / 2);
    for (var i = 0; i < bytes.length; i += 1) bytes[i] = parseInt(hex.substr(i * 2, 2), 16);
    return bytes;
  }

  function bytesToHex(bytes) {
    var out = "";
    for (var i = 0; i < bytes.length; i += 1) out += (bytes[i] < 16 ? "0" : "") + bytes[i].toString(16);
    return out;
  }

  /**
   * The accumulator after `lines` (exact entry lines), from `before`: a(seq) = SHA-256(a(seq - 1) ‖ line), as the
   * verifier computes it. SubtleCrypto only exists in secure contexts; null without it.
   */
  async function accumulate(before, lines) {
    if (!window.crypto || !window.crypto.subtle) return null;
    var encoder = new TextEncoder();
    var accumulator = hexToBytes(before);
    for (var i = 0; i < lines.length; i += 1) {
      var line = encoder.encode(lines[i]);
      var input = new Uint8Array(32 + line.length);
      input.set(accumulator, 0);
      input.set(line, 32);
      accumulator = new Uint8Array(await window.crypto.subtle.digest("SHA-256", input));
    }
    return bytesToHex(accumulator);
  }

  /** The data fields of a state, in the order the state document discloses them. */
  var DATA_FIELDS = ["caught", "context", "input", "outcome"];

  async function sha256Hex(text) {
    return bytesToHex(new Uint8Array(await window.crypto.subtle.digest("SHA-256", new TextEncoder().encode(text))));
  }

  /**
   * Reads a state document as served (JSON lines): line 1 the state data (structure, and `fields`: each field's
   * digest), then one disclosure `{"field","salt","value"}` per field this reader may see. Returns the data with
   * `disclosed` (field → value) and `forged` (field → true where a disclosure does not match its digest: its value is
   * not shown). The digest is SHA-256 of the canonical `[salt, field, value]`; a served line is canonical, so that is
   * its value's text between `["<salt>","<field>",` and `]`. Without SubtleCrypto values are shown unchecked.
   */
  async function readStateDocument(text) {
    var lines = text.split("\n");
    if (lines.length < 2 || lines[lines.length - 1] !== "") throw new Error("not a state document");
    lines.pop();
    var data = JSON.parse(lines[0]);
    if (!data || typeof data !== "object" || !data.fields || typeof data.fields !== "object") {
      throw new Error("not state data with field digests");
    }
    data.disclosed = {};
    data.forged = {};
    for (var i = 1; i < lines.length; i += 1) {
      var disclosure = JSON.parse(lines[i]);
      var field = disclosure && disclosure.field;
      if (DATA_FIELDS.indexOf(field) < 0 || typeof disclosure.salt !== "string") continue;
      if (window.crypto && window.crypto.subtle) {
        var at = lines[i].indexOf('"value":');
        var valueText = at < 0 ? "" : lines[i].slice(at + 8, -1);
        var digest = await sha256Hex('["' + disclosure.salt + '",' + JSON.stringify(field) + "," + valueText + "]");
        if (digest !== data.fields[field]) {
          data.forged[field] = true;
          continue;
        }
      }
      data.disclosed[field] = disclosure.value;
    }
    return data;
  }

  async function getStateDocument(hash) {
    var response = await fetch("/states/" + hash, {
      headers: { accept: "application/jsonl, application/json" },
      cache: "no-store",
    });
    if (!response.ok) {
      var failure = new Error("HTTP " + response.status);
      failure.status = response.status;
      throw failure;
    }
    return readStateDocument(await response.text());
  }

  /** A value for one line of the page: compact JSON, cut at 160 characters (the whole of it in the tooltip). */
  function shortJson(value) {
    var text = JSON.stringify(value);
    if (text === undefined) text = String(value);
    return text.length > 160 ? text.slice(0, 159) + "…" : text;
  }

  /** Each field of a state: its value where disclosed, else "redacted" and its digest (shortened). */
  function fieldsNode(data) {
    if (!data || !data.fields || !data.disclosed) return null;
    return h(
      "div",
      { className: "state-fields" },
      DATA_FIELDS.map(function (field) {
        var digest = String(data.fields[field] || "");
        if (Object.prototype.hasOwnProperty.call(data.disclosed, field)) {
          var full = JSON.stringify(data.disclosed[field]);
          return h("span", { className: "field disclosed", "data-field": field, "data-disclosed": "true" }, [
            h("span", { className: "field-name", text: field }),
            " ",
            h("code", { className: "field-value", title: full, text: shortJson(data.disclosed[field]) }),
          ]);
        }
        var forged = data.forged && data.forged[field];
        return h(
          "span",
          {
            className: "field " + (forged ? "forged" : "redacted"),
            "data-field": field,
            "data-disclosed": "false",
          },
          [
            h("span", { className: "field-name", text: field }),
            " ",
            h("span", {
              className: "field-redacted",
              text: forged ? "does not match its digest" : "redacted",
            }),
            " ",
            h("code", { className: "hash", title: digest, text: digest.slice(0, 12) + "…" }),
          ],
        );
      }),
    );
  }

  /** Reads page `index` as served: its header and its entry lines (and the entries they parse to). */
  async function fetchPage(instance, index) {
    var response = await fetch("/instances/" + instance + "/protocol/pages/" + index);
    if (!response.ok) {
      var failure = new Error("page " + index + ": HTTP " + response.status);
      failure.status = response.status;
      throw failure;
    }
    var text = await response.text();
    var lines = text.split("\n");
    if (lines[lines.length - 1] === "") lines.pop();
    var header;
    try {
      header = JSON.parse(lines[0]);
    } catch {
      throw new Error("page " + index + " has no header line");
    }
    if (!header || header.instance_hash !== instance || header.index !== index) {
      throw new Error("page " + index + " is not page " + index + " of this instance");
    }
    var entries = lines.slice(1).map(function (line, offset) {
      try {
        return JSON.parse(line);
      } catch {
        throw new Error("page " + index + ", line " + (offset + 2) + " is not JSON");
      }
    });
    return { index: index, header: header, lines: lines.slice(1), entries: entries };
  }

  // ---------------------------------------------------------------- one instance

  /** Nests entries by iteration path: one group per Map iteration / Parallel branch, where its first state is. */
  function buildTree(entries, states) {
    var root = [];
    var groups = {};
    entries.forEach(function (entry) {
      if (!entry) return;
      var data = states[entry.state_hash];
      var container = root;
      var key = "";
      ((data && data.iteration_path) || []).forEach(function (step) {
        key += "/" + step.kind + ":" + step.index + ":" + step.parent;
        var group = groups[key];
        if (!group) {
          group = { kind: "group", key: key, parent: step.parent, group: step.kind, index: step.index, children: [] };
          groups[key] = group;
          container.push(group);
        }
        container = group.children;
      });
      container.push({ kind: "state", entry: entry, data: data });
    });
    return root;
  }

  function failingSeqs(report) {
    var seqs = {};
    (report ? report.steps : []).forEach(function (step) {
      if (step.status !== "fail") return;
      [step.detail].concat(step.problems).forEach(function (problem) {
        var re = /\bseq (\d+)\b/g;
        var match;
        while ((match = re.exec(problem))) seqs[Number(match[1])] = true;
      });
    });
    return seqs;
  }

  function stateNode(entry, data, chainId, bad, fresh) {
    var end = entry.state_type.indexOf("Execution") === 0;
    var classes = ["state", "type-" + entry.state_type];
    if (end) classes.push("end");
    if (bad) classes.push("bad");
    if (fresh) classes.push("fresh");
    var main = h("div", { className: "state-main" }, [
      h("span", { className: "seq", text: "#" + entry.seq }),
      " ",
      h("span", { className: "state-name", text: end ? "end of execution" : entry.state_name }),
      " ",
      h("span", { className: "state-type", text: entry.state_type }),
    ]);
    if (data && data.attempt > 0)
      main.appendChild(h("span", { className: "attempt", text: " attempt " + (data.attempt + 1) }));
    // The error a state was entered with (a Catch), or the one its Task attempt (or the execution) ended with.
    var fields = (data && data.disclosed) || {};
    var error = fields.caught || (fields.outcome && fields.outcome.error);
    if (error) {
      main.appendChild(
        h("span", {
          className: "state-error",
          text: " " + error.error + (error.cause ? ": " + error.cause : ""),
        }),
      );
    }
    var metaRow = h("div", { className: "state-meta" }, [
      h("span", null, ["block ", explorerLink(chainId, "/block/" + entry.block_nr, String(entry.block_nr))]),
      h("time", { text: isoTime(entry.timestamp) }),
      h("span", null, [
        "tx ",
        explorerLink(chainId, "/tx/" + entry.transaction_hash, code(shortHex(entry.transaction_hash))),
      ]),
      h("span", null, [
        "hash ",
        h("code", { className: "hash", title: entry.state_hash, text: entry.state_hash.slice(0, 16) + "…" }),
      ]),
      h("a", {
        className: "state-data",
        href: safeHref(entry.state_data),
        rel: "noreferrer",
        target: "_blank",
        text: "data",
      }),
    ]);
    return h("li", { className: classes.join(" "), "data-seq": entry.seq, "data-state-hash": entry.state_hash }, [
      main,
      metaRow,
      fieldsNode(data),
    ]);
  }

  function timelineNode(nodes, chainId, bad, fresh) {
    var list = h("ol", { className: "timeline" });
    nodes.forEach(function (node) {
      if (node.kind === "group") {
        list.appendChild(
          h("li", { className: "group group-" + node.group, "data-group": node.key }, [
            h("div", {
              className: "group-label",
              text: node.parent + " · " + (node.group === "map" ? "iteration " : "branch ") + node.index,
            }),
            timelineNode(node.children, chainId, bad, fresh),
          ]),
        );
      } else {
        list.appendChild(stateNode(node.entry, node.data, chainId, bad[node.entry.seq], fresh[node.entry.seq]));
      }
    });
    return list;
  }

  function checksNode(report) {
    var body = h("tbody");
    report.steps.forEach(function (step) {
      var detail = h("td", { className: "check-detail" }, [step.detail]);
      var problems = step.problems.filter(function (problem) {
        return problem !== step.detail;
      });
      if ((step.status === "fail" || step.status === "error") && problems.length > 0) {
        detail.appendChild(
          h(
            "ul",
            { className: "problems" },
            problems.map(function (problem) {
              return h("li", { text: problem });
            }),
          ),
        );
      }
      body.appendChild(
        h("tr", { className: "check status-" + step.status, "data-step": step.id, "data-status": step.status }, [
          h("td", { className: "check-id", text: step.id }),
          h("td", { className: "check-status" }, [
            h("span", { className: "badge status-" + step.status, text: STATUS_TEXT[step.status] }),
          ]),
          h("td", { className: "check-title" }, [
            step.title,
            step.required ? null : h("span", { className: "muted", text: " (optional)" }),
          ]),
          detail,
        ]),
      );
    });
    return h("table", { className: "checks" }, [
      h("thead", null, [
        h("tr", null, [
          h("th", { text: "check" }),
          h("th", { text: "status" }),
          h("th", { text: "what" }),
          h("th", { text: "finding" }),
        ]),
      ]),
      body,
    ]);
  }

  function instanceView(instance) {
    var closed = false;
    var head = null;
    /** Entries known to exist (the head's count, then every live state seen). */
    var count = 0;
    var status = "running";
    /** Loaded pages by index: {index, header, lines, entries (by position), check}. */
    var pages = {};
    /** Headers of pages read, kept after their entries are dropped (a page's check reads the next one's). */
    var headers = {};
    var requested = {};
    /** The pages shown: lo to hi; `follow`: the view stays on the latest page as live states come. */
    var shown = null;
    var follow = true;
    var states = {};
    var fresh = {};
    var report = null;
    var source = null;
    var renderTimer = null;
    var verifyTimer = null;
    var verifyRound = 0;
    var loading = {};
    var queue = [];
    var active = 0;
    var problem = null;

    clear(app);
    var commandTarget = pageTarget;
    var instanceNote =
      "It trusts only the chain and the registry addresses of deployments/" +
      (commandTarget.network || "<network>") +
      " in your own copy of statetrail; --rpc <url> reads the chain through an endpoint of your choice.";
    var commandCode = h("code", { id: "instance-verify-command", text: verifyCommand(commandTarget, instance) });
    setBannerCommand(commandCode.textContent, instanceNote);
    var statusLine = h("p", { id: "instance-line" }, ["Loading…"]);
    var live = h("span", { id: "live", className: "live", "data-state": "connecting", text: "connecting…" });
    var issuerBox = h("section", { id: "issuer" });
    var verificationBox = h("section", { id: "verification" }, [
      h("h2", { text: "Verification by the issuer's own server" }),
    ]);
    var verdictBox = h("div", { id: "verdict", className: "verdict verdict-pending", "data-verdict": "pending" }, [
      claimLabel(),
      h("span", { className: "verdict-word", text: "VERIFYING…" }),
    ]);
    var checkYourself = h("div", { id: "check-yourself", className: "check-yourself verify-command" }, [
      h("span", { className: "claim-label", text: "— check it yourself:" }),
      commandCode,
      copyButton(commandCode),
    ]);
    var checksBox = h("div", { id: "checks" });
    verificationBox.appendChild(verdictBox);
    verificationBox.appendChild(checkYourself);
    verificationBox.appendChild(checksBox);
    var timelineBox = h("section", { id: "timeline" }, [h("h2", { text: "Timeline" })]);
    var pager = h("nav", { id: "pager", className: "pager" });
    var timelineBody = h("div", { id: "timeline-body" });
    timelineBox.appendChild(pager);
    timelineBox.appendChild(timelineBody);
    app.appendChild(h("nav", { className: "crumbs" }, [h("a", { href: "#/", text: "← issuer and instances" })]));
    app.appendChild(h("h2", null, ["Instance ", code(instance, "hash")]));
    app.appendChild(statusLine);
    app.appendChild(issuerBox);
    app.appendChild(verificationBox);
    app.appendChild(timelineBox);

    function pageSize() {
      return head.page_size;
    }

    function lastPage() {
      return Math.max(0, Math.ceil(count / pageSize()) - 1);
    }

    function renderHeader() {
      clear(statusLine);
      statusLine.appendChild(
        h("span", {
          id: "instance-status",
          className: "instance-status status-" + status,
          "data-status": status,
          text: status,
        }),
      );
      statusLine.appendChild(document.createTextNode(" · "));
      statusLine.appendChild(h("span", { id: "state-count", "data-count": count, text: count + " states" }));
      statusLine.appendChild(document.createTextNode(" · model "));
      statusLine.appendChild(h("a", { href: "/models/" + head.model_hash }, [code(shortHex(head.model_hash), "hash")]));
      statusLine.appendChild(document.createTextNode(" · created in block "));
      statusLine.appendChild(
        explorerLink(head.chain_id, "/block/" + head.created.block_nr, String(head.created.block_nr)),
      );
      statusLine.appendChild(document.createTextNode(" · "));
      statusLine.appendChild(h("a", { href: "/instances/" + instance + "/protocol", text: "protocol head" }));
      statusLine.appendChild(document.createTextNode(" · "));
      statusLine.appendChild(live);
    }

    function pagerButton(id, label, action) {
      var button = h("button", { type: "button", id: id, className: "pager-button", text: label });
      button.addEventListener("click", action);
      return button;
    }

    // The pager's controls are made once and updated in place: live states must not reset a seq being typed.
    var firstButton = pagerButton("page-first", "⇤ first", showFirst);
    var olderButton = pagerButton("load-older", "load older", loadOlder);
    var position = h("span", { id: "pager-position", className: "pager-position" });
    var newerButton = pagerButton("load-newer", "load newer", loadNewer);
    var latestButton = pagerButton("page-latest", "⇥ latest", showLatest);
    var jumpInput = h("input", {
      type: "number",
      id: "jump-seq",
      min: 0,
      placeholder: "seq",
      "aria-label": "jump to state number",
    });
    var jumpForm = h("form", { id: "jump", className: "jump" }, [
      h("label", { for: "jump-seq", text: "jump to #" }),
      jumpInput,
      h("button", { type: "submit", id: "jump-go", className: "pager-button", text: "go" }),
    ]);
    jumpForm.addEventListener("submit", function (event) {
      event.preventDefault();
      var seq = Number(jumpInput.value);
      if (jumpInput.value !== "" && Number.isInteger(seq) && seq >= 0 && seq < count) jumpTo(seq);
    });
    var pageProblem = h("p", { id: "page-problem", className: "status-failed" });

    function renderPager() {
      if (!head || !shown) return;
      if (!pager.firstChild) {
        [firstButton, olderButton, position, newerButton, latestButton, jumpForm, pageProblem].forEach(function (node) {
          pager.appendChild(node);
        });
      }
      var last = lastPage();
      var size = pageSize();
      var from = shown.lo * size;
      var to = Math.min(count, (shown.hi + 1) * size) - 1;
      firstButton.disabled = shown.lo === 0;
      olderButton.disabled = shown.lo === 0;
      newerButton.disabled = shown.hi >= last;
      latestButton.disabled = shown.hi >= last && follow;
      latestButton.textContent = shown.hi >= last ? "⇥ latest" : "⇥ latest (" + (count - 1 - to) + " newer)";
      position.setAttribute("data-lo", shown.lo);
      position.setAttribute("data-hi", shown.hi);
      position.setAttribute("data-pages", last + 1);
      position.textContent =
        (shown.lo === shown.hi ? "page " + (shown.lo + 1) : "pages " + (shown.lo + 1) + "–" + (shown.hi + 1)) +
        " of " +
        (last + 1) +
        (to >= from ? " · states #" + from + "–#" + to : "") +
        " of " +
        count;
      jumpInput.setAttribute("max", Math.max(0, count - 1));
      pageProblem.textContent = problem || "";
      pageProblem.hidden = !problem;
    }

    /** Loads page `index` once (concurrent callers share the request); resolves with the page or null. */
    function loadPage(index) {
      // A page begun by live states only (no header) is read too: it may miss states from before the stream.
      if (pages[index] && pages[index].header) return Promise.resolve(pages[index]);
      if (requested[index]) return requested[index];
      // No state of it is known yet (an instance without states may have no page file): live states will come.
      if (index * pageSize() >= count) return Promise.resolve(null);
      var promise = fetchPage(instance, index).then(
        function (page) {
          delete requested[index];
          if (closed) return null;
          var existing = pages[index];
          page.check = { state: "pending" };
          // Live states that arrived before the page: keep those after what the page holds.
          if (existing) {
            existing.entries.forEach(function (entry, position) {
              if (entry && !page.entries[position]) page.entries[position] = entry;
            });
          }
          pages[index] = page;
          headers[index] = page.header;
          page.entries.forEach(function (entry) {
            if (entry) queueState(entry);
          });
          checkAround(index);
          return page;
        },
        function (error) {
          delete requested[index];
          if (!closed) {
            problem = error.message;
            renderPager();
          }
          return null;
        },
      );
      requested[index] = promise;
      return promise;
    }

    /** Re-checks page `index` and the page before it (whose check reads this one's header). */
    function checkAround(index) {
      if (pages[index]) checkPage(pages[index]);
      if (pages[index - 1]) checkPage(pages[index - 1]);
    }

    /**
     * A convenience, not a verification: do this page's lines, from its header's accumulator_before, reach the next
     * page's accumulator_before, or (the head's last page) the head's accumulator? Checked against the head read when
     * the page opened; the issuer's server serves both, so a match says the pages agree with the head it signed,
     * nothing about the chain.
     */
    function checkPage(page) {
      var size = pageSize();
      var headLast = Math.max(0, Math.ceil(head.entries / size) - 1);
      var expected = null;
      var against = null;
      var lines = page.lines;
      if (page.index === headLast) {
        expected = head.accumulator;
        against = "the head's accumulator";
        lines = lines.slice(0, Math.max(0, head.entries - page.index * size));
      } else if (page.index < headLast && headers[page.index + 1]) {
        expected = headers[page.index + 1].accumulator_before;
        against = "the next page's header";
        lines = lines.slice(0, size);
      } else if (page.index > headLast) {
        page.check = { state: "unchecked", text: "newer than the head this page was opened with: not checked" };
        scheduleRender();
        return;
      } else {
        page.check = { state: "unchecked", text: "not checked: the next page is not loaded" };
        scheduleRender();
        return;
      }
      var wanted = expected;
      var round = (page.checkRound = (page.checkRound || 0) + 1);
      accumulate(page.header.accumulator_before, lines).then(
        function (reached) {
          if (closed || page.checkRound !== round) return;
          if (reached === null) page.check = { state: "unchecked", text: "not checked: no SubtleCrypto here" };
          else if (reached === wanted) page.check = { state: "ok", text: "its entries chain to " + against };
          else
            page.check = {
              state: "mismatch",
              text: "its entries do NOT chain to " + against + ": this page differs from what the head commits to",
            };
          scheduleRender();
        },
        function () {
          if (!closed && page.checkRound === round)
            page.check = { state: "unchecked", text: "not checked: hashing failed" };
          scheduleRender();
        },
      );
    }

    function queueState(entry) {
      if (loading[entry.state_hash]) return;
      loading[entry.state_hash] = true;
      queue.push(entry.state_hash);
      pump();
    }

    /** Shows pages lo to hi, loading what is missing; pages far from them are dropped from memory. */
    function show(lo, hi, andThen) {
      shown = { lo: lo, hi: hi };
      problem = null;
      Object.keys(pages).forEach(function (key) {
        var index = Number(key);
        if (index < lo - 1 || index > hi + 1) delete pages[index];
      });
      renderPager();
      scheduleRender();
      var wanted = [];
      for (var index = lo; index <= hi; index += 1) wanted.push(loadPage(index));
      return Promise.all(wanted).then(function () {
        if (closed) return;
        renderPager();
        renderTimeline();
        if (andThen) andThen();
      });
    }

    function showLatest() {
      follow = true;
      var last = lastPage();
      show(last, last);
    }

    function showFirst() {
      follow = lastPage() === 0;
      show(0, 0);
    }

    function loadOlder() {
      if (!shown || shown.lo === 0) return;
      var lo = shown.lo - 1;
      var hi = Math.min(shown.hi, lo + MAX_SHOWN_PAGES - 1);
      if (hi < shown.hi) follow = false;
      show(lo, hi);
    }

    function loadNewer() {
      if (!shown || shown.hi >= lastPage()) return;
      var hi = shown.hi + 1;
      var lo = Math.max(shown.lo, hi - MAX_SHOWN_PAGES + 1);
      follow = hi === lastPage();
      show(lo, hi);
    }

    function jumpTo(seq) {
      var index = Math.floor(seq / pageSize());
      follow = index === lastPage();
      var keep = shown && index >= shown.lo && index <= shown.hi;
      show(keep ? shown.lo : index, keep ? shown.hi : index, function () {
        var items = timelineBody.querySelectorAll("li.state.target");
        for (var i = 0; i < items.length; i += 1) items[i].classList.remove("target");
        var item = timelineBody.querySelector('li.state[data-seq="' + seq + '"]');
        if (item) {
          item.classList.add("target");
          if (item.scrollIntoView) item.scrollIntoView({ block: "center" });
        }
      });
    }

    function pageCheckNode(page) {
      var check = page.check || { state: "pending" };
      var text =
        check.state === "pending" ? "checking the accumulator chain in your browser…" : check.text || check.state;
      return h("p", { className: "page-check page-check-" + check.state, "data-page-check": check.state }, [
        h("span", {
          className: "page-check-mark",
          text: check.state === "mismatch" ? "✗ " : check.state === "ok" ? "✓ " : "",
        }),
        "Page " + (page.index + 1) + " (pages/" + page.index + "): " + text + ". ",
        h("span", {
          className: "muted",
          text: "A convenience computed in this browser from what this server sent, not a verification: only statetrail verify checks the chain.",
        }),
      ]);
    }

    function renderTimeline() {
      renderTimer = null;
      if (closed || !head || !shown) return;
      var target = timelineBody.querySelector("li.state.target");
      var targetSeq = target ? target.getAttribute("data-seq") : null;
      clear(timelineBody);
      if (count === 0) {
        timelineBody.appendChild(h("p", { className: "muted", text: "No state has been registered yet." }));
        return;
      }
      var bad = failingSeqs(report);
      for (var index = shown.lo; index <= shown.hi; index += 1) {
        var page = pages[index];
        var section = h("section", { className: "page", "data-page": index });
        if (!page) {
          section.appendChild(h("p", { className: "muted", text: "Page " + (index + 1) + ": loading…" }));
        } else {
          if (page.header) section.appendChild(pageCheckNode(page));
          section.appendChild(timelineNode(buildTree(page.entries, states), head.chain_id, bad, fresh));
        }
        timelineBody.appendChild(section);
      }
      if (targetSeq !== null) {
        var again = timelineBody.querySelector('li.state[data-seq="' + targetSeq + '"]');
        if (again) again.classList.add("target");
      }
    }

    function scheduleRender() {
      if (renderTimer === null) renderTimer = setTimeout(renderTimeline, 30);
    }

    function renderVerification() {
      clear(checksBox);
      verdictBox.className = "verdict verdict-" + report.verdict;
      verdictBox.setAttribute("data-verdict", report.verdict);
      clear(verdictBox);
      var words = VERDICT_TEXT[report.verdict];
      verdictBox.appendChild(claimLabel());
      verdictBox.appendChild(h("span", { className: "verdict-word", text: words[0] }));
      verdictBox.appendChild(
        h("span", {
          className: "verdict-line",
          text:
            " " +
            words[1] +
            " · " +
            (report.subject ? report.subject.states : "?") +
            " states, read at block " +
            report.block_number +
            ", " +
            isoTime(report.verified_at),
        }),
      );
      checksBox.appendChild(checksNode(report));
    }

    function loadVerification() {
      verifyTimer = null;
      var round = ++verifyRound;
      verdictBox.setAttribute("data-busy", "true");
      getJson("/instances/" + instance + "/verification").then(
        function (result) {
          if (closed || round !== verifyRound) return;
          report = result;
          verdictBox.removeAttribute("data-busy");
          renderVerification();
          scheduleRender();
        },
        function (error) {
          if (closed || round !== verifyRound) return;
          verdictBox.removeAttribute("data-busy");
          verdictBox.className = "verdict verdict-unavailable";
          verdictBox.setAttribute("data-verdict", "unavailable");
          clear(verdictBox);
          verdictBox.appendChild(h("span", { className: "verdict-word", text: "NOT VERIFIED HERE" }));
          verdictBox.appendChild(
            h("span", { className: "verdict-line", text: " " + error.message + " — run statetrail verify yourself." }),
          );
        },
      );
    }

    function scheduleVerification(delay) {
      clearTimeout(verifyTimer);
      verifyTimer = setTimeout(loadVerification, delay);
    }

    /** State data of the entries shown is fetched six at a time, by hash, from this origin. */
    function fetchState(hash) {
      active += 1;
      getStateDocument(hash)
        .then(
          function (data) {
            states[hash] = data;
          },
          function () {
            /* shown without nesting */
          },
        )
        .then(function () {
          active -= 1;
          scheduleRender();
          pump();
        });
    }

    function pump() {
      while (!closed && active < 6 && queue.length > 0) fetchState(queue.shift());
    }

    /**
     * A live state: counted; kept when its page is shown (or is the page after the latest one shown while the view
     * follows the run), else only counted (the pager offers the newer pages).
     */
    function addLive(entry) {
      if (!entry || typeof entry.seq !== "number" || entry.seq < 0) return;
      var grew = entry.seq + 1 > count;
      if (grew) count = entry.seq + 1;
      var index = Math.floor(entry.seq / pageSize());
      var position = entry.seq % pageSize();
      if (follow && shown && index === shown.hi + 1) {
        shown.hi = index;
        if (shown.hi - shown.lo + 1 > MAX_SHOWN_PAGES) shown.lo += 1;
      }
      if (shown && index >= shown.lo && index <= shown.hi) {
        var page = pages[index];
        if (!page) {
          page = pages[index] = {
            index: index,
            header: null,
            lines: [],
            entries: [],
            check: { state: "unchecked", text: "arrived live: not checked" },
          };
          if (position !== 0) loadPage(index); // its earlier entries
        }
        var known = page.entries[position];
        if (!known || known.state_hash !== entry.state_hash) {
          page.entries[position] = entry;
          fresh[entry.seq] = true;
          queueState(entry);
          scheduleRender();
        }
      }
      if (grew) {
        renderHeader();
        renderPager();
      }
    }

    function connect() {
      // Live states after the head's last one: `after` for the first connection; on a reconnect the browser sends
      // Last-Event-ID (the last seq received), which the server prefers.
      source = new EventSource("/instances/" + instance + "/events" + (count > 0 ? "?after=" + (count - 1) : ""));
      source.addEventListener("open", function () {
        live.className = "live on";
        live.setAttribute("data-state", "live");
        live.textContent = "● live";
      });
      source.addEventListener("error", function () {
        if (closed) return;
        live.className = "live off";
        live.setAttribute("data-state", "reconnecting");
        live.textContent = "reconnecting…";
      });
      source.addEventListener("state", function (event) {
        var entry;
        try {
          entry = JSON.parse(event.data);
        } catch {
          return;
        }
        var before = count;
        addLive(entry);
        if (count !== before) scheduleVerification(1500);
      });
      source.addEventListener("status", function (event) {
        var data;
        try {
          data = JSON.parse(event.data);
        } catch {
          return;
        }
        status = data.status;
        renderHeader();
        scheduleVerification(300);
      });
    }

    getJson("/instances/" + instance + "/protocol").then(
      function (loaded) {
        if (closed) return;
        head = loaded;
        count = loaded.entries;
        status = loaded.status;
        document.title = "statetrail · instance " + instance.slice(0, 12) + "…";
        renderHeader();
        // The instance's own issuer, as its head names it (the page's identity may have moved on).
        commandTarget = {
          network: pageTarget.network,
          ensName: loaded.issuer.ens_name || null,
          issuerUrl: loaded.issuer.url || null,
        };
        commandCode.textContent = verifyCommand(commandTarget, instance);
        setBannerCommand(commandCode.textContent, instanceNote);
        clear(issuerBox);
        issuerBox.appendChild(h("h2", { text: "Issuer" }));
        issuerBox.appendChild(
          issuerPanel({
            address: loaded.issuer.address,
            ens_name: loaded.issuer.ens_name,
            url: loaded.issuer.url,
            certificate_fingerprint: loaded.issuer.certificate_fingerprint,
            chain_id: loaded.chain_id,
          }),
        );
        var asked = /[?&]page=(\d{1,9})(?:&|$)/.exec(location.search);
        var first = asked ? Math.min(Number(asked[1]), lastPage()) : lastPage();
        follow = first === lastPage();
        show(first, first);
        connect();
        scheduleVerification(0);
      },
      function (error) {
        if (closed) return;
        clear(statusLine);
        statusLine.appendChild(
          h("span", { className: "status-failed", text: "Cannot load this instance: " + error.message }),
        );
      },
    );

    return {
      close: function () {
        closed = true;
        clearTimeout(renderTimer);
        clearTimeout(verifyTimer);
        if (source) source.close();
      },
    };
  }

  /** What every verdict of this page is: the issuer's server's claim. */
  function claimLabel() {
    return h("span", { className: "claim-label", text: "The issuer's server says:" });
  }

  // ---------------------------------------------------------------- routing

  var bannerCopy = document.getElementById("copy-command");
  if (bannerCopy && bannerCommand) {
    var copy = copyButton(bannerCommand);
    copy.id = "copy-command";
    bannerCopy.replaceWith(copy);
  }

  function route() {
    if (current) current.close();
    // #/instances/<hash>, or the server-rendered /instances/<hash>/timeline (no hash yet): one instance.
    var match =
      /^#\/instances\/([0-9a-f]{64})$/.exec(location.hash) ||
      (location.hash === "" || location.hash === "#"
        ? /^\/instances\/([0-9a-f]{64})\/timeline$/.exec(location.pathname)
        : null);
    current = match ? instanceView(match[1]) : indexView();
  }

  window.addEventListener("hashchange", route);
  var loadingNote = document.getElementById("loading");
  if (loadingNote) loadingNote.remove();
  route();
})();
