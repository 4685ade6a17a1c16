//! Terminal escape injection (finding 5 of the security review): a host
//! must not be able to drive the operator's terminal through the text vigie
//! frames. A hostile agent answers every rpc with escape sequences (a title
//! change, a screen clear, an OSC 52 clipboard write), a carriage return
//! that would overwrite the host's prefix, a C1 control, a bidi override
//! and a zero-width space; the real `vigie` binary talks to it and to a real
//! agent whose command prints the sequence of the report. Whatever vigie
//! frames (prefixed lines, `-b` groups, tables, errors, the history) must
//! show those characters, and single-host output stays byte-exact, as with
//! ssh.

mod support;

use std::{net::SocketAddr, pin::Pin, process::Output};

use futures::Stream;
use support::{
    TestAgent,
    cli::{Scratch, hosts_arg, json_lines, run, stderr, stdout},
};
use tonic::{Request, Response, Status};
use vigie::proto::{self, remote_agent_server::RemoteAgent};

/// Every string the hostile agent sends: a title change, a screen clear,
/// a clipboard write, a carriage return, a C1 CSI, a bidi override and a
/// zero-width space.
const EVIL: &str =
    "\u{1b}]0;pwned\u{7}\u{1b}[2J\u{1b}]52;c;cHduZWQ=\u{7}ok\rFAKE\u{9b}31m\u{202e}gnp.exe\u{200b}";
/// How vigie shows [`EVIL`].
const SHOWN: &str = "^[]0;pwned^G^[[2J^[]52;c;cHduZWQ=^Gok^MFAKE<U+009B>31m<U+202E>gnp.exe<U+200B>";
/// The hostile agent's name in the hosts file: a bidi override in it.
const EVIL_HOST: &str = "evil\u{202e}1";
const EVIL_HOST_SHOWN: &str = "evil<U+202E>1";
/// A boot id whose eighth byte falls inside a character.
const BOOT: &str = "b\u{e9}\u{e9}\u{e9}\u{e9}\u{1b}[2J";
/// What the real agent runs: the report's reproduction, then a comment
/// holding a raw escape sequence, so that the command line itself, as the
/// history keeps it, carries one.
const COMMAND: &str = "printf '\\033]0;pwned\\007\\033[2J' # \u{1b}]0;pwned\u{7}";

/// What the hostile agent writes on stdout, chunk by chunk: a hostile
/// line, a line whose carriage return would overwrite its prefix with
/// another host's, CRLF, a byte that is not UTF-8, and an unfinished line.
fn evil_stdout() -> Vec<Vec<u8>> {
    vec![
        format!("{EVIL}\n").into_bytes(),
        b"harmless\rweb: all good\r\n".to_vec(),
        b"not utf-8: \xff\n".to_vec(),
        b"unfinished".to_vec(),
    ]
}

/// An agent that answers every rpc with [`EVIL`] in every string.
#[derive(Debug, Clone, Copy)]
struct Hostile;

type Events = Pin<Box<dyn Stream<Item = Result<proto::ExecuteResponse, Status>> + Send>>;
type Samples = Pin<Box<dyn Stream<Item = Result<proto::WatchMetricsResponse, Status>> + Send>>;

fn output(stream: proto::OutputStream, data: Vec<u8>) -> proto::ExecuteResponse {
    proto::ExecuteResponse {
        event: Some(proto::execute_response::Event::Output(proto::Output {
            stream: stream.into(),
            data: data.into(),
            offset: 0,
        })),
    }
}

/// A job whose every text is hostile.
fn evil_job() -> proto::Job {
    proto::Job {
        job_id: EVIL.into(),
        identity: EVIL.into(),
        command: EVIL.into(),
        argv: vec![EVIL.into()],
        state: proto::JobState::Running.into(),
        ..proto::Job::default()
    }
}

