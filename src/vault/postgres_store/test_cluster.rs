//! A throwaway PostgreSQL cluster for tests (RIG-NOTES, "PostgreSQL 15").
//!
//! [`shared`] starts one cluster per test process and hands out `Arc`s; it stops (`pg_ctl stop
//! -m immediate`) and its folder is removed when the last test holding it drops it. Each test
//! then asks for its own database ([`Cluster::database`]), so tests never see each other's
//! rows. A test that stops the server uses a private cluster ([`Cluster::start`]).
//!
//! - As root (the CI runner), `initdb` and `postgres` refuse to run: they run through `runuser
//!   -u postgres`, in a temp folder owned by that user with mode 0700.
//! - The server listens on 127.0.0.1 at a free port, its unix socket inside the temp folder;
//!   the test role is created through the socket (trust), the store connects over TCP with a
//!   password (`scram-sha-256`), as a deployment would.
//! - Folders are named `portcullis-pg-<pid>-*`: a run that crashed leaves its server running
//!   and its folder behind, and the next run stops and removes those of dead processes.
//! - Missing binaries are installed with apt (`postgresql-15`), as `tests/run` does.
//!
//! The file uses no crate types: the integration tests include it too (`tests/support/postgres.rs`),
//! to run several gateway replicas on one database.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

/// The test role's password: tests assert it never appears in an error or a log line.
pub const PASSWORD: &str = "pg-test-password-7f3a9c";
const ROLE: &str = "portcullis_test";
const PREFIX: &str = "portcullis-pg-";

static SHARED: Mutex<Weak<Cluster>> = Mutex::new(Weak::new());

/// The process's shared cluster, started on first use. Blocks (initdb, start): call it from
/// `spawn_blocking` or before the runtime is busy.
pub fn shared() -> Arc<Cluster> {
    let mut slot = SHARED.lock();
    if let Some(cluster) = slot.upgrade() {
        return cluster;
    }
    let cluster = Arc::new(Cluster::start());
    *slot = Arc::downgrade(&cluster);
    cluster
}

