// End-to-end tests of `shmbus foxglove` with Foxglove's own protocol library
// (@foxglove/ws-protocol) as the client and ajv as the JSON Schema validator.
// Run by ci/foxglove-test.sh inside a private IPC namespace; FOX_ONLY (a comma
// list of test tags) picks a subset (the qemu-arm run takes "core").
"use strict";

const { test, afterEach } = require("node:test");
const assert = require("node:assert/strict");
const Ajv2020 = require("ajv/dist/2020");
const L = require("./lib.cjs");

const ONLY = (process.env.FOX_ONLY || "").split(",").filter(Boolean);
function tagged(tag, name, fn, timeout = 120000) {
  const skip = ONLY.length > 0 && !ONLY.includes(tag);
  // A test left out by FOX_ONLY is not run at all (not reported as skipped).
  if (!skip) test(name, { timeout: L.ms(timeout) }, fn);
}

// Whatever a test started is gone before the next one starts, pass or fail.
afterEach(() => L.killAll());

tagged("core", "a server stopped by SIGTERM closes each connection with a close frame, 1001 and why", async () => {
  const server = await L.startServer();
  const a = L.connect(server.url);
  const b = L.connect(server.url, ["foxglove.sdk.v1"]);
  await L.waitFor("both connected", () => a.info && b.info);
  await server.stop();
  assert.equal(server.code, 0);
  for (const c of [a, b]) {
    await L.waitFor("the close", () => c.closed);
    // Was 1006 (abnormal closure, no close frame), as for a network failure.
    assert.equal(c.closeEvent.code, 1001);
    assert.equal(c.closeEvent.reason, "shmbus foxglove stopped");
  }
});

const RICH_FIELDS = [
  "seq", "t", "acc", "name", "mode", "command", "maybe", "list", "big", "weird", "letter", "flag", "pair", "nothing",
];

