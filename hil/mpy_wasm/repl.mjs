// A MicroPython board whose serial line is this process's stdin/stdout: the real REPL of the npm
// wasm build (friendly and raw REPL, Ctrl-A/B/C/D) so that mpremote, through a pty from socat
// (`socat pty,raw,echo=0,link=PORT EXEC:"node repl.mjs ..."`), drives it as it drives a board.
//
// usage: node repl.mjs --flash DIR [--rom DIR]... [--uart PTY] [--heap BYTES]
//                      [--flash-bytes N] [--read-only 1] [--drop-after BYTES] [--main 0|1]
//
// The board's filesystem is /flash (the working directory, first on sys.path), loaded from the
// host folder DIR and written back to it after every REPL command and before any reset, so a
// reset or a new process boots from what was copied. --rom folders are the board's built-in
// modules (/rom, after /flash on sys.path): machine, network, the transport bridge. --flash-bytes
// makes writes beyond N bytes of files fail with ENOSPC, --read-only with EROFS, and
// --drop-after ends the line (this process) after that many bytes from the host: the failures a
// deploy must survive.
//
// The interpreter runs in a child process (this file with --child): a hard reset (machine.reset)
// or a Ctrl-C while main.py runs ends the child and starts a new one, the only way to stop an
// asyncio program that lives on Node's event loop. A soft reset (Ctrl-D at an empty raw REPL)
// restarts the interpreter in place and, as on a board, does not run main.py.
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { installTcpGlobals } from "./tcp_globals.mjs";

const args = process.argv.slice(2);
const opt = { heap: String(2 * 1024 * 1024), main: "1", rom: [] };
for (let i = 0; i < args.length; i++) {
  const key = args[i].replace(/^--/, "");
  if (key === "child") opt.child = true;
  else if (key === "rom") opt.rom.push(args[++i]);
  else opt[key] = args[++i];
}
if (!opt.flash) {
  console.error("repl.mjs: --flash DIR is required");
  process.exit(2);
}
const log = (msg) => process.stderr.write(`repl.mjs: ${msg}\n`);


// ---------------------------------------------------------------- the serial line (parent)
function supervise() {
  let board = null;
  let running = false; // main.py is running (a Ctrl-C restarts the board at the REPL)
  let received = 0;
  const drop = opt["drop-after"] ? Number(opt["drop-after"]) : Infinity;
  const start = (runMain) => {
    const argv = [fileURLToPath(import.meta.url), "--child", "--main", runMain ? "1" : "0"];
    for (const k of ["flash", "heap", "uart", "flash-bytes", "read-only"]) if (opt[k]) argv.push("--" + k, opt[k]);
    for (const r of opt.rom) argv.push("--rom", r);
    const proc = spawn(process.execPath, argv, { stdio: ["pipe", "pipe", "inherit"] });
    board = proc;
    running = runMain;
    proc.stdout.on("data", (d) => { if (board === proc) process.stdout.write(d); });
    proc.on("exit", (code) => {
      if (board !== proc) return;
      if (code === 4) start(true); // machine.reset(): a hard reset boots main.py
      else if (code === 5) running = false; // main.py returned: the REPL is free
      else { log(`board exited (${code})`); process.exit(code ?? 1); }
    });
    proc.stdin.on("error", () => {});
  };
  process.stdin.on("data", (data) => {
    if (received + data.length > drop) {
      log(`line dropped after ${drop} bytes`);
      board?.kill("SIGKILL");
      process.exit(3);
    }
    received += data.length;
    if (running && data.includes(3)) { // Ctrl-C interrupts main.py: a fresh board at the REPL
      const old = board;
      board = null;
      old.kill("SIGKILL");
      process.stdout.write("\r\nTraceback (most recent call last):\r\nKeyboardInterrupt: \r\n");
      start(false);
      const rest = data.subarray(data.lastIndexOf(3) + 1);
      if (rest.length) board.stdin.write(rest);
      return;
    }
    board?.stdin.write(data);
  });
  process.stdin.on("end", () => { board?.kill("SIGKILL"); process.exit(0); });
  for (const sig of ["SIGTERM", "SIGINT", "SIGHUP"]) process.on(sig, () => { board?.kill("SIGKILL"); process.exit(0); });
  start(opt.main === "1");
}

