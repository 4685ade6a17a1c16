//! The access file: any text is refused or loads entries with valid hashes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(file) = vigie::server::auth::AccessFile::parse(text) {
        for token in &file.tokens {
            assert_eq!(token.sha256.len(), 64);
            assert!(token.sha256.bytes().all(|b| b.is_ascii_hexdigit()));
        }
    }
});