tagged("core", "every topic is advertised with a viewer JSON Schema of type object, and frames validate and equal `shmbus echo --json`", async () => {
  const server = await L.startServer();
  const c = L.connect(server.url);
  const TOPICS = ["fox/rich", "fox/plain", "fox/count"];
  try {
    await L.waitFor("serverInfo", () => c.info);
    assert.equal(c.info.name, "shmbus");
    assert.equal(c.ws.protocol, "foxglove.websocket.v1");
    // Topics that appear after the client connected are advertised too.
    await L.startBeat();
    const pubs = [
      await L.startPub(["--topic", "fox/rich", "--rate", "200", "--count", "300", "--slots", "64", "--wait-go"]),
      await L.startPub(["--topic", "fox/plain", "--kind", "plain", "--rate", "200", "--count", "300", "--slots", "64", "--wait-go"]),
      await L.startPub(["--topic", "fox/count", "--kind", "u32", "--rate", "100", "--count", "150", "--slots", "64", "--wait-go"]),
    ];
    await L.waitFor("the topics advertised", () => TOPICS.every((t) => c.topics.has(t)));

    const ajv = new Ajv2020({ strict: true, allErrors: true });
    // The advertised schema: a valid JSON Schema (ajv compiles it), an object
    // at the top, and in the form Foxglove's and Lichtblick's readers take.
    const viewer = new Map();
    for (const topic of TOPICS) {
      const ch = c.topics.get(topic);
      assert.equal(ch.encoding, "json");
      assert.equal(ch.schemaEncoding, "jsonschema");
      const schema = JSON.parse(ch.schema);
      assert.equal(schema.type, "object", `${topic}: Foxglove needs an object at the top`);
      assert.deepEqual(L.viewerProblems(schema), [], `${topic}: a viewer could not read its schema`);
      viewer.set(topic, ajv.compile(schema)); // throws if it is not a valid JSON Schema
    }
    // The exact schema of each type (the codec's, from the Rust type), which
    // every frame validates against; Lichtblick could not read it (anyOf).
    const exact = new Map();
    for (const [topic, kind] of [["fox/rich", "rich"], ["fox/plain", "plain"], ["fox/count", "u32"]]) {
      const schema = JSON.parse(L.printSchema(kind));
      exact.set(topic, ajv.compile(schema));
      if (kind !== "u32") assert.notDeepEqual(L.viewerProblems(schema), [], `${kind}: floats are anyOf in the exact schema`);
    }
    const rich = c.topics.get("fox/rich");
    assert.equal(rich.schemaName, "Rich");
    assert.deepEqual(Object.keys(JSON.parse(L.printSchema("rich")).properties), RICH_FIELDS);
    // What a viewer schema cannot say (unit, a tuple of two types) is left out.
    assert.deepEqual(Object.keys(JSON.parse(rich.schema).properties), RICH_FIELDS.filter((f) => f !== "nothing" && f !== "pair"));

    for (const t of TOPICS) c.subscribe(t);
    await L.subscriptionsLive(c);
    for (const p of pubs) p.go();
    for (const p of pubs) assert.equal(await p.exited, 0);
    // The last frames stay in the ring: the server delivers them whatever it missed before.
    await L.waitFor("the last rich frame", () => c.of("fox/rich").some((m) => JSON.parse(m.json).seq === 299));
    await L.waitFor("the last plain frame", () => c.of("fox/plain").some((m) => JSON.parse(m.json).seq === 299));
    await L.waitFor("the last count frame", () => c.of("fox/count").some((m) => JSON.parse(m.json).value === 149));

    for (const topic of TOPICS) {
      const got = c.of(topic);
      assert.ok(got.length > 0);
      let last = 0n;
      for (const m of got) {
        const v = JSON.parse(m.json);
        const validate = exact.get(topic);
        assert.ok(validate(v), `${topic}: ${m.json} does not validate: ${ajv.errorsText(validate.errors)}`);
        // Values inside the viewer subset validate against what was advertised.
        if (topic !== "fox/rich") {
          const adv = viewer.get(topic);
          assert.ok(adv(v), `${topic}: ${m.json} does not fit the advertised schema: ${ajv.errorsText(adv.errors)}`);
        }
        assert.ok(m.timestamp >= last, "log times never go back");
        last = m.timestamp;
      }
      // The same frames through `shmbus echo --json` (matched by publish time).
      const echoed = L.echoJson(topic, 64);
      assert.equal(echoed.length, 64);
      const byTime = new Map(got.map((m) => [m.timestamp, JSON.parse(m.json)]));
      for (const e of echoed) {
        const msg = byTime.get(e.realNs);
        assert.ok(msg !== undefined, `${topic}: the frame published at ${e.realNs} ns never reached the client`);
        const expected = topic === "fox/count" ? { value: e.value } : e.value;
        assert.deepStrictEqual(msg, expected);
      }
    }
    // The kinds of value the mapping has rules for all went through.
    const values = c.of("fox/rich").map((m) => JSON.parse(m.json));
    for (const w of ["NaN", "inf", "-inf", 1.5]) assert.ok(values.some((v) => v.weird === w), `weird = ${w}`);
    for (const cmd of ["Stop"]) assert.ok(values.some((v) => v.command === cmd));
    for (const k of ["Speed", "Turn", "Goto"]) assert.ok(values.some((v) => typeof v.command === "object" && k in v.command), k);
    // u64::MAX is an exact JSON number in the text (JSON.parse rounds it).
    assert.ok(c.of("fox/rich").some((m) => m.json.includes('"big":18446744073709551615,')));
    assert.ok(values.some((v) => v.letter === "😀"));
    assert.ok(values.some((v) => v.maybe === null) && values.some((v) => v.maybe !== null));
  } finally {
    c.close();
    await server.stop();
    L.shmbus(["rm", "--force", "fox/rich", "fox/plain", "fox/count", "fox/beat"]);
  }
  assert.equal(server.code, 0, server.stderr.join("\n"));
});

tagged("core", "both subprotocols are accepted, in the client's order; a client offering neither is refused with the fix", async () => {
  const server = await L.startServer();
  try {
    const u = server.url;
    assert.deepEqual(await L.handshake(u, ["foxglove.websocket.v1"]), { ok: true, protocol: "foxglove.websocket.v1" });
    assert.deepEqual(await L.handshake(u, ["foxglove.sdk.v1"]), { ok: true, protocol: "foxglove.sdk.v1" });
    assert.deepEqual(await L.handshake(u, ["foxglove.sdk.v1", "foxglove.websocket.v1"]), { ok: true, protocol: "foxglove.sdk.v1" });
    assert.deepEqual(await L.handshake(u, ["foxglove.websocket.v1", "foxglove.sdk.v1"]), { ok: true, protocol: "foxglove.websocket.v1" });
    const refused = await L.handshake(u, ["chat"]);
    assert.equal(refused.status, 400);
    assert.match(refused.body, /offer the subprotocol foxglove\.websocket\.v1 or foxglove\.sdk\.v1/);
    const none = await L.handshake(u, []);
    assert.equal(none.status, 400);

    // A client of current Foxglove (sdk.v1, listed first) gets the same data.
    const pub = await L.startPub(["--topic", "fox/sdk", "--rate", "100", "--count", "0"]);
    const c = L.connect(u, ["foxglove.sdk.v1", "foxglove.websocket.v1"]);
    try {
      await L.waitFor("fox/sdk advertised", () => c.topics.has("fox/sdk"));
      assert.equal(c.ws.protocol, "foxglove.sdk.v1");
      c.subscribe("fox/sdk");
      await L.waitFor("frames over foxglove.sdk.v1", () => c.of("fox/sdk").length >= 10);
    } finally {
      c.close();
      pub.proc.kill("SIGTERM");
      await pub.exited;
      L.shmbus(["rm", "--force", "fox/sdk"]);
    }
  } finally {
    await server.stop();
  }
});

