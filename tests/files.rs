//! File transfers against real agents over gRPC: byte-exact round trips,
//! a corrupted upload detected with the target untouched, a cut upload
//! resumed, the path rules (traversal, links, outside the roots, roles
//! without roots), the size cap, `vigie push` / `vigie pull` to several
//! hosts, a tree pushed with its modes, and a bit flipped on the wire by a
//! proxy in either direction.

mod support;

use std::path::{Path, PathBuf};

use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};
use tonic::Code;
use vigie::{
    client::{AgentClient, Error},
    proto::{self, remote_agent_client::RemoteAgentClient},
    server::auth::Role,
    types::{GetEvent, PutHeader},
};

use support::{
    TestAgent,
    cli::{Scratch, hosts_arg, json_lines, run, stderr, stdout},
    proxy::{Corrupt, FaultProxy, Faults, Link},
};

/// An agent whose (anonymous, admin) callers may use `root`.
fn agent_with_root(root: &Path) -> TestAgent {
    let root = root.to_owned();
    TestAgent::with_config(move |c| {
        c.file_roots = [(Role::Admin, vec![root])].into();
        c.max_file_bytes = 2 << 30;
    })
}

/// `size` pseudo-random bytes (xorshift, eight bytes a step).
fn random(size: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut data = Vec::with_capacity(size + 8);
    while data.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data.extend_from_slice(&state.to_le_bytes());
    }
    data.truncate(size);
    data
}

fn header(path: &str, data: &[u8], replace: bool) -> PutHeader {
    PutHeader {
        path: path.to_owned(),
        mode: 0o640,
        size: data.len() as u64,
        sha256: Sha256::digest(data).into(),
        replace,
    }
}

/// Uploads `data` whole through the client library.
async fn put(client: &AgentClient, path: &str, data: &[u8], replace: bool) -> Result<u64, Error> {
    let (accepted, offset) = oneshot::channel();
    let (tx, rx) = mpsc::channel(8);
    let owned = data.to_vec();
    let feeder = tokio::spawn(async move {
        let Ok(offset) = offset.await else { return };
        for chunk in owned[offset as usize..].chunks(1 << 20) {
            if tx.send(bytes::Bytes::copy_from_slice(chunk)).await.is_err() {
                return;
            }
        }
    });
    let done = client
        .put_file(header(path, data, replace), accepted, rx)
        .await;
    let _ = feeder.await;
    done.map(|d| d.size)
}

async fn get(client: &AgentClient, path: &str) -> Result<Vec<u8>, Error> {
    let mut events = client.get_file(path, 0).await?;
    let mut data = Vec::new();
    while let Some(event) = events.next().await {
        match event? {
            GetEvent::Info { .. } => {}
            GetEvent::Chunk(chunk) => data.extend_from_slice(&chunk),
            GetEvent::Done { sha256 } => {
                assert_eq!(sha256, hex::encode(Sha256::digest(&data)));
                return Ok(data);
            }
        }
    }
    panic!("no digest");
}

fn code(result: Result<impl std::fmt::Debug, Error>) -> Code {
    match result {
        Err(Error::Status(status)) => status.code(),
        other => panic!("expected a status, got {other:?}"),
    }
}

fn canonical(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().canonicalize().unwrap()
}

// Several threads: making and hashing a gibibyte here must not keep the
// client's connection from answering the agent's keepalive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_of_every_size_round_trip_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let root = canonical(&dir);
    let agent = agent_with_root(&root);
    let client = agent.client().await;
    for (size, name) in [(0, "empty"), (1, "one"), (1 << 20, "mib"), (1 << 30, "gib")] {
        let data = random(size, size as u64 + 7);
        let path = format!("{}/{name}", root.display());
        assert_eq!(
            put(&client, &path, &data, false).await.unwrap(),
            size as u64
        );
        assert_eq!(std::fs::read(&path).unwrap(), data, "{name} on disk");
        assert_eq!(get(&client, &path).await.unwrap(), data, "{name} back");
    }
    // Nothing but the files is left in the directory.
    let mut names: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["empty", "gib", "mib", "one"]);
}

