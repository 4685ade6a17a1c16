//! A fault-injecting TCP proxy: what a bad network does to a connection,
//! switchable while a test runs. Each direction has its own delay (one
//! way), bandwidth, stall (nothing forwarded, so back-pressure builds up)
//! and blackhole (everything dropped silently). Open connections can be
//! reset (RST both ways), or have their client side vanish: the client's
//! socket closes, the agent's stays open and silent, as when a laptop
//! drops off the network without a FIN. A direction can also flip one bit
//! of what it carries, as a faulty middlebox would (TCP's checksum does
//! not catch what is changed between two sockets).
//!
//! The proxy runs on its own thread and runtime, so it keeps forwarding
//! whatever the test's runtime is doing, and stops on drop.

use std::{
    net::SocketAddr,
    os::fd::{AsRawFd, RawFd},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf},
    net::{TcpListener, TcpStream},
    sync::{Notify, mpsc, watch},
    task::AbortHandle,
    time::Instant,
};

/// What one direction of the link does.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Link {
    /// One-way delay added to every byte.
    pub delay: Duration,
    /// Bytes per second; none for unlimited.
    pub bytes_per_second: Option<u64>,
    /// Hold everything (back-pressure builds up to the sender).
    pub stall: bool,
    /// Drop everything silently.
    pub blackhole: bool,
    /// Flip one bit once per connection (see [`Corrupt`]).
    pub corrupt: Option<Corrupt>,
}

/// Where a direction flips a bit: in the first run of bytes equal to
/// `byte` after `after` bytes of the connection, its 32nd byte gets bit
/// 0x40 flipped. Content made of that byte (a file of 0x5a, say) is hit
/// inside its data: 32 equal bytes are never an HTTP/2 frame header or a
/// gRPC message prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Corrupt {
    /// Bytes of the direction let through first.
    pub after: u64,
    /// The byte whose run is looked for.
    pub byte: u8,
}

/// A direction's progress towards its bit flip.
#[derive(Default)]
struct Flipper {
    seen: u64,
    run: usize,
    done: bool,
}

impl Flipper {
    /// Flips the bit in `data` if this is where it goes.
    fn pass(&mut self, corrupt: Option<Corrupt>, data: &mut [u8]) {
        let Some(corrupt) = corrupt else {
            self.seen += data.len() as u64;
            return;
        };
        for byte in data {
            self.seen += 1;
            if self.done || self.seen <= corrupt.after {
                continue;
            }
            if *byte == corrupt.byte {
                self.run += 1;
                if self.run == 32 {
                    *byte ^= 0x40;
                    self.done = true;
                }
            } else {
                self.run = 0;
            }
        }
    }
}

/// Both directions.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Faults {
    /// Client to agent.
    pub up: Link,
    /// Agent to client.
    pub down: Link,
}

impl Faults {
    /// The same link both ways: `rtt` is split evenly.
    pub fn symmetric(rtt: Duration, bytes_per_second: Option<u64>) -> Self {
        let link = Link {
            delay: rtt / 2,
            bytes_per_second,
            ..Link::default()
        };
        Self {
            up: link,
            down: link,
        }
    }
}

struct Connection {
    /// Resets the connection (RST both ways) when notified.
    reset: Arc<Notify>,
    /// The tasks that touch the client's socket.
    client_side: Vec<AbortHandle>,
}

#[derive(Default)]
struct Shared {
    connections: Vec<Connection>,
    accepted: usize,
    /// Reset the next connection the client sends anything on.
    reset_next_request: Arc<AtomicBool>,
}