tagged("core", "topics that appear or go are advertised and unadvertised; liveness and staleness are status messages", async () => {
  const server = await L.startServer(["fox/live", "--stale-after", "1"]);
  const c = L.connect(server.url);
  try {
    await L.waitFor("serverInfo", () => c.info);
    assert.equal(c.channels.size, 0, "only the topics named on the command line");
    // Appears; publishes 20 frames, then stays alive but silent until the
    // warning came: stale. (It lingered 4 s: a server that did not run for
    // 3 s of them saw it gone before it saw it silent, and said only that.)
    let pub = await L.startPub(["--topic", "fox/live", "--rate", "100", "--count", "20", "--linger", "600"]);
    const ch = await L.waitFor("fox/live advertised", () => c.topics.get("fox/live"));
    const id = "shmbus/fox/live";
    const stale = await L.waitFor("a staleness warning", () => c.statuses.find((s) => s.id === id && s.level === 1));
    assert.match(stale.message, /fox\/live: no frame for .* \(publisher pid \d+ is alive but silent\)/);
    assert.ok(pub.stdout.some((l) => l.startsWith("done 20 ")), "the publisher published its 20 frames");
    // The publisher goes: an error status says so.
    pub.proc.kill("SIGTERM");
    await pub.exited;
    assert.equal(pub.signal, "SIGTERM");
    const dead = await L.waitFor("a no-publisher error", () => c.statuses.find((s) => s.id === id && s.level === 2));
    assert.match(dead.message, /fox\/live: no publisher is running \(last frame .* ago\)/);
    // A new publisher: the status is removed.
    pub = await L.startPub(["--topic", "fox/live", "--rate", "100", "--count", "0"]);
    await L.waitFor("the status removed", () => c.removed.includes(id));
    pub.proc.kill("SIGTERM");
    await pub.exited;
    // Removed: unadvertised.
    L.shmbus(["rm", "--force", "fox/live"]);
    await L.waitFor("fox/live unadvertised", () => c.unadvertised.includes(ch.id));
    assert.ok(!c.topics.has("fox/live"));
    // And back again: a new channel id (the old one is never reused).
    pub = await L.startPub(["--topic", "fox/live", "--rate", "50", "--count", "0"]);
    const again = await L.waitFor("fox/live advertised again", () => c.topics.get("fox/live"));
    assert.notEqual(again.id, ch.id);
    c.subscribe("fox/live");
    await L.waitFor("frames on the new channel", () => c.of("fox/live").length > 0);
    pub.proc.kill("SIGTERM");
    await pub.exited;
  } finally {
    c.close();
    await server.stop();
    L.shmbus(["rm", "--force", "fox/live"]);
  }
});

