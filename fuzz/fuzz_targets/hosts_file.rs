//! Hosts files: any text parses (a bad CSV header aside) and every bad line
//! is reported with a line number inside the file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let lines = text.split(['\n', '\r']).count();
    if let Ok(file) = vigie::client::hosts::HostsFile::parse(text) {
        for error in &file.errors {
            assert!((1..=lines).contains(&error.line));
        }
    }
});
