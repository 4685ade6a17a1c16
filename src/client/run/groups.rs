//! Grouping hosts with identical results, like clush's `-b`: the CLI's
//! `exec -b` and the desktop client's Grouped view both group through
//! here, so one run always groups the same way in both.

use std::{collections::HashMap, hash::Hash};

/// Members (hosts) whose results are identical, shown once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group<T, K> {
    /// The members, in the order they were given.
    pub members: Vec<T>,
    /// What they have in common.
    pub key: K,
}

/// Groups members with equal keys: the largest group first, then in order
/// of first appearance. Linear in the number of members.
pub fn group_by<T, K: Eq + Hash + Clone>(
    results: impl IntoIterator<Item = (T, K)>,
) -> Vec<Group<T, K>> {
    let mut groups: Vec<Group<T, K>> = Vec::new();
    let mut index: HashMap<K, usize> = HashMap::new();
    for (member, key) in results {
        match index.get(&key) {
            Some(&i) => groups[i].members.push(member),
            None => {
                index.insert(key.clone(), groups.len());
                groups.push(Group {
                    members: vec![member],
                    key,
                });
            }
        }
    }
    // A stable sort keeps first-appearance order among equal sizes.
    groups.sort_by_key(|g| std::cmp::Reverse(g.members.len()));
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_group_comes_first_then_first_appearance() {
        let groups = group_by([("a", 1), ("b", 2), ("c", 2), ("d", 3)]);
        let hosts: Vec<Vec<&str>> = groups.into_iter().map(|g| g.members).collect();
        assert_eq!(hosts, [vec!["b", "c"], vec!["a"], vec!["d"]]);
    }
}