tagged("core", "another user's segment that carries a topic's name is never served under that name", async () => {
  // Ours at the name's own key; another user's (uid 65534) with the same name at another key.
  const mine = await L.startPub(["--topic", "fox/imu", "--kind", "plain", "--rate", "50", "--count", "0"]);
  const theirs = await L.startPub(["--topic", "fox/imu", "--key", "0x7a0000ee", "--kind", "u32", "--rate", "50", "--count", "0"], { uid: 65534 });
  const every = await L.startServer();
  const named = await L.startServer(["fox/imu"]);
  const c = L.connect(every.url);
  const d = L.connect(named.url);
  try {
    await L.waitFor("both segments advertised", () => c.topics.has("fox/imu") && c.topics.has("fox/imu@0x7a0000ee"));
    assert.equal(c.topics.get("fox/imu").schemaName, "Plain", "the name is ours");
    assert.equal(c.topics.get("fox/imu@0x7a0000ee").schemaName, "u32", "theirs only under its key");
    c.subscribe("fox/imu");
    await L.waitFor("our frames", () => c.of("fox/imu").length > 0);
    assert.ok("seq" in JSON.parse(c.of("fox/imu")[0].json));
    // Asked for by name: only ours.
    await L.waitFor("the named server's channel", () => d.topics.has("fox/imu"));
    await L.sleep(L.ms(2500)); // two more scans
    assert.deepEqual([...d.topics.keys()], ["fox/imu"]);
    assert.equal(d.topics.get("fox/imu").schemaName, "Plain");
    // Ours goes: theirs never takes the name.
    const ours = c.topics.get("fox/imu").id;
    mine.proc.kill("SIGTERM");
    await mine.exited;
    L.shmbus(["rm", "--force", "fox/imu"]);
    await L.waitFor("ours unadvertised", () => c.unadvertised.includes(ours));
    await L.sleep(L.ms(2500));
    assert.ok(!c.topics.has("fox/imu"));
    assert.ok(c.topics.has("fox/imu@0x7a0000ee"));
  } finally {
    c.close();
    d.close();
    await every.stop();
    await named.stop();
    theirs.proc.kill("SIGTERM");
    await theirs.exited;
    L.shmbus(["rm", "--force", "0x7a0000ee"]);
  }
});

