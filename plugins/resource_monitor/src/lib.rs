//! Device resource monitor: CPU (total and per core), load average, memory and swap,
//! disk usage of the data dir's filesystem and of configured mounts, network bytes and
//! errors per interface, thermal zones, the agent's own RSS and CPU, and queue depth —
//! as monitoring points on a timer, handed to the `monitoring_event` plugins.
//!
//! A native plugin: it reads the host's `/proc`, `/sys` and `statvfs` and the agent's
//! own process (`/proc/self`), which a WASM sandbox would need granted paths, a statvfs
//! host function and the agent's pid for. Portable to aarch64 boards: only Linux
//! procfs/sysfs formats, no x86 assumptions; a missing source is skipped.
//!
//! Settings: `interval_ms` (default 10000); `groups` (default all of `cpu`, `load`,
//! `memory`, `disk`, `net`, `temperature`, `process`, `queue`); `mounts` (extra paths
//! whose filesystems to report, besides the data dir).

mod procfs;

use std::collections::BTreeSet;
use std::path::Path;

use outpost_pdk::prelude::*;
use outpost_pdk::AgentStats;
use procfs::CpuTimes;

const GROUPS: &[&str] = &[
    "cpu",
    "load",
    "memory",
    "disk",
    "net",
    "temperature",
    "process",
    "queue",
];

pub struct ResourceMonitor {
    interval_ms: u64,
    groups: BTreeSet<String>,
    mounts: Vec<String>,
    cpu_before: Vec<(String, CpuTimes)>,
    /// The agent's CPU ticks and the wall clock (ms) at the previous tick.
    self_before: Option<(u64, i64)>,
    ticks_per_second: u64,
    page_size: u64,
}

impl Plugin for ResourceMonitor {
    fn describe() -> PluginInfo {
        PluginInfo::new("resource_monitor", env!("CARGO_PKG_VERSION")).every_ms(10_000)
    }

    fn initialize(config: Config) -> Result<Self> {
        let groups: Vec<String> =
            config.get_or("groups", GROUPS.iter().map(|g| g.to_string()).collect())?;
        if let Some(bad) = groups.iter().find(|g| !GROUPS.contains(&g.as_str())) {
            return Err(Error::msg(format!(
                "unknown group `{bad}` in `groups` (known: {GROUPS:?})"
            )));
        }
        let interval_ms: u64 = config.get_or("interval_ms", 10_000)?;
        if interval_ms == 0 {
            return Err(Error::msg("`interval_ms` must be positive"));
        }
        let (ticks_per_second, page_size) = procfs::clock_ticks_and_page_size();
        let mut monitor = ResourceMonitor {
            interval_ms,
            groups: groups.into_iter().collect(),
            mounts: config.get_or("mounts", Vec::new())?,
            cpu_before: Vec::new(),
            self_before: None,
            ticks_per_second,
            page_size,
        };
        // Baselines, so the first tick already has CPU figures.
        monitor.cpu_before = read("/proc/stat")
            .map(|t| procfs::parse_stat(&t))
            .unwrap_or_default();
        monitor.self_before = read("/proc/self/stat")
            .and_then(|t| procfs::parse_self_stat(&t))
            .map(|s| (s.cpu_ticks, outpost_pdk::host::now_ms()));
        Ok(monitor)
    }

    fn timer_ms(&self) -> Option<u64> {
        Some(self.interval_ms)
    }

    fn tick(&mut self) -> Result<Output> {
        let agent = outpost_pdk::agent_stats();
        let at = Sample {
            now_ms: outpost_pdk::host::now_ms(),
            device: &agent.device_id,
        };
        let mut points = Vec::new();
        let groups: Vec<&str> = GROUPS
            .iter()
            .copied()
            .filter(|g| self.groups.contains(*g))
            .collect();
        for group in groups {
            match group {
                "cpu" => self.cpu(&at, &mut points),
                "load" => load(&at, &mut points),
                "memory" => memory(&at, &mut points),
                "disk" => self.disk(&at, &agent, &mut points),
                "net" => net(&at, &mut points),
                "temperature" => temperature(&at, &mut points),
                "process" => self.process(&at, &mut points),
                _ => queue(&at, &agent, &mut points),
            }
        }
        Ok(Output {
            messages: Vec::new(),
            points,
        })
    }
}

/// When a tick samples, and the point each of its series starts from.
struct Sample<'a> {
    now_ms: i64,
    device: &'a str,
}

impl Sample<'_> {
    fn point(&self, series: &str) -> Point {
        Point::new(series, self.now_ms * 1_000_000).tag("device", self.device)
    }
}

