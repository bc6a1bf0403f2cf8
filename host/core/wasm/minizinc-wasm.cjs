// Runs the npm `minizinc` package's WebAssembly MiniZinc (2.10: Gecode, Chuffed, HiGHS, CBC)
// under plain node, as a command line: `node minizinc-wasm.cjs PACKAGE_DIR MINIZINC_ARGS...`.
// The package's worker script expects a Web Worker; this gives it the two globals it uses
// (addEventListener, postMessage), loads the .wasm and .data from PACKAGE_DIR/dist, copies
// every argument that names an existing model/data file into the worker's in-memory file
// system, runs MiniZinc with the other arguments unchanged, and prints its stdout/stderr and
// exits with its exit code. memzinc's solver runner (host/src/solver.rs) calls it.
"use strict";
const fs = require("node:fs");
const path = require("node:path");

const [pkg, ...args] = process.argv.slice(2);
if (!pkg) {
  process.stderr.write("usage: node minizinc-wasm.cjs PACKAGE_DIR MINIZINC_ARGS...\n");
  process.exit(2);
}
const dist = path.join(pkg, "node_modules", "minizinc", "dist");
const files = {};
const mapped = args.map((arg, i) => {
  if (/\.(mzn|dzn|json|mzc|fzn)$/.test(arg) && fs.existsSync(arg)) {
    const name = `f${i}_${path.basename(arg)}`;
    files[name] = fs.readFileSync(arg, "utf8");
    return name;
  }
  return arg;
});

let onMessage = null;
let started = false;
globalThis.addEventListener = (type, fn) => {
  if (type === "message") onMessage = fn;
};
globalThis.postMessage = (msg) => {
  if (msg.type === "ready" && !started) {
    started = true;
    onMessage({ data: { files, args: mapped, jsonStream: false } });
  } else if (msg.type === "exit") {
    if (msg.stderr) process.stderr.write(msg.stderr);
    if (msg.message) process.stderr.write(msg.message + "\n");
    const code = typeof msg.code === "number" && msg.code >= 0 ? msg.code : 1;
    // The runtime stays alive for further runs: leave once stdout is flushed.
    process.stdout.write(msg.stdout || "", () => process.exit(code));
  } else if (msg.type === "error") {
    process.stderr.write((msg.message || "error") + "\n");
    process.exit(1);
  }
};
// The package marks its .js files as ES modules, where the worker's Node branch finds no
// `require`: evaluate it as a plain script with one.
const worker = fs.readFileSync(path.join(dist, "minizinc-worker.js"), "utf8");
require("node:vm").runInThisContext(`(function (require, __dirname, __filename) {${worker}\n})`)(
  require,
  dist,
  path.join(dist, "minizinc-worker.js"),
);
onMessage({
  data: {
    wasmURL: path.join(dist, "minizinc.wasm"),
    dataURL: path.join(dist, "minizinc.data"),
  },
});