/// A raw upload: the header, then these chunks, then (with `end`) the end
/// of the stream; the agent's answers.
async fn raw_put(
    agent: &TestAgent,
    header: proto::PutFileHeader,
    chunks: Vec<Vec<u8>>,
    end: bool,
) -> (
    Option<u64>,
    Result<Option<proto::PutFileDone>, tonic::Status>,
) {
    let channel = tonic::transport::Channel::from_shared(agent.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = RemoteAgentClient::new(channel);
    let (tx, rx) = mpsc::channel(16);
    tx.send(proto::PutFileRequest {
        step: Some(proto::put_file_request::Step::Header(header)),
    })
    .await
    .unwrap();
    let mut answers = client
        .put_file(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let offset = match answers.message().await {
        Ok(Some(proto::PutFileResponse {
            step: Some(proto::put_file_response::Step::Accepted(a)),
        })) => Some(a.offset),
        Ok(_) => None,
        Err(status) => return (None, Err(status)),
    };
    for chunk in chunks {
        tx.send(proto::PutFileRequest {
            step: Some(proto::put_file_request::Step::Chunk(chunk.into())),
        })
        .await
        .unwrap();
    }
    if !end {
        // Cut: the connection goes away with the stream half sent.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        drop(answers);
        drop(tx);
        return (offset, Ok(None));
    }
    drop(tx);
    let done = match answers.message().await {
        Ok(Some(proto::PutFileResponse {
            step: Some(proto::put_file_response::Step::Done(done)),
        })) => Ok(Some(done)),
        Ok(_) => Ok(None),
        Err(status) => Err(status),
    };
    (offset, done)
}

fn wire_header(path: &str, data: &[u8], replace: bool) -> proto::PutFileHeader {
    proto::PutFileHeader {
        path: path.to_owned(),
        mode: 0o600,
        size: data.len() as u64,
        sha256: Sha256::digest(data).to_vec(),
        replace,
    }
}

#[tokio::test]
async fn a_corrupted_upload_leaves_the_target_untouched_and_a_cut_one_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let root = canonical(&dir);
    let agent = agent_with_root(&root);
    let path = format!("{}/config", root.display());
    std::fs::write(&path, b"the old content").unwrap();

    // One byte flipped on the way: DATA_LOSS, the old file as it was.
    let data = random(3 << 20, 1);
    let mut flipped = data.clone();
    flipped[1_500_000] ^= 0x40;
    let (_, done) = raw_put(
        &agent,
        wire_header(&path, &data, true),
        flipped.chunks(1 << 20).map(<[u8]>::to_vec).collect(),
        true,
    )
    .await;
    assert_eq!(done.unwrap_err().code(), Code::DataLoss);
    assert_eq!(std::fs::read(&path).unwrap(), b"the old content");
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 1, "nothing left");

    // Cut after 2 MiB: the target is untouched; the same upload again
    // resumes at 2 MiB and lands whole.
    let (offset, _) = raw_put(
        &agent,
        wire_header(&path, &data, true),
        data[..2 << 20]
            .chunks(1 << 20)
            .map(<[u8]>::to_vec)
            .collect(),
        false,
    )
    .await;
    assert_eq!(offset, Some(0));
    assert_eq!(std::fs::read(&path).unwrap(), b"the old content");
    let mut resumed = None;
    for _ in 0..50 {
        // The agent notices the cut a moment later.
        let (offset, done) =
            raw_put(&agent, wire_header(&path, &data, true), Vec::new(), false).await;
        let _ = done;
        if offset == Some(2 << 20) {
            resumed = offset;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(resumed, Some(2 << 20));
    let (offset, done) = raw_put(
        &agent,
        wire_header(&path, &data, true),
        vec![data[2 << 20..].to_vec()],
        true,
    )
    .await;
    assert_eq!(offset, Some(2 << 20));
    let done = done.unwrap().expect("done");
    assert!(done.replaced);
    assert_eq!(std::fs::read(&path).unwrap(), data);
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 1, "nothing left");
}

#[tokio::test]
async fn paths_out_of_the_roots_links_and_caps_are_refused_with_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    let base = canonical(&dir);
    let root = base.join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(base.join("secret"), b"keep").unwrap();
    std::os::unix::fs::symlink(&base, root.join("up")).unwrap();
    std::os::unix::fs::symlink(base.join("secret"), root.join("file-link")).unwrap();
    let agent = TestAgent::with_config({
        let root = root.clone();
        move |c| {
            c.file_roots = [(Role::Admin, vec![root])].into();
            c.max_file_bytes = 1000;
        }
    });
    let client = agent.client().await;
    let at = |p: &str| format!("{}/{p}", root.display());
    for (path, expected) in [
        (at("../secret"), Code::InvalidArgument),
        (at("up/secret"), Code::PermissionDenied),
        (format!("{}/secret", base.display()), Code::PermissionDenied),
        ("/etc/passwd".to_owned(), Code::PermissionDenied),
        ("relative".to_owned(), Code::InvalidArgument),
        (at("missing/file"), Code::NotFound),
    ] {
        assert_eq!(
            code(put(&client, &path, b"x", true).await),
            expected,
            "{path}"
        );
        assert_eq!(code(get(&client, &path).await), expected, "{path}");
    }
    assert_eq!(
        code(put(&client, &at("file-link"), b"evil", true).await),
        Code::FailedPrecondition
    );
    assert_eq!(
        code(get(&client, &at("file-link")).await),
        Code::PermissionDenied
    );
    assert_eq!(std::fs::read(base.join("secret")).unwrap(), b"keep");
    assert_eq!(
        code(put(&client, &at("big"), &[0; 1001], false).await),
        Code::PermissionDenied
    );
    put(&client, &at("small"), b"one", false).await.unwrap();
    assert_eq!(
        code(put(&client, &at("small"), b"two", false).await),
        Code::AlreadyExists
    );
    assert_eq!(std::fs::read(at("small")).unwrap(), b"one");
    // A role without roots transfers nothing.
    let off = TestAgent::start();
    let client = off.client().await;
    assert_eq!(
        code(put(&client, "/tmp/x", b"x", true).await),
        Code::PermissionDenied
    );
}

