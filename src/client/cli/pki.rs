//! `vigie pki` (the fleet CA on this machine) and `vigie enroll`.

use std::{io::BufRead, path::PathBuf, process::ExitCode, time::Duration};

use super::{
    CliError, Context, Global,
    gather::{self, CallKind},
    output::Printer,
};
use crate::{
    client::{
        enroll::{self, EnrollFailure},
        pki::{self, FleetCa},
        text::visible,
    },
    types::Role,
};

/// The fleet CA's directory option, shared by the commands that use it.
#[derive(Debug, Clone, clap::Args)]
pub struct PkiDir {
    /// The fleet CA's directory [default: $XDG_CONFIG_HOME/vigie/pki].
    #[arg(long, value_name = "DIR", env = "VIGIE_PKI")]
    pub pki: Option<PathBuf>,
}

impl PkiDir {
    fn path(&self) -> Result<PathBuf, CliError> {
        self.pki.clone().or_else(pki::default_dir).ok_or_else(|| {
            CliError::Usage("no PKI directory: give --pki DIR (HOME is not set)".into())
        })
    }

    pub(super) fn open(&self) -> Result<FleetCa, CliError> {
        FleetCa::open(&self.path()?).map_err(pki_error)
    }
}

fn pki_error(e: pki::PkiError) -> CliError {
    CliError::Usage(e.to_string())
}

/// What to do with the fleet CA.
#[derive(Debug, clap::Subcommand)]
pub enum PkiAction {
    /// Create the fleet CA, your own admin certificate and a client config.
    Init {
        /// Your name in the fleet [default: $USER].
        #[arg(long)]
        name: Option<String>,
    },
    /// Issue a certificate for an operator, with its role inside.
    AddOperator {
        /// The operator's name.
        name: String,
        /// viewer, operator or admin.
        #[arg(long)]
        role: Role,
        /// How long it is valid, e.g. 12h, 7d.
        #[arg(long, default_value = "12h", value_parser = humantime::parse_duration)]
        valid: Duration,
        /// Issue a new certificate even if the operator has a valid one.
        #[arg(long)]
        force: bool,
    },
    /// Revoke every certificate of a host or an operator (or one serial),
    /// then push the list with `vigie pki push`.
    Revoke {
        /// A host's or operator's name, or a serial number in hex.
        target: String,
    },
    /// List what the fleet CA issued and revoked, and the fleet tokens.
    List,
    /// Add a fleet token for scripts and grpcurl (printed once; agents get
    /// its hash with `vigie pki push`).
    AddToken {
        /// Who holds it.
        name: String,
        /// viewer, operator or admin.
        #[arg(long)]
        role: Role,
    },
    /// Remove a fleet token (then `vigie pki push`).
    RemoveToken {
        /// Its holder's name.
        name: String,
    },
    /// Sign an air-gapped host's certificate request (`vigie-agent request`)
    /// into a bundle for `vigie-agent import`.
    SignHost {
        /// The host's name (as in the hosts file).
        name: String,
        /// The address clients dial it at.
        #[arg(long)]
        address: String,
        /// The request (PEM or DER).
        #[arg(long, value_name = "FILE")]
        csr: PathBuf,
        /// The bundle's directory (created).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// How long the certificate is valid.
        #[arg(long, default_value = "90d", value_parser = humantime::parse_duration)]
        valid: Duration,
    },
    /// Send the revocation list and the fleet tokens to the selected hosts.
    Push,
    /// Renew the certificates of the selected hosts that expire soon.
    Renew {
        /// Renew those that expire within this.
        #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
        within: Duration,
        /// Renew every selected host's certificate.
        #[arg(long)]
        all: bool,
        /// How long the new certificates are valid.
        #[arg(long, default_value = "90d", value_parser = humantime::parse_duration)]
        valid: Duration,
    },
}

/// `vigie enroll`'s options.
#[derive(Debug, clap::Args)]
pub struct EnrollArgs {
    /// Hosts to enroll: names of the hosts file, or addresses.
    #[arg(required = true, value_name = "HOST")]
    pub targets: Vec<String>,
    /// Read the join code from stdin (one host), or `NAME CODE` lines (several).
    #[arg(long)]
    pub join_code_stdin: bool,
    /// How long the agents' certificates are valid.
    #[arg(long, default_value = "90d", value_parser = humantime::parse_duration)]
    pub valid: Duration,
    /// The fleet CA.
    #[command(flatten)]
    pub pki: PkiDir,
}

