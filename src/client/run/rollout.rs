//! Rollouts: a command run on hosts in stages, so that one wrong command
//! does not break every host at once. The plan (which hosts, in which
//! batches, where it stops) is plain data that both front-ends show and
//! the history records; `fleet::rollout` runs it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A number of hosts, or a share of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Size {
    /// This many hosts.
    Count(usize),
    /// This percentage of the hosts (1 to 100).
    Percent(u8),
}

impl Size {
    /// How many hosts of `total` this is (a percentage rounds down).
    pub fn of(self, total: usize) -> usize {
        match self {
            Self::Count(n) => n,
            Self::Percent(p) => total * usize::from(p) / 100,
        }
    }
}

impl std::str::FromStr for Size {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if let Some(percent) = text.strip_suffix('%') {
            let p: u8 = percent
                .parse()
                .map_err(|_| format!("{text:?}: a percentage is 1% to 100%"))?;
            if !(1..=100).contains(&p) {
                return Err(format!("{text:?}: a percentage is 1% to 100%"));
            }
            return Ok(Self::Percent(p));
        }
        text.parse()
            .map(Self::Count)
            .map_err(|_| format!("{text:?}: give a number of hosts (5) or a share (20%)"))
    }
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Count(n) => write!(f, "{n}"),
            Self::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// In which order hosts are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// The hosts file's.
    File,
    /// Shuffled with this seed (printed, so that a run can be repeated).
    Random(u64),
}

/// What a user asked of a rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutSpec {
    /// Hosts per batch (after the canary); all at once when none.
    pub batch: Option<Size>,
    /// Hosts run first, alone; the rest only if they all succeeded.
    pub canary: Option<usize>,
    /// Stop once more hosts than this have failed.
    pub max_fail: Option<Size>,
    /// Time between batches, in ms.
    pub pause_ms: u64,
    /// Ask on the terminal before going on after the canary.
    pub confirm: bool,
    /// The order of the hosts.
    pub order: Order,
}

impl RolloutSpec {
    /// True when it asks for anything but all hosts at once.
    pub fn is_staged(&self) -> bool {
        self.batch.is_some() || self.canary.is_some() || self.max_fail.is_some()
    }

    /// The pause between batches.
    pub fn pause(&self) -> Duration {
        Duration::from_millis(self.pause_ms)
    }

    /// The plan as people read it, e.g. "canary 2, then batches of 5, stop
    /// after more than 2 failures, random order (seed 42)".
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(n) = self.canary {
            parts.push(format!("canary {n}"));
        }
        match self.batch {
            Some(size) => parts.push(format!("batches of {size}")),
            None if self.canary.is_some() => parts.push("then the rest".into()),
            None => parts.push("all at once".into()),
        }
        if let Some(limit) = self.max_fail {
            parts.push(format!("stop after more than {limit} failures"));
        }
        if self.pause_ms > 0 {
            parts.push(format!(
                "{} between batches",
                humantime::format_duration(self.pause())
            ));
        }
        if let Order::Random(seed) = self.order {
            parts.push(format!("random order (seed {seed})"));
        }
        parts.join(", ")
    }
}

/// The batches of a rollout, as host indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The batches, in order; the first is the canary when there is one.
    pub batches: Vec<Vec<usize>>,
    /// Failures it tolerates; one more stops it.
    pub failure_limit: Option<usize>,
    /// True when the first batch is a canary.
    pub canary: bool,
}

impl Plan {
    /// Cuts `selection` into batches as `spec` says.
    pub fn new(selection: &[usize], spec: &RolloutSpec) -> Self {
        let mut hosts = selection.to_vec();
        if let Order::Random(seed) = spec.order {
            shuffle(&mut hosts, seed);
        }
        let total = hosts.len();
        let mut batches = Vec::new();
        let mut rest: &[usize] = &hosts;
        let canary = spec.canary.filter(|n| *n > 0 && total > 0);
        if let Some(n) = canary {
            let (first, after) = rest.split_at(n.min(rest.len()));
            batches.push(first.to_vec());
            rest = after;
        }
        let size = spec.batch.map_or(rest.len(), |s| s.of(total)).max(1);
        for chunk in rest.chunks(size) {
            batches.push(chunk.to_vec());
        }
        Self {
            batches,
            failure_limit: spec.max_fail.map(|limit| limit.of(total)),
            canary: canary.is_some(),
        }
    }

