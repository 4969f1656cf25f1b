// Helpers for the end-to-end tests of `shmbus foxglove` with Foxglove's own
// protocol library (@foxglove/ws-protocol) as the client. Everything runs on
// 127.0.0.1, in the private IPC namespace ci/foxglove-test.sh puts us in.
//
// Environment:
//   SHMBUS         the host `shmbus` (echo, rm)
//   SHMBUS_SERVER  the command that runs the server's `shmbus` (default
//                  $SHMBUS; e.g. "qemu-arm -L /usr/arm-linux-gnueabihf target/.../shmbus")
//   FOX_PUB        the test publisher (examples/fox-test-pub.rs)
//   FOX_SLOW       a factor for every timeout (emulation is slower)
"use strict";

const { spawn, execFileSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");
const net = require("node:net");
const crypto = require("node:crypto");
const { FoxgloveClient } = require("@foxglove/ws-protocol");
const WebSocket = require("ws");

// A program given by a relative path (`target/release/shmbus`, as
// docs/FOXGLOVE.md's command by hand gives it) is taken from the directory
// this started in: the publisher runs in `/`, where such a path named
// nothing (`spawn target/release/examples/fox-test-pub ENOENT`).
const abs = (w) => (w.includes("/") && !path.isAbsolute(w) ? path.resolve(w) : w);
const SHMBUS = abs(process.env.SHMBUS || "shmbus");
const SERVER = (process.env.SHMBUS_SERVER || SHMBUS).split(/\s+/).filter(Boolean).map(abs);
const FOX_PUB = abs(process.env.FOX_PUB || "fox-test-pub");
const SLOW = Number(process.env.FOX_SLOW || "1");

const children = new Set();
// Kill every process a test started (its `finally` may not have been reached).
function killAll() {
  for (const c of children) {
    try {
      c.kill("SIGKILL");
    } catch {}
  }
}
process.on("exit", killAll);

function ms(t) {
  return Math.round(t * SLOW);
}

function sleep(t) {
  return new Promise((r) => setTimeout(r, t));
}

// Resolve when `pred()` is true (checked every 10 ms); reject after `timeout`
// ms, a watchdog: only a hang exceeds it, on a machine other jobs share.
async function waitFor(what, pred, timeout = 60000) {
  const end = Date.now() + ms(timeout);
  for (;;) {
    const v = pred();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms(timeout)} ms waiting for ${what}`);
    await sleep(10);
  }
}

// Spawn a process; collect its output lines; `lines(stream)`; `exited`.
function run(argv, opts = {}) {
  const p = spawn(argv[0], argv.slice(1), { stdio: ["pipe", "pipe", "pipe"], ...opts });
  children.add(p);
  const out = { stdout: [], stderr: [], code: undefined, signal: undefined, error: undefined };
  for (const s of ["stdout", "stderr"]) {
    let buf = "";
    p[s].setEncoding("utf8");
    p[s].on("data", (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        out[s].push(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    });
  }
  out.exited = new Promise((resolve) => {
    p.on("exit", (code, signal) => {
      children.delete(p);
      out.code = code;
      out.signal = signal;
      resolve(code);
    });
    // Could not start (no such program): no exit event follows.
    p.on("error", (e) => {
      children.delete(p);
      out.error = e;
      out.code = out.code ?? -1;
      resolve(out.code);
    });
  });
  out.proc = p;
  return out;
}

// Start `shmbus foxglove` on a free port; resolves when it prints its URL.
async function startServer(args = []) {
  const s = run([...SERVER, "foxglove", "--bind", "127.0.0.1:0", ...args]);
  const line = await waitFor(
    "the server's ws:// line",
    () => {
      const l = s.stdout.find((l) => /ws:\/\/\S+/.test(l));
      if (l) return l;
      if (s.code !== undefined) throw new Error(`server exited ${s.code}: ${s.error || ""}${s.stderr.join("\n")}`);
    },
    60000,
  );
  s.url = line.match(/ws:\/\/(\S+)/)[0];
  s.port = Number(s.url.split(":").pop());
  s.pid = s.proc.pid;
  s.stop = async () => {
    if (s.code === undefined) s.proc.kill("SIGTERM");
    await s.exited;
  };
  return s;
}

// The test publisher in a directory every user may enter, for runs as
// another user (the repository may sit under a private home).
let sharedPub;
function publisherFor(uid) {
  if (uid === undefined) return [FOX_PUB];
  if (!sharedPub) {
    const dir = fs.mkdtempSync("/tmp/fox-pub-");
    fs.chmodSync(dir, 0o755);
    sharedPub = `${dir}/fox-test-pub`;
    fs.copyFileSync(FOX_PUB, sharedPub);
    fs.chmodSync(sharedPub, 0o755);
    process.on("exit", () => fs.rmSync(dir, { recursive: true, force: true }));
  }
  return ["setpriv", `--reuid=${uid}`, `--regid=${uid}`, "--clear-groups", sharedPub];
}

// Start the test publisher (as user `uid` if given); resolves on its `ready` line.
async function startPub(args, { uid } = {}) {
  const p = run([...publisherFor(uid), ...args], { cwd: "/" });
  await waitFor(
    `publisher ${args.join(" ")} ready`,
    () => {
      if (p.stdout.some((l) => l.startsWith("ready "))) return true;
      if (p.code !== undefined) throw new Error(`publisher exited ${p.code}: ${p.error || ""}${p.stderr.join("\n")}`);
    },
    60000,
  );
  p.go = () => p.proc.stdin.write("go\n");
  return p;
}

// A heartbeat topic, fox/beat, published at 50 Hz until the test ends.
function startBeat() {
  return startPub(["--topic", "fox/beat", "--kind", "u32", "--rate", "50", "--count", "0", "--slots", "16"]);
}

// Resolve once the server has handled every subscription `c` sent so far:
// it handles a client's messages in order, so when a frame of fox/beat,
// subscribed last, arrives, the ones before are live too.
async function subscriptionsLive(c) {
  await waitFor("fox/beat advertised", () => c.topics.has("fox/beat"));
  c.subscribe("fox/beat");
  await waitFor("a heartbeat frame", () => c.of("fox/beat").length > 0);
}

// A Foxglove client that records everything the server sends.
function connect(url, protocols = [FoxgloveClient.SUPPORTED_SUBPROTOCOL]) {
  const ws = new WebSocket(url, protocols);
  const client = new FoxgloveClient({ ws });
  const c = {
    ws,
    client,
    info: undefined,
    channels: new Map(), // id -> channel
    topics: new Map(), // topic -> channel
    unadvertised: [],
    statuses: [],
    removed: [],
    messages: [], // {sub, channel, timestamp, received, json}
    subs: new Map(), // subscription id -> channel id
    errors: [],
    open: false,
    closed: false,
  };
  client.on("open", () => (c.open = true));
  client.on("close", (e) => {
    c.closed = true;
    c.closeEvent = e; // {code, reason}
  });
  client.on("error", (e) => c.errors.push(e));
  client.on("serverInfo", (i) => (c.info = i));
  client.on("advertise", (chs) => {
    for (const ch of chs) {
      c.channels.set(ch.id, ch);
      c.topics.set(ch.topic, ch);
    }
  });
  client.on("unadvertise", (ids) => {
    for (const id of ids) {
      const ch = c.channels.get(id);
      c.channels.delete(id);
      if (ch && c.topics.get(ch.topic) === ch) c.topics.delete(ch.topic);
      c.unadvertised.push(id);
    }
  });
  client.on("status", (s) => c.statuses.push(s));
  client.on("removeStatus", (r) => c.removed.push(...r.statusIds));
  const decoder = new TextDecoder();
  client.on("message", (m) => {
    c.messages.push({
      sub: m.subscriptionId,
      channel: c.subs.get(m.subscriptionId),
      timestamp: m.timestamp,
      // Date.now() when this client handled it: never before the server sent it.
      received: Date.now(),
      json: decoder.decode(m.data),
    });
  });
  c.subscribe = (topic) => {
    const ch = c.topics.get(topic);
    if (!ch) throw new Error(`topic ${topic} not advertised`);
    const id = client.subscribe(ch.id);
    c.subs.set(id, ch.id);
    return id;
  };
  c.of = (topic) => {
    const ch = c.topics.get(topic);
    return c.messages.filter((m) => ch && m.channel === ch.id);
  };
  c.close = () => {
    try {
      client.close();
    } catch {}
  };
  return c;
}

// `shmbus echo TOPIC --all --from-oldest --json --count N` (the oldest N
// frames in the ring), or with `latest` the newest frame only:
// [{realNs: BigInt, value}].
function echoJson(topic, count, latest = false) {
  const how = latest ? [] : ["--all", "--from-oldest"];
  let text;
  try {
    text = execFileSync(SHMBUS, ["echo", topic, ...how, "--json", "--count", String(count), "--timeout", "2"], {
      encoding: "utf8",
      timeout: ms(30000),
      stdio: ["ignore", "pipe", "pipe"],
    });
  } catch (e) {
    // Exit 1 after --timeout: fewer than `count` frames were there.
    if (e.status !== 1) throw e;
    text = e.stdout;
  }
  return text
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => ({ realNs: BigInt(l.match(/"real_ns":(\d+)/)[1]), value: JSON.parse(l).value }));
}

// The exact message JSON Schema of a test publisher kind (`--print-schema`).
function printSchema(kind) {
  return execFileSync(FOX_PUB, ["--topic", "x", "--kind", kind, "--print-schema"], { encoding: "utf8" });
}

// What keeps Foxglove's and Lichtblick's JSON Schema readers from turning
// `schema` into message definitions (docs/JSON.md §2): every property needs
// exactly one type of boolean, string, number, integer, object (with
// properties) or array (whose items have one of the others); anyOf, oneOf,
// allOf and null are refused. [] when it reads.
function viewerProblems(schema) {
  const problems = [];
  const TYPES = ["boolean", "string", "number", "integer", "object", "array"];
  const walk = (s, at) => {
    for (const k of ["anyOf", "oneOf", "allOf"]) if (k in s) problems.push(`${at}: ${k}`);
    if (typeof s.type !== "string" || !TYPES.includes(s.type)) {
      problems.push(`${at}: type ${JSON.stringify(s.type)}`);
      return;
    }
    if (s.type === "object") {
      if (typeof s.properties !== "object") problems.push(`${at}: an object without properties`);
      else for (const [k, v] of Object.entries(s.properties)) walk(v, `${at}.${k}`);
    }
    if (s.type === "array") {
      if (typeof s.items !== "object") problems.push(`${at}: an array without items`);
      else if (s.items.type === "array") problems.push(`${at}: an array of arrays`);
      else walk(s.items, `${at}[]`);
    }
  };
  walk(schema, "message");
  return problems;
}

function shmbus(args) {
  return execFileSync(SHMBUS, args, { encoding: "utf8", timeout: ms(30000) });
}

// VmRSS of a process in KiB.
function rssKib(pid) {
  const m = fs.readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+)/);
  return m ? Number(m[1]) : NaN;
}

// RssAnon of a process in KiB: its private memory (heap, stacks), where a
// server's queues are. VmRSS also counts the pages of the shared-memory rings
// it has read, which grow with the ring, not with what it keeps.
function anonKib(pid) {
  const m = fs.readFileSync(`/proc/${pid}/status`, "utf8").match(/RssAnon:\s+(\d+)/);
  return m ? Number(m[1]) : NaN;
}

// Open file descriptors of a process.
function fdCount(pid) {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

// CPU time of a process (all its threads), in seconds, from
// /proc/PID/task/*/schedstat (nanoseconds; /proc/PID/stat counts 10 ms ticks).
function cpuSeconds(pid) {
  let ns = 0;
  for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(fs.readFileSync(`/proc/${pid}/task/${t}/schedstat`, "utf8").split(" ")[0]);
    } catch {}
  }
  return ns / 1e9;
}

// A WebSocket client written by hand that does the handshake, subscribes to
// `channelId`, and then never reads again: a stuck viewer.
function stuckClient(port, channelId) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, "127.0.0.1");
    const key = crypto.randomBytes(16).toString("base64");
    let head = "";
    sock.setEncoding("latin1");
    sock.on("error", () => {});
    sock.on("connect", () =>
      sock.write(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
          `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n` +
          "Sec-WebSocket-Protocol: foxglove.websocket.v1\r\n\r\n",
      ),
    );
    const onData = (d) => {
      head += d;
      if (!head.includes("\r\n\r\n")) return;
      sock.off("data", onData);
      if (!head.startsWith("HTTP/1.1 101")) return reject(new Error(`handshake: ${head}`));
      // Stop reading: from here on the kernel buffers fill up and stay full.
      sock.pause();
      sock.write(maskedText(JSON.stringify({ op: "subscribe", subscriptions: [{ id: 1, channelId }] })));
      resolve(sock);
    };
    sock.on("data", onData);
  });
}

function maskedText(text) {
  const payload = Buffer.from(text, "utf8");
  const mask = crypto.randomBytes(4);
  let header;
  if (payload.length < 126) header = Buffer.from([0x81, 0x80 | payload.length]);
  else {
    header = Buffer.alloc(4);
    header[0] = 0x81;
    header[1] = 0x80 | 126;
    header.writeUInt16BE(payload.length, 2);
  }
  const body = Buffer.alloc(payload.length);
  for (let i = 0; i < payload.length; i++) body[i] = payload[i] ^ mask[i % 4];
  return Buffer.concat([header, mask, body]);
}

// A raw WebSocket connection offering `protocols`; resolves with the
// agreed protocol, or the HTTP status and body of a refusal.
function handshake(url, protocols) {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, protocols);
    ws.on("open", () => {
      const p = ws.protocol;
      ws.close();
      resolve({ ok: true, protocol: p });
    });
    ws.on("unexpected-response", (req, res) => {
      let body = "";
      res.on("data", (d) => (body += d));
      res.on("end", () => resolve({ ok: false, status: res.statusCode, body }));
    });
    ws.on("error", (e) => resolve({ ok: false, error: String(e) }));
  });
}

module.exports = {
  killAll,
  SHMBUS,
  SLOW,
  ms,
  sleep,
  waitFor,
  run,
  startServer,
  startPub,
  startBeat,
  subscriptionsLive,
  connect,
  echoJson,
  printSchema,
  viewerProblems,
  shmbus,
  rssKib,
  anonKib,
  fdCount,
  cpuSeconds,
  stuckClient,
  handshake,
  FoxgloveClient,
};