tagged("load", "clients connecting and disconnecting in a loop leave no descriptor or memory behind", async () => {
  const pub = await L.startPub(["--topic", "fox/loop", "--rate", "1000", "--count", "0", "--slots", "256"]);
  const server = await L.startServer(["fox/loop"]);
  try {
    const warm = L.connect(server.url);
    await L.waitFor("fox/loop advertised", () => warm.topics.has("fox/loop"));
    warm.subscribe("fox/loop");
    await L.waitFor("warm-up frames", () => warm.of("fox/loop").length > 100);
    warm.close();
    // The server said it dropped the warm-up client (200 ms of sleep let a
    // server that had not run yet count its socket in the baseline).
    await L.waitFor("the warm-up client gone", () => server.stderr.some((l) => /client #1 .* disconnected/.test(l)));
    const fds0 = L.fdCount(server.pid);
    const rss0 = L.rssKib(server.pid);
    const rounds = 150;
    for (let i = 0; i < rounds; i++) {
      const protocols = i % 2 ? ["foxglove.sdk.v1"] : ["foxglove.websocket.v1"];
      const c = L.connect(server.url, protocols);
      await L.waitFor(`round ${i}: advertised`, () => c.topics.has("fox/loop"));
      c.subscribe("fox/loop");
      await L.waitFor(`round ${i}: a frame`, () => c.of("fox/loop").length > 0);
      // Half close politely, half vanish (no close handshake).
      if (i % 2) c.close();
      else c.ws.terminate();
    }
    // The server notices every one of them.
    await L.waitFor("descriptors back to where they were", () => L.fdCount(server.pid) <= fds0);
    const rss1 = L.rssKib(server.pid);
    console.log(`# ${rounds} clients: server RSS ${rss0} KiB before, ${rss1} KiB after; ${L.fdCount(server.pid)} fds (${fds0} before)`);
    assert.ok(rss1 - rss0 < 4096, `RSS grew by ${rss1 - rss0} KiB over ${rounds} clients`);
    // Still serving.
    const last = L.connect(server.url);
    await L.waitFor("advertised", () => last.topics.has("fox/loop"));
    last.subscribe("fox/loop");
    await L.waitFor("frames after the loop", () => last.of("fox/loop").length > 10);
    last.close();
  } finally {
    await server.stop();
    pub.proc.kill("SIGTERM");
    await pub.exited;
    L.shmbus(["rm", "--force", "fox/loop"]);
  }
  assert.equal(server.code, 0);
  const connected = server.stderr.find((l) => l.startsWith("shmbus foxglove: stopped;"));
  assert.match(connected, /152 client\(s\) served/);
});

tagged("load", "a client that never reads: memory stays bounded, other clients and the publisher are unaffected, and it is dropped", async () => {
  // 2,000 frames/s for 18 s into a 16384-slot ring (8 s of frames), a
  // 4 MiB queue a client (6 s of this topic), and a stall timeout longer
  // than both (20 s): a server held up by the stuck client until it is
  // dropped would overrun the ring, and the good client would miss frames.
  // A server that did not run for a while takes the frames it missed from
  // the ring at once, into the good client's queue: with 2 s of ring and
  // 256 KiB of queue (0.4 s), a server that did not run for half a second
  // lost frames of the good client, whatever it did.
  const total = 36000;
  const pub = await L.startPub(["--topic", "fox/fast", "--rate", "2000", "--count", String(total), "--slots", "16384", "--wait-go"]);
  await L.startBeat();
  const server = await L.startServer(["fox/fast", "fox/beat", "--client-queue", "4096", "--stall-timeout", "20"]);
  const good = L.connect(server.url);
  try {
    await L.waitFor("fox/fast advertised", () => good.topics.has("fox/fast") && good.topics.has("fox/beat"));
    good.subscribe("fox/fast");
    await L.subscriptionsLive(good);
    const stuck = await L.stuckClient(server.port, good.topics.get("fox/fast").id);
    // The server's private memory (its queues), not the ring's pages it reads.
    const rss0 = L.anonKib(server.pid);
    pub.go();
    let rssMax = rss0;
    const sampler = setInterval(() => (rssMax = Math.max(rssMax, L.anonKib(server.pid))), 100);
    await L.waitFor("the stuck client dropped", () =>
      server.stderr.find((l) => /client #2 .* disconnected: stuck: took no data for 20 s/.test(l)),
    );
    assert.equal(await pub.exited, 0);
    clearInterval(sampler);
    stuck.destroy();
    const done = pub.stdout.find((l) => l.startsWith("done "));
    const [, n, secs] = done.split(" ");
    assert.equal(Number(n), total, "the publisher published every frame");
    await L.waitFor("the last frame at the good client", () => good.of("fox/fast").some((m) => JSON.parse(m.json).seq === total - 1));
    // The good client got every frame, in order, without a gap.
    const seqs = good.of("fox/fast").map((m) => JSON.parse(m.json).seq);
    assert.equal(seqs.length, total, `good client got ${seqs.length} of ${total}`);
    seqs.forEach((s, i) => assert.equal(s, i));
    const dropLine = server.stderr.find((l) => /client #2 .* disconnected/.test(l));
    console.log(`# stuck client: server RssAnon ${rss0} KiB before, at most ${rssMax} KiB (+${rssMax - rss0}); publisher ${n} frames in ${secs} s; ${dropLine}`);
    // Without a bound the stuck client's share (about 330 B x 36,000 frames,
    // 11.9 MB) would pile up in the server; its queue holds 4 MiB.
    assert.ok(rssMax - rss0 < 8192, `server RssAnon grew by ${rssMax - rss0} KiB`);
  } finally {
    good.close();
    await server.stop();
    L.shmbus(["rm", "--force", "fox/fast", "fox/beat"]);
  }
});

tagged("core", "per-topic rate limits send at most the limit, newest frames", async () => {
  const pub = await L.startPub(["--topic", "fox/limited", "--rate", "1000", "--count", "0", "--slots", "64"]);
  const server = await L.startServer(["fox/limited", "--rate", "fox/limited=20"]);
  const c = L.connect(server.url);
  try {
    await L.waitFor("advertised", () => c.topics.has("fox/limited"));
    c.subscribe("fox/limited");
    await L.waitFor("first frame", () => c.of("fox/limited").length > 0);
    // Counted over the server's own sending, not a window of this client's
    // clock (a stalled event loop counted a backlog sent before its window
    // in it): frame A, then the n frames after it up to frame B went out
    // within at most B's arrival minus A's publish time (the server sends
    // A after it was published and B before it arrives), and the limiter
    // allows 20 a second in any span (+1 for the interval boundaries).
    const a = c.of("fox/limited").length - 1;
    await L.waitFor("40 frames more", () => c.of("fox/limited").length > a + 40);
    const got = c.of("fox/limited");
    const A = got[a];
    const B = got[got.length - 1];
    const n = got.length - 1 - a;
    // Date.now() is in whole ms (up to 1 ms early); publish times are ns.
    const secs = (B.received + 1 - Number(A.timestamp / 1000000n)) / 1000;
    console.log(`# 1 kHz topic limited to 20 Hz: ${n} frames sent within ${secs.toFixed(2)} s`);
    assert.ok(n <= Math.ceil(secs * 20) + 1, `${n} frames in ${secs} s`);
    // Each frame is a recent one, not a backlog: its seq advanced by about 50 each time.
    const seqs = c.of("fox/limited").map((m) => JSON.parse(m.json).seq);
    for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i] > seqs[i - 1]);
  } finally {
    c.close();
    await server.stop();
    pub.proc.kill("SIGTERM");
    await pub.exited;
    L.shmbus(["rm", "--force", "fox/limited"]);
  }
});

tagged("core", "the Publish panel writes to a topic through the codec, refuses bad values and never fights a live publisher", async () => {
  // A topic whose publisher has exited.
  let pub = await L.startPub(["--topic", "fox/cmd", "--rate", "100", "--count", "1"]);
  assert.equal(await pub.exited, 0);
  const off = await L.startServer(["fox/cmd"]);
  const server = await L.startServer(["fox/cmd", "--allow-publish"]);
  const c = L.connect(server.url);
  const d = L.connect(off.url);
  try {
    // Without --allow-publish: no capability, and advertising is refused.
    await L.waitFor("info", () => d.info && d.topics.has("fox/cmd"));
    assert.deepEqual(d.info.capabilities, []);
    d.client.advertise({ topic: "fox/cmd", encoding: "json", schemaName: "Rich" });
    await L.waitFor("refusal", () => d.statuses.find((s) => /publishing is off; restart the server with --allow-publish/.test(s.message)));

    await L.waitFor("info", () => c.info && c.topics.has("fox/cmd"));
    assert.deepEqual(c.info.capabilities, ["clientPublish"]);
    assert.deepEqual(c.info.supportedEncodings, ["json"]);
    const ch = c.client.advertise({ topic: "fox/cmd", encoding: "json", schemaName: "Rich" });
    const value = {
      seq: 4242, t: 0.5, acc: [1, 2, 3], name: "from-foxglove", mode: "Run", command: { Goto: { x: 1, y: 2 } },
      maybe: 7, list: [1, 2, 3], big: 9007199254740991, weird: "NaN", letter: "z", flag: true, pair: [1, -1], nothing: null,
    };
    c.client.sendMessage(ch, new TextEncoder().encode(JSON.stringify(value)));
    const seen = await L.waitFor("the frame on the bus", () => {
      const e = L.echoJson("fox/cmd", 1, true);
      return e.length && e[0].value.seq === 4242 ? e[0] : undefined;
    });
    assert.deepStrictEqual(seen.value, value);

    // Over capacity: refused, naming the field.
    c.client.sendMessage(ch, new TextEncoder().encode(JSON.stringify({ ...value, name: "x".repeat(40) })));
    const cap = await L.waitFor("capacity error", () => c.statuses.find((s) => s.level === 2 && /\.name/.test(s.message)));
    assert.match(cap.message, /fox\/cmd.*\.name.*16/);
    // Not JSON: refused.
    c.client.sendMessage(ch, new TextEncoder().encode("{nope"));
    await L.waitFor("not-JSON error", () => c.statuses.find((s) => /not JSON/.test(s.message)));
    // A key twice: refused, naming it (JSON.parse would keep the last value).
    c.client.sendMessage(ch, new TextEncoder().encode(`{"seq": 1, ${JSON.stringify(value).slice(1)}`));
    await L.waitFor("duplicate-key error", () => c.statuses.find((s) => /key "seq" appears twice/.test(s.message)));
    assert.ok(!L.echoJson("fox/cmd", 64).some((e) => e.value.seq === 1), "nothing written for the duplicate key");

    // A live publisher owns the topic: refused, with its pid.
    pub = await L.startPub(["--topic", "fox/cmd", "--rate", "10", "--count", "0"]);
    c.client.sendMessage(ch, new TextEncoder().encode(JSON.stringify({ ...value, seq: 9999 })));
    const fight = await L.waitFor("live-publisher error", () => c.statuses.find((s) => /live publisher \(pid \d+\)/.test(s.message)));
    assert.match(fight.message, new RegExp(`pid ${pub.proc.pid}`));
    pub.proc.kill("SIGTERM");
    await pub.exited;
    assert.ok(!L.echoJson("fox/cmd", 64).some((e) => e.value.seq === 9999), "nothing written while the publisher lived");
  } finally {
    c.close();
    d.close();
    await server.stop();
    await off.stop();
    L.shmbus(["rm", "--force", "fox/cmd"]);
  }
});
