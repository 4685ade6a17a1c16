//! The command line's logic: recalling earlier commands with the arrow keys.

/// Earlier commands, newest last, and where the arrows are in them.
#[derive(Debug, Default)]
pub struct Recall {
    commands: Vec<String>,
    position: Option<usize>,
}

impl Recall {
    /// Recall over these commands (oldest first); repeats are dropped,
    /// keeping the latest use.
    pub fn new(commands: impl IntoIterator<Item = String>) -> Self {
        let mut recall = Self::default();
        for command in commands {
            recall.remember(&command);
        }
        recall
    }

    /// Adds a command as the newest, and resets the position.
    pub fn remember(&mut self, command: &str) {
        let command = command.trim();
        if command.is_empty() {
            return;
        }
        self.commands.retain(|c| c != command);
        self.commands.push(command.to_owned());
        self.position = None;
    }

    /// The command before the current one (up arrow).
    pub fn older(&mut self) -> Option<&str> {
        let next = match self.position {
            None => self.commands.len().checked_sub(1)?,
            Some(0) => 0,
            Some(p) => p - 1,
        };
        self.position = Some(next);
        self.commands.get(next).map(String::as_str)
    }

    /// The command after the current one (down arrow); empty past the newest.
    pub fn newer(&mut self) -> Option<&str> {
        let p = self.position?;
        if p + 1 >= self.commands.len() {
            self.position = None;
            return Some("");
        }
        self.position = Some(p + 1);
        self.commands.get(p + 1).map(String::as_str)
    }

    /// Every command, newest first (for the drop-down).
    pub fn newest_first(&self) -> Vec<String> {
        self.commands.iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrows_walk_the_commands() {
        let mut recall = Recall::new(["ls".into(), "uptime".into(), "ls".into()]);
        assert_eq!(recall.newest_first(), vec!["ls", "uptime"]);
        assert_eq!(recall.older(), Some("ls"));
        assert_eq!(recall.older(), Some("uptime"));
        assert_eq!(recall.older(), Some("uptime"), "stops at the oldest");
        assert_eq!(recall.newer(), Some("ls"));
        assert_eq!(recall.newer(), Some(""), "past the newest: an empty line");
        assert_eq!(recall.newer(), None);
        recall.remember("df -h");
        assert_eq!(recall.older(), Some("df -h"));
        assert_eq!(Recall::default().older(), None);
    }
}