    /// Whether `failures` after batch `done` (0-based) stop the rollout,
    /// and why.
    pub fn stop_after(&self, done: usize, failures: usize) -> Option<String> {
        if self.canary && done == 0 && failures > 0 {
            return Some(format!(
                "rollout stopped: the canary had {failures} {}",
                plural(failures)
            ));
        }
        match self.failure_limit {
            Some(limit) if failures > limit => Some(format!(
                "rollout stopped after {failures} {}",
                plural(failures)
            )),
            _ => None,
        }
    }
}

fn plural(failures: usize) -> &'static str {
    if failures == 1 { "failure" } else { "failures" }
}

/// A seed for `--order random` when none is given.
pub fn new_seed() -> u64 {
    let mut bytes = [0u8; 8];
    // A clock-based seed is fine if the OS has no randomness to give: the
    // seed is printed either way.
    if getrandom::fill(&mut bytes).is_err() {
        return crate::clock::now_ms().unsigned_abs();
    }
    u64::from_le_bytes(bytes) % 1_000_000
}

/// Fisher-Yates with SplitMix64: the same seed gives the same order on
/// every machine and version, which a library generator would not promise.
fn shuffle(hosts: &mut [usize], seed: u64) {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    for i in (1..hosts.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        hosts.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RolloutSpec {
        RolloutSpec {
            batch: None,
            canary: None,
            max_fail: None,
            pause_ms: 0,
            confirm: false,
            order: Order::File,
        }
    }

    #[test]
    fn sizes_parse_as_counts_or_shares() {
        assert_eq!("5".parse::<Size>(), Ok(Size::Count(5)));
        assert_eq!("20%".parse::<Size>(), Ok(Size::Percent(20)));
        assert!("0%".parse::<Size>().is_err());
        assert!("101%".parse::<Size>().is_err());
        assert!("five".parse::<Size>().is_err());
        assert_eq!(Size::Percent(25).of(20), 5);
        assert_eq!(Size::Percent(10).of(5), 0, "rounds down");
    }

    #[test]
    fn a_canary_comes_first_then_batches_and_limits() {
        let hosts: Vec<usize> = (0..20).collect();
        let plan = Plan::new(
            &hosts,
            &RolloutSpec {
                batch: Some(Size::Count(5)),
                canary: Some(2),
                max_fail: Some(Size::Percent(10)),
                ..spec()
            },
        );
        let sizes: Vec<usize> = plan.batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, [2, 5, 5, 5, 3]);
        assert_eq!(
            plan.batches.concat(),
            hosts,
            "the file's order, every host once"
        );
        assert_eq!(plan.failure_limit, Some(2));
        assert!(plan.stop_after(0, 1).is_some_and(|r| r.contains("canary")));
        assert_eq!(plan.stop_after(1, 2), None);
        assert_eq!(
            plan.stop_after(2, 3).as_deref(),
            Some("rollout stopped after 3 failures")
        );
        let whole = Plan::new(&hosts, &spec());
        assert_eq!(whole.batches.as_slice(), std::slice::from_ref(&hosts));
        let tiny = Plan::new(
            &hosts,
            &RolloutSpec {
                batch: Some(Size::Percent(1)),
                ..spec()
            },
        );
        assert_eq!(tiny.batches.len(), 20, "a batch is never empty");
    }

    #[test]
    fn a_random_order_is_a_permutation_repeated_by_its_seed() {
        let hosts: Vec<usize> = (0..50).collect();
        let random = |seed| {
            Plan::new(
                &hosts,
                &RolloutSpec {
                    order: Order::Random(seed),
                    ..spec()
                },
            )
            .batches
            .concat()
        };
        let a = random(42);
        assert_eq!(a, random(42));
        assert_ne!(a, random(43));
        assert_ne!(a, hosts);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, hosts);
    }

    #[test]
    fn the_plan_reads_as_asked() {
        let text = RolloutSpec {
            batch: Some(Size::Percent(25)),
            canary: Some(1),
            max_fail: Some(Size::Count(0)),
            pause_ms: 30_000,
            confirm: false,
            order: Order::Random(7),
        }
        .describe();
        assert_eq!(
            text,
            "canary 1, batches of 25%, stop after more than 0 failures, 30s between batches, random order (seed 7)"
        );
    }
}