pub(super) async fn run(
    global: &Global,
    dir: &PkiDir,
    action: PkiAction,
    printer: &Printer,
) -> Result<ExitCode, CliError> {
    match action {
        PkiAction::Init { name } => init(global, dir, name, printer),
        PkiAction::AddOperator {
            name,
            role,
            valid,
            force,
        } => {
            let ca = dir.open()?;
            let bundle = ca
                .add_operator(&name, role, valid, force)
                .map_err(pki_error)?;
            printer.line(&format!(
                "{name} ({role}): certificate valid until {} UTC, serial {}",
                crate::clock::utc(bundle.facts.not_after_ms),
                bundle.facts.serial_hex()
            ));
            printer.line(&format!(
                "give them: {}, {} (secret) and {}",
                bundle.cert.display(),
                bundle.key.display(),
                bundle.config.display()
            ));
            printer.line(&format!(
                "they connect with: vigie --config {} …",
                bundle.config.display()
            ));
            Ok(ExitCode::SUCCESS)
        }
        PkiAction::Revoke { target } => {
            let ca = dir.open()?;
            for issued in ca.revoke(&target).map_err(pki_error)? {
                printer.line(&format!(
                    "revoked {} {} (serial {})",
                    issued.kind, issued.name, issued.serial
                ));
            }
            printer.line("push the new list to the fleet: vigie pki push");
            Ok(ExitCode::SUCCESS)
        }
        PkiAction::List => {
            let ca = dir.open()?;
            let ledger = ca.ledger().map_err(pki_error)?;
            let now = crate::clock::now_ms();
            for i in &ledger.issued {
                let state = match i.revoked_at_ms {
                    Some(_) => "revoked".to_owned(),
                    None if i.not_after_ms <= now => "expired".to_owned(),
                    None => format!("valid until {} UTC", crate::clock::utc(i.not_after_ms)),
                };
                let role = i.role.map(|r| format!(" ({r})")).unwrap_or_default();
                printer.line(&format!(
                    "{} {}{role}  serial {}  {state}",
                    i.kind, i.name, i.serial
                ));
            }
            for t in &ledger.tokens {
                printer.line(&format!("token {} ({})", t.name, t.role));
            }
            printer.line(&format!("revocation list number {}", ledger.crl_number));
            Ok(ExitCode::SUCCESS)
        }
        PkiAction::AddToken { name, role } => {
            let token = dir.open()?.add_token(&name, role).map_err(pki_error)?;
            printer.line(&format!("token for {name} ({role}): {token}"));
            printer.line("agents learn it with: vigie pki push");
            Ok(ExitCode::SUCCESS)
        }
        PkiAction::RemoveToken { name } => {
            dir.open()?.remove_token(&name).map_err(pki_error)?;
            printer.line(&format!(
                "removed token {name}; push it to the fleet: vigie pki push"
            ));
            Ok(ExitCode::SUCCESS)
        }
        PkiAction::SignHost {
            name,
            address,
            csr,
            out,
            valid,
        } => {
            let request = std::fs::read(&csr)
                .map_err(|e| CliError::Usage(format!("{}: {e}", csr.display())))?;
            let facts = dir
                .open()?
                .sign_host_bundle(&request, &name, &address, valid, &out)
                .map_err(pki_error)?;
            printer.line(&format!(
                "{name}: certificate valid until {} UTC (serial {}) in {}; on the host: vigie-agent import DIR",
                crate::clock::utc(facts.not_after_ms),
                facts.serial_hex(),
                out.display()
            ));
            Ok(ExitCode::SUCCESS)
        }
        PkiAction::Push => {
            let policy = enroll::policy_of(&dir.open()?).map_err(pki_error)?;
            let context = Context::new(global, printer).await?;
            let results = gather::gather(
                &context,
                printer,
                "pushing",
                CallKind::Change,
                move |client| {
                    let policy = policy.clone();
                    async move { enroll::push(&client, policy).await }
                },
            )
            .await;
            for (host, outcome) in &results {
                if let crate::client::fleet::Outcome::Done(pushed) = outcome {
                    printer.line(&format!(
                        "{}: revocation list {} ({} revoked), {} fleet tokens",
                        printer.host(context.name(*host)),
                        pushed.number,
                        pushed.revoked,
                        pushed.tokens
                    ));
                }
            }
            let all_ok = gather::report_failures(&context, printer, &results);
            Ok(gather::exit_code(all_ok))
        }
        PkiAction::Renew { within, all, valid } => {
            renew(global, dir, within, all, valid, printer).await
        }
    }
}

