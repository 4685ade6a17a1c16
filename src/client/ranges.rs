//! Host ranges, as clush writes them.
//!
//! `web1,web2,web3,web7` compacts to `web[1-3,7]`, and `web[1-3,7]`
//! expands back. Zero padding is kept: `n01..n03` is `n[01-03]`.

/// Writes a list of host names compactly with numeric ranges.
pub fn compact<S: AsRef<str>>(names: &[S]) -> String {
    // (prefix, suffix) → the digit strings seen, in first-appearance order
    // of the keys; names without a number stay as they are.
    let mut families: Vec<((String, String), Vec<String>)> = Vec::new();
    let mut plain = Vec::new();
    for name in names {
        let name = name.as_ref();
        match split_number(name) {
            Some((prefix, digits, suffix)) if digits.len() <= 18 => {
                let key = (prefix.to_owned(), suffix.to_owned());
                match families.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, numbers)) => numbers.push(digits.to_owned()),
                    None => families.push((key, vec![digits.to_owned()])),
                }
            }
            _ => plain.push(name.to_owned()),
        }
    }
    let mut parts = Vec::new();
    for ((prefix, suffix), digits) in families {
        // Zero-padded numbers fix a width; every number of that width joins
        // their range (n09 and n10 are neighbours). Other numbers are
        // written without padding.
        let padded: Vec<usize> = {
            let mut widths: Vec<usize> = digits
                .iter()
                .filter(|d| d.len() > 1 && d.starts_with('0'))
                .map(String::len)
                .collect();
            widths.sort_unstable();
            widths.dedup();
            widths
        };
        let mut sets: Vec<(usize, Vec<u64>)> = padded.iter().map(|w| (*w, Vec::new())).collect();
        sets.push((0, Vec::new()));
        for d in &digits {
            let Ok(number) = d.parse::<u64>() else {
                continue;
            };
            match sets.iter_mut().find(|(w, _)| *w != 0 && *w == d.len()) {
                Some((_, numbers)) => numbers.push(number),
                None => {
                    if let Some((_, numbers)) = sets.iter_mut().find(|(w, _)| *w == 0) {
                        numbers.push(number);
                    }
                }
            }
        }
        for (width, mut numbers) in sets {
            if numbers.is_empty() {
                continue;
            }
            numbers.sort_unstable();
            numbers.dedup();
            parts.push(render(&prefix, &suffix, width, &numbers));
        }
    }
    parts.extend(plain);
    parts.join(",")
}

/// `prefix[a-b,c]suffix`, or `prefixNsuffix` for a single number.
fn render(prefix: &str, suffix: &str, width: usize, numbers: &[u64]) -> String {
    let pad = |n: u64| format!("{n:0width$}");
    if numbers.len() == 1 {
        return format!("{prefix}{}{suffix}", pad(numbers[0]));
    }
    let mut spans = Vec::new();
    let (mut start, mut end) = (numbers[0], numbers[0]);
    for &n in &numbers[1..] {
        if n == end + 1 {
            end = n;
        } else {
            spans.push((start, end));
            (start, end) = (n, n);
        }
    }
    spans.push((start, end));
    let spans: Vec<String> = spans
        .into_iter()
        .map(|(a, b)| {
            if a == b {
                pad(a)
            } else {
                format!("{}-{}", pad(a), pad(b))
            }
        })
        .collect();
    format!("{prefix}[{}]{suffix}", spans.join(","))
}

/// Splits a name around its last run of digits: ("web", "07", "") for
/// "web07", ("10.0.0.", "5", "") for an address; only the last number
/// varies in a range.
fn split_number(name: &str) -> Option<(&str, &str, &str)> {
    let end = name.rfind(|c: char| c.is_ascii_digit())? + 1;
    // The character before the digits may take more than one byte.
    let start = name[..end]
        .char_indices()
        .rev()
        .find(|(_, c)| !c.is_ascii_digit())
        .map_or(0, |(i, c)| i + c.len_utf8());
    Some((&name[..start], &name[start..end], &name[end..]))
}

/// Expands a host list with ranges: `web[1-3,7],db1` → web1, web2, web3,
/// web7, db1. Commas inside brackets belong to the range.
pub fn expand(pattern: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    for item in split_top_level(pattern) {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        match item.find('[') {
            None => names.push(item.to_owned()),
            Some(open) => {
                let close = item[open..]
                    .find(']')
                    .map(|i| open + i)
                    .ok_or_else(|| format!("missing ']' in {item:?}"))?;
                let (prefix, spec, suffix) =
                    (&item[..open], &item[open + 1..close], &item[close + 1..]);
                // An IPv6 address in brackets is not a range.
                if spec.contains(':') {
                    names.push(item.to_owned());
                    continue;
                }
                for span in spec.split(',') {
                    let (a, b) = span.split_once('-').unwrap_or((span, span));
                    let width = if a.len() > 1 && a.starts_with('0') {
                        a.len()
                    } else {
                        0
                    };
                    let start: u64 = a
                        .trim()
                        .parse()
                        .map_err(|_| format!("bad range {span:?} in {item:?}"))?;
                    let end: u64 = b
                        .trim()
                        .parse()
                        .map_err(|_| format!("bad range {span:?} in {item:?}"))?;
                    if end < start || end - start > 100_000 {
                        return Err(format!("bad range {span:?} in {item:?}"));
                    }
                    for n in start..=end {
                        names.push(format!("{prefix}{n:0width$}{suffix}"));
                    }
                }
            }
        }
    }
    Ok(names)
}

fn split_top_level(pattern: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in pattern.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&pattern[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&pattern[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_compact_and_expand_back() {
        let names = [
            "web1", "web2", "web3", "web7", "db", "n01", "n02", "n10", "web5",
        ];
        let compacted = compact(&names);
        assert_eq!(compacted, "web[1-3,5,7],n[01-02,10],db");
        let mut expanded = expand(&compacted).unwrap();
        expanded.sort();
        let mut original: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        original.sort();
        assert_eq!(expanded, original);
    }

    #[test]
    fn padded_and_plain_numbers() {
        let names: Vec<String> = (0..35).map(|i| format!("n{i:02}")).collect();
        assert_eq!(compact(&names), "n[00-34]");
        assert_eq!(compact(&["web9", "web10", "web11"]), "web[9-11]");
        assert_eq!(compact(&["a01", "a2", "a03"]), "a[01,03],a2");
    }

    #[test]
    fn addresses_and_suffixes() {
        assert_eq!(
            compact(&["127.0.0.1:40001", "127.0.0.1:40002", "127.0.0.1:40004"]),
            "127.0.0.1:[40001-40002,40004]"
        );
        assert_eq!(compact(&["rack1-a", "rack2-a"]), "rack[1-2]-a");
        assert_eq!(expand("[::1]:7421").unwrap(), vec!["[::1]:7421"]);
        assert_eq!(
            expand("h[8-10].lan").unwrap(),
            vec!["h8.lan", "h9.lan", "h10.lan"]
        );
        assert!(expand("web[3-1]").is_err());
        assert!(expand("web[1-").is_err());
        assert!(expand("web[a-b]").is_err());
    }

    #[test]
    fn names_with_characters_beyond_ascii_before_the_number() {
        assert_eq!(compact(&["wéb1", "wéb2"]), "wéb[1-2]");
        assert_eq!(compact(&["web\u{202e}1"]), "web\u{202e}1");
    }
}