#[test]
fn push_and_pull_move_a_file_to_and_from_several_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let roots: Vec<PathBuf> = (0..2)
        .map(|i| {
            let root = canonical(&dir).join(format!("host{i}"));
            std::fs::create_dir(&root).unwrap();
            root
        })
        .collect();
    // Both agents run on this machine: each is given its own root, so that
    // what one host receives is told apart from the other's.
    let agents: Vec<TestAgent> = roots.iter().map(|r| agent_with_root(r)).collect();
    let scratch = Scratch::new();
    let hosts = scratch.hosts(&[("web1", &agents[0]), ("web2", &agents[1])], "");
    let local = scratch.path("payload.bin");
    let data = random(5 << 20, 3);
    std::fs::write(&local, &data).unwrap();

    for (i, root) in roots.iter().enumerate() {
        let output = run(scratch
            .vigie()
            .args(hosts_arg(&hosts))
            .args(["--json", "-H", &format!("web{}", i + 1), "push"])
            .arg(&local)
            .arg(root.join("payload.bin")));
        assert!(output.status.success(), "{}", stderr(&output));
        let lines = json_lines(&output);
        assert_eq!(lines[0]["status"], "ok", "{lines:?}");
        assert_eq!(lines[0]["size"], 5 << 20);
        assert_eq!(lines[0]["sha256"], hex::encode(Sha256::digest(&data)));
        assert_eq!(std::fs::read(root.join("payload.bin")).unwrap(), data);
    }
    // Both hosts at once, to a path only web1 allows: one ok, one refused,
    // exit status 1.
    let target = roots[0].join("again.bin");
    let output = run(scratch
        .vigie()
        .args(hosts_arg(&hosts))
        .args(["--json", "push"])
        .arg(&local)
        .arg(&target));
    assert_eq!(output.status.code(), Some(1));
    let lines = json_lines(&output);
    let status: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| (l["host"].as_str().unwrap(), l["status"].as_str().unwrap()))
        .collect();
    assert_eq!(status, [("web1", "ok"), ("web2", "failed")]);
    assert!(lines[1]["error"].as_str().unwrap().contains("outside"));

    // Pull from each host into DIR/HOST/NAME, checked.
    let into = scratch.path("pulled");
    for (i, root) in roots.iter().enumerate() {
        let output = run(scratch
            .vigie()
            .args(hosts_arg(&hosts))
            .args(["-H", &format!("web{}", i + 1), "pull"])
            .arg(root.join("payload.bin"))
            .arg(&into));
        assert!(output.status.success(), "{}", stderr(&output));
    }
    for host in ["web1", "web2"] {
        assert_eq!(
            std::fs::read(into.join(host).join("payload.bin")).unwrap(),
            data
        );
    }
}

/// The permission bits of `path`.
fn mode_of(path: &Path) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&std::fs::symlink_metadata(path).unwrap().permissions())
        & 0o7777
}

