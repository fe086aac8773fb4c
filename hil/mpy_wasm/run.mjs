// Run Python code inside the real MicroPython interpreter (the npm WebAssembly build).
//
// usage: node run.mjs [--lib DIR]... [--heap BYTES] SCRIPT.py
// Every .py file under each --lib DIR is copied into the interpreter's memory filesystem
// under /lib (sub-folders kept), so `import` finds it as it would on a board. The script runs
// with runPythonAsync, so top-level `await` and asyncio work. Exit code 1 on any exception.
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

const args = process.argv.slice(2);
const libs = [];
let heapsize = 4 * 1024 * 1024;
let script = null;
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--lib") libs.push(args[++i]);
  else if (args[i] === "--heap") heapsize = Number(args[++i]);
  else script = args[i];
}
if (!script) {
  console.error("usage: node run.mjs [--lib DIR]... [--heap BYTES] SCRIPT.py");
  process.exit(2);
}

const mp = await loadMicroPython({
  heapsize,
  stdout: (line) => process.stdout.write(line + "\n"),
  stderr: (line) => process.stderr.write(line + "\n"),
});

function mkdirs(path) {
  let cur = "";
  for (const part of path.split("/").filter(Boolean)) {
    cur += "/" + part;
    try { mp.FS.mkdir(cur); } catch (e) { /* exists */ }
  }
}

function copyTree(root, dir) {
  for (const name of readdirSync(dir)) {
    const full = join(dir, name);
    if (statSync(full).isDirectory()) {
      if (name !== "__pycache__") copyTree(root, full);
    } else if (name.endsWith(".py") || name.endsWith(".json")) {
      const target = "/lib/" + relative(root, full);
      mkdirs(target.substring(0, target.lastIndexOf("/")));
      mp.FS.writeFile(target, readFileSync(full));
    }
  }
}

mkdirs("/lib");
for (const lib of libs) copyTree(lib, lib);
try {
  await mp.runPythonAsync("import sys\nsys.path.insert(0, '/lib')\n" + readFileSync(script, "utf8"));
} catch (err) {
  console.error(String(err && err.message ? err.message : err));
  process.exit(1);
}
