//! Per-host diff (as clush's `--diff`): the largest group of identical
//! results is the reference, and each other group is a unified diff
//! against it. Both front-ends show the same text, made visible line by
//! line where they frame it.

use similar::TextDiff;

/// A unified diff of `other` against `reference` (lines, three of
/// context), under headers naming each side; empty when they are equal.
pub fn unified(reference: &[u8], other: &[u8], reference_label: &str, other_label: &str) -> String {
    let reference = String::from_utf8_lossy(reference);
    let other = String::from_utf8_lossy(other);
    TextDiff::from_lines(reference.as_ref(), other.as_ref())
        .unified_diff()
        .context_radius(3)
        .header(reference_label, other_label)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_names_both_sides_and_shows_only_what_differs() {
        let text = unified(b"a\nb\nc\n", b"a\nB\nc\n", "web[1-3] (3)", "db1 (1)");
        assert_eq!(
            text,
            "--- web[1-3] (3)\n+++ db1 (1)\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n"
        );
        assert_eq!(unified(b"same\n", b"same\n", "a", "b"), "");
    }
}
