// A virtual meter node: the real firmware inside the MicroPython wasm interpreter.
//
// usage: node run_board.mjs --fw DIR --shims DIR --state DIR --uart PTY [--reset CAUSE] [--heap BYTES]
// The firmware's modules (--fw) and the board shims (--shims) are copied to /lib; the board's
// flash is /flash, loaded from --state and written back there every 50 ms (a power cut loses at
// most that). The UART is the pty --uart (non-blocking reads), the network is Node's TCP.
// Python reaches both through the globals below; everything is plain bytes as hex strings.
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, constants, statSync, writeFileSync, writeSync } from "node:fs";
import { join, relative } from "node:path";
import { installTcpGlobals } from "../mpy_wasm/tcp_globals.mjs";
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

const args = process.argv.slice(2);
const opt = { heap: 2 * 1024 * 1024, reset: "power" };
for (let i = 0; i < args.length; i += 2) opt[args[i].replace(/^--/, "")] = args[i + 1];
for (const k of ["fw", "shims", "state", "uart"]) {
  if (!opt[k]) { console.error(`run_board: --${k} is required`); process.exit(2); }
}

// ---- UART on the pty
const uartFd = openSync(opt.uart, constants.O_RDWR | constants.O_NOCTTY | constants.O_NONBLOCK);
let rx = Buffer.alloc(0);
const chunk = Buffer.alloc(1024);
function pump() {
  for (;;) {
    let n = 0;
    try { n = readSync(uartFd, chunk, 0, chunk.length, null); } catch (e) { if (e.code === "EAGAIN") return; throw e; }
    if (n <= 0) return;
    rx = Buffer.concat([rx, chunk.subarray(0, n)]);
  }
}
globalThis.uartAny = () => { pump(); return rx.length; };
globalThis.uartRead = (n) => { pump(); const out = rx.subarray(0, n); rx = rx.subarray(out.length); return out.toString("hex"); };
globalThis.uartWrite = (hex) => {
  const buf = Buffer.from(hex, "hex");
  let off = 0;
  while (off < buf.length) {
    try { off += writeSync(uartFd, buf, off); } catch (e) { if (e.code !== "EAGAIN") throw e; }
  }
  return buf.length;
};

// ---- TCP (the transport seam, shared with the REPL bridge)
installTcpGlobals();
globalThis.resetCause = opt.reset;

// ---- the interpreter and its files
const mp = await loadMicroPython({
  heapsize: Number(opt.heap),
  stdout: (line) => process.stdout.write(line + "\n"),
  stderr: (line) => process.stdout.write(line + "\n"),
});
function mkdirs(path) {
  let cur = "";
  for (const part of path.split("/").filter(Boolean)) {
    cur += "/" + part;
    try { mp.FS.mkdir(cur); } catch (e) { /* exists */ }
  }
}
function copyTree(root, dir, dest) {
  for (const name of readdirSync(dir)) {
    const full = join(dir, name);
    if (statSync(full).isDirectory()) continue;
    if (name.endsWith(".py") && name !== "main.py") mp.FS.writeFile(dest + "/" + relative(root, full), readFileSync(full));
  }
}
mkdirs("/lib");
mkdirs("/flash");
copyTree(opt.fw, opt.fw, "/lib");
copyTree(opt.shims, opt.shims, "/lib");
for (const name of readdirSync(opt.state)) mp.FS.writeFile("/flash/" + name, readFileSync(join(opt.state, name)));

const written = new Map();
function syncFlash() {
  for (const name of mp.FS.readdir("/flash")) {
    if (name === "." || name === "..") continue;
    const data = Buffer.from(mp.FS.readFile("/flash/" + name));
    const prev = written.get(name);
    if (!prev || Buffer.compare(prev, data) !== 0) { writeFileSync(join(opt.state, name), data); written.set(name, data); }
  }
}
setInterval(syncFlash, 50).unref();

// The firmware's main.py, with the network stream bridged to Node. asyncio.run does not exist in
// the wasm port, so the main coroutine is awaited at top level (runPythonAsync).
const boot = [
  "import os",
  "import transport",
  "import wasm_transport",
  "os.chdir('/flash')",
  "transport.open = wasm_transport.open",
  "import app",
  "node = app.make()",
  "if node is not None:",
  "    await node.main()",
].join("\n");
try {
  await mp.runPythonAsync("import sys\nsys.path.insert(0, '/lib')\n" + boot);
  syncFlash();
  process.exit(0);
} catch (err) {
  console.log(String(err && err.message ? err.message : err));
  syncFlash();
  process.exit(1);
}
