//! The agent config: any text is refused or loads, and an exec allow-list
//! that loads is either accepted by the policy or refused with a reason.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(config) = toml::from_str::<vigie::server::AgentConfig>(text) {
        let _ = vigie::server::policy::ExecPolicy::new(
            config.no_exec,
            config.exec_allow,
            config.signal_any_process,
        );
    }
});
