// Server CPU per client per 1,000 frames/s: one `shmbus foxglove` serving a
// 1 kHz topic (the test publisher's Rich frames, about 330 bytes of JSON),
// measured with 0, 1, 4 and 8 subscribed clients (@foxglove/ws-protocol).
// CPU is the server process's utime + stime from /proc (for an armv7 server
// under qemu-arm: the emulator's, emulation included).
//
//   FOX_BENCH_SECS (default 5) per point; SHMBUS_SERVER, FOX_PUB, SHMBUS as
//   for the tests (lib.cjs); FOX_LABEL names the run in the output.
"use strict";

const L = require("./lib.cjs");

const SECS = Number(process.env.FOX_BENCH_SECS || "5");
const LABEL = process.env.FOX_LABEL || "server";

(async () => {
  const pub = await L.startPub(["--topic", "fox/bench", "--rate", "1000", "--count", "0", "--slots", "1024"]);
  const server = await L.startServer(["fox/bench", "--quiet"]);
  const clients = [];
  const rows = [];
  try {
    for (const n of [0, 1, 4, 8]) {
      while (clients.length < n) {
        const c = L.connect(server.url);
        await L.waitFor("fox/bench advertised", () => c.topics.has("fox/bench"), 30000);
        c.subscribe("fox/bench");
        await L.waitFor("a first frame", () => c.of("fox/bench").length > 0, 30000);
        clients.push(c);
      }
      await L.sleep(1000);
      const got = () => clients.reduce((a, c) => a + c.messages.length, 0);
      const t0 = process.hrtime.bigint();
      const cpu0 = L.cpuSeconds(server.pid);
      const f0 = got();
      await L.sleep(SECS * 1000);
      const secs = Number(process.hrtime.bigint() - t0) / 1e9;
      const cpu = (L.cpuSeconds(server.pid) - cpu0) / secs;
      const perClient = n ? (got() - f0) / n / secs : 0;
      rows.push({ n, cpu, perClient });
    }
  } finally {
    for (const c of clients) c.close();
    await server.stop();
    pub.proc.kill("SIGTERM");
    await pub.exited;
    L.shmbus(["rm", "--force", "fox/bench"]);
  }
  console.log(`shmbus foxglove CPU, ${LABEL}: a 1 kHz topic, ${SECS} s per point`);
  console.log("  clients  frames/s each  server CPU");
  for (const r of rows) {
    console.log(`  ${String(r.n).padStart(7)}  ${r.perClient.toFixed(0).padStart(13)}  ${(r.cpu * 100).toFixed(1).padStart(9)} %`);
  }
  const by = new Map(rows.map((r) => [r.n, r]));
  const rate = by.get(8).perClient / 1000;
  const first = (by.get(1).cpu - by.get(0).cpu) / (by.get(1).perClient / 1000);
  const each = (by.get(8).cpu - by.get(1).cpu) / 7 / rate;
  console.log(`  first client (decoding included): ${(first * 100).toFixed(2)} % of a core per 1,000 frames/s`);
  console.log(`  each further client: ${(each * 100).toFixed(2)} % of a core per 1,000 frames/s`);
  process.exit(0);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