#[test]
fn push_sends_a_tree_with_its_modes_and_leaves_links_out() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let roots: Vec<PathBuf> = (0..2)
        .map(|i| {
            let root = canonical(&dir).join(format!("host{i}"));
            std::fs::create_dir(&root).unwrap();
            root
        })
        .collect();
    let agents: Vec<TestAgent> = roots.iter().map(|r| agent_with_root(r)).collect();
    let scratch = Scratch::new();
    let hosts = scratch.hosts(&[("web1", &agents[0]), ("web2", &agents[1])], "");
    // app/{run.sh 0755, conf/ 0750 {a.conf 0640, empty/ 0700}, big 1 MiB,
    // link -> /etc/passwd}
    let app = scratch.path("app");
    std::fs::create_dir_all(app.join("conf/empty")).unwrap();
    std::fs::write(app.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    std::fs::write(app.join("conf/a.conf"), "key = 'a value'\n").unwrap();
    let big = random(1 << 20, 9);
    std::fs::write(app.join("big"), &big).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", app.join("link")).unwrap();
    for (path, mode) in [
        ("run.sh", 0o755),
        ("conf", 0o750),
        ("conf/a.conf", 0o640),
        ("conf/empty", 0o700),
    ] {
        std::fs::set_permissions(app.join(path), std::fs::Permissions::from_mode(mode)).unwrap();
    }

    // Each host has its own root, so each is pushed on its own; then both
    // at once into a directory both have (`/` at the end: by name).
    for (i, root) in roots.iter().enumerate() {
        let output = run(scratch
            .vigie()
            .args(hosts_arg(&hosts))
            .args(["--json", "-H", &format!("web{}", i + 1), "push"])
            .arg(&app)
            .arg(root.join("deployed")));
        assert!(output.status.success(), "{}", stderr(&output));
        let lines = json_lines(&output);
        assert_eq!(lines[0]["status"], "ok", "{lines:?}");
        assert_eq!(lines[0]["files"], 3);
        assert_eq!(lines[0]["dirs"], 3);
        assert_eq!(lines[0]["dirs_created"], 3);
        assert!(
            stderr(&output).contains("left out") && stderr(&output).contains("symbolic link"),
            "{}",
            stderr(&output)
        );
        let deployed = root.join("deployed");
        assert_eq!(std::fs::read(deployed.join("big")).unwrap(), big);
        assert_eq!(
            std::fs::read_to_string(deployed.join("conf/a.conf")).unwrap(),
            "key = 'a value'\n"
        );
        assert!(deployed.join("conf/empty").is_dir());
        assert!(
            !deployed.join("link").exists()
                && std::fs::symlink_metadata(deployed.join("link")).is_err()
        );
        for (path, mode) in [
            ("run.sh", 0o755),
            ("conf", 0o750),
            ("conf/a.conf", 0o640),
            ("conf/empty", 0o700),
        ] {
            assert_eq!(mode_of(&deployed.join(path)), mode, "{path}");
        }
        // Nothing of the agent's own is left in the tree.
        let mut names = Vec::new();
        let mut stack = vec![deployed.clone()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                names.push(path.strip_prefix(&deployed).unwrap().display().to_string());
                if path.is_dir() {
                    stack.push(path);
                }
            }
        }
        names.sort();
        assert_eq!(
            names,
            ["big", "conf", "conf/a.conf", "conf/empty", "run.sh"]
        );
    }

    // Again on web1 without --replace: what the host has already is left
    // untouched (nothing sent); a file that changed here is refused as
    // existing, named in the host's line.
    let output = run(scratch
        .vigie()
        .args(hosts_arg(&hosts))
        .args(["--json", "-H", "web1", "push"])
        .arg(&app)
        .arg(roots[0].join("deployed")));
    assert!(output.status.success(), "{}", stderr(&output));
    let lines = json_lines(&output);
    assert_eq!(
        (lines[0]["files"].as_u64(), lines[0]["unchanged"].as_u64()),
        (Some(3), Some(3))
    );
    assert_eq!(lines[0]["dirs_created"], 0);
    std::fs::write(app.join("big"), b"changed").unwrap();
    let output = run(scratch
        .vigie()
        .args(hosts_arg(&hosts))
        .args(["-H", "web1", "push"])
        .arg(&app)
        .arg(roots[0].join("deployed")));
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert!(
        text.contains(&format!(
            "{}: ",
            roots[0].join("deployed").join("big").display()
        )) && text.contains("exists"),
        "{text}"
    );
    std::fs::write(app.join("big"), &big).unwrap();
    // With --replace, as text: one line for the host, the counts.
    let output = run(scratch
        .vigie()
        .args(hosts_arg(&hosts))
        .args(["-H", "web1", "push", "--replace"])
        .arg(&app)
        .arg(format!("{}/", roots[0].display())));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("3 files, 3 directories (3 new)"),
        "{}",
        stdout(&output)
    );
    assert_eq!(std::fs::read(roots[0].join("app/big")).unwrap(), big);

    // Several files at once go into a directory by name.
    let output = run(scratch
        .vigie()
        .args(hosts_arg(&hosts))
        .args(["--json", "-H", "web2", "push"])
        .arg(app.join("run.sh"))
        .arg(app.join("big"))
        .arg(&roots[1]));
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(std::fs::read(roots[1].join("big")).unwrap(), big);
    assert_eq!(mode_of(&roots[1].join("run.sh")), 0o755);
}

