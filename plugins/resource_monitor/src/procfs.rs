//! Readers for `/proc` and `/sys`. Each returns `None` when its source is missing or
//! unreadable (containers, boards without thermal zones), so the monitor degrades
//! instead of failing. Parsing is split from reading so it can be tested on samples.

use std::path::Path;

/// CPU time counters of one line of `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTimes {
    pub user: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub total: u64,
}

/// Usage between two samples, in percent of the elapsed CPU time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuUsage {
    pub usage: f64,
    pub user: f64,
    pub system: f64,
    pub iowait: f64,
}

impl CpuTimes {
    pub fn usage_since(&self, before: &CpuTimes) -> Option<CpuUsage> {
        let total = self.total.checked_sub(before.total)? as f64;
        if total <= 0.0 {
            return None;
        }
        let pct = |now: u64, then: u64| 100.0 * now.saturating_sub(then) as f64 / total;
        let idle = pct(self.idle + self.iowait, before.idle + before.iowait);
        Some(CpuUsage {
            usage: (100.0 - idle).clamp(0.0, 100.0),
            user: pct(self.user, before.user),
            system: pct(self.system, before.system),
            iowait: pct(self.iowait, before.iowait),
        })
    }
}

/// `cpu` (total) and `cpuN` lines of `/proc/stat`, in file order.
pub fn parse_stat(text: &str) -> Vec<(String, CpuTimes)> {
    text.lines()
        .filter(|l| l.starts_with("cpu"))
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            let name = fields.next()?;
            let v: Vec<u64> = fields.take(8).filter_map(|f| f.parse().ok()).collect();
            if v.len() < 4 {
                return None;
            }
            let get = |i: usize| v.get(i).copied().unwrap_or(0);
            let name = if name == "cpu" {
                "total".to_owned()
            } else {
                name.to_owned()
            };
            Some((
                name,
                CpuTimes {
                    user: get(0) + get(1),
                    system: get(2) + get(5) + get(6),
                    idle: get(3),
                    iowait: get(4),
                    total: v.iter().sum(),
                },
            ))
        })
        .collect()
}

/// `(load1, load5, load15)` from `/proc/loadavg`.
pub fn parse_loadavg(text: &str) -> Option<(f64, f64, f64)> {
    let mut f = text.split_whitespace().map(|x| x.parse::<f64>().ok());
    Some((f.next()??, f.next()??, f.next()??))
}

/// A `/proc/meminfo` value in bytes.
pub fn meminfo(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        let kb: u64 = rest.split_whitespace().next()?.parse().ok()?;
        Some(kb * 1024)
    })
}

/// Counters of one interface from `/proc/net/dev`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetDev {
    pub interface: String,
    pub rx_bytes: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

pub fn parse_net_dev(text: &str) -> Vec<NetDev> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let v: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|f| f.parse().ok())
                .collect();
            if v.len() < 12 {
                return None;
            }
            Some(NetDev {
                interface: name.trim().to_owned(),
                rx_bytes: v[0],
                rx_errors: v[2],
                rx_dropped: v[3],
                tx_bytes: v[8],
                tx_errors: v[10],
                tx_dropped: v[11],
            })
        })
        .collect()
}

/// `(zone, type, °C)` of every thermal zone under `root` (`/sys/class/thermal`).
pub fn thermal_zones(root: &Path) -> Vec<(String, String, f64)> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut zones: Vec<_> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("thermal_zone"))
        .filter_map(|e| {
            let milli: f64 = std::fs::read_to_string(e.path().join("temp"))
                .ok()?
                .trim()
                .parse()
                .ok()?;
            let kind = std::fs::read_to_string(e.path().join("type")).unwrap_or_default();
            Some((
                e.file_name().to_string_lossy().into_owned(),
                kind.trim().to_owned(),
                milli / 1000.0,
            ))
        })
        .collect();
    zones.sort_by(|a, b| a.0.cmp(&b.0));
    zones
}

/// The process's own figures from `/proc/self/stat`: CPU ticks (user + system),
/// threads and resident set size in pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelfStat {
    pub cpu_ticks: u64,
    pub threads: u64,
    pub rss_pages: u64,
}

