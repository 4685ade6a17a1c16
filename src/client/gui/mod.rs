//! vigie-gui, the desktop client (the `gui` feature): a window from which
//! to watch and command many hosts, built on the same client library as the
//! CLI.
//!
//! `ui/*.slint` hold the layout; `controller` holds the logic, free of any
//! Slint type and tested without a window; `app` adapts one to the other.

pub mod app;
pub mod controller;

slint::include_modules!();

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::Parser;
use slint::ComponentHandle;

/// The vigie desktop client.
#[derive(Debug, Parser)]
#[command(name = "vigie-gui", version, about, long_about = None)]
pub struct Args {
    /// Hosts file to open [default: the last one; without any, this machine].
    #[arg(value_name = "FILE", conflicts_with = "hosts_flag")]
    hosts: Option<PathBuf>,

    /// Hosts file to open, as the CLI takes it.
    #[arg(long = "hosts", id = "hosts_flag", value_name = "FILE")]
    hosts_flag: Option<PathBuf>,

    /// Client config (TLS, tokens) [default: ~/.config/vigie/client.toml].
    #[arg(long, value_name = "FILE", env = "VIGIE_CONFIG")]
    config: Option<PathBuf>,
}

impl Args {
    /// The hosts file asked for, positional or `--hosts`.
    pub fn hosts_file(&self) -> Option<&PathBuf> {
        self.hosts.as_ref().or(self.hosts_flag.as_ref())
    }
}

/// The whole `vigie-gui` program.
pub fn main() -> ExitCode {
    let args = Args::parse();
    // One connection per host, as for the CLI.
    let _ = crate::rlimit::raise_open_files();
    let hosts_file = args.hosts_file().cloned();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VIGIE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config_path = args
        .config
        .or_else(|| crate::client::config::default_path().filter(|p| p.exists()));
    let config = match config_path.map(|p| crate::client::ClientConfig::load(&p)) {
        Some(Ok(config)) => config,
        Some(Err(e)) => {
            eprintln!("vigie-gui: {e}");
            return ExitCode::from(2);
        }
        None => crate::client::ClientConfig::default(),
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("vigie-gui: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = app::Options {
        hosts_file,
        config,
        settings_path: controller::settings::Settings::default_path(),
        history: crate::client::history::History::default_location(),
        monitor_interval: Duration::from_secs(10),
    };
    let code = match app::App::new(options, runtime.handle().clone(), true) {
        Ok(app) => match app.window().run() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("vigie-gui: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("vigie-gui: cannot open the window: {e}");
            ExitCode::FAILURE
        }
    };
    runtime.shutdown_timeout(Duration::from_secs(2));
    code
}

/// The runtime the window's network work runs on: two threads, each a
/// little lower in priority than the interface thread (nice 5), so that
/// ten thousand hosts answering at once never take the CPU from input and
/// drawing on a machine with two cores.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("vigie-gui-io")
        .on_thread_start(|| {
            // SAFETY: setpriority reads its arguments only; on Linux the
            // nice value is per thread, and gettid names this one. A
            // failure leaves the priority as it was.
            unsafe {
                libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 5);
            }
        })
        .enable_all()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hosts_file_is_given_as_the_cli_takes_it_or_positionally() {
        let flag = Args::try_parse_from(["vigie-gui", "--hosts", "a.csv"]).unwrap();
        assert_eq!(flag.hosts_file(), Some(&PathBuf::from("a.csv")));
        let positional = Args::try_parse_from(["vigie-gui", "b.csv"]).unwrap();
        assert_eq!(positional.hosts_file(), Some(&PathBuf::from("b.csv")));
        assert!(Args::try_parse_from(["vigie-gui", "a", "--hosts", "b"]).is_err());
    }
}
