//! A real `nats-server` with JetStream for integration tests, on loopback.
//!
//! ```ignore
//! #[path = "support/nats_server.rs"]
//! mod nats_server;
//!
//! let server = nats_server::NatsServer::start();
//! let client = async_nats::connect(server.url()).await?;
//! server.restart(); // same port, same store directory: streams survive
//!
//! // Users, accounts, permissions: written to a config file given with `-c`.
//! let server = nats_server::NatsServer::start_with_config(
//!     r#"authorization { users = [ { user: a, password: b } ] }"#,
//! );
//! ```
//!
//! The binary is `$NATS_SERVER`, else `/usr/sbin/nats-server` (what Debian's
//! `nats-server` package installs). Each server gets a free port and a fresh
//! store directory; dropping it kills the process and deletes the directory.
//! A missing binary fails the test with instructions; it is never skipped.

#![allow(dead_code)]

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where Debian's `nats-server` package puts the binary.
const DEFAULT_BINARY: &str = "/usr/sbin/nats-server";
/// How long a server may take to accept connections.
const READY_WITHIN: Duration = Duration::from_secs(10);
/// Fresh ports tried when the one picked is taken before the server binds it.
const PORT_ATTEMPTS: usize = 5;

/// A running `nats-server -js` on `127.0.0.1`.
pub struct NatsServer {
    binary: PathBuf,
    port: u16,
    dir: PathBuf,
    /// The config file given with `-c` ([`NatsServer::start_with_config`]).
    config: Option<PathBuf>,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a server on a free loopback port with a fresh store directory.
    ///
    /// # Panics
    ///
    /// If the binary is missing (with how to install it), or no server came
    /// up on any of a few free ports.
    pub fn start() -> Self {
        Self::launch(None)
    }

    /// Starts a server as [`NatsServer::start`] does, with `extra` as its
    /// configuration file (`-c`): `authorization { … }`, `accounts { … }`,
    /// limits. The command-line flags (address, port, name, JetStream and
    /// its store directory) are the same as [`NatsServer::start`]'s and take
    /// precedence over the file. The file is kept for
    /// [`NatsServer::restart`].
    ///
    /// # Panics
    ///
    /// As [`NatsServer::start`]; a config the server refuses ends in "exited
    /// early", with the server's complaint in the log shown.
    pub fn start_with_config(extra: &str) -> Self {
        Self::launch(Some(extra))
    }

    fn launch(extra: Option<&str>) -> Self {
        let binary = binary();
        let dir = fresh_dir();
        fs::create_dir_all(dir.join("store")).expect("creating the nats-server store directory");
        let config = extra.map(|extra| {
            let path = dir.join("nats-server.conf");
            fs::write(
                &path,
                format!("# Written by tests/support/nats_server.rs\n{extra}\n"),
            )
            .expect("writing the nats-server config file");
            path
        });
        let mut server = NatsServer {
            binary,
            port: 0,
            dir,
            config,
            child: None,
        };
        let mut failures = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            server.port = free_port();
            match server.spawn() {
                Ok(()) => return server,
                Err(why) => failures.push(format!("port {}: {why}", server.port)),
            }
        }
        panic!(
            "nats-server did not start on any of {PORT_ATTEMPTS} free ports:\n{}\n--- log ---\n{}",
            failures.join("\n"),
            server.log()
        );
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store directory (kept across [`NatsServer::restart`]).
    pub fn store_dir(&self) -> PathBuf {
        self.dir.join("store")
    }

