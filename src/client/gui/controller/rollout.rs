//! The run options of the command bar: a rollout's batch, canary, failure
//! threshold, pause and order, as typed, turned into the run model's
//! [`RolloutSpec`] (the same as `vigie exec --batch …`), or a message
//! saying which field is wrong.

use crate::client::run::{Order, RolloutSpec, Size};

/// The fields as typed; empty means "not asked".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RolloutFields {
    /// Hosts per batch: "5" or "20%".
    pub batch: String,
    /// Canary hosts: "2".
    pub canary: String,
    /// Failures tolerated: "3" or "10%".
    pub max_fail: String,
    /// Pause between batches: "30s".
    pub pause: String,
    /// Shuffle the hosts.
    pub random: bool,
}

impl RolloutFields {
    /// The rollout asked for (None: all hosts at once), or what is wrong.
    pub fn spec(&self, seed: impl FnOnce() -> u64) -> Result<Option<RolloutSpec>, String> {
        let size = |name: &str, text: &str| -> Result<Option<Size>, String> {
            let text = text.trim();
            if text.is_empty() {
                return Ok(None);
            }
            text.parse().map(Some).map_err(|e| format!("{name}: {e}"))
        };
        let canary = match self.canary.trim() {
            "" => None,
            text => Some(
                text.parse::<usize>()
                    .map_err(|_| format!("canary: {text:?} is not a number of hosts"))?,
            ),
        };
        let pause = match self.pause.trim() {
            "" => None,
            text => {
                Some(humantime::parse_duration(text).map_err(|e| format!("pause: {text:?}: {e}"))?)
            }
        };
        let spec = RolloutSpec {
            batch: size("batch", &self.batch)?,
            canary,
            max_fail: size("max fail", &self.max_fail)?,
            pause_ms: pause.map_or(0, |p| p.as_millis() as u64),
            // The window does not ask half-way: the canary decides alone.
            confirm: false,
            order: if self.random {
                Order::Random(seed())
            } else {
                Order::File
            },
        };
        Ok((spec.is_staged() || self.random || pause.is_some()).then_some(spec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_become_the_same_spec_as_the_cli_flags() {
        assert_eq!(RolloutFields::default().spec(|| 1), Ok(None));
        let fields = RolloutFields {
            batch: "25%".into(),
            canary: " 2 ".into(),
            max_fail: "1".into(),
            pause: "2s".into(),
            random: true,
        };
        let spec = fields.spec(|| 9).expect("valid").expect("staged");
        assert_eq!(spec.batch, Some(Size::Percent(25)));
        assert_eq!(spec.canary, Some(2));
        assert_eq!(spec.max_fail, Some(Size::Count(1)));
        assert_eq!(spec.pause_ms, 2000);
        assert_eq!(spec.order, Order::Random(9));
        let wrong = RolloutFields {
            batch: "lots".into(),
            ..RolloutFields::default()
        };
        assert!(wrong.spec(|| 1).unwrap_err().starts_with("batch: "));
        let wrong = RolloutFields {
            pause: "soon".into(),
            ..RolloutFields::default()
        };
        assert!(wrong.spec(|| 1).unwrap_err().starts_with("pause: "));
    }
}
