//! Start everything, wait for the stop, stop everything in order.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Core;
use crate::inbound::Inbound;
use crate::mqtt::{self, MqttSettings};
use crate::names::Names;
use crate::outbound::Reader;
use crate::outbox::{Message, Outbox, Qos};
use crate::settings::Settings;
use crate::stats::Stats;
use shmbus_toolbox::stop;

/// How long a stopping bridge keeps sending what is queued.
const DRAIN: Duration = Duration::from_secs(2);

/// One running reader: counted down when its thread ends, even by a panic.
struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Run the bridge until SIGINT/SIGTERM or `duration`. Returns the final
/// counters (the `$stats` JSON), or the reason it could not run.
pub fn run(
    settings: Settings,
    mqtt: MqttSettings,
    duration: Option<Duration>,
) -> Result<Value, String> {
    stop::install()?;
    let stats = Arc::new(Stats::default());
    let outbox = Arc::new(
        Outbox::new(settings.queue.0, settings.queue.1, stats.clone())
            .with_max_message(crate::mqtt::MAX_MESSAGE),
    );
    let names = Names::new(&settings.prefix, &settings.board_id);
    let mut inbound = Inbound::new(
        &settings.inbound,
        names.clone(),
        outbox.clone(),
        stats.clone(),
    )?;
    inbound.open_all();
    let core = Core {
        names: names.clone(),
        outbox: outbox.clone(),
        stats: stats.clone(),
        inbound: Arc::new(Mutex::new(inbound)),
        stop: Arc::new(AtomicBool::new(false)),
        reconnect: settings.reconnect,
    };
    let result = serve(&settings, &mqtt, duration, &core);
    if result.is_err() {
        // Refused at the first connection (credentials, TLS) or unable to
        // start: the [[bridge.in]] topics it created stayed behind, empty,
        // with their locks.
        core.inbound
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove_unused();
    }
    result
}

/// [`run`] once the inbound topics are open: the readers, the watcher and
/// the engine, until the stop.
fn serve(
    settings: &Settings,
    mqtt: &MqttSettings,
    duration: Option<Duration>,
    core: &Core,
) -> Result<Value, String> {
    let (names, outbox, stats) = (&core.names, &core.outbox, &core.stats);
    let reading = Arc::new(AtomicBool::new(false)); // true: readers stop
    // Readers still running: a stopping reader puts what its ring still
    // holds in the outbox first, so the queue is not done before they are.
    let readers_live = Arc::new(AtomicUsize::new(0));
    let spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new()
            .name(name)
            .spawn(f)
            .map_err(|e| format!("cannot start a thread: {e}"))
    };
    let mut readers = Vec::new();
    for t in &settings.out {
        let r = Reader::new(
            t.clone(),
            names.clone(),
            outbox.clone(),
            stats.clone(),
            reading.clone(),
        );
        readers_live.fetch_add(1, Ordering::Relaxed);
        let live = Live(readers_live.clone());
        readers.push(spawn(
            format!("out:{}", t.cfg.name),
            Box::new(move || {
                let _live = live;
                r.run();
            }),
        )?);
    }
    shmbus_toolbox::say!(
        "shmbus-bridge: board {} -> {} under {}/: {} topic(s) out, {} in; queue {} messages / {} KiB while the broker is away",
        settings.board_id,
        mqtt.broker,
        names.base(),
        settings.out.len(),
        settings.inbound.len(),
        settings.queue.0,
        settings.queue.1 / 1024
    );
    // The watcher: statistics on their interval; on a signal or at the end
    // of `duration`, stop the readers, give the queue DRAIN to go out, stop
    // the engine.
    let watcher = {
        let (stop, outbox, stats, inbound) = (
            core.stop.clone(),
            outbox.clone(),
            stats.clone(),
            core.inbound.clone(),
        );
        let reading = reading.clone();
        let readers_live = readers_live.clone();
        let interval = settings.stats_interval;
        let stats_topic = names.stats();
        spawn(
            "watcher".into(),
            Box::new(move || {
                let start = Instant::now();
                let mut next_stats = start + interval.unwrap_or(Duration::MAX / 4);
                let mut next_watch = start + crate::inbound::WATCH_INTERVAL;
                let mut draining: Option<Instant> = None;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                    let now = Instant::now();
                    if draining.is_none()
                        && (stop::requested() || duration.is_some_and(|d| now - start >= d))
                    {
                        reading.store(true, Ordering::Relaxed);
                        draining = Some(now);
                    }
                    if let Some(t) = draining {
                        let connected = stats.connected.load(Ordering::Relaxed);
                        let read = readers_live.load(Ordering::Relaxed) == 0;
                        if (read && outbox.is_empty()) || !connected || now - t >= DRAIN {
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                    // The [[bridge.in]] topics: one removed under the
                    // bridge, or its lock, is back within WATCH_INTERVAL,
                    // not at the next broker message.
                    if now >= next_watch && draining.is_none() {
                        next_watch = now + crate::inbound::WATCH_INTERVAL;
                        inbound.lock().unwrap_or_else(|p| p.into_inner()).watch();
                    }
                    if now >= next_stats {
                        next_stats = now + interval.unwrap_or(Duration::MAX / 4);
                        let (l, b) = outbox.len();
                        let (ml, mb) = outbox.bounds();
                        outbox.set_state(Message {
                            topic: stats_topic.clone(),
                            payload: serde_json::to_vec(&stats.to_json((l, b, ml, mb)))
                                .unwrap_or_default(),
                            qos: Qos::AtMostOnce,
                            retain: true,
                        });
                        inbound
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .report_all();
                    }
                }
            }),
        )?
    };
    let result = mqtt::run(core, mqtt);
    core.stop.store(true, Ordering::Relaxed);
    reading.store(true, Ordering::Relaxed);
    for r in readers {
        let _ = r.join();
    }
    let _ = watcher.join();
    let (l, b) = outbox.len();
    let (ml, mb) = outbox.bounds();
    result.map(|()| stats.to_json((l, b, ml, mb)))
}