    /// Kills the server (SIGKILL, like a crash) and starts it again on the
    /// same port with the same store directory; returns once it accepts
    /// connections. Clients connected before reconnect on their own.
    pub fn restart(&mut self) {
        self.stop();
        // The port is ours, but the kernel or another process may hold it
        // for a moment: retry the same port a few times.
        let mut failures = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            match self.spawn() {
                Ok(()) => return,
                Err(why) => {
                    failures.push(why);
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        panic!(
            "nats-server did not restart on port {}:\n{}\n--- log ---\n{}",
            self.port,
            failures.join("\n"),
            self.log()
        );
    }

    /// Kills the server and waits for the process to end. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `true` while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// The server's log so far (every start appends to it).
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The server name, unique per harness: tells our server's INFO from
    /// that of another process that took the port first.
    fn name(&self) -> String {
        self.dir.file_name().map_or_else(
            || "ecst-test".to_owned(),
            |n| n.to_string_lossy().into_owned(),
        )
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("nats-server.log")
    }

    /// Starts the process on `self.port` and waits until it answers.
    fn spawn(&mut self) -> Result<(), String> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("opening the log: {e}"))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("opening the log: {e}"))?;
        let mut command = Command::new(&self.binary);
        if let Some(config) = &self.config {
            command.arg("-c").arg(config);
        }
        let mut child = command
            .arg("-a")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-n")
            .arg(self.name())
            .arg("-js")
            .arg("-sd")
            .arg(self.store_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .map_err(|e| format!("running {}: {e}", self.binary.display()))?;
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("nats-server exited early ({status})"));
            }
            if answers_as(self.port, &self.name()) {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no NATS INFO on the port within {READY_WITHIN:?}"));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The binary to run: `$NATS_SERVER` or the Debian path; panics with
/// installation instructions if it is not there.
fn binary() -> PathBuf {
    let path = std::env::var_os("NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_BINARY));
    if !is_file(&path) {
        panic!(
            "nats-server not found at {} (these tests need a real server).\n\
             Install it: `apt-get install nats-server` on Debian/Ubuntu, or download the \
             official release binary from https://github.com/nats-io/nats-server/releases \
             and point NATS_SERVER=/path/to/nats-server at it.",
            path.display()
        );
    }
    path
}

fn is_file(path: &Path) -> bool {
    File::open(path)
        .and_then(|f| f.metadata())
        .is_ok_and(|m| m.is_file())
}

/// A port nobody listens on right now (bound, read, released).
fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding 127.0.0.1:0");
    listener.local_addr().expect("the bound address").port()
}

/// `true` if the server named `name` listens on the port with JetStream on
/// (its `INFO` line says so).
fn answers_as(port: u16, name: &str) -> bool {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(stream) = TcpStream::connect_timeout(&address, Duration::from_millis(250)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok()
        && line.starts_with("INFO ")
        && line.contains(&format!("\"server_name\":\"{name}\""))
        && line.contains("\"jetstream\":true")
}

/// A directory under the system's temp dir that no other server uses.
fn fresh_dir() -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!(
        "ecst-nats-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

/// A JetStream cluster of nats-server processes on loopback: each node has
/// its own client port, cluster (route) port, server name and store
/// directory, and routes to every other node.
///
/// ```ignore
/// let mut cluster = nats_server::NatsCluster::start(3);
/// let client = async_nats::connect(cluster.urls().as_slice()).await?;
/// cluster.kill(0);    // SIGKILL, like a crash
/// cluster.restart(0); // same ports, same store directory
/// ```
///
/// The nodes answer clients before JetStream has elected its meta leader:
/// wait for that (a stream created, say) before relying on JetStream.
/// Dropping the cluster kills every node and deletes the directories.
pub struct NatsCluster {
    binary: PathBuf,
    dir: PathBuf,
    nodes: Vec<ClusterNode>,
}

struct ClusterNode {
    name: String,
    port: u16,
    cluster_port: u16,
    child: Option<Child>,
}

impl NatsCluster {
    /// Starts `size` nodes (at least 1; 3 for replicated streams) and
    /// returns once every one accepts client connections.
    ///
    /// # Panics
    ///
    /// If the binary is missing, or a node did not come up (on fresh ports,
    /// a few times).
    pub fn start(size: usize) -> Self {
        assert!(size >= 1, "a cluster needs at least one node");
        let binary = binary();
        let mut failures = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            let dir = fresh_dir();
            let tag = dir.file_name().map_or_else(
                || "ecst-cluster".to_owned(),
                |n| n.to_string_lossy().into_owned(),
            );
            let nodes = (0..size)
                .map(|i| ClusterNode {
                    name: format!("{tag}-n{i}"),
                    port: free_port(),
                    cluster_port: free_port(),
                    child: None,
                })
                .collect();
            let mut cluster = NatsCluster {
                binary: binary.clone(),
                dir,
                nodes,
            };
            for i in 0..size {
                fs::create_dir_all(cluster.store_dir(i))
                    .expect("creating a nats-server store directory");
            }
            // Start every node before waiting for any: with JetStream on, a
            // node waits for its peers before it is of any use.
            let mut started = Ok(());
            for i in 0..size {
                if let Err(why) = cluster.spawn(i) {
                    started = Err(format!("node {i}: {why}"));
                    break;
                }
            }
            let ready = started.and_then(|()| {
                (0..size)
                    .try_for_each(|i| cluster.wait_ready(i).map_err(|w| format!("node {i}: {w}")))
            });
            match ready {
                Ok(()) => return cluster,
                Err(why) => {
                    failures.push(format!("{why}\n--- logs ---\n{}", cluster.logs()));
                    // Dropping kills the nodes and deletes the directory.
                }
            }
        }
        panic!(
            "the nats-server cluster did not start in {PORT_ATTEMPTS} attempts:\n{}",
            failures.join("\n")
        );
    }

    /// How many nodes there are.
    pub fn size(&self) -> usize {
        self.nodes.len()
    }

    /// `nats://127.0.0.1:<port>` of node `i`.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].port)
    }

    /// Every node's URL.
    pub fn urls(&self) -> Vec<String> {
        (0..self.nodes.len()).map(|i| self.url(i)).collect()
    }

    /// The server name of node `i` (what stream info calls the leader).
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// The node named `name`, if it is one of ours.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|node| node.name == name)
    }

    /// The JetStream store directory of node `i`.
    pub fn store_dir(&self, i: usize) -> PathBuf {
        self.dir.join(format!("n{i}")).join("store")
    }

    /// `true` while node `i`'s process runs.
    pub fn is_running(&mut self, i: usize) -> bool {
        self.nodes[i]
            .child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// The process id of node `i`, while it runs (for SIGSTOP and the like).
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().map(Child::id)
    }

    /// Kills node `i` (SIGKILL, like a crash) and waits for the process to
    /// end. Idempotent.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again (killing it first if it runs) on the same
    /// ports with the same store directory; returns once it accepts client
    /// connections. It then catches up with its peers on its own.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        let mut failures = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            match self.spawn(i).and_then(|()| self.wait_ready(i)) {
                Ok(()) => return,
                Err(why) => {
                    self.kill(i);
                    failures.push(why);
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        panic!(
            "cluster node {i} did not restart on port {}:\n{}\n--- log ---\n{}",
            self.nodes[i].port,
            failures.join("\n"),
            self.log(i)
        );
    }

    /// Node `i`'s log so far (every start appends to it).
    pub fn log(&self, i: usize) -> String {
        fs::read_to_string(self.log_path(i)).unwrap_or_default()
    }

    /// Every node's log, one after the other.
    pub fn logs(&self) -> String {
        (0..self.nodes.len())
            .map(|i| format!("--- node {i} ({}) ---\n{}", self.nodes[i].name, self.log(i)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("n{i}")).join("nats-server.log")
    }

    fn cluster_name(&self) -> String {
        self.dir.file_name().map_or_else(
            || "ecst-cluster".to_owned(),
            |n| n.to_string_lossy().into_owned(),
        )
    }

    /// Starts node `i`'s process (without waiting for it).
    fn spawn(&mut self, i: usize) -> Result<(), String> {
        let log_path = self.log_path(i);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("opening the log: {e}"))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("opening the log: {e}"))?;
        let routes = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, node)| format!("nats://127.0.0.1:{}", node.cluster_port))
            .collect::<Vec<_>>()
            .join(",");
        let node = &self.nodes[i];
        let mut command = Command::new(&self.binary);
        command
            .arg("-a")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(node.port.to_string())
            .arg("-n")
            .arg(&node.name)
            .arg("-js")
            .arg("-sd")
            .arg(self.store_dir(i))
            .arg("--cluster_name")
            .arg(self.cluster_name())
            .arg("--cluster")
            .arg(format!("nats://127.0.0.1:{}", node.cluster_port));
        if !routes.is_empty() {
            command.arg("--routes").arg(routes);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .map_err(|e| format!("running {}: {e}", self.binary.display()))?;
        self.nodes[i].child = Some(child);
        Ok(())
    }

    /// Waits until node `i` answers as itself, with JetStream on.
    fn wait_ready(&mut self, i: usize) -> Result<(), String> {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            let node = &mut self.nodes[i];
            let Some(child) = node.child.as_mut() else {
                return Err("not started".to_owned());
            };
            if let Ok(Some(status)) = child.try_wait() {
                node.child = None;
                return Err(format!("nats-server exited early ({status})"));
            }
            if answers_as(node.port, &node.name) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("no NATS INFO on the port within {READY_WITHIN:?}"));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl NatsServer {
    /// The server's process id while it runs (for SIGSTOP and the like).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}
