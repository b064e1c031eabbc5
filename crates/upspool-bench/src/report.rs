//! The results: one row per figure, printed as a table or as JSON.

use serde::Serialize;

/// One measured figure, with the machine's own limit for the same work where there is one.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// The item number (1 to 6), for ordering.
    pub item: u8,
    pub metric: String,
    pub value: f64,
    pub unit: &'static str,
    /// The same work done directly on this machine, measured in the same run.
    pub limit: Option<f64>,
    /// `value / limit` for throughputs (higher is better).
    pub ratio: Option<f64>,
    pub target: Option<String>,
    pub pass: Option<bool>,
}

impl Row {
    pub fn new(item: u8, metric: impl Into<String>, value: f64, unit: &'static str) -> Self {
        Row {
            item,
            metric: metric.into(),
            value,
            unit,
            limit: None,
            ratio: None,
            target: None,
            pass: None,
        }
    }

    pub fn limit(mut self, limit: f64) -> Self {
        self.limit = Some(limit);
        self
    }

    /// A throughput beside its limit: the ratio, and whether it reaches `min_ratio` if given.
    pub fn ratio_to(mut self, limit: f64, min_ratio: Option<f64>) -> Self {
        let ratio = self.value / limit;
        self.limit = Some(limit);
        self.ratio = Some(ratio);
        if let Some(min) = min_ratio {
            self.target = Some(format!("ratio >= {min}"));
            self.pass = Some(ratio >= min);
        }
        self
    }

    pub fn target(mut self, target: impl Into<String>, pass: bool) -> Self {
        self.target = Some(target.into());
        self.pass = Some(pass);
        self
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub command: String,
    pub rows: Vec<Row>,
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub filesystem: String,
    pub disk: String,
    /// `/proc/loadavg` at the end of the run: other work on the machine skews every figure
    /// (the limits, measured in the same run, share the conditions).
    pub load_average: String,
}

impl Machine {
    /// What `/proc`, `df -T` and `lsblk` say about the machine and the benchmark's filesystem.
    pub fn describe(dir: &std::path::Path) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_default();
        let mem_kib: f64 = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        let run = |cmd: &str, args: &[&std::ffi::OsStr]| {
            std::process::Command::new(cmd)
                .args(args)
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default()
        };
        let df = run("df", &["-T".as_ref(), dir.as_os_str()]);
        let filesystem = df.lines().nth(1).unwrap_or("").split_whitespace();
        let filesystem: Vec<&str> = filesystem.collect();
        let filesystem = match filesystem.as_slice() {
            [dev, fs, ..] => format!("{fs} on {dev}"),
            _ => String::new(),
        };
        let disk = run(
            "lsblk",
            &["-dno".as_ref(), "NAME,MODEL,SIZE,ROTA,TYPE".as_ref()],
        )
        .lines()
        .filter(|l| !l.trim_start().starts_with("zram") && !l.trim_start().starts_with("loop"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("; ");
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory_gib: mem_kib / 1024.0 / 1024.0,
            filesystem,
            disk,
            load_average: std::fs::read_to_string("/proc/loadavg")
                .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                .unwrap_or_default(),
        }
    }
}

fn num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A Markdown table (so it can be pasted into BENCHMARKS.md as it is).
pub fn table(report: &Report) -> String {
    let m = &report.machine;
    let mut out = format!(
        "machine: {} x{} cores, {:.1} GiB RAM, {}, disk {}, load average {}\ncommand: {}\n\n",
        m.cpu, m.cores, m.memory_gib, m.filesystem, m.disk, m.load_average, report.command
    );
    out.push_str("| # | metric | upspool | machine limit | ratio | target | ok |\n");
    out.push_str("|---|---|---:|---:|---:|---|---|\n");
    for r in &report.rows {
        out.push_str(&format!(
            "| {} | {} | {} {} | {} | {} | {} | {} |\n",
            r.item,
            r.metric,
            num(r.value),
            r.unit,
            r.limit.map(num).unwrap_or_else(|| "-".into()),
            r.ratio
                .map(|x| format!("{x:.2}"))
                .unwrap_or_else(|| "-".into()),
            r.target.as_deref().unwrap_or("-"),
            match r.pass {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "-",
            }
        ));
    }
    out
}