pub fn parse_self_stat(text: &str) -> Option<SelfStat> {
    // The command name may contain spaces; fields start after its closing paren.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state): field N is f[N - 3].
    let n = |field: usize| f.get(field - 3)?.parse::<u64>().ok();
    Some(SelfStat {
        cpu_ticks: n(14)? + n(15)?,
        threads: n(20)?,
        rss_pages: n(24)?,
    })
}

/// Filesystem figures of the filesystem holding `path` (statvfs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskUsage {
    pub total: u64,
    pub used: u64,
    pub available: u64,
}

pub fn disk_usage(path: &str) -> Option<DiskUsage> {
    let c_path = std::ffi::CString::new(path).ok()?;
    // SAFETY: `statvfs` is plain old data, for which all-zero bytes are a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is a NUL-terminated string alive for the call and `st` a valid,
    // exclusively borrowed struct the call fills in.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let frsize = st.f_frsize as u64;
    let total = st.f_blocks as u64 * frsize;
    Some(DiskUsage {
        total,
        used: total.saturating_sub(st.f_bfree as u64 * frsize),
        available: st.f_bavail as u64 * frsize,
    })
}

/// Clock ticks per second and page size, for `/proc/self/stat`.
pub fn clock_ticks_and_page_size() -> (u64, u64) {
    // SAFETY: `sysconf` only reads a system setting; it has no memory arguments.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    (
        if ticks > 0 { ticks as u64 } else { 100 },
        if page > 0 { page as u64 } else { 4096 },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_and_usage() {
        let before =
            parse_stat("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 100 0 50 800 50 0 0 0 0 0\nintr 1\n");
        let after = parse_stat("cpu  160 0 70 900 70 0 0 0 0 0\ncpu0 160 0 70 900 70 0 0 0 0 0\n");
        assert_eq!(before[0].0, "total");
        assert_eq!(before[1].0, "cpu0");
        let u = after[0].1.usage_since(&before[0].1).unwrap();
        // 200 ticks elapsed: 60 user, 20 system, 100 idle, 20 iowait.
        assert!((u.usage - 40.0).abs() < 1e-9, "{u:?}");
        assert!((u.user - 30.0).abs() < 1e-9);
        assert!((u.iowait - 10.0).abs() < 1e-9);
    }

    #[test]
    fn loadavg_meminfo_netdev_selfstat() {
        assert_eq!(
            parse_loadavg("0.52 0.58 0.59 1/467 12345\n"),
            Some((0.52, 0.58, 0.59))
        );
        let mem = "MemTotal:        8048484 kB\nMemAvailable:    4000000 kB\nSwapTotal: 0 kB\n";
        assert_eq!(meminfo(mem, "MemTotal"), Some(8048484 * 1024));
        assert_eq!(meminfo(mem, "SwapFree"), None);
        let dev = "Inter-|   Receive\n face |bytes\n  eth0: 1000 10 1 2 0 0 0 0 2000 20 3 4 0 0 0 0\n    lo: 5 1 0 0 0 0 0 0 5 1 0 0 0 0 0 0\n";
        let d = parse_net_dev(dev);
        assert_eq!(d[0].interface, "eth0");
        assert_eq!(
            (d[0].rx_bytes, d[0].rx_errors, d[0].rx_dropped),
            (1000, 1, 2)
        );
        assert_eq!(
            (d[0].tx_bytes, d[0].tx_errors, d[0].tx_dropped),
            (2000, 3, 4)
        );
        let stat = "42 (out post) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 9 0 100 1000000 250 18446744073709551615";
        assert_eq!(
            parse_self_stat(stat),
            Some(SelfStat {
                cpu_ticks: 10,
                threads: 9,
                rss_pages: 250
            })
        );
    }

    #[test]
    fn this_machine_is_readable() {
        assert!(disk_usage("/").unwrap().total > 0);
        assert!(parse_self_stat(&std::fs::read_to_string("/proc/self/stat").unwrap()).is_some());
        assert!(!parse_stat(&std::fs::read_to_string("/proc/stat").unwrap()).is_empty());
        assert!(thermal_zones(Path::new("/nonexistent")).is_empty());
    }
}
