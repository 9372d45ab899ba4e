//! What the command line's tests share: a real `nats-server` on a free
//! loopback port with a fresh store directory (a small copy of the facade's
//! `tests/support/nats_server.rs`, which one package cannot import from
//! another), and running the built `ecst` binary.

#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A running `nats-server -js` on `127.0.0.1`, killed (and its directory
/// deleted) on drop.
pub struct NatsServer {
    port: u16,
    dir: PathBuf,
    child: Child,
}

impl NatsServer {
    /// Starts a server; panics (with how to install one) if it cannot.
    pub fn start() -> Self {
        Self::launch(true)
    }

    /// Starts a server without JetStream.
    pub fn start_without_jetstream() -> Self {
        Self::launch(false)
    }

    fn launch(jetstream: bool) -> Self {
        let binary = std::env::var_os("NATS_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/sbin/nats-server"));
        assert!(
            binary.is_file(),
            "nats-server not found at {} (`apt-get install nats-server`, or set NATS_SERVER)",
            binary.display()
        );
        let dir = fresh_dir("nats");
        fs::create_dir_all(dir.join("store")).expect("creating the store directory");
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for _ in 0..5 {
            let port = free_port();
            let log = fs::File::create(dir.join("nats-server.log")).expect("creating the log");
            let log_err = log.try_clone().expect("cloning the log handle");
            let mut command = Command::new(&binary);
            command.args(["-a", "127.0.0.1", "-p", &port.to_string(), "-n", &name]);
            if jetstream {
                command.arg("-js").arg("-sd").arg(dir.join("store"));
            }
            let mut child = command
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log_err)
                .spawn()
                .expect("running nats-server");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if answers_as(port, &name, jetstream) {
                    return NatsServer { port, dir, child };
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "nats-server did not start: {}",
            fs::read_to_string(dir.join("nats-server.log")).unwrap_or_default()
        );
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding 127.0.0.1:0");
    listener.local_addr().expect("the bound address").port()
}

fn answers_as(port: u16, name: &str, jetstream: bool) -> bool {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(stream) = TcpStream::connect_timeout(&address, Duration::from_millis(250)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok()
        && line.contains(&format!("\"server_name\":\"{name}\""))
        && (!jetstream || line.contains("\"jetstream\":true"))
}

/// A path under the temp directory that nothing else uses.
pub fn fresh_dir(what: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!(
        "ecst-cli-{what}-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

/// The `ecst` binary, with no `NATS_URL` from the environment.
pub fn ecst_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ecst"));
    command
        .args(args)
        .env_remove("NATS_URL")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null());
    command
}

/// What one run of `ecst` printed, and how it ended.
pub struct Run {
    /// The exit status (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Panics, showing both outputs, unless the exit status is `code`.
    pub fn expect_code(self, code: i32) -> Self {
        assert_eq!(
            self.code,
            Some(code),
            "ecst exited with {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code,
            self.stdout,
            self.stderr
        );
        self
    }

    /// The stdout as one JSON value.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }

    /// Asserts that the run failed with exactly one line on stderr, an
    /// `ecst: error:` without panic or backtrace, and returns it.
    pub fn one_error_line(self) -> String {
        let run = self.expect_code(2);
        let lines: Vec<&str> = run.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "not one line on stderr:\n{}", run.stderr);
        assert!(
            lines[0].starts_with("ecst: error: "),
            "not an error line: {}",
            lines[0]
        );
        for word in ["panicked", "backtrace", "Error {", "Os {", "kind:"] {
            assert!(!lines[0].contains(word), "`{word}` in: {}", lines[0]);
        }
        assert!(run.stdout.is_empty(), "stdout: {}", run.stdout);
        lines[0].to_owned()
    }
}

/// Runs `ecst args` to the end, off the async runtime's threads.
pub async fn ecst(args: &[&str]) -> Run {
    let mut command = ecst_command(args);
    tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("the blocking task")
        .expect("running ecst")
        .into()
}
