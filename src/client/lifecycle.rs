//! The lifecycle actions of the brief (disconnect, kill, reset), as both
//! front-ends perform and word them.

use super::{AgentClient, Error};

/// A lifecycle action on an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// End this client's session: its commands are killed.
    Disconnect,
    /// Stop the agent.
    Kill,
    /// Restart the agent in place.
    Reset,
}

impl Lifecycle {
    /// Every action.
    pub const ALL: [Self; 3] = [Self::Disconnect, Self::Kill, Self::Reset];

    /// The action's name, as commands, buttons and the history write it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Disconnect => "disconnect",
            Self::Kill => "kill",
            Self::Reset => "reset",
        }
    }

    /// The action a name stands for.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Performs the action on an agent (`client` names the program, for the
    /// agent's log); returns what happened, in words: "session ended, 2
    /// commands cancelled", "stopping (boot 1a2b3c4d)".
    pub async fn perform(self, agent: &AgentClient, client: &str) -> Result<String, Error> {
        match self {
            Self::Disconnect => agent
                .disconnect()
                .await
                .map(|n| format!("session ended, {n} commands cancelled")),
            Self::Kill => agent
                .shutdown(&format!("{client} kill"))
                .await
                .map(|boot| format!("stopping (boot {})", short_boot(&boot))),
            Self::Reset => agent
                .restart(&format!("{client} reset"))
                .await
                .map(|boot| format!("restarting (boot {})", short_boot(&boot))),
        }
    }
}

/// The start of a boot id, as `conn` shows it. Cut by characters: the agent
/// chooses the id, and a byte slice could fall inside a character.
fn short_boot(boot: &str) -> String {
    boot.chars().take(8).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back() {
        for action in Lifecycle::ALL {
            assert_eq!(Lifecycle::parse(action.name()), Some(action));
        }
        assert_eq!(Lifecycle::parse("os"), None);
        assert_eq!(short_boot("é123456789"), "é1234567");
    }
}
