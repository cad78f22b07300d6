//! A PostgreSQL server of a test's own: `initdb` into a temporary directory,
//! password authentication, listening only on a Unix socket in that
//! directory, stopped (and its directory removed) when dropped, whether the
//! test passed or not.
//!
//! PostgreSQL refuses to run as root, and tests run as root on CI: the server
//! then runs as an unprivileged user (`postgres` where Debian's package made
//! it, else `nobody`) through `setpriv`, which owns the data directory. Its
//! programs come from Debian's `postgresql` package (`make postgres`
//! installs it), in `/usr/lib/postgresql/<version>/bin`; the newest version
//! there is used, else `initdb` on `PATH`.

#![allow(dead_code)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The superuser the server is made with.
pub const USER: &str = "tally";
/// Its password: distinctive, so that finding it in any output means a leak.
pub const PASSWORD: &str = "pw-Zq8vK3-leak-check";
/// The database connected to.
pub const DATABASE: &str = "postgres";
/// The port, which here only names the socket file.
const PORT: u16 = 5432;
/// How long the server may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running server.
pub struct PgServer {
    dir: TempDir,
    socket_dir: PathBuf,
    child: Child,
}

/// The directory of PostgreSQL's server programs.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file())
        .unwrap_or_else(|| {
            panic!(
                "PostgreSQL's server programs (initdb, postgres) are not installed: run `make postgres` \
                 (it installs Debian's postgresql package; `make test` does it first) to test `tally sink postgres`"
            )
        })
}

/// The uid and gid of a user in /etc/passwd.
fn user_ids(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() > 3 && fields[0] == name)
            .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
            .flatten()
    })
}

/// Who the server runs as: None for this process's user, else an
/// unprivileged user's ids when this process is root.
fn server_user() -> Option<(u32, u32)> {
    let uid = std::fs::metadata("/proc/self").expect("/proc/self").uid();
    if uid != 0 {
        return None;
    }
    Some(
        user_ids("postgres")
            .or_else(|| user_ids("nobody"))
            .expect("an unprivileged user (postgres or nobody) to run PostgreSQL as"),
    )
}

/// A command for one of the server's programs, run as `user` if any.
fn program(bin: &Path, name: &str, user: Option<(u32, u32)>) -> Command {
    match user {
        Some((uid, gid)) => {
            let mut command = Command::new("setpriv");
            command.args([
                &format!("--reuid={uid}"),
                &format!("--regid={gid}"),
                "--clear-groups",
                // Should the test process die without dropping the server.
                "--pdeathsig=KILL",
                "--",
            ]);
            command.arg(bin.join(name));
            command
        }
        None => Command::new(bin.join(name)),
    }
}

fn give(path: &Path, user: Option<(u32, u32)>, mode: u32) {
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

impl PgServer {
    /// Makes a database cluster and starts its server; returns once it
    /// accepts connections.
    pub fn start() -> PgServer {
        let bin = bin_dir();
        let user = server_user();
        let dir = TempDir::new().expect("temp dir");
        // The server's user must reach its directories inside.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))
            .expect("chmod");
        let data = dir.path().join("data");
        let socket_dir = dir.path().join("socket");
        let password_file = dir.path().join("password");
        std::fs::create_dir(&data).expect("data dir");
        std::fs::create_dir(&socket_dir).expect("socket dir");
        std::fs::write(&password_file, PASSWORD).expect("password file");
        give(&data, user, 0o700);
        give(&socket_dir, user, 0o755);
        give(&password_file, user, 0o600);

        let init = program(&bin, "initdb", user)
            .args([
                "-D",
                path_str(&data),
                "-U",
                USER,
                "--pwfile",
                path_str(&password_file),
            ])
            .args([
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ])
            .output()
            .expect("initdb runs");
        assert!(
            init.status.success(),
            "initdb failed:\n{}{}",
            String::from_utf8_lossy(&init.stdout),
            String::from_utf8_lossy(&init.stderr)
        );

        let log = std::fs::File::create(dir.path().join("server.log")).expect("log file");
        let child = program(&bin, "postgres", user)
            .args([
                "-D",
                path_str(&data),
                "-k",
                path_str(&socket_dir),
                "-p",
                &PORT.to_string(),
            ])
            .args([
                "-c",
                "listen_addresses=",
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
            ])
            .args(["-c", "shared_buffers=16MB", "-c", "max_connections=40"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("postgres starts");
        let mut server = PgServer {
            dir,
            socket_dir,
            child,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("server status") {
                panic!("the server exited ({status}):\n{}", self.log());
            }
            if self.config().connect(postgres::NoTls).is_ok() {
                return;
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "the server did not accept connections in {START_TIMEOUT:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The URL of the database, with the right password.
    pub fn url(&self) -> String {
        self.url_with(USER, PASSWORD)
    }

    /// The URL of the database as `user` with `password`.
    pub fn url_with(&self, user: &str, password: &str) -> String {
        format!(
            "postgresql://{user}:{password}@/{DATABASE}?host={}&port={PORT}",
            self.socket_dir.display()
        )
    }

    /// The URL of the database without a password (the sink must find it
    /// in the environment or a password file).
    pub fn url_without_password(&self) -> String {
        format!(
            "postgresql://{USER}@/{DATABASE}?host={}&port={PORT}",
            self.socket_dir.display()
        )
    }

    /// The line of a password file (`~/.pgpass`) that matches this server.
    pub fn passfile_line(&self) -> String {
        format!("localhost:{PORT}:{DATABASE}:{USER}:{PASSWORD}")
    }

    fn config(&self) -> postgres::Config {
        self.url().parse().expect("the harness's URL parses")
    }

    /// A client connected as the superuser.
    pub fn client(&self) -> postgres::Client {
        self.config()
            .connect(postgres::NoTls)
            .unwrap_or_else(|e| panic!("connecting to the test server: {e}\n{}", self.log()))
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // A fast shutdown (SIGINT): open sessions are ended, the server exits.
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}
