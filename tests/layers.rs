//! The layers of the code, checked rather than only written down in
//! ARCHITECTURE.md: which modules may know gRPC, the server, the client or
//! Slint. A line that breaks a rule fails here with its file and number.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, with its path relative to the package.
fn sources(dir: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("a source directory")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    walk(&root.join(dir), &mut out);
    out.into_iter()
        .map(|p| p.strip_prefix(root).expect("under the package").to_owned())
        .collect()
}

/// The code lines of a file (comments left out) that contain `needle`, as
/// "file:line: text".
fn lines_with(path: &Path, needle: &str) -> Vec<String> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .expect("a readable source file");
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            let code = line.trim_start();
            !code.starts_with("//") && code.contains(needle)
        })
        .map(|(n, line)| format!("{}:{}: {}", path.display(), n + 1, line.trim()))
        .collect()
}

fn name_of(path: &Path) -> String {
    path.to_string_lossy().replace('\\', "/")
}

#[test]
fn only_the_adapters_of_the_agent_know_grpc() {
    // The service adapter, its error mapping, the gate layer, TLS settings,
    // the connection info tonic asks for, the HTTP/2 serving of the
    // connections, and the server itself.
    let adapters = [
        "src/server/service.rs",
        "src/server/fleet_service.rs",
        "src/server/service/jobs.rs",
        "src/server/service/files.rs",
        "src/server/error.rs",
        "src/server/layer.rs",
        "src/server/net.rs",
        "src/server/serve.rs",
        "src/server/mod.rs",
    ];
    let broken: Vec<String> = sources("src/server")
        .iter()
        .filter(|p| !adapters.contains(&name_of(p).as_str()))
        .flat_map(|p| lines_with(p, "tonic"))
        .collect();
    assert!(
        broken.is_empty(),
        "core modules importing tonic:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_client_reaches_into_the_server_only_to_embed_an_agent() {
    let broken: Vec<String> = sources("src/client")
        .iter()
        .flat_map(|p| lines_with(p, "server::"))
        .filter(|line| !line.contains("PrivateAgent") && !line.contains("AgentConfig"))
        .collect();
    assert!(
        broken.is_empty(),
        "the client uses the server beyond embedding an agent:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_agent_knows_nothing_of_its_clients() {
    let broken: Vec<String> = sources("src/server")
        .iter()
        .flat_map(|p| lines_with(p, "client::"))
        .collect();
    assert!(
        broken.is_empty(),
        "the server uses the client:\n{}",
        broken.join("\n")
    );
}

#[test]
fn controllers_and_the_run_model_hold_no_slint_and_no_terminal() {
    let mut files = sources("src/client/gui/controller");
    files.extend(sources("src/client/run"));
    files.push("src/client/present.rs".into());
    files.push("src/client/jobs.rs".into());
    let broken: Vec<String> = files
        .iter()
        .flat_map(|p| {
            let mut hits = lines_with(p, "slint");
            hits.extend(lines_with(p, "std::io::stdout"));
            hits.extend(lines_with(p, "cli::"));
            hits
        })
        .collect();
    assert!(
        broken.is_empty(),
        "a UI type in the logic:\n{}",
        broken.join("\n")
    );
}

#[test]
fn generated_code_has_one_home() {
    let broken: Vec<String> = sources("src")
        .iter()
        .filter(|p| name_of(p) != "src/proto.rs")
        .flat_map(|p| lines_with(p, "include_proto!"))
        .collect();
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}
