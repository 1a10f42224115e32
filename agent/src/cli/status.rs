//! `outpost status`: the running agent at a glance — queue, storage, sinks, plugins,
//! sources — as a short table for a person, or JSON for a script.

use super::table::{bytes, cell, Table};
use super::{AgentClient, ClientError};

/// Prints the agent's status; `json` prints `{"health": …, "plugins": …}` instead.
pub fn status(client: &AgentClient, json: bool) -> Result<String, ClientError> {
    let health = client.request("GET", "/v1/health", None)?;
    let plugins = client.request("GET", "/v1/plugins", None)?;
    if json {
        let both = serde_json::json!({"health": health, "plugins": plugins["plugins"]});
        return Ok(format!(
            "{}\n",
            serde_json::to_string_pretty(&both).unwrap_or_default()
        ));
    }
    Ok(render(&health, &plugins))
}

fn render(h: &serde_json::Value, plugins: &serde_json::Value) -> String {
    let (q, s) = (&h["queue"], &h["storage"]);
    let uptime = h["uptime_seconds"].as_u64().unwrap_or(0);
    let mut out = format!(
        "outpost {} — {}, up {}h {:02}m, config generation {}\n",
        cell(&h["device_id"]),
        cell(&h["status"]),
        uptime / 3600,
        uptime / 60 % 60,
        cell(&h["config"]["generation"]),
    );
    if let Some(e) = h["config"]["last_error"].as_str() {
        out.push_str(&format!("last reload refused: {e}\n"));
    }
    out.push_str(&format!(
        "queue: {} messages, {} (max {}); storage {}: {}, {} reserve, {} on disk\n\n",
        cell(&q["depth"]),
        bytes(q["bytes"].as_u64().unwrap_or(0)),
        bytes(q["max_bytes"].as_u64().unwrap_or(0)),
        cell(&s["state"]),
        s["free_bytes"]
            .as_u64()
            .map_or("free space unknown".to_owned(), |b| format!(
                "{} free",
                bytes(b)
            )),
        bytes(s["reserve_bytes"].as_u64().unwrap_or(0)),
        bytes(s["disk_bytes"].as_u64().unwrap_or(0)),
    ));
    out.push_str(&sinks(h));
    out.push('\n');
    out.push_str(&plugin_table(plugins));
    if h["sources"].as_object().is_some_and(|m| !m.is_empty()) {
        out.push('\n');
        out.push_str(&sources(h));
    }
    out
}

fn sinks(h: &serde_json::Value) -> String {
    let mut t = Table::new(&[
        "SINK",
        "TYPE",
        "STATE",
        "BACKLOG",
        "DEAD",
        "DELIVERED",
        "LAST ERROR",
    ]);
    for (name, s) in h["sinks"].as_object().into_iter().flatten() {
        t.row(vec![
            name.clone(),
            cell(&s["type"]),
            cell(&s["state"]),
            format!(
                "{} ({})",
                cell(&s["backlog"]),
                bytes(s["backlog_bytes"].as_u64().unwrap_or(0))
            ),
            cell(&s["dead_letters"]),
            cell(&s["delivered"]),
            cell(&s["last_error"]),
        ]);
    }
    for (name, s) in h["unconfigured_sinks"].as_object().into_iter().flatten() {
        t.row(vec![
            name.clone(),
            "-".into(),
            "not configured".into(),
            cell(&s["backlog"]),
            cell(&s["dead_letters"]),
            "-".into(),
            "kept until the sink comes back".into(),
        ]);
    }
    t.render()
}

fn plugin_table(plugins: &serde_json::Value) -> String {
    let mut t = Table::new(&["PLUGIN", "KIND", "STATUS", "CALLS", "FAULTS", "LAST ERROR"]);
    for p in plugins["plugins"].as_array().into_iter().flatten() {
        t.row(vec![
            cell(&p["name"]),
            cell(&p["kind"]),
            cell(&p["status"]),
            cell(&p["calls"]),
            cell(&p["faults"]),
            cell(&p["last_error"]),
        ]);
    }
    t.render()
}

fn sources(h: &serde_json::Value) -> String {
    let mut t = Table::new(&[
        "SOURCE",
        "SUBSCRIBED",
        "RECEIVED",
        "ACCEPTED",
        "REJECTED",
        "LAST ERROR",
    ]);
    for (name, s) in h["sources"].as_object().into_iter().flatten() {
        t.row(vec![
            name.clone(),
            cell(&s["subscribed"]),
            cell(&s["received"]),
            cell(&s["accepted"]),
            cell(&s["rejected"]),
            cell(&s["last_error"]),
        ]);
    }
    t.render()
}