#[test]
fn a_bit_flipped_on_the_wire_is_caught_both_ways_and_nothing_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let root = canonical(&dir);
    let agent = agent_with_root(&root);
    let proxy = FaultProxy::start(agent.addr());
    let scratch = Scratch::new();
    let hosts = scratch.hosts_at(&[("web1", proxy.addr())], "");
    // A file of 0x5a: the proxy's flip lands in its bytes.
    let data = vec![0x5a_u8; 3 << 20];
    let local = scratch.path("payload");
    std::fs::write(&local, &data).unwrap();
    let target = root.join("payload");
    std::fs::write(&target, "the old content").unwrap();
    let corrupt = Some(Corrupt {
        after: 1 << 20,
        byte: 0x5a,
    });

    // Upload: the agent finds the hash wrong, the old file stays.
    proxy.set(Faults {
        up: Link {
            corrupt,
            ..Link::default()
        },
        ..Faults::default()
    });
    let output = run(scratch
        .vigie()
        .args(hosts_arg(&hosts))
        .args(["--json", "push", "--replace"])
        .arg(&local)
        .arg(&target));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let lines = json_lines(&output);
    assert_eq!(lines[0]["status"], "failed", "{lines:?}");
    let error = lines[0]["error"].as_str().unwrap();
    assert!(error.contains("SHA-256"), "{error}");
    assert_eq!(std::fs::read(&target).unwrap(), b"the old content");
    let names: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["payload"], "nothing else left on the host");

    // The same push through a clean link lands.
    proxy.set(Faults::default());
    proxy.reset_all();
    let output = run(scratch
        .vigie()
        .args(hosts_arg(&hosts))
        .args(["push", "--replace"])
        .arg(&local)
        .arg(&target));
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(std::fs::read(&target).unwrap(), data);

    // Download: the client finds the hash wrong and writes nothing.
    proxy.set(Faults {
        down: Link {
            corrupt,
            ..Link::default()
        },
        ..Faults::default()
    });
    let into = scratch.path("pulled");
    let output = run(scratch
        .vigie()
        .args(hosts_arg(&hosts))
        .args(["--json", "pull"])
        .arg(&target)
        .arg(&into));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let lines = json_lines(&output);
    let error = lines[0]["error"].as_str().unwrap();
    assert!(error.contains("hash to"), "{error}");
    let left: Vec<_> = std::fs::read_dir(into.join("web1"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "nothing written: {left:?}");
}

mod scripts {
    //! `script` and `vigie script`: a local script's bytes run by its
    //! interpreter on the hosts, kept in memory only.

    use super::*;
    use vigie::command::{ExecRequest, Shell};

    fn script(text: &str, args: &[&str]) -> ExecRequest {
        ExecRequest {
            shell: Shell::None,
            script: bytes::Bytes::copy_from_slice(text.as_bytes()),
            argv: args.iter().map(|a| (*a).to_owned()).collect(),
            ..ExecRequest::default()
        }
    }

    const ECHO_ARGS: &str =
        "#!/bin/sh\nfor a in \"$@\"; do printf '[%s]\\n' \"$a\"; done\nreadlink \"$0\"\ncat\n";

