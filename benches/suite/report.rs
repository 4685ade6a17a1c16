//! The results table: figures, their ratios to baselines measured in the
//! same run, the targets they are held to, and the baselines that could
//! not be measured. Printed as the run goes, then written as JSON, Markdown
//! and a PNG chart.

use std::{io::Write, path::Path, time::Duration};

/// A ratio of a figure to a baseline of the same run.
#[derive(serde::Serialize, Clone)]
pub struct Ratio {
    pub baseline: String,
    pub ratio: f64,
}

/// What a figure is held to, and whether this run met it.
#[derive(serde::Serialize, Clone)]
pub struct Target {
    pub text: String,
    pub met: bool,
}

/// One line of the table. `key` is stable across runs (the chart and the
/// JSON readers use it); `name` is for people.
#[derive(serde::Serialize, Clone)]
pub struct Figure {
    pub key: String,
    pub name: String,
    pub unit: &'static str,
    pub value: f64,
    pub p99: Option<f64>,
    pub ratios: Vec<Ratio>,
    pub target: Option<Target>,
    pub note: String,
}

impl Figure {
    pub fn new(
        key: impl Into<String>,
        name: impl Into<String>,
        unit: &'static str,
        value: f64,
    ) -> Self {
        Self {
            key: key.into(),
            name: name.into(),
            unit,
            value,
            p99: None,
            ratios: Vec::new(),
            target: None,
            note: String::new(),
        }
    }

    /// A latency figure in milliseconds, with its p99.
    pub fn latency(key: impl Into<String>, name: impl Into<String>, samples: &Samples) -> Self {
        let mut figure = Self::new(key, name, "ms", ms(samples.median()));
        figure.p99 = Some(ms(samples.quantile(0.99)));
        figure.note = format!("n={}", samples.0.len());
        figure
    }

    /// Adds the ratio of this figure to `value`, a baseline's figure in the
    /// same unit. Nothing is added when the baseline was not measured.
    pub fn ratio(mut self, baseline: &str, value: Option<f64>) -> Self {
        if let Some(value) = value.filter(|v| *v > 0.0) {
            self.ratios.push(Ratio {
                baseline: baseline.to_owned(),
                ratio: self.value / value,
            });
        }
        self
    }

    pub fn target(mut self, text: impl Into<String>, met: bool) -> Self {
        self.target = Some(Target {
            text: text.into(),
            met,
        });
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        let note = note.into();
        self.note = match (self.note.is_empty(), note.is_empty()) {
            (_, true) => self.note,
            (true, false) => note,
            (false, false) => format!("{}; {note}", self.note),
        };
        self
    }

    fn ratios_text(&self) -> String {
        self.ratios
            .iter()
            .map(|r| format!("{} {}", times(r.ratio), r.baseline))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn target_text(&self, smoke: bool) -> String {
        self.target
            .as_ref()
            .map(|t| {
                let verdict = match (smoke, t.met) {
                    (true, _) => "(not judged in smoke mode)",
                    (false, true) => "met",
                    (false, false) => "MISSED",
                };
                format!("{} {verdict}", t.text)
            })
            .unwrap_or_default()
    }
}

/// A baseline or figure that this run could not measure, and why.
#[derive(serde::Serialize, Clone)]
pub struct Skipped {
    pub what: String,
    pub reason: String,
}

/// The machine the run was on, for the record.
#[derive(serde::Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cpus: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub os: String,
}

impl Machine {
    pub fn describe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| "unknown".into());
        let memory_kib: f64 = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0.0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned();
        let os = std::fs::read_to_string("/etc/os-release")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap_or_else(|| std::env::consts::OS.into());
        Self {
            cpu,
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory_gib: (memory_kib / (1024.0 * 1024.0) * 10.0).round() / 10.0,
            kernel,
            os,
        }
    }
}

#[derive(serde::Serialize)]
pub struct Report {
    pub date: String,
    pub smoke: bool,
    pub machine: Machine,
    pub figures: Vec<Figure>,
    pub skipped: Vec<Skipped>,
}

impl Report {
    pub fn new(smoke: bool) -> Self {
        let report = Self {
            date: utc_now(),
            smoke,
            machine: Machine::describe(),
            figures: Vec::new(),
            skipped: Vec::new(),
        };
        println!(
            "vigie benchmark suite{}, {} on {} ({} CPUs, {} GiB), kernel {}",
            if smoke {
                " (smoke: each figure once, small sizes)"
            } else {
                ""
            },
            report.date,
            report.machine.cpu,
            report.machine.cpus,
            report.machine.memory_gib,
            report.machine.kernel
        );
        println!(
            "{:<48} {:>10} {:<5} {:>10}  ratios; target",
            "figure", "median", "unit", "p99"
        );
        report
    }

