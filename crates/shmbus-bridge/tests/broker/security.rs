//! Credentials and TLS: refusals are clear errors with exit code 2, and the
//! right credentials and certificates connect. Certificates are made here,
//! for this run, with the openssl command.

use std::path::Path;
use std::process::Command;

use crate::config_a;
use crate::harness::{Board, Broker, Dir, LONG, Proc, SHORT, args, bridge_argv, mqtt_sub};

fn bridge(name: &str, a: &[&str]) -> Proc {
    let mut argv = bridge_argv();
    argv.extend(args(a));
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..]);
    Proc::spawn(name, c)
}

/// Run a bridge that must fail: exit code 2 and `words` in its output.
fn refused(name: &str, a: &[&str], words: &str) {
    let mut p = bridge(name, a);
    let st = p.wait(LONG);
    assert_eq!(st.code(), Some(2), "{name}: {}", p.text());
    assert!(
        p.text().contains(words),
        "{name}: expected '{words}' in:\n{}",
        p.text()
    );
}

#[test]
fn a_wrong_password_is_a_clear_error_and_the_right_one_connects() {
    let dir = Dir::new("password");
    let pw = dir.path("passwd");
    let st = Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(&pw)
        .args(["board-a", "right-secret"])
        .status()
        .expect("mosquitto_passwd");
    assert!(st.success());
    allow_broker_to_read(&pw);
    let broker = Broker::start(
        &dir,
        "broker",
        &format!("allow_anonymous false\npassword_file {}\n", pw.display()),
    );
    let cfg = config_a(&dir, "a.toml", "");
    let cfg = cfg.to_str().unwrap();
    let url = broker.url();
    let wrong = dir.write(
        "wrong.cred",
        "username = \"board-a\"\npassword = \"wrong\"\n",
        0o600,
    );
    refused(
        "wrong password",
        &[
            &url,
            "--config",
            cfg,
            "--credentials",
            wrong.to_str().unwrap(),
        ],
        &format!(
            "not authorized: check the username and password in {}",
            wrong.display()
        ),
    );
    refused(
        "no credentials",
        &[&url, "--config", cfg],
        "it wants a username and password; give --credentials FILE",
    );
    // A credentials file other users can read is refused before connecting.
    let open = dir.write(
        "open.cred",
        "username = \"board-a\"\npassword = \"right-secret\"\n",
        0o644,
    );
    refused(
        "readable credentials",
        &[
            &url,
            "--config",
            cfg,
            "--credentials",
            open.to_str().unwrap(),
        ],
        &format!("run `chmod 600 {}`", open.display()),
    );
    let right = dir.write(
        "right.cred",
        "username = \"board-a\"\npassword = \"right-secret\"\n",
        0o600,
    );
    let mut a = Board::new("a");
    a.start_bridge(
        &url,
        Path::new(cfg),
        &["--credentials", right.to_str().unwrap()],
    )
    .wait_line("connected to", LONG);
    let (st, stats) = a.bridge().stop(SHORT);
    assert!(st.success(), "{st}");
    assert_eq!(stats["connections"], 1);
}

/// Mosquitto started as root drops to the `mosquitto` user: let it read
/// the files it needs (keys and password files are 0600).
fn allow_broker_to_read(p: &Path) {
    if let Ok(Some(u)) = nix::unistd::User::from_name("mosquitto") {
        let _ = nix::unistd::chown(p, Some(u.uid), Some(u.gid));
    }
}

fn openssl(dir: &Dir, a: &[&str]) {
    let out = Command::new("openssl")
        .args(a)
        .current_dir(dir.0.path())
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {a:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, and a certificate `name` signed by it for `san`.
fn ca(dir: &Dir, ca: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN=shmbus test {ca}"),
        ],
    );
}
fn cert(dir: &Dir, ca: &str, name: &str, ext: &str) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    dir.write(&format!("{name}.ext"), ext, 0o644);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dir.path(&format!("{name}.key")),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
}

#[test]
fn tls_failures_are_clear_errors_and_mutual_tls_connects() {
    let dir = Dir::new("tls");
    ca(&dir, "ca");
    ca(&dir, "other-ca");
    cert(
        &dir,
        "ca",
        "server",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    );
    cert(&dir, "ca", "board", "extendedKeyUsage=clientAuth\n");
    allow_broker_to_read(&dir.path("server.key"));
    let p = |f: &str| dir.path(f).display().to_string();
    let broker = Broker::start(
        &dir,
        "broker",
        &format!(
            "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
            p("ca.pem"),
            p("server.pem"),
            p("server.key")
        ),
    );
    let plain = Broker::start(&dir, "plain", "");
    let cfg = config_a(&dir, "a.toml", "");
    let cfg = cfg.to_str().unwrap();
    let tls_url = format!("mqtts://127.0.0.1:{}", broker.port);
    refused(
        "unknown CA",
        &[
            &tls_url,
            "--config",
            cfg,
            "--ca",
            &p("other-ca.pem"),
            "--client-cert",
            &p("board.pem"),
            "--client-key",
            &p("board.key"),
        ],
        "TLS: the broker's certificate is not signed by a trusted CA",
    );
    refused(
        "no client certificate",
        &[&tls_url, "--config", cfg, "--ca", &p("ca.pem")],
        "may require a client certificate",
    );
    refused(
        "TLS to a plain port",
        &[
            &format!("mqtts://127.0.0.1:{}", plain.port),
            "--config",
            cfg,
            "--ca",
            &p("ca.pem"),
        ],
        "is this the broker's TLS port?",
    );
    // Mutual TLS: the board's data arrives (read back over TLS).
    let mut a = Board::new("a");
    a.start_bridge(
        &tls_url,
        Path::new(cfg),
        &[
            "--ca",
            &p("ca.pem"),
            "--client-cert",
            &p("board.pem"),
            "--client-key",
            &p("board.key"),
        ],
    )
    .wait_line("connected to mqtts://127.0.0.1", LONG);
    let got = mqtt_sub(
        broker.port,
        "shmbus/a/$state",
        1,
        10,
        false,
        &[
            "--cafile",
            &p("ca.pem"),
            "--cert",
            &p("board.pem"),
            "--key",
            &p("board.key"),
        ],
    );
    assert_eq!(got, [("shmbus/a/$state".to_string(), "online".to_string())]);
    let (st, stats) = a.bridge().stop(SHORT);
    assert!(st.success(), "{st}");
    assert_eq!(stats["connections"], 1);
}