/// A proxy from a loopback port to `target`.
pub struct FaultProxy {
    addr: SocketAddr,
    faults: watch::Sender<Faults>,
    shared: Arc<Mutex<Shared>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// A proxy on 127.0.0.1 to `target`, forwarding faithfully until told
    /// otherwise.
    pub fn start(target: SocketAddr) -> Self {
        let (faults, watch_faults) = watch::channel(Faults::default());
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, addr) = std::sync::mpsc::channel();
        let task_shared = shared.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
                ready
                    .send(listener.local_addr().expect("an address"))
                    .expect("sent");
                let accept = async {
                    loop {
                        let Ok((client, _)) = listener.accept().await else {
                            continue;
                        };
                        let Ok(agent) = TcpStream::connect(target).await else {
                            // The agent is down: the client sees its
                            // connection closed, as a refused one.
                            continue;
                        };
                        let _ = client.set_nodelay(true);
                        let _ = agent.set_nodelay(true);
                        splice(client, agent, &watch_faults, &task_shared);
                    }
                };
                tokio::select! {
                    () = accept => {}
                    _ = stopped => {}
                }
            });
            // Dropping the runtime drops every connection's tasks.
        });
        let addr = addr.recv().expect("the proxy starts");
        Self {
            addr,
            faults,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The address clients dial.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes the faults; takes effect at once on open connections.
    pub fn set(&self, faults: Faults) {
        self.faults.send_replace(faults);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.lock().expect("lock").accepted
    }

    /// Resets every open connection: an RST to both ends.
    pub fn reset_all(&self) {
        let connections = std::mem::take(&mut self.shared.lock().expect("lock").connections);
        for connection in connections {
            connection.reset.notify_one();
        }
    }

    /// Resets the next open connection on which the client sends anything
    /// (its next request), before a byte of it reaches the agent.
    pub fn reset_next_request(&self) {
        self.shared
            .lock()
            .expect("lock")
            .reset_next_request
            .store(true, Ordering::SeqCst);
    }

    /// Makes the client side of every open connection vanish: its socket
    /// is closed, while the agent's stays open and never hears from it
    /// again (no FIN, no RST reaches the agent).
    pub fn vanish_clients(&self) {
        let mut shared = self.shared.lock().expect("lock");
        for connection in &mut shared.connections {
            for task in connection.client_side.drain(..) {
                task.abort();
            }
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn zero_linger(fd: RawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket the proxy still holds open, with a
    // correctly sized option value.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::from_ref(&linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// What a reader hands its writer.
enum Chunk {
    Data(Instant, Vec<u8>),
    /// The sender closed its side (FIN): pass it on.
    End,
}

/// Forwards both directions of one connection under the faults.
fn splice(
    client: TcpStream,
    agent: TcpStream,
    faults: &watch::Receiver<Faults>,
    shared: &Arc<Mutex<Shared>>,
) {
    let (client_fd, agent_fd) = (client.as_raw_fd(), agent.as_raw_fd());
    // Generic halves, which (unlike TcpStream::into_split's) do not send a
    // FIN when dropped: a reset must reach the peer as an RST alone.
    let (client_read, client_write) = tokio::io::split(client);
    let (agent_read, agent_write) = tokio::io::split(agent);
    let (up_tx, up_rx) = mpsc::channel(64);
    let (down_tx, down_rx) = mpsc::channel(64);
    let reset = Arc::new(Notify::new());
    let mut shared = shared.lock().expect("lock");
    let trigger = Trigger {
        armed: shared.reset_next_request.clone(),
        reset: reset.clone(),
    };
    let pick_up = |f: &Faults| f.up;
    let pick_down = |f: &Faults| f.down;
    let read_up = tokio::spawn(read(
        client_read,
        up_tx,
        faults.clone(),
        pick_up,
        Some(trigger),
    ));
    let write_up = tokio::spawn(write(agent_write, up_rx, faults.clone(), pick_up));
    let read_down = tokio::spawn(read(agent_read, down_tx, faults.clone(), pick_down, None));
    let write_down = tokio::spawn(write(client_write, down_rx, faults.clone(), pick_down));
    let client_side = vec![read_up.abort_handle(), write_down.abort_handle()];
    let all = [
        read_up.abort_handle(),
        write_down.abort_handle(),
        write_up.abort_handle(),
        read_down.abort_handle(),
    ];
    let on_reset = reset.clone();
    tokio::spawn(async move {
        on_reset.notified().await;
        // The descriptors are still open: every task holding them is
        // aborted only after the linger is set, so closing sends an RST.
        zero_linger(client_fd);
        zero_linger(agent_fd);
        for task in all {
            task.abort();
        }
    });
    shared.accepted += 1;
    shared.connections.push(Connection { reset, client_side });
}

/// Resets a connection when the client sends on it while armed.
struct Trigger {
    armed: Arc<AtomicBool>,
    reset: Arc<Notify>,
}

/// Reads one side, stamping each chunk with the time it may be written.
async fn read(
    mut from: ReadHalf<TcpStream>,
    to: mpsc::Sender<Chunk>,
    faults: watch::Receiver<Faults>,
    link: fn(&Faults) -> Link,
    trigger: Option<Trigger>,
) {
    // Small reads, so that a bandwidth limit paces smoothly.
    let mut buffer = vec![0u8; 16 * 1024];
    let mut flipper = Flipper::default();
    loop {
        match from.read(&mut buffer).await {
            Ok(0) | Err(_) => {
                let _ = to.send(Chunk::End).await;
                return;
            }
            Ok(n) => {
                if let Some(trigger) = &trigger
                    && trigger.armed.swap(false, Ordering::SeqCst)
                {
                    trigger.reset.notify_one();
                    std::future::pending::<()>().await;
                }
                let now = link(&faults.borrow());
                if now.blackhole {
                    continue;
                }
                let due = Instant::now() + now.delay;
                flipper.pass(now.corrupt, &mut buffer[..n]);
                if to
                    .send(Chunk::Data(due, buffer[..n].to_vec()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

/// Writes the other side when each chunk is due, at the link's pace.
async fn write(
    mut to: WriteHalf<TcpStream>,
    mut from: mpsc::Receiver<Chunk>,
    mut faults: watch::Receiver<Faults>,
    link: fn(&Faults) -> Link,
) {
    loop {
        let Some(chunk) = from.recv().await else {
            // The reader was stopped (the client vanished): keep this
            // socket open and silent until the proxy is dropped.
            std::future::pending::<()>().await;
            return;
        };
        let (due, data) = match chunk {
            Chunk::Data(due, data) => (due, data),
            Chunk::End => {
                let _ = to.shutdown().await;
                std::future::pending::<()>().await;
                return;
            }
        };
        tokio::time::sleep_until(due).await;
        // A stall holds this chunk, and with it the reader, until lifted.
        while link(&faults.borrow_and_update()).stall {
            if faults.changed().await.is_err() {
                return;
            }
        }
        let now = link(&faults.borrow());
        if now.blackhole {
            continue;
        }
        if to.write_all(&data).await.is_err() {
            return;
        }
        if let Some(rate) = now.bytes_per_second.filter(|&r| r > 0) {
            tokio::time::sleep(Duration::from_secs_f64(data.len() as f64 / rate as f64)).await;
        }
    }
}
