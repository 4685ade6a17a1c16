//! `vigie-agent init` and `vigie-agent token add`: everything a newcomer
//! needs for an encrypted, authenticated agent, made in one command.
//!
//! `init` writes into one directory: a CA certificate, a server
//! certificate for this host's names and addresses, an admin client
//! certificate, an access file with one admin token (stored as a hash), an
//! agent config and a client config (certificate and key, no token).
//! The CA's key signs those two certificates and is then forgotten: it is
//! never written, so nothing on the host can mint certificates, and the
//! admin token is printed once and stored only as a hash. Files that hold
//! secrets are created with mode 0600, and nothing that exists is ever
//! overwritten. A fleet of hosts uses `vigie pki` and `vigie enroll`
//! instead, with one CA on the operator's machine.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use super::auth::{self, AccessFile, CertificateEntry, Role, TokenEntry};
use crate::wire::DEFAULT_PORT;

/// The files `init` writes, by name inside the directory.
pub mod files {
    /// The CA certificate (public; its key is never written).
    pub const CA: &str = "ca.pem";
    /// The agent's certificate.
    pub const AGENT_CERT: &str = "agent.pem";
    /// The agent's private key (secret).
    pub const AGENT_KEY: &str = "agent-key.pem";
    /// The admin client certificate.
    pub const CLIENT_CERT: &str = "client.pem";
    /// The admin client's private key (secret).
    pub const CLIENT_KEY: &str = "client-key.pem";
    /// The access file.
    pub const ACCESS: &str = "access.toml";
    /// The agent config.
    pub const AGENT_CONFIG: &str = "agent.toml";
    /// The client config (names the admin's key: kept private).
    pub const CLIENT_CONFIG: &str = "client.toml";
    /// Where the agent config sends the audit log.
    pub const AUDIT_LOG: &str = "audit.jsonl";
}

/// Why `init` or `token add` failed.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// A file to create exists already.
    #[error("{0} exists already: init never overwrites files (choose another --dir)")]
    Exists(PathBuf),
    /// Writing or reading a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Certificate generation failed.
    #[error("cannot create certificates: {0}")]
    Certificate(#[from] rcgen::Error),
    /// A `--name` is neither a DNS name nor an IP address.
    #[error("invalid --name {0:?}: give a host name or an IP address")]
    BadName(String),
    /// The OS random generator failed.
    #[error("cannot generate a token: {0}")]
    Random(String),
    /// The access file is unusable.
    #[error(transparent)]
    Access(#[from] auth::AccessFileError),
    /// The name is taken.
    #[error("a token named {0:?} exists already in the access file")]
    DuplicateName(String),
    /// The name cannot be used.
    #[error(
        "invalid token name {0:?}: use 1 to 64 letters, digits, '.', '_' or '-', starting with a \
         letter or a digit"
    )]
    BadTokenName(String),
    /// A file could not be written as TOML.
    #[error("cannot write TOML: {0}")]
    Serialize(String),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> InitError + '_ {
    move |source| InitError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What `init` made.
#[derive(Debug)]
pub struct Initialized {
    /// The admin token (shown once; only its hash is stored).
    pub admin_token: String,
    /// Every file written.
    pub files: Vec<PathBuf>,
    /// The names and addresses the server certificate is valid for.
    pub server_names: Vec<String>,
    /// The server certificate's fingerprint, for clients that pin it.
    pub fingerprint: String,
}