/// A running throwaway cluster; stopped and removed on drop.
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl Cluster {
    /// initdb, configure, start, and create the test role.
    pub fn start() -> Cluster {
        Cluster::start_with(false)
    }

    /// A private cluster that also accepts TLS (`ssl = on`) with a server certificate for
    /// 127.0.0.1 issued by a throwaway CA; returns the CA certificate's PEM file, which
    /// `sslrootcert` can name. Plaintext connections are still accepted.
    pub fn start_tls() -> (Cluster, PathBuf) {
        let cluster = Cluster::start_with(true);
        let ca = cluster.dir.path().join("ca.pem");
        (cluster, ca)
    }

    fn start_with(tls: bool) -> Cluster {
        let bin = bin_dir();
        remove_leftovers(&bin);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{PREFIX}{}-", std::process::id()))
            .tempdir()
            .unwrap();
        let as_postgres = running_as_root();
        if as_postgres {
            let (uid, gid) = (postgres_id("-u"), postgres_id("-g"));
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let mut cluster = Cluster {
            dir,
            bin,
            port: 0,
            as_postgres,
        };
        let data = cluster.data();
        cluster.server_command(
            "initdb",
            &[
                "-D",
                path_str(&data),
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-sync",
            ],
        );
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nfsync = off\nmax_connections = 200\n",
            cluster.dir.path().display()
        );
        let conf_file = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_file).unwrap();
        text.push_str(&conf);
        if tls {
            make_certificates(cluster.dir.path(), &data, as_postgres);
            text.push_str("ssl = on\nssl_cert_file = 'server.pem'\nssl_key_file = 'server.key'\n");
        }
        std::fs::write(&conf_file, text).unwrap();
        // A free port can be taken between choosing it and the server binding it (other test
        // processes do the same): a bounded number of tries with a new port.
        for attempt in 0.. {
            cluster.port = free_port();
            if cluster.try_start() {
                break;
            }
            assert!(
                attempt < 5,
                "the test PostgreSQL server did not start:\n{}",
                cluster.log()
            );
        }
        cluster.psql(&format!(
            "CREATE ROLE {ROLE} LOGIN CREATEDB PASSWORD '{PASSWORD}'"
        ));
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// `pg_ctl start`, waiting until the server accepts connections (`-w`, pg_ctl polls).
    fn try_start(&self) -> bool {
        let options = format!("-p {}", self.port);
        let log = self.dir.path().join("server.log");
        self.server_output(
            "pg_ctl",
            &[
                "-D",
                path_str(&self.data()),
                "-l",
                path_str(&log),
                "-o",
                &options,
                "-w",
                "-t",
                "120",
                "start",
            ],
        )
        .status
        .success()
    }

    /// Starts the server again after [`Cluster::stop`], on the same port.
    pub fn restart(&self) {
        assert!(self.try_start(), "restart failed:\n{}", self.log());
    }

    /// Stops the server at once (`-m immediate`: like a crash, connections are cut).
    pub fn stop(&self) {
        self.server_output(
            "pg_ctl",
            &[
                "-D",
                path_str(&self.data()),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    /// Freezes (`SIGSTOP`) or thaws (`SIGCONT`) the server and its backends: a server that
    /// accepts connections but never answers, like a hung host.
    pub fn signal_server(&self, signal: &str) {
        let pid_file = std::fs::read_to_string(self.data().join("postmaster.pid")).unwrap();
        let postmaster = pid_file.lines().next().unwrap().trim().to_string();
        let mut pids = vec![postmaster.clone()];
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // `pid (comm) state ppid ...`
            let parent = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1));
            if parent == Some(postmaster.as_str()) {
                pids.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .args(&pids)
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {pids:?}");
    }

    /// A fresh, empty database owned by the test role.
    pub fn database(&self) -> String {
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        self.psql(&format!("CREATE DATABASE {name} OWNER {ROLE}"));
        name
    }

    /// The URL of `database` over TCP with the role's password.
    pub fn url_text(&self, database: &str) -> String {
        format!(
            "postgres://{ROLE}:{PASSWORD}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    /// The TCP port (tests point a store at it after the server stopped).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `pg_dump` of `database` (plain SQL; `bytea` shows as hex).
    pub fn pg_dump(&self, database: &str) -> String {
        let output = Command::new(self.bin.join("pg_dump"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", ROLE])
            .args(["-d", database])
            .env("PGPASSWORD", PASSWORD)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        String::from_utf8(output.stdout).unwrap()
    }

    /// Runs SQL as the superuser through the unix socket, in the `postgres` database.
    fn psql(&self, sql: &str) {
        self.superuser_sql("postgres", sql);
    }

    /// Runs SQL as the superuser through the unix socket, in `database`.
    pub fn superuser_sql(&self, database: &str, sql: &str) {
        let output = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                path_str(self.dir.path()),
                "-p",
                &self.port.to_string(),
            ])
            .args([
                "-U",
                "postgres",
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-q",
            ])
            .args(["-c", sql])
            .output()
            .unwrap();
        assert!(output.status.success(), "psql {sql}: {}", stderr(&output));
    }

    fn server_command(&self, program: &str, args: &[&str]) {
        let output = self.server_output(program, args);
        assert!(output.status.success(), "{program}: {}", stderr(&output));
    }

    /// Runs a server binary, as the `postgres` user when this process is root.
    fn server_output(&self, program: &str, args: &[&str]) -> Output {
        server_command(&self.bin, self.as_postgres, program, args)
            .output()
            .unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

fn server_command(bin: &Path, as_postgres: bool, program: &str, args: &[&str]) -> Command {
    let program = bin.join(program);
    let mut command = if as_postgres {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    };
    command.args(args).current_dir("/");
    command
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn postgres_id(flag: &str) -> u32 {
    let output = Command::new("id")
        .args([flag, "postgres"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "no postgres user: {}",
        stderr(&output)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `PORTCULLIS_TEST_PG_BIN`, or Debian's `/usr/lib/postgresql/<version>/bin` (15 first),
/// installing `postgresql-15` when none is there.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PORTCULLIS_TEST_PG_BIN") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = find_bin_dir() {
        return dir;
    }
    static INSTALL: Mutex<()> = Mutex::new(());
    let _once = INSTALL.lock();
    if find_bin_dir().is_none() {
        install_postgres();
    }
    find_bin_dir().expect("postgresql-15 installed but no initdb under /usr/lib/postgresql")
}

fn find_bin_dir() -> Option<PathBuf> {
    let preferred = PathBuf::from("/usr/lib/postgresql/15/bin");
    if preferred.join("initdb").exists() {
        return Some(preferred);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    found.sort();
    found.pop()
}

fn install_postgres() {
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .map(|output| output.status.success())
            .unwrap_or(false)
    };
    let install = [
        "-o",
        "DPkg::Lock::Timeout=300",
        "install",
        "-y",
        "-qq",
        "postgresql-15",
    ];
    if !apt(&install) {
        assert!(apt(&["update", "-qq"]), "apt-get update failed");
        assert!(apt(&install), "apt-get install postgresql-15 failed");
    }
}

/// Stops the servers and removes the folders of test processes that are gone.
fn remove_leftovers(bin: &Path) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || is_alive(pid) {
            continue;
        }
        let data = entry.path().join("data");
        if data.join("postmaster.pid").exists() {
            let as_postgres = running_as_root();
            let _ = server_command(
                bin,
                as_postgres,
                "pg_ctl",
                &["-D", path_str(&data), "-m", "immediate", "-w", "stop"],
            )
            .output();
        }
        let _ = std::fs::remove_dir_all(entry.path());
    }
}

/// Whether process `pid` still runs: it exists and is not a zombie (a killed test process
/// whose parent has not reaped it yet is gone for our purpose).
fn is_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) state ...`; comm may contain spaces and parentheses, so split after the last `)`.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_some_and(|state| state != "Z" && state != "X")
}

/// A CA and a server certificate for 127.0.0.1 / localhost signed by it (`openssl`, EC P-256),
/// the server's files inside the data folder, readable by the server only.
fn make_certificates(dir: &Path, data: &Path, as_postgres: bool) {
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            stderr(&output)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=portcullis test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName = IP:127.0.0.1, DNS:localhost\nextendedKeyUsage = serverAuth\nbasicConstraints = CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    for name in ["server.pem", "server.key"] {
        let target = data.join(name);
        std::fs::copy(dir.join(name), &target).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
        if as_postgres {
            let (uid, gid) = (postgres_id("-u"), postgres_id("-g"));
            std::os::unix::fs::chown(&target, Some(uid), Some(gid)).unwrap();
        }
    }
}
