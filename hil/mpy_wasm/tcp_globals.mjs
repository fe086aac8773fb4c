// The TCP seam of the wasm MicroPython (which has no socket module): the firmware's transport calls
// these globals through the `js` module. One socket per id; reads return hex ("" = nothing yet,
// null = closed), writes take hex. Shared by the virtual board (run_board.mjs) and the REPL bridge.
import { Socket } from "node:net";

export function installTcpGlobals() {
  const socks = new Map();
  let nextId = 1;
  globalThis.tcpOpen = (host, port, timeoutMs) => new Promise((resolve, reject) => {
    const s = new Socket();
    const id = nextId++;
    const st = { s, buf: Buffer.alloc(0), closed: false };
    const timer = setTimeout(() => { s.destroy(); reject(new Error("ETIMEDOUT")); }, timeoutMs);
    s.on("data", (d) => { st.buf = Buffer.concat([st.buf, d]); });
    s.on("close", () => { st.closed = true; });
    s.on("error", (e) => { st.closed = true; clearTimeout(timer); reject(e); });
    s.connect(port, host, () => { clearTimeout(timer); socks.set(id, st); resolve(id); });
  });
  globalThis.tcpRead = (id, n) => {
    const st = socks.get(id);
    if (!st) return null;
    if (st.buf.length === 0) return st.closed ? null : "";
    const out = st.buf.subarray(0, n); st.buf = st.buf.subarray(out.length);
    return out.toString("hex");
  };
  globalThis.tcpWrite = (id, hex) => {
    const st = socks.get(id);
    if (!st || st.closed) return -1;
    st.s.write(Buffer.from(hex, "hex"));
    return 0;
  };
  globalThis.tcpClose = (id) => { const st = socks.get(id); if (st) { st.s.destroy(); socks.delete(id); } };
}