/// Creates the CA, certificates, access file and configs in `dir`.
///
/// `extra_names` are added to the server certificate besides this host's
/// name, `localhost` and its addresses; `listen` goes into the agent config.
pub fn init(dir: &Path, extra_names: &[String], listen: &str) -> Result<Initialized, InitError> {
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let path = |name: &str| dir.join(name);
    for name in [
        files::CA,
        files::AGENT_CERT,
        files::AGENT_KEY,
        files::CLIENT_CERT,
        files::CLIENT_KEY,
        files::ACCESS,
        files::AGENT_CONFIG,
        files::CLIENT_CONFIG,
    ] {
        if path(name).exists() {
            return Err(InitError::Exists(path(name)));
        }
    }

    let hostname = super::system::hostname();
    let (ca_params, ca_key) = ca_params(&hostname)?;
    let ca_cert = ca_params.clone().self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, &ca_key);

    let server_names = server_names(&hostname, extra_names)?;
    let agent_key = KeyPair::generate()?;
    let agent_cert = leaf_params(
        &hostname,
        &server_names,
        ExtendedKeyUsagePurpose::ServerAuth,
    )?
    .signed_by(&agent_key, &issuer)?;

    let client_key = KeyPair::generate()?;
    let client_cert = leaf_params("vigie-admin", &[], ExtendedKeyUsagePurpose::ClientAuth)?
        .signed_by(&client_key, &issuer)?;

    let admin_token = auth::generate_token().map_err(|e| InitError::Random(e.to_string()))?;
    let access = AccessFile {
        tokens: vec![TokenEntry {
            name: "admin".into(),
            role: Role::Admin,
            sha256: auth::hash_token(&admin_token),
        }],
        certificates: vec![CertificateEntry {
            subject: "CN=vigie-admin".into(),
            role: Role::Admin,
        }],
    };

    let agent_config = agent_config_text(listen)?;
    let client_config = client_config_text(files::CLIENT_CERT, files::CLIENT_KEY, "the admin")?;

    let mut written = Vec::new();
    let mut write = |name: &str, contents: &[u8], secret: bool| -> Result<(), InitError> {
        write_new(&path(name), contents, secret)?;
        written.push(path(name));
        Ok(())
    };
    write(files::CA, ca_cert.pem().as_bytes(), false)?;
    // The CA key goes out of scope here, unwritten.
    drop(issuer);
    drop(ca_key);
    write(files::AGENT_CERT, agent_cert.pem().as_bytes(), false)?;
    write(files::AGENT_KEY, agent_key.serialize_pem().as_bytes(), true)?;
    write(files::CLIENT_CERT, client_cert.pem().as_bytes(), false)?;
    write(
        files::CLIENT_KEY,
        client_key.serialize_pem().as_bytes(),
        true,
    )?;
    write(files::ACCESS, access_text(&access)?.as_bytes(), true)?;
    write(files::AGENT_CONFIG, agent_config.as_bytes(), false)?;
    write(files::CLIENT_CONFIG, client_config.as_bytes(), true)?;
    Ok(Initialized {
        admin_token,
        files: written,
        server_names,
        fingerprint: crate::tls::fingerprint(agent_cert.der()),
    })
}

/// What `token add` made.
#[derive(Debug)]
pub struct TokenAdded {
    /// The new token (shown once).
    pub token: String,
}

/// Adds a token for `name` with `role` to the access file. No certificate
/// comes with it (no CA key is kept on the host): on an agent that asks for
/// client certificates, the token names its holder on top of one; for
/// certificates of their own, operators use a fleet CA (`vigie pki`).
pub fn add_token(access_path: &Path, name: &str, role: Role) -> Result<TokenAdded, InitError> {
    check_name(name)?;
    // One change at a time: without the lock, a `token add` that read the
    // file before someone deleted a token would write that token back.
    let dir = access_path.parent().unwrap_or(Path::new("."));
    let _lock = crate::atomic_file::lock_directory(dir).map_err(io_error(dir))?;
    let mut access = AccessFile::load(access_path)?;
    if access.tokens.iter().any(|t| t.name == name) {
        return Err(InitError::DuplicateName(name.to_owned()));
    }
    let token = auth::generate_token().map_err(|e| InitError::Random(e.to_string()))?;
    access.tokens.push(TokenEntry {
        name: name.to_owned(),
        role,
        sha256: auth::hash_token(&token),
    });

    crate::atomic_file::replace(access_path, access_text(&access)?.as_bytes(), 0o600)
        .map_err(io_error(access_path))?;
    Ok(TokenAdded { token })
}

/// Checks a token holder's name: it becomes an identity (`token:NAME`), a
/// certificate subject (`CN=vigie-NAME`) and part of file names, so only
/// letters, digits, `.`, `_` and `-` are allowed, starting with a letter or
/// a digit, at most 64 of them.
pub fn check_name(name: &str) -> Result<(), InitError> {
    if crate::pki::is_valid_name(name) {
        Ok(())
    } else {
        Err(InitError::BadTokenName(name.to_owned()))
    }
}

/// A TOML document from a table, through the serializer only, after a
/// fixed comment: no value can ever break out of its string.
fn toml_file(comment: &str, table: toml::Table) -> Result<String, InitError> {
    let body = toml::to_string(&table).map_err(|e| InitError::Serialize(e.to_string()))?;
    Ok(format!("{comment}{body}"))
}