fn init(
    global: &Global,
    dir: &PkiDir,
    name: Option<String>,
    printer: &Printer,
) -> Result<ExitCode, CliError> {
    let path = dir.path()?;
    let name = name
        .or_else(|| std::env::var("USER").ok())
        .filter(|n| pki::check_name(n).is_ok())
        .unwrap_or_else(|| "admin".to_owned());
    let ca = FleetCa::init(&path).map_err(pki_error)?;
    let bundle = ca
        .add_operator(&name, Role::Admin, pki::OWNER_VALIDITY, false)
        .map_err(pki_error)?;
    printer.line(&format!(
        "created the fleet CA in {} (its key, ca-key.pem, never leaves this machine)",
        path.display()
    ));
    printer.line(&format!(
        "your certificate: {name} (admin), valid until {} UTC",
        crate::clock::utc(bundle.facts.not_after_ms)
    ));
    let config = global
        .config
        .clone()
        .or_else(super::super::config::default_path);
    match config {
        Some(config) if !config.exists() => {
            if let Some(parent) = config.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| CliError::Usage(format!("{}: {e}", parent.display())))?;
            }
            std::fs::copy(&bundle.config, &config)
                .map_err(|e| CliError::Usage(format!("{}: {e}", config.display())))?;
            printer.line(&format!("wrote the client config {}", config.display()));
        }
        Some(config) => printer.line(&format!(
            "{} exists: to use the fleet CA, copy the [defaults] of {} into it",
            config.display(),
            bundle.config.display()
        )),
        None => {}
    }
    printer.line(
        "next: on each host, `vigie-agent install` (or `vigie deploy`), then `vigie enroll HOST`",
    );
    Ok(ExitCode::SUCCESS)
}

async fn renew(
    global: &Global,
    dir: &PkiDir,
    within: Duration,
    all: bool,
    valid: Duration,
    printer: &Printer,
) -> Result<ExitCode, CliError> {
    let ca = dir.open()?;
    let context = Context::new(global, printer).await?;
    let horizon =
        crate::clock::now_ms() + i64::try_from(within.as_millis()).unwrap_or(i64::MAX / 2);
    let mut all_ok = true;
    for &index in &context.selection {
        let Some(host) = context.fleet.host(index) else {
            continue;
        };
        let name = printer.host(host.name());
        let result = async {
            let client = host.client().await.map_err(EnrollFailure::from)?;
            let info = client
                .connection_info()
                .await
                .map_err(EnrollFailure::from)?;
            let due = info
                .agent_certificate
                .as_ref()
                .is_none_or(|c| c.not_after_ms <= horizon);
            if !(all || due) {
                return Ok(None);
            }
            let served = host.certificate().ok_or_else(|| {
                EnrollFailure::BadRequest("the agent showed no TLS certificate".into())
            })?;
            enroll::renew(
                &ca,
                &client,
                host.name(),
                &host.address(),
                &served.public_key,
                valid,
            )
            .await
            .map(Some)
        }
        .await;
        match result {
            Ok(Some(cert)) => printer.line(&format!(
                "{name}: renewed, valid until {} UTC (serial {})",
                crate::clock::utc(cert.not_after_ms),
                visible(&cert.serial)
            )),
            Ok(None) => printer.line(&format!("{name}: not due")),
            Err(e) => {
                all_ok = false;
                printer.note(&format!("{name}: {}", visible(&e.to_string())));
            }
        }
    }
    Ok(gather::exit_code(all_ok))
}

/// `vigie enroll`: enrolls each host with its join code.
pub(super) async fn enroll_hosts(
    global: &Global,
    args: EnrollArgs,
    printer: &Printer,
) -> Result<ExitCode, CliError> {
    if !args.join_code_stdin {
        return Err(CliError::Usage(
            "give the join code on stdin with --join-code-stdin (a code on the command line would be \
             visible to every local user)"
                .into(),
        ));
    }
    let mut codes = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| CliError::Usage(format!("stdin: {e}")))?;
        if !line.trim().is_empty() {
            codes.push(line.trim().to_owned());
        }
    }
    let ca = args.pki.open()?;
    let context = Context::for_hosts(global, &args.targets, printer).await?;
    let code_for = |name: &str| -> Option<String> {
        if context.selection.len() == 1 && codes.len() == 1 && !codes[0].contains(' ') {
            return Some(codes[0].clone());
        }
        codes.iter().find_map(|line| {
            let (host, code) = line.split_once(char::is_whitespace)?;
            (host == name).then(|| code.trim().to_owned())
        })
    };
    let mut all_ok = true;
    for &index in &context.selection {
        let Some(host) = context.fleet.host(index) else {
            continue;
        };
        let name = printer.host(host.name());
        let Some(code) = code_for(host.name()) else {
            all_ok = false;
            printer.note(&format!(
                "{name}: no join code on stdin (a line `{} CODE`)",
                visible(host.name())
            ));
            continue;
        };
        match enroll::enroll(&ca, host.name(), &host.address(), &code, args.valid).await {
            Ok(cert) => printer.line(&format!(
                "{name}: enrolled, certificate valid until {} UTC (serial {})",
                crate::clock::utc(cert.not_after_ms),
                visible(&cert.serial)
            )),
            Err(e) => {
                all_ok = false;
                printer.note(&format!("{name}: {}", visible(&e.to_string())));
            }
        }
    }
    Ok(gather::exit_code(all_ok))
}