#[tonic::async_trait]
impl RemoteAgent for Hostile {
    async fn get_system_info(
        &self,
        _: Request<proto::GetSystemInfoRequest>,
    ) -> Result<Response<proto::GetSystemInfoResponse>, Status> {
        Ok(Response::new(proto::GetSystemInfoResponse {
            os_family: proto::OsFamily::Linux.into(),
            os_name: EVIL.into(),
            os_version: EVIL.into(),
            os_long_name: EVIL.into(),
            kernel_version: EVIL.into(),
            architecture: EVIL.into(),
            hostname: EVIL.into(),
            interfaces: vec![proto::NetworkInterface {
                name: EVIL.into(),
                mac_address: EVIL.into(),
                addresses: vec![proto::IpAddress {
                    address: "10.9.9.9".into(),
                    prefix_length: 8,
                    ipv6: false,
                    loopback: false,
                }],
            }],
            cpu_model: EVIL.into(),
            cpu_count: 1,
            memory: Some(proto::MemoryInfo {
                total_bytes: 1 << 30,
                used_bytes: 1 << 29,
                ..Default::default()
            }),
            disks: vec![proto::DiskInfo {
                mount_point: EVIL.into(),
                device: EVIL.into(),
                file_system: EVIL.into(),
                total_bytes: 1 << 30,
                available_bytes: 1 << 29,
                ..Default::default()
            }],
            agent_version: EVIL.into(),
            boot_id: EVIL.into(),
            ..Default::default()
        }))
    }

    type WatchMetricsStream = Samples;

    async fn watch_metrics(
        &self,
        _: Request<proto::WatchMetricsRequest>,
    ) -> Result<Response<Self::WatchMetricsStream>, Status> {
        Err(Status::unavailable(EVIL))
    }

    type ExecuteStream = Events;

    async fn execute(
        &self,
        request: Request<proto::ExecuteRequest>,
    ) -> Result<Response<Self::ExecuteStream>, Status> {
        if request.get_ref().command.contains("fail") {
            return Err(Status::failed_precondition(EVIL));
        }
        let mut events = vec![proto::ExecuteResponse {
            event: Some(proto::execute_response::Event::Started(proto::Started {
                pid: 4242,
                argv: vec![EVIL.into()],
                started_at_ms: 0,
                job_id: EVIL.into(),
            })),
        }];
        for chunk in evil_stdout() {
            events.push(output(proto::OutputStream::Stdout, chunk));
        }
        events.push(output(
            proto::OutputStream::Stderr,
            format!("{EVIL}\n").into_bytes(),
        ));
        events.push(proto::ExecuteResponse {
            event: Some(proto::execute_response::Event::Exited(proto::Exited {
                exit_code: 0,
                reason: proto::EndReason::Exited.into(),
                ..Default::default()
            })),
        });
        Ok(Response::new(Box::pin(futures::stream::iter(
            events.into_iter().map(Ok),
        ))))
    }

    async fn list_processes(
        &self,
        _: Request<proto::ListProcessesRequest>,
    ) -> Result<Response<proto::ListProcessesResponse>, Status> {
        Ok(Response::new(proto::ListProcessesResponse {
            processes: vec![proto::ProcessInfo {
                pid: 4242,
                parent_pid: 1,
                name: EVIL.into(),
                command_line: EVIL.into(),
                user: EVIL.into(),
                status: EVIL.into(),
                ..Default::default()
            }],
        }))
    }

    async fn signal_process(
        &self,
        _: Request<proto::SignalProcessRequest>,
    ) -> Result<Response<proto::SignalProcessResponse>, Status> {
        Err(Status::not_found(EVIL))
    }