fn agent_config_text(listen: &str) -> Result<String, InitError> {
    let mut table = toml::Table::new();
    for (key, value) in [
        ("listen", listen),
        ("tls_cert", files::AGENT_CERT),
        ("tls_key", files::AGENT_KEY),
        ("client_ca", files::CA),
        ("access_file", files::ACCESS),
        ("audit_log", files::AUDIT_LOG),
    ] {
        table.insert(key.into(), value.into());
    }
    toml_file(
        "# vigie agent configuration written by `vigie-agent init`.\n\
         # Relative paths are relative to this file. Start the agent with\n\
         #   vigie-agent --config THIS_FILE\n\
         # client_ca makes clients present a certificate signed by the CA\n\
         # (mutual TLS); remove it to accept bearer tokens alone.\n",
        table,
    )
}

fn client_config_text(cert: &str, key: &str, whom: &str) -> Result<String, InitError> {
    let mut defaults = toml::Table::new();
    for (k, v) in [("ca", files::CA), ("cert", cert), ("key", key)] {
        defaults.insert(k.into(), v.into());
    }
    let mut table = toml::Table::new();
    table.insert("defaults".into(), defaults.into());
    // `whom` is "the admin" or a name that `check_name` accepted.
    toml_file(
        &format!(
            "# vigie client configuration for {whom}, written by vigie-agent.\n\
             # It names a private key: keep both private (mode 0600).\n\
             # Relative paths are relative to this file.\n"
        ),
        table,
    )
}

fn access_text(access: &AccessFile) -> Result<String, InitError> {
    let body = toml::to_string(access).map_err(|e| InitError::Serialize(e.to_string()))?;
    Ok(format!(
        "# Who may call this agent. Tokens are stored as SHA-256 hashes only.\n\
         # Add one with: vigie-agent token add --access FILE --name NAME --role ROLE\n\
         # Roles: viewer (read), operator (+ Execute, SignalProcess), admin (+ Shutdown, Restart).\n\n\
         {body}"
    ))
}

fn ca_params(hostname: &str) -> Result<(CertificateParams, KeyPair), InitError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    // A random suffix keeps two CAs made on the same host apart: clients
    // find a certificate's issuer by name.
    let mut suffix = [0u8; 4];
    getrandom::fill(&mut suffix).map_err(|e| InitError::Random(e.to_string()))?;
    name.push(
        DnType::CommonName,
        format!("vigie CA ({hostname}) {}", hex::encode(suffix)),
    );
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    set_validity(&mut params, 3650);
    Ok((params, key))
}

fn leaf_params(
    common_name: &str,
    names: &[String],
    usage: ExtendedKeyUsagePurpose,
) -> Result<CertificateParams, InitError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.subject_alt_names = names
        .iter()
        .map(|n| match n.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => Ok(SanType::DnsName(
                n.clone()
                    .try_into()
                    .map_err(|_| InitError::BadName(n.clone()))?,
            )),
        })
        .collect::<Result<_, InitError>>()?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    set_validity(&mut params, 825);
    Ok(params)
}

/// Valid from a day ago (clocks differ) for `days` days.
fn set_validity(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(days);
}

/// This host's name, `localhost`, every address of the host, and the
/// extra names, without repeats.
fn server_names(hostname: &str, extra: &[String]) -> Result<Vec<String>, InitError> {
    let mut names = vec![hostname.to_owned(), "localhost".to_owned()];
    names.extend(["127.0.0.1".to_owned(), "::1".to_owned()]);
    if let Ok(networks) = sysinfo::Networks::new_with_refreshed_list() {
        for (_, data) in networks.iter() {
            for network in data.ip_networks() {
                // Link-local IPv6 addresses need a zone and are never dialled.
                let link_local =
                    matches!(network.addr, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80);
                if !link_local {
                    names.push(network.addr.to_string());
                }
            }
        }
    }
    for name in extra {
        let valid = name.parse::<IpAddr>().is_ok()
            || (!name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '*'));
        if !valid {
            return Err(InitError::BadName(name.clone()));
        }
        names.push(name.clone());
    }
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    Ok(names)
}

/// Creates a file that must not exist yet, with mode 0600 for secrets.
fn write_new(path: &Path, contents: &[u8], secret: bool) -> Result<(), InitError> {
    crate::atomic_file::write_new(path, contents, if secret { 0o600 } else { 0o644 }).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            InitError::Exists(path.to_owned())
        } else {
            InitError::Io {
                path: path.to_owned(),
                source: e,
            }
        }
    })
}

/// The default listen address of a TLS agent made by `init`.
pub fn default_listen() -> String {
    format!("0.0.0.0:{DEFAULT_PORT}")
}