// ---------------------------------------------------------------- the board (child)
async function child() {
  const { loadMicroPython } = await import("@micropython/micropython-webassembly-pyscript");
  const flashBytes = opt["flash-bytes"] ? Number(opt["flash-bytes"]) : Infinity;
  const readOnly = opt["read-only"] === "1";
  let out = [];
  const flush = () => { if (out.length) { process.stdout.write(Buffer.from(out)); out = []; } };
  const put = (bytes) => { for (const b of bytes) out.push(b); if (out.length > 4096) flush(); else setImmediate(flush); };
  if (opt.uart) uartGlobals(opt.uart);
  installTcpGlobals();
  globalThis.resetCause = "power";

  let mp = null;
  let written = new Map();
  const load = async () => {
    mp = await loadMicroPython({ heapsize: Number(opt.heap), linebuffer: false, stdout: put, stderr: put });
    mkdirs(mp, "/flash");
    mkdirs(mp, "/rom");
    for (const dir of opt.rom) copyIn(mp, dir, "/rom", (n) => n.endsWith(".py"));
    mkdirSync(opt.flash, { recursive: true });
    written = new Map();
    copyIn(mp, opt.flash, "/flash", () => true, written);
    limitFlash(mp, flashBytes, readOnly);
    emptyPathIsCwd(mp);
    mp.runPython(PORT_FIXES);
  };
  const sync = () => syncOut(mp, "/flash", opt.flash, written);
  const die = (code) => { try { sync(); } catch (e) { log(`flash sync failed: ${e}`); } flush(); process.exit(code); };

  await load();
  if (opt.main === "1" && existsSync(join(opt.flash, "main.py"))) {
    // As a board boots: main.py from the flash. The wasm port's asyncio has no run(): the main
    // coroutine is awaited at top level; the network goes through the firmware's transport seam.
    const boot = [
      "import asyncio",
      "_main = []",
      "asyncio.run = _main.append",
      "try:",
      "    import transport, wasm_transport",
      "    transport.open = wasm_transport.open",
      "except ImportError as e:",
      "    print('boot: no transport bridge:', e)",
      "exec(open('main.py').read(), {'__name__': '__main__'})",
      "for _coro in _main:",
      "    await _coro",
    ].join("\n");
    try {
      await mp.runPythonAsync(boot);
      put(Buffer.from("main.py returned\r\n"));
    } catch (err) {
      put(Buffer.from(String(err && err.message ? err.message : err).replace(/\n/g, "\r\n") + "\r\n"));
    }
    die(5);
  }

  mp.replInit();
  // Raw REPL bookkeeping: whether we are in it, and whether its line is empty (Ctrl-D on an empty
  // line is a soft reset; a non-zero return after a command is SystemExit, i.e. machine.reset()).
  let raw = false;
  let lineEmpty = true;
  let pending = Buffer.alloc(0);
  let busy = false;
  const feedAll = async () => {
    if (busy) return;
    busy = true;
    while (pending.length) {
      // mpremote asks for raw-paste mode (Ctrl-E A Ctrl-A); the wasm build cannot read stdin
      // synchronously, so it answers as a board without raw-paste does: "R\x00", then raw REPL.
      if (raw && pending[0] === 5) {
        if (pending.length < 3) break;
        if (pending[1] === 0x41 && pending[2] === 1) {
          pending = pending.subarray(3);
          put([0x52, 0x00]);
          continue;
        }
      }
      const c = pending[0];
      pending = pending.subarray(1);
      const soft = raw && c === 4 && lineEmpty;
      let ret;
      try {
        ret = await mp.replProcessCharWithAsyncify(c);
      } catch (e) {
        log(`repl: ${e}`);
        ret = 0;
      }
      if (c === 1) { raw = true; lineEmpty = true; }
      else if (c === 2) raw = false;
      else if (raw && (c === 4 || c === 3)) lineEmpty = true;
      else if (raw) lineEmpty = false;
      if (c === 4 && raw) sync();
      if (ret) {
        if (!soft) die(4); // SystemExit from a command: machine.reset()
        sync();
        flush();
        put(Buffer.from("MPY: soft reboot\r\n"));
        await load();
        mp.replInit();
        for (const ch of Buffer.from("\x01")) await mp.replProcessCharWithAsyncify(ch);
        raw = true;
        lineEmpty = true;
      }
    }
    busy = false;
    flush();
  };
  process.stdin.on("data", (d) => { pending = Buffer.concat([pending, d]); feedAll(); });
  process.stdin.on("end", () => die(0));
}

// What a board's port does and this one does not: errors carry MicroPython's errno values
// (Emscripten's own differ: ENOENT is 44 there, 2 in `errno`), which mpremote relies on to tell
// "no such file" from a failure. Run once per interpreter, before anything else.
const PORT_FIXES = `
import os, sys, builtins
_E = {44: 2, 20: 17, 51: 28, 69: 30, 2: 13, 54: 20, 31: 21, 55: 39, 28: 22, 8: 9, 29: 5, 63: 1, 43: 19}
def _fix(f):
    def call(*a):
        try:
            return f(*a)
        except OSError as e:
            n = e.args[0] if e.args else 0
            if isinstance(n, int) and n in _E:
                raise OSError(_E[n])
            raise
    return call
for _n in ('stat', 'remove', 'rename', 'mkdir', 'rmdir', 'listdir', 'ilistdir', 'chdir', 'statvfs'):
    if hasattr(os, _n):
        setattr(os, _n, _fix(getattr(os, _n)))
builtins.open = _fix(open)
os.chdir('/flash')
sys.path[:] = [''] + [p for p in sys.path if p == '.frozen'] + ['/rom', '/lib']
del _n
`;

function mkdirs(mp, path) {
  let cur = "";
  for (const part of path.split("/").filter(Boolean)) {
    cur += "/" + part;
    try { mp.FS.mkdir(cur); } catch (e) { /* exists */ }
  }
}

