//! The chart's logic: the last minutes of CPU and memory samples of one
//! host, turned into SVG path commands in the plot's own units (x: time,
//! the newest sample at the right edge; y: percent, 100 % at the top). The
//! view passes its size, since a path keeps the aspect ratio of its view
//! box.

use std::collections::VecDeque;

use crate::types::MetricsSample;

/// Samples of one host, over a sliding window.
#[derive(Debug, Clone)]
pub struct ChartController {
    window_ms: i64,
    samples: VecDeque<MetricsSample>,
    width: f64,
    height: f64,
}

/// What the chart shows.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartView {
    /// CPU usage, as path commands.
    pub cpu_path: String,
    /// Memory in use (of total), as path commands.
    pub memory_path: String,
    /// The latest CPU usage, e.g. "12.5 %".
    pub cpu_now: String,
    /// The latest memory use, e.g. "1.2 GiB of 7.7 GiB (16 %)".
    pub memory_now: String,
    /// Labels of the time axis, oldest first, e.g. ["-60 s", "-30 s", "now"].
    pub time_labels: Vec<String>,
}

impl ChartController {
    /// A chart over the last `window_ms` milliseconds.
    pub fn new(window_ms: i64) -> Self {
        Self {
            window_ms: window_ms.max(1),
            samples: VecDeque::new(),
            width: 1000.0,
            height: 100.0,
        }
    }

    /// Sets the size of the plot, in the units of the paths.
    pub fn resize(&mut self, width: f64, height: f64) {
        self.width = width.max(1.0);
        self.height = height.max(1.0);
    }

    /// Forgets every sample (another host was chosen).
    pub fn clear(&mut self) {
        self.samples.clear();
    }

    /// Adds a sample and drops those that left the window.
    pub fn push(&mut self, sample: MetricsSample) {
        let newest = sample.timestamp_ms;
        self.samples.push_back(sample);
        while self
            .samples
            .front()
            .is_some_and(|s| s.timestamp_ms < newest - self.window_ms)
        {
            self.samples.pop_front();
        }
    }

    /// How many samples are in the window.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// True without samples.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The paths and labels for the current samples.
    pub fn view(&self) -> ChartView {
        let seconds = self.window_ms / 1000;
        let time_labels = vec![
            format!("-{seconds} s"),
            format!("-{} s", seconds / 2),
            "now".into(),
        ];
        let Some(newest) = self.samples.back() else {
            return ChartView {
                cpu_path: String::new(),
                memory_path: String::new(),
                cpu_now: "—".into(),
                memory_now: "—".into(),
                time_labels,
            };
        };
        let (width, height) = (self.width, self.height);
        let x = |t: i64| {
            let age = (newest.timestamp_ms - t) as f64 / self.window_ms as f64;
            (width * (1.0 - age)).clamp(0.0, width)
        };
        let y = |percent: f64| height * (1.0 - percent.clamp(0.0, 100.0) / 100.0);
        let path = |value: &dyn Fn(&MetricsSample) -> f64| {
            let mut commands = String::new();
            for (i, s) in self.samples.iter().enumerate() {
                let verb = if i == 0 { 'M' } else { 'L' };
                commands.push_str(&format!(
                    "{verb} {:.1} {:.1} ",
                    x(s.timestamp_ms),
                    y(value(s))
                ));
            }
            commands.trim_end().to_owned()
        };
        let memory_percent = |s: &MetricsSample| {
            if s.memory.total_bytes == 0 {
                0.0
            } else {
                s.memory.used_bytes as f64 * 100.0 / s.memory.total_bytes as f64
            }
        };
        ChartView {
            cpu_path: path(&|s| f64::from(s.cpu_usage_percent)),
            memory_path: path(&memory_percent),
            cpu_now: format!("{:.1} %", newest.cpu_usage_percent),
            memory_now: format!(
                "{} of {} ({:.0} %)",
                crate::client::format::bytes(newest.memory.used_bytes),
                crate::client::format::bytes(newest.memory.total_bytes),
                memory_percent(newest)
            ),
            time_labels,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Memory;

    fn sample(t: i64, cpu: f32, used: u64) -> MetricsSample {
        MetricsSample {
            timestamp_ms: t,
            cpu_usage_percent: cpu,
            cpu_usage_per_core: vec![],
            memory: Memory {
                total_bytes: 1000,
                used_bytes: used,
                ..Memory::default()
            },
            load_average: None,
            fullest_disk: None,
        }
    }

    #[test]
    fn samples_become_paths_in_the_view_box() {
        let mut chart = ChartController::new(60_000);
        chart.resize(1000.0, 100.0);
        assert_eq!(chart.view().cpu_now, "—");
        chart.push(sample(0, 0.0, 0));
        chart.push(sample(30_000, 50.0, 250));
        chart.push(sample(60_000, 100.0, 500));
        let view = chart.view();
        assert_eq!(view.cpu_path, "M 0.0 100.0 L 500.0 50.0 L 1000.0 0.0");
        assert_eq!(view.memory_path, "M 0.0 100.0 L 500.0 75.0 L 1000.0 50.0");
        assert_eq!(view.cpu_now, "100.0 %");
        assert!(view.memory_now.ends_with("(50 %)"), "{}", view.memory_now);
        assert_eq!(view.time_labels, vec!["-60 s", "-30 s", "now"]);
        chart.resize(500.0, 200.0);
        assert_eq!(
            chart.view().cpu_path,
            "M 0.0 200.0 L 250.0 100.0 L 500.0 0.0"
        );
        chart.push(sample(90_001, 10.0, 0));
        assert_eq!(chart.len(), 2, "samples older than the window are dropped");
    }
}