    async fn get_connection_info(
        &self,
        _: Request<proto::GetConnectionInfoRequest>,
    ) -> Result<Response<proto::GetConnectionInfoResponse>, Status> {
        Ok(Response::new(proto::GetConnectionInfoResponse {
            peer_address: EVIL.into(),
            session_id: EVIL.into(),
            identity: EVIL.into(),
            role: EVIL.into(),
            hostname: EVIL.into(),
            listen_addresses: vec![EVIL.into()],
            boot_id: EVIL.into(),
            agent_version: EVIL.into(),
            agent_certificate: Some(proto::CertificateSummary {
                subject: EVIL.into(),
                serial: EVIL.into(),
                not_after_ms: 1,
                fingerprint: EVIL.into(),
            }),
            ..Default::default()
        }))
    }

    async fn disconnect(
        &self,
        _: Request<proto::DisconnectRequest>,
    ) -> Result<Response<proto::DisconnectResponse>, Status> {
        Err(Status::internal(EVIL))
    }

    async fn shutdown(
        &self,
        _: Request<proto::ShutdownRequest>,
    ) -> Result<Response<proto::ShutdownResponse>, Status> {
        Ok(Response::new(proto::ShutdownResponse {
            boot_id: BOOT.into(),
            cancelled_commands: 0,
        }))
    }

    type EnrollStream =
        futures::stream::Iter<std::vec::IntoIter<Result<proto::EnrollResponse, Status>>>;

    async fn enroll(
        &self,
        _: Request<tonic::Streaming<proto::EnrollRequest>>,
    ) -> Result<Response<Self::EnrollStream>, Status> {
        Err(Status::failed_precondition(EVIL))
    }

    type RenewCertificateStream = Self::EnrollStream;

    async fn renew_certificate(
        &self,
        _: Request<tonic::Streaming<proto::EnrollRequest>>,
    ) -> Result<Response<Self::RenewCertificateStream>, Status> {
        Err(Status::failed_precondition(EVIL))
    }

    async fn push_policy(
        &self,
        _: Request<proto::PushPolicyRequest>,
    ) -> Result<Response<proto::PushPolicyResponse>, Status> {
        Err(Status::failed_precondition(EVIL))
    }

    type PutFileStream = Pin<Box<dyn Stream<Item = Result<proto::PutFileResponse, Status>> + Send>>;

    // Takes the whole upload, then lies about what landed.
    async fn put_file(
        &self,
        request: Request<tonic::Streaming<proto::PutFileRequest>>,
    ) -> Result<Response<Self::PutFileStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let accepted = proto::PutFileResponse {
                step: Some(proto::put_file_response::Step::Accepted(
                    proto::PutFileAccepted { offset: 0 },
                )),
            };
            if tx.send(Ok(accepted)).await.is_err() {
                return;
            }
            while let Ok(Some(_)) = inbound.message().await {}
            let done = proto::PutFileResponse {
                step: Some(proto::put_file_response::Step::Done(proto::PutFileDone {
                    path: EVIL.into(),
                    size: 1,
                    sha256: EVIL.as_bytes().to_vec(),
                    replaced: true,
                    unchanged: false,
                })),
            };
            let _ = tx.send(Ok(done)).await;
        });
        let answers: Self::PutFileStream =
            Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx));
        Ok(Response::new(answers))
    }

    type GetFileStream = Pin<Box<dyn Stream<Item = Result<proto::GetFileResponse, Status>> + Send>>;

    async fn get_file(
        &self,
        _: Request<proto::GetFileRequest>,
    ) -> Result<Response<Self::GetFileStream>, Status> {
        Err(Status::not_found(EVIL))
    }

    // Never answers: a push must give the host up, not hang.
    async fn make_directory(
        &self,
        _: Request<proto::MakeDirectoryRequest>,
    ) -> Result<Response<proto::MakeDirectoryResponse>, Status> {
        std::future::pending().await
    }

    type AttachJobStream = Events;

    async fn attach_job(
        &self,
        _: Request<proto::AttachJobRequest>,
    ) -> Result<Response<Self::AttachJobStream>, Status> {
        self.execute(Request::new(proto::ExecuteRequest {
            command: "job".into(),
            ..proto::ExecuteRequest::default()
        }))
        .await
    }

    async fn list_jobs(
        &self,
        _: Request<proto::ListJobsRequest>,
    ) -> Result<Response<proto::ListJobsResponse>, Status> {
        Ok(Response::new(proto::ListJobsResponse {
            jobs: vec![evil_job()],
        }))
    }

    async fn get_job(
        &self,
        _: Request<proto::GetJobRequest>,
    ) -> Result<Response<proto::GetJobResponse>, Status> {
        Ok(Response::new(proto::GetJobResponse {
            job: Some(evil_job()),
        }))
    }

    async fn cancel_job(
        &self,
        _: Request<proto::CancelJobRequest>,
    ) -> Result<Response<proto::CancelJobResponse>, Status> {
        Err(Status::failed_precondition(EVIL))
    }

    async fn restart(
        &self,
        _: Request<proto::RestartRequest>,
    ) -> Result<Response<proto::RestartResponse>, Status> {
        Ok(Response::new(proto::RestartResponse {
            boot_id: BOOT.into(),
            cancelled_commands: 0,
        }))
    }
}