function copyIn(mp, hostDir, dest, keep, seen) {
  for (const name of readdirSync(hostDir)) {
    const full = join(hostDir, name);
    if (statSync(full).isDirectory()) {
      if (name === "__pycache__") continue;
      mkdirs(mp, dest + "/" + name);
      copyIn(mp, full, dest + "/" + name, keep, seen);
    } else if (keep(name)) {
      const data = readFileSync(full);
      mp.FS.writeFile(dest + "/" + name, data);
      seen?.set(dest + "/" + name, Buffer.from(data));
    }
  }
}

// Write /flash back to the host folder: changed files, new folders, and removals.
function syncOut(mp, dir, hostDir, written) {
  const present = new Set();
  const walk = (path, host) => {
    mkdirSync(host, { recursive: true });
    for (const name of mp.FS.readdir(path)) {
      if (name === "." || name === "..") continue;
      const p = path + "/" + name;
      const h = join(host, name);
      if (mp.FS.isDir(mp.FS.stat(p).mode)) { present.add(p); walk(p, h); continue; }
      present.add(p);
      const data = Buffer.from(mp.FS.readFile(p));
      const prev = written.get(p);
      if (!prev || Buffer.compare(prev, data) !== 0) { writeFileSync(h, data); written.set(p, data); }
    }
  };
  walk(dir, hostDir);
  const hostWalk = (host, path) => {
    for (const name of readdirSync(host)) {
      const h = join(host, name);
      const p = path + "/" + name;
      if (!present.has(p)) { rmSync(h, { recursive: true, force: true }); written.delete(p); }
      else if (statSync(h).isDirectory()) hostWalk(h, p);
    }
  };
  hostWalk(hostDir, dir);
}

// MicroPython's VFS takes "" for the working directory (mpremote stats ":" as ""); Emscripten's
// FS calls it ENOENT.
function emptyPathIsCwd(mp) {
  const FS = mp.FS;
  for (const name of ["stat", "lstat"]) {
    const orig = FS[name];
    FS[name] = function (path, ...rest) { return orig.call(this, path === "" ? FS.cwd() : path, ...rest); };
  }
}

// A flash of limited size, or a read-only one: Emscripten's FS calls fail as the board's would.
function limitFlash(mp, limit, readOnly) {
  const FS = mp.FS;
  const used = () => {
    let total = 0;
    const walk = (p) => {
      for (const n of FS.readdir(p)) {
        if (n === "." || n === "..") continue;
        const st = FS.stat(p + "/" + n);
        if (FS.isDir(st.mode)) walk(p + "/" + n); else total += st.size;
      }
    };
    walk("/flash");
    return total;
  };
  const onFlash = (stream) => stream && stream.path && stream.path.startsWith("/flash");
  const write = FS.write;
  FS.write = function (stream, buffer, offset, length, position, canOwn) {
    if (onFlash(stream)) {
      if (readOnly) throw new FS.ErrnoError(69); // EROFS
      if (used() + length > limit) throw new FS.ErrnoError(51); // ENOSPC
    }
    return write.call(this, stream, buffer, offset, length, position, canOwn);
  };
  if (readOnly) {
    for (const name of ["mkdir", "unlink", "rename", "rmdir"]) {
      const orig = FS[name];
      FS[name] = function (path, ...rest) {
        if (String(path).startsWith("/flash")) throw new FS.ErrnoError(69);
        return orig.call(this, path, ...rest);
      };
    }
    const open = FS.open;
    FS.open = function (path, flags, ...rest) {
      const writing = typeof flags === "number" ? (flags & 3) !== 0 : /[wa+]/.test(String(flags));
      if (writing && String(path).startsWith("/flash")) throw new FS.ErrnoError(69);
      return open.call(this, path, flags, ...rest);
    };
  }
}

// ---------------------------------------------------------------- the board's UART and network
function uartGlobals(path) {
  const fd = fs.openSync(path, fs.constants.O_RDWR | fs.constants.O_NOCTTY | fs.constants.O_NONBLOCK);
  let rx = Buffer.alloc(0);
  const chunk = Buffer.alloc(1024);
  const pump = () => {
    for (;;) {
      let n = 0;
      try { n = fs.readSync(fd, chunk, 0, chunk.length, null); } catch (e) { if (e.code === "EAGAIN") return; throw e; }
      if (n <= 0) return;
      rx = Buffer.concat([rx, chunk.subarray(0, n)]);
    }
  };
  globalThis.uartAny = () => { pump(); return rx.length; };
  globalThis.uartRead = (n) => { pump(); const o = rx.subarray(0, n); rx = rx.subarray(o.length); return o.toString("hex"); };
  globalThis.uartWrite = (hex) => {
    const buf = Buffer.from(hex, "hex");
    let off = 0;
    while (off < buf.length) {
      try { off += fs.writeSync(fd, buf, off); } catch (e) { if (e.code !== "EAGAIN") throw e; }
    }
    return buf.length;
  };
}

// Last, so that every declaration above is initialised.
if (opt.child) await child();
else supervise();