    pub fn add(&mut self, figure: Figure) {
        let p99 = figure.p99.map(|p| format!("{p:.3}")).unwrap_or_default();
        let mut tail = figure.ratios_text();
        let target = figure.target_text(self.smoke);
        if !target.is_empty() {
            tail = if tail.is_empty() {
                target
            } else {
                format!("{tail}; {target}")
            };
        }
        println!(
            "{:<48} {:>10} {:<5} {p99:>10}  {tail}",
            figure.name,
            number(figure.value),
            figure.unit
        );
        if !figure.note.is_empty() {
            println!("{:<48}   ({})", "", figure.note);
        }
        self.figures.push(figure);
    }

    pub fn skip(&mut self, what: impl Into<String>, reason: impl Into<String>) {
        let skipped = Skipped {
            what: what.into(),
            reason: reason.into(),
        };
        println!("{:<48} skipped: {}", skipped.what, skipped.reason);
        self.skipped.push(skipped);
    }

    pub fn get(&self, key: &str) -> Option<f64> {
        self.figures.iter().find(|f| f.key == key).map(|f| f.value)
    }

    /// Writes results.json, results.md and chart.png into `dir`, each
    /// through a temporary file renamed into place, so that an interrupted
    /// run leaves the previous results whole.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        write_atomic(&dir.join("results.json"), &json)?;
        write_atomic(&dir.join("results.md"), self.markdown().as_bytes())?;
        let png = crate::chart::render(self).map_err(std::io::Error::other)?;
        write_atomic(&dir.join("chart.png"), &png)?;
        println!(
            "results written to {} (results.json, results.md, chart.png)",
            dir.display()
        );
        Ok(())
    }

    /// The table in Markdown, as docs/BENCHMARKS.md shows it.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "Run of {}{} on {} ({} CPUs, {} GiB RAM), {}, kernel {}.\n\n",
            self.date,
            if self.smoke { " (smoke mode)" } else { "" },
            self.machine.cpu,
            self.machine.cpus,
            self.machine.memory_gib,
            self.machine.os,
            self.machine.kernel
        );
        out.push_str("| figure | median | p99 | ratios | target | note |\n");
        out.push_str("|---|---:|---:|---|---|---|\n");
        for f in &self.figures {
            out.push_str(&format!(
                "| {} | {} {} | {} | {} | {} | {} |\n",
                f.name.replace('|', "\\|"),
                number(f.value),
                f.unit,
                f.p99.map(number).unwrap_or_default(),
                f.ratios_text(),
                f.target_text(self.smoke),
                f.note.replace('|', "\\|")
            ));
        }
        if !self.skipped.is_empty() {
            out.push_str("\nNot measured in this run:\n\n");
            for s in &self.skipped {
                out.push_str(&format!("- {}: {}\n", s.what, s.reason));
            }
        }
        out
    }

    /// Prints the targets again at the end, met or missed.
    pub fn print_targets(&self) {
        let with_target: Vec<_> = self.figures.iter().filter(|f| f.target.is_some()).collect();
        if with_target.is_empty() {
            return;
        }
        println!("\ntargets:");
        for f in with_target {
            println!("  {:<48} {}", f.name, f.target_text(self.smoke));
        }
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Latency samples and their summary.
pub struct Samples(pub Vec<Duration>);

impl Samples {
    pub fn quantile(&self, q: f64) -> Duration {
        let mut sorted = self.0.clone();
        sorted.sort();
        let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
        sorted[index]
    }

    pub fn median(&self) -> Duration {
        self.quantile(0.5)
    }

    /// Times `n` calls of `f`.
    pub fn time(n: usize, mut f: impl FnMut()) -> Self {
        Self(
            (0..n)
                .map(|_| {
                    let t = std::time::Instant::now();
                    f();
                    t.elapsed()
                })
                .collect(),
        )
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

pub fn median(values: &mut [Duration]) -> Duration {
    values.sort();
    values[values.len() / 2]
}

pub fn median_f64(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A ratio as people read it: "1.42x", "0.031x".
fn times(r: f64) -> String {
    if r >= 10.0 {
        format!("{r:.0}x")
    } else if r >= 0.1 {
        format!("{r:.2}x")
    } else {
        format!("{r:.3}x")
    }
}

/// Three significant digits at most, without a trail of zeros.
pub fn number(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// The current UTC time, to the second.
fn utc_now() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    format!("{} UTC", vigie::clock::utc(ms))
}