impl ResourceMonitor {
    /// Usage per CPU (and in total) since the previous tick.
    fn cpu(&mut self, at: &Sample<'_>, points: &mut Vec<Point>) {
        let Some(text) = read("/proc/stat") else {
            return;
        };
        let now = procfs::parse_stat(&text);
        for (name, times) in &now {
            let before = self.cpu_before.iter().find(|(n, _)| n == name);
            if let Some(u) = before.and_then(|(_, b)| times.usage_since(b)) {
                points.push(
                    at.point("cpu")
                        .tag("cpu", name.as_str())
                        .field("usage_percent", u.usage)
                        .field("user_percent", u.user)
                        .field("system_percent", u.system)
                        .field("iowait_percent", u.iowait),
                );
            }
        }
        self.cpu_before = now;
    }

    /// The filesystems of the data dir and of the configured mounts.
    fn disk(&self, at: &Sample<'_>, agent: &AgentStats, points: &mut Vec<Point>) {
        let paths = std::iter::once(agent.data_dir.as_str())
            .filter(|p| !p.is_empty())
            .chain(self.mounts.iter().map(String::as_str));
        for path in paths {
            if let Some(d) = procfs::disk_usage(path) {
                points.push(
                    at.point("disk")
                        .tag("path", path)
                        .field("total_bytes", d.total)
                        .field("used_bytes", d.used)
                        .field("available_bytes", d.available)
                        .field("used_percent", percent(d.used, d.total)),
                );
            }
        }
    }

    /// The agent's own RSS, threads and CPU since the previous tick.
    fn process(&mut self, at: &Sample<'_>, points: &mut Vec<Point>) {
        let Some(s) = read("/proc/self/stat").and_then(|t| procfs::parse_self_stat(&t)) else {
            return;
        };
        let mut p = at
            .point("process")
            .tag("process", "outpost")
            .field("rss_bytes", s.rss_pages * self.page_size)
            .field("threads", s.threads);
        if let Some((ticks, before_ms)) = self.self_before {
            let wall_s = (at.now_ms - before_ms) as f64 / 1000.0;
            if wall_s > 0.0 {
                let cpu_s = s.cpu_ticks.saturating_sub(ticks) as f64 / self.ticks_per_second as f64;
                p = p.field("cpu_percent", 100.0 * cpu_s / wall_s);
            }
        }
        self.self_before = Some((s.cpu_ticks, at.now_ms));
        points.push(p);
    }
}

fn load(at: &Sample<'_>, points: &mut Vec<Point>) {
    if let Some((l1, l5, l15)) = read("/proc/loadavg").and_then(|t| procfs::parse_loadavg(&t)) {
        points.push(
            at.point("load")
                .field("load1", l1)
                .field("load5", l5)
                .field("load15", l15),
        );
    }
}

fn memory(at: &Sample<'_>, points: &mut Vec<Point>) {
    let Some(text) = read("/proc/meminfo") else {
        return;
    };
    let get = |k| procfs::meminfo(&text, k);
    if let (Some(total), Some(available)) = (get("MemTotal"), get("MemAvailable")) {
        let used = total.saturating_sub(available);
        let swap_total = get("SwapTotal").unwrap_or(0);
        let swap_free = get("SwapFree").unwrap_or(0);
        points.push(
            at.point("memory")
                .field("total_bytes", total)
                .field("available_bytes", available)
                .field("used_bytes", used)
                .field("used_percent", percent(used, total))
                .field("swap_total_bytes", swap_total)
                .field("swap_used_bytes", swap_total.saturating_sub(swap_free)),
        );
    }
}

fn net(at: &Sample<'_>, points: &mut Vec<Point>) {
    let interfaces = read("/proc/net/dev")
        .map(|t| procfs::parse_net_dev(&t))
        .unwrap_or_default();
    for d in interfaces {
        points.push(
            at.point("net")
                .tag("interface", d.interface.as_str())
                .field("rx_bytes", d.rx_bytes)
                .field("tx_bytes", d.tx_bytes)
                .field("rx_errors", d.rx_errors)
                .field("tx_errors", d.tx_errors)
                .field("rx_dropped", d.rx_dropped)
                .field("tx_dropped", d.tx_dropped),
        );
    }
}

fn temperature(at: &Sample<'_>, points: &mut Vec<Point>) {
    for (zone, kind, celsius) in procfs::thermal_zones(Path::new("/sys/class/thermal")) {
        points.push(
            at.point("temperature")
                .tag("zone", zone)
                .tag("type", kind)
                .field("celsius", celsius),
        );
    }
}

fn queue(at: &Sample<'_>, agent: &AgentStats, points: &mut Vec<Point>) {
    points.push(
        at.point("queue")
            .field("depth", agent.queue_depth)
            .field("bytes", agent.queue_bytes),
    );
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

register_plugin!(ResourceMonitor);