/// The hostile agent, served on 127.0.0.1:0 by its own thread and
/// runtime; dropping it stops the server and joins the thread.
struct HostileAgent {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HostileAgent {
    fn start() -> Self {
        // Bound here, before the thread starts, so the address is known and
        // connections wait in the backlog until the server accepts them.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking socket");
        let addr = listener.local_addr().expect("its address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("a listener");
                tonic::transport::Server::builder()
                    .add_service(proto::remote_agent_server::RemoteAgentServer::new(Hostile))
                    .serve_with_incoming_shutdown(
                        tokio_stream::wrappers::TcpListenerStream::new(listener),
                        async {
                            let _ = stopped.await;
                        },
                    )
                    .await
                    .expect("the hostile agent serves");
            });
        });
        Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for HostileAgent {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The hostile agent and a real one, and a hosts file naming both.
struct Fleet {
    scratch: Scratch,
    hosts: std::path::PathBuf,
    hostile: HostileAgent,
    _real: TestAgent,
}

impl Fleet {
    fn new() -> Self {
        let scratch = Scratch::new();
        let hostile = HostileAgent::start();
        let real = TestAgent::start();
        let hosts = scratch.hosts_at(&[(EVIL_HOST, hostile.addr), ("web", real.addr())], "");
        Self {
            scratch,
            hosts,
            hostile,
            _real: real,
        }
    }

    /// `vigie --hosts FILE --color COLOR ARGS…`.
    fn vigie(&self, color: &str, args: &[&str]) -> Output {
        run(self
            .scratch
            .vigie()
            .args(hosts_arg(&self.hosts))
            .args(["--color", color])
            .args(args))
    }
}

/// True for the characters a terminal obeys or hides: C0 controls but tab
/// and newline, DEL, C1 controls, bidi controls and zero-width characters.
/// Written out here rather than taken from vigie, so the test does not
/// trust the code it checks.
fn obeyed_or_hidden(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{8}' | '\u{b}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
        | '\u{61c}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// Asserts that `bytes` (one stream of a run with `--color never`) holds
/// nothing a terminal would obey or hide: no ESC, no BEL, no carriage
/// return, no C1, no bidi or zero-width character, and is valid UTF-8.
fn assert_inert(what: &str, bytes: &[u8]) {
    let text = std::str::from_utf8(bytes).unwrap_or_else(|e| {
        panic!(
            "{what}: not UTF-8 ({e}): {:?}",
            String::from_utf8_lossy(bytes)
        )
    });
    if let Some(c) = text.chars().find(|c| obeyed_or_hidden(*c)) {
        panic!("{what}: {c:?} reaches the terminal in {text:?}");
    }
}

/// Asserts that every ESC in `bytes` (a run with `--color always`) starts
/// an SGR sequence, `ESC [ digits-and-semicolons m`, and that nothing else
/// in it would be obeyed or hidden.
fn assert_only_colors(what: &str, bytes: &[u8]) {
    let mut rest = bytes;
    let mut plain = Vec::new();
    while let Some(at) = rest.iter().position(|b| *b == 0x1b) {
        plain.extend_from_slice(&rest[..at]);
        let not_a_color = || {
            format!(
                "{what}: an escape that is not a colour: {:?}",
                String::from_utf8_lossy(&rest[at..])
            )
        };
        let body = rest[at + 1..]
            .strip_prefix(b"[")
            .unwrap_or_else(|| panic!("{}", not_a_color()));
        let len = body
            .iter()
            .position(|b| !(b.is_ascii_digit() || *b == b';'))
            .unwrap_or(body.len());
        assert_eq!(body.get(len), Some(&b'm'), "{}", not_a_color());
        rest = &body[len + 1..];
    }
    plain.extend_from_slice(rest);
    assert_inert(what, &plain);
}

/// Both streams of a run are inert (`--color never`).
fn assert_run_inert(what: &str, output: &Output) {
    assert_inert(&format!("{what} (stdout)"), &output.stdout);
    assert_inert(&format!("{what} (stderr)"), &output.stderr);
}

/// Both streams of a run hold only colour escapes (`--color always`).
fn assert_run_colors_only(what: &str, output: &Output) {
    assert_only_colors(&format!("{what} (stdout)"), &output.stdout);
    assert_only_colors(&format!("{what} (stderr)"), &output.stderr);
}

#[test]
fn prefixed_lines_show_escape_sequences_instead_of_obeying_them() {
    let fleet = Fleet::new();
    let output = fleet.vigie("never", &["exec", "--", COMMAND]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_run_inert("exec", &output);
    let out = stdout(&output);
    for line in [
        format!("{EVIL_HOST_SHOWN}: {SHOWN}\n"),
        format!("{EVIL_HOST_SHOWN}: harmless^Mweb: all good\n"),
        format!("{EVIL_HOST_SHOWN}: not utf-8: \\xff\n"),
        format!("{EVIL_HOST_SHOWN}: unfinished\n"),
        "web: ^[]0;pwned^G^[[2J\n".to_owned(),
    ] {
        assert!(out.contains(&line), "{line:?} in {out:?}");
    }
    assert!(
        stderr(&output).contains(&format!("{EVIL_HOST_SHOWN}: {SHOWN}\n")),
        "{}",
        stderr(&output)
    );

    let colored = fleet.vigie("always", &["exec", "--", COMMAND]);
    assert!(colored.status.success(), "{}", stderr(&colored));
    assert_run_colors_only("exec --color always", &colored);
    assert!(stdout(&colored).contains(SHOWN), "{}", stdout(&colored));
}

#[test]
fn gathered_groups_show_their_output_and_hosts_instead_of_obeying_them() {
    let fleet = Fleet::new();
    let output = fleet.vigie("never", &["exec", "-b", "--", COMMAND]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_run_inert("exec -b", &output);
    let out = stdout(&output);
    for line in [
        format!("{EVIL_HOST_SHOWN} (1) exit 0\n"),
        format!("\n{SHOWN}\n"),
        "\nharmless^Mweb: all good\n".to_owned(),
        "\nnot utf-8: \\xff\n".to_owned(),
        "\nweb (1) exit 0\n".to_owned(),
        "\n^[]0;pwned^G^[[2J\n".to_owned(),
    ] {
        assert!(out.contains(&line), "{line:?} in {out:?}");
    }
    let colored = fleet.vigie("always", &["exec", "-b", "--", COMMAND]);
    assert_run_colors_only("exec -b --color always", &colored);
}

#[test]
fn tables_show_what_hosts_report_instead_of_obeying_it() {
    let fleet = Fleet::new();
    for args in [
        &["ps", "pwned"][..],
        &["info"],
        &["info", "os"],
        &["info", "cpu"],
        &["info", "ip"],
        &["info", "name"],
        &["info", "disks"],
        &["info", "all"],
        &["conn"],
        &["hosts", "check"],
        &["hosts", "list"],
    ] {
        let what = args.join(" ");
        let output = fleet.vigie("never", args);
        assert!(output.status.success(), "{what}: {}", stderr(&output));
        assert_run_inert(&what, &output);
        let out = stdout(&output);
        assert!(out.contains(EVIL_HOST_SHOWN), "{what}: {out}");
        if args != ["hosts", "list"] {
            assert!(out.contains(SHOWN), "{what}: {out}");
        }
        let colored = fleet.vigie("always", args);
        assert!(colored.status.success(), "{what}: {}", stderr(&colored));
        assert_run_colors_only(&format!("{what} --color always"), &colored);
    }
}

#[test]
fn errors_from_hosts_are_shown_instead_of_obeyed() {
    let fleet = Fleet::new();
    let evil = ["-H", EVIL_HOST];
    let failed = format!("{EVIL_HOST_SHOWN}: failed: failed precondition: {SHOWN}\n");
    for (what, args, expected) in [
        ("exec", &["exec", "--", "true # fail"][..], failed.as_str()),
        (
            "signal",
            &[evil[0], evil[1], "signal", "4242"],
            &format!("{EVIL_HOST_SHOWN}: failed: not found: {SHOWN}\n"),
        ),
        (
            "disconnect",
            &[evil[0], evil[1], "disconnect"],
            &format!("{EVIL_HOST_SHOWN}: failed: internal error: {SHOWN}\n"),
        ),
        (
            "watch",
            &[
                evil[0],
                evil[1],
                "watch",
                "--count",
                "1",
                "--interval",
                "100ms",
            ],
            &format!("{EVIL_HOST_SHOWN}: unavailable: {SHOWN}\n"),
        ),
    ] {
        for color in ["never", "always"] {
            let output = fleet.vigie(color, args);
            assert_eq!(output.status.code(), Some(1), "{what}: {}", stderr(&output));
            if color == "never" {
                assert_run_inert(what, &output);
                assert!(
                    stderr(&output).contains(expected),
                    "{what}: {expected:?} in {:?}",
                    stderr(&output)
                );
            } else {
                assert_run_colors_only(&format!("{what} --color always"), &output);
            }
        }
    }
    // A host that says a push landed with another size and digest than
    // what was sent is not believed; what it said is shown, not obeyed.
    let local = fleet.scratch.path("payload");
    std::fs::write(&local, b"twelve bytes").expect("written");
    let output = fleet.vigie(
        "never",
        &[
            "-H",
            EVIL_HOST,
            "push",
            local.to_str().expect("UTF-8"),
            "/srv/payload",
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_run_inert("push", &output);
    assert!(
        stdout(&output).contains("the agent said the file landed with 1 bytes"),
        "{}",
        stdout(&output)
    );

    // A boot id cut after eight bytes would split a character.
    let reset = fleet.vigie("never", &["-H", EVIL_HOST, "reset"]);
    assert!(reset.status.success(), "{}", stderr(&reset));
    assert_run_inert("reset", &reset);
    assert_eq!(
        stdout(&reset),
        format!("{EVIL_HOST_SHOWN}: restarting (boot b\u{e9}\u{e9}\u{e9}\u{e9}^[[2)\n")
    );
}

#[test]
fn the_history_shows_what_hosts_wrote_instead_of_obeying_it() {
    let fleet = Fleet::new();
    let ran = fleet.vigie("never", &["exec", "--", COMMAND]);
    assert!(ran.status.success(), "{}", stderr(&ran));
    for args in [&["history", "list"][..], &["history", "show", "1"]] {
        let what = args.join(" ");
        for color in ["never", "always"] {
            let output = fleet.vigie(color, args);
            assert!(output.status.success(), "{what}: {}", stderr(&output));
            if color == "always" {
                assert_run_colors_only(&format!("{what} --color always"), &output);
                continue;
            }
            assert_run_inert(&what, &output);
            let out = stdout(&output);
            assert!(out.contains(EVIL_HOST_SHOWN), "{what}: {out}");
            assert!(
                out.contains("# ^[]0;pwned^G"),
                "{what}: the command in {out}"
            );
        }
    }
    let shown = stdout(&fleet.vigie("never", &["history", "show", "1"]));
    for line in [
        format!("    {SHOWN}\n"),
        "    harmless^Mweb: all good\n".to_owned(),
        "    ^[]0;pwned^G^[[2J\n".to_owned(),
    ] {
        assert!(shown.contains(&line), "{line:?} in {shown:?}");
    }
}

#[test]
fn json_lines_escape_every_hidden_character_and_keep_the_text() {
    let fleet = Fleet::new();
    for args in [
        &["exec", "--", COMMAND][..],
        &["exec", "-b", "--", COMMAND],
        &["ps", "pwned"],
        &["info"],
        &["conn"],
        &["hosts", "check"],
        &["hosts", "list"],
        &["history", "list"],
    ] {
        let what = format!("--json {}", args.join(" "));
        let output = fleet.vigie("never", &[&["--json"][..], args].concat());
        assert!(output.status.success(), "{what}: {}", stderr(&output));
        assert_run_inert(&what, &output);
        let lines = json_lines(&output);
        let texts: Vec<String> = lines.iter().flat_map(strings).collect();
        let expected = if args[0] == "exec" && args[1] == "-b" {
            // A group's output is all of it, lines and all.
            format!("{EVIL}\nharmless\rweb: all good\r\n")
        } else if args[0] == "hosts" && args[1] == "list" {
            EVIL_HOST.to_owned()
        } else if args[0] == "history" {
            COMMAND.to_owned()
        } else {
            EVIL.to_owned()
        };
        assert!(
            texts.iter().any(|t| t.contains(&expected)),
            "{what}: {expected:?} in {texts:?}"
        );
    }
}

/// Every string in a JSON value.
fn strings(value: &serde_json::Value) -> Vec<String> {
    match value {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(items) => items.iter().flat_map(strings).collect(),
        serde_json::Value::Object(fields) => fields.values().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn a_single_host_gets_the_bytes_exactly_as_ssh_would() {
    // With one host vigie frames nothing: like ssh, the bytes reach the
    // terminal (or the file stdout is redirected to) exactly as the command
    // wrote them, escape sequences included, as the user guide says.
    let fleet = Fleet::new();
    let output = run(fleet.scratch.vigie().args([
        "-H",
        &fleet.hostile.addr.to_string(),
        "exec",
        "--",
        COMMAND,
    ]));
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(output.stdout, evil_stdout().concat());
    assert_eq!(output.stderr, format!("{EVIL}\n").into_bytes());
}

#[test]
fn a_host_that_never_answers_is_given_up_in_bounded_time() {
    let fleet = Fleet::new();
    let tree = fleet.scratch.path("tree");
    std::fs::create_dir_all(tree.join("sub")).expect("a tree");
    std::fs::write(tree.join("sub/file"), b"data").expect("written");
    let started = std::time::Instant::now();
    let output = fleet.vigie(
        "never",
        &[
            "-H",
            EVIL_HOST,
            "push",
            tree.to_str().expect("UTF-8"),
            "/srv/tree",
        ],
    );
    let took = started.elapsed();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("/srv/tree: ")
            && stdout(&output).contains("no answer within 30 s"),
        "{}",
        stdout(&output)
    );
    assert!(
        took >= std::time::Duration::from_secs(30) && took < std::time::Duration::from_secs(45),
        "given up after {took:?}"
    );
}