    #[tokio::test]
    async fn a_script_runs_by_its_interpreter_with_its_arguments_and_stdin_from_memory() {
        let agent = TestAgent::start();
        let client = agent.client().await;
        let mut request = script(ECHO_ARGS, &["a b", "it's", "\"q\"", "$HOME", "-x"]);
        request.stdin = bytes::Bytes::from_static(b"from stdin\n");
        let done = client.run(request).await.unwrap();
        let out = String::from_utf8(done.stdout).unwrap();
        let mut lines = out.lines();
        for expected in ["[a b]", "[it's]", "[\"q\"]", "[$HOME]", "[-x]"] {
            assert_eq!(lines.next(), Some(expected), "{out}");
        }
        // The script was a memory file, not a file on disk.
        let origin = lines.next().unwrap_or_default();
        assert!(origin.contains("memfd:vigie-script"), "{out}");
        assert_eq!(lines.next(), Some("from stdin"));
        assert!(done.exit.unwrap().success());

        // No #! line: named with an interpreter, or refused.
        let bare = script("echo $1\n", &["hi"]);
        assert_eq!(
            code(client.run(bare.clone()).await.map(|_| ())),
            Code::InvalidArgument
        );
        let named = ExecRequest {
            interpreter: Some("/bin/sh".into()),
            ..bare
        };
        let done = client.run(named).await.unwrap();
        assert_eq!(done.stdout, b"hi\n");
    }

    #[tokio::test]
    async fn under_an_allow_list_scripts_need_allow_scripts() {
        let refused = TestAgent::with_config(|c| {
            c.exec_allow = [(Role::Admin, vec!["uptime".into()])].into();
        });
        let client = refused.client().await;
        assert_eq!(
            code(client.run(script(ECHO_ARGS, &["x"])).await.map(|_| ())),
            Code::PermissionDenied
        );
        let allowed = TestAgent::with_config(|c| {
            c.exec_allow = [(Role::Admin, vec!["uptime".into()])].into();
            c.allow_scripts = vec![Role::Admin];
        });
        let client = allowed.client().await;
        let done = client.run(script(ECHO_ARGS, &["x"])).await.unwrap();
        assert!(String::from_utf8_lossy(&done.stdout).starts_with("[x]\n"));
    }

    #[test]
    fn vigie_script_runs_a_local_file_on_every_host() {
        let agents = [TestAgent::start(), TestAgent::start()];
        let scratch = Scratch::new();
        let hosts = scratch.hosts(&[("web1", &agents[0]), ("web2", &agents[1])], "");
        let file = scratch.path("check.sh");
        std::fs::write(&file, "#!/bin/sh\necho \"checking $1\"\nexit 3\n").unwrap();
        let output = run(scratch
            .vigie()
            .args(hosts_arg(&hosts))
            .arg("script")
            .arg(&file)
            .arg("the disk"));
        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
        let text = String::from_utf8_lossy(&output.stdout);
        for host in ["web1", "web2"] {
            assert!(
                text.contains(&format!("{host}: checking the disk")),
                "{text}"
            );
        }
        assert!(stderr(&output).contains("exit 3"), "{}", stderr(&output));
    }
}

#[tokio::test]
async fn a_role_with_restricted_commands_uploads_only_when_allowed_and_never_others_writable() {
    let dir = tempfile::tempdir().unwrap();
    let root = canonical(&dir);
    let restricted = |writes: bool| {
        let root = root.clone();
        TestAgent::with_config(move |c| {
            c.file_roots = [(Role::Admin, vec![root])].into();
            c.exec_allow = [(Role::Admin, vec!["uptime".into()])].into();
            if writes {
                c.allow_file_writes = vec![Role::Admin];
            }
        })
    };
    let path = format!("{}/tool", root.display());
    // A file written as the agent's user could be run: refused to a role
    // whose commands are allow-listed, unless the agent says otherwise.
    let refused = restricted(false);
    let client = refused.client().await;
    assert_eq!(
        code(put(&client, &path, b"#!/bin/sh\n", false).await),
        Code::PermissionDenied
    );
    std::fs::write(&path, b"readable").unwrap();
    assert_eq!(
        get(&client, &path).await.unwrap(),
        b"readable",
        "downloads stay allowed"
    );
    let allowed = restricted(true);
    let client = allowed.client().await;
    put(&client, &path, b"new", true).await.unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"new");
    // Others-writable or set-id modes never travel.
    let (accepted, _offset) = oneshot::channel();
    let (_tx, rx) = mpsc::channel(1);
    let result = client
        .put_file(
            PutHeader {
                mode: 0o666,
                ..header(&format!("{}/open", root.display()), b"x", false)
            },
            accepted,
            rx,
        )
        .await;
    assert_eq!(code(result), Code::InvalidArgument);
}
