//! `shmbus info TOPIC`: header, schema, `shmid_ds`, publisher, newest frame.

use serde_json::{Value, json};
use shmbus_core::layout::LAYOUT_VERSION;
use shmbus_sub::RawSubscriber;

use super::{key_json, publisher_json_aged};
use crate::args::InfoArgs;
use crate::discover::{self, now_ns};
use crate::out::{self, CmdResult, group_name, human_bytes, human_ns, key_hex, user_name, utc};
use shmbus_codec::{Codec, text};

fn ns_to_utc(ns: u64) -> String {
    if ns == 0 {
        "-".into()
    } else {
        utc((ns / 1_000_000_000) as i64) + " UTC"
    }
}

fn secs_to_utc(s: i64) -> String {
    if s == 0 { "-".into() } else { utc(s) + " UTC" }
}

/// Run `shmbus info`.
pub fn run(a: &InfoArgs, bus: Option<&str>) -> CmdResult {
    let (entry, seg) = discover::attach("info", &a.topic, bus)?;
    let info = seg.info().clone();
    let h = seg.header();
    let st = seg.stat().ok();
    let schema = shmbus_core::schema::decode_schema(&info.schema);
    let codec = schema
        .as_ref()
        .map_err(|e| e.to_string())
        .and_then(|t| Codec::new(t.clone()).map_err(|e| e.to_string()));
    let generation = seg.generation();
    let last_mono = h.last_publish_mono_ns().load();
    let last_real = h.last_publish_real_ns().load();
    let start_real = h.publisher_start_real_ns().load();
    let header_pid = h.publisher_pid().load();
    let epoch = h.publisher_epoch().load();
    // The current publisher session's waiter segment (docs/LAYOUT.md 7.4).
    let waiter_shmid = match h.waiter_ref().load() {
        r if r > 0 && info.waiters() => Some(r - 1),
        _ => None,
    };
    let publisher = super::publisher_of(&entry, &seg);
    let now = now_ns();
    let age = (generation > 0).then(|| now.saturating_sub(last_mono));
    let g = info.geometry;

    // The newest frame, decoded.
    let mut sub = RawSubscriber::from_segment(seg);
    let mut bytes = Vec::new();
    let latest: Value = match (sub.latest_bytes(&mut bytes), &codec) {
        (Ok(None), _) => Value::Null,
        (Ok(Some(m)), Ok(c)) => match c.decode(&bytes) {
            Ok(v) => json!({"generation": m.generation, "value": v}),
            Err(e) => json!({"generation": m.generation, "error": e.to_string()}),
        },
        (Ok(Some(m)), Err(e)) => json!({"generation": m.generation, "error": e}),
        (Err(e), _) => json!({"error": e.to_string()}),
    };

    if a.json {
        let stat = st.map(|s| {
            json!({
                "shm_perm": {"key": key_json(s.key), "uid": s.uid, "gid": s.gid, "cuid": s.cuid,
                             "cgid": s.cgid, "mode": format!("{:04o}", s.mode & 0o7777)},
                "shm_segsz": s.size, "shm_cpid": s.cpid, "shm_lpid": s.lpid, "shm_nattch": s.nattch,
                "shm_atime": s.atime, "shm_dtime": s.dtime, "shm_ctime": s.ctime,
                "locked": s.locked(), "removed": s.removed(),
            })
        });
        let v = json!({
            "name": info.name,
            "key": key_json(entry.key),
            "shmid": entry.shmid,
            "layout_version": LAYOUT_VERSION,
            "segment_size": g.segment_size,
            "header_size": g.header_size,
            "slots": g.slot_count,
            "slot_stride": g.slot_stride,
            "frame_capacity": g.frame_capacity,
            "notify": info.notify(),
            "waiter_registration": info.waiters(),
            "waiter_shmid": waiter_shmid,
            "created_real_ns": info.created_real_ns,
            "schema": {
                "name": schema.as_ref().map(|t| t.name.clone()).ok(),
                "fingerprint": format!("{:016x}", info.schema_fingerprint),
                "bytes": info.schema.len(),
                "text": schema.as_ref().map(text::render).ok(),
            },
            "example": codec.as_ref().map(Codec::example).ok(),
            "generation": generation,
            "age_ns": age,
            "last_publish_real_ns": last_real,
            "publisher": publisher_json_aged(&publisher, age),
            "header_publisher_pid": header_pid,
            "publisher_epoch": epoch,
            "publisher_start_real_ns": start_real,
            "shmid_ds": stat,
            "latest": latest,
        });
        out::line(&serde_json::to_string_pretty(&v).unwrap_or_default())?;
        return Ok(out::OK);
    }

    let mut s = String::new();
    let mut kv = |k: &str, v: String| s.push_str(&format!("{k:<18}{v}\n"));
    kv("topic", info.name.clone());
    kv("key", format!("{} ({})", key_hex(entry.key), entry.key));
    kv("shmid", entry.shmid.to_string());
    kv(
        "segment",
        format!(
            "{} ({} bytes): header {} B, {} slots x {} B (frames up to {} B), layout v{LAYOUT_VERSION}",
            human_bytes(g.segment_size as u64),
            g.segment_size,
            g.header_size,
            g.slot_count,
            g.slot_stride,
            g.frame_capacity
        ),
    );
    kv(
        "notify",
        match (info.notify(), info.waiters(), waiter_shmid) {
            (false, _, _) => "off".into(),
            (true, true, Some(id)) => format!(
                "on (subscribers sleep on a futex; they register in waiter segment shmid {id}, so a publish wakes only when someone sleeps)"
            ),
            (true, true, None) => {
                "on (subscribers sleep on a futex; this publisher has no waiter segment: every publish wakes)".into()
            }
            (true, false, _) => {
                "on (subscribers sleep on a futex; segment made before waiter registration: every publish wakes)".into()
            }
        },
    );
    kv("created", ns_to_utc(info.created_real_ns));
    kv("generation", generation.to_string());
    kv(
        "newest frame",
        match age {
            Some(a) => format!("{} ago ({})", human_ns(a), ns_to_utc(last_real)),
            None => "none yet".into(),
        },
    );
    kv(
        "publisher",
        match publisher {
            shmbus_core::PublisherStatus::Alive { pid } => {
                let why = super::held_up(&publisher, age)
                    .map(|why| format!(" but {why}"))
                    .unwrap_or_default();
                format!("alive, pid {pid} (since {}){why}", ns_to_utc(start_real))
            }
            shmbus_core::PublisherStatus::NotRunning => {
                format!("not running (last: pid {header_pid}, {epoch} sessions so far)")
            }
            // A publisher may still publish without it (`ipcrm -s`,
            // logind's `RemoveIPC`): the age tells.
            shmbus_core::PublisherStatus::NoLock => super::publisher_text_aged(&publisher, age),
            shmbus_core::PublisherStatus::Unknown => {
                "unknown (cannot read the publisher lock)".into()
            }
        },
    );
    if let Some(uid) = super::lock_squatter(&entry) {
        let (what, fix) = super::lock_squat_text(&entry, uid);
        kv("publisher lock", format!("SQUATTED? {what}; {fix}"));
    }
    if let Some(st) = st {
        kv(
            "owner",
            format!(
                "{}:{} mode {:04o}, created by {}:{}",
                user_name(st.uid),
                group_name(st.gid),
                st.perms(),
                user_name(st.cuid),
                group_name(st.cgid)
            ),
        );
        kv(
            "locked in RAM",
            if st.locked() { "yes (SHM_LOCK)" } else { "no" }.into(),
        );
        if st.removed() {
            kv("removed", "yes: gone once the last process detaches".into());
        }
        // Read while this command is attached: its own attachment is in
        // the count, and it is the last to attach. "shm_nattch 1" of a
        // topic nobody else reads sent the one on call looking for the
        // reader that `shmbus list` and `doctor` said was not there.
        let me = std::process::id() as i32;
        kv(
            "shm_nattch",
            format!("{} (this shmbus info included)", st.nattch),
        );
        kv("shm_cpid", st.cpid.to_string());
        kv(
            "shm_lpid",
            if st.lpid == me {
                format!("{} (this shmbus info)", st.lpid)
            } else {
                st.lpid.to_string()
            },
        );
        kv("shm_atime", secs_to_utc(st.atime));
        kv("shm_dtime", secs_to_utc(st.dtime));
        kv("shm_ctime", secs_to_utc(st.ctime));
    }
    kv(
        "schema",
        format!(
            "{:016x} ({} bytes)",
            info.schema_fingerprint,
            info.schema.len()
        ),
    );
    out::raw(&s)?;
    match &schema {
        Ok(t) => {
            for l in text::render(t).lines() {
                out::line(&format!("    {l}"))?;
            }
            match &codec {
                Ok(c) => out::line(&format!("{:<18}{}", "example", c.example()))?,
                Err(e) => out::line(&format!("{:<18}<{e}>", "example"))?,
            }
        }
        Err(e) => out::line(&format!("    <cannot decode the schema: {e}>"))?,
    }
    match latest {
        Value::Null => out::line(&format!("{:<18}none", "latest"))?,
        v => out::line(&format!("{:<18}{v}", "latest"))?,
    }
    Ok(out::OK)
}
