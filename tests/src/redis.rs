//! A real redis-server on a free 127.0.0.1 port (no persistence unless asked), and a
//! small RESP client for the tests' side: add entries, read streams and lists, check
//! what is pending.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running redis-server. Killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts a server keeping its data in `dir` (an append-only file, so a restart
    /// keeps streams, lists and groups), with extra `redis-server` arguments.
    pub fn start(dir: &Path, extra: &[&str]) -> RedisServer {
        let mut server = RedisServer {
            child: None,
            port: crate::free_port(),
            dir: dir.to_owned(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (apt-get install redis-server)");
        self.child = Some(child);
        crate::wait_for("redis-server to listen", Duration::from_secs(20), || {
            let mut c = RedisClient::connect(self.port).ok()?;
            c.try_cmd(&["PING"]).ok()
        });
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn client(&self) -> RedisClient {
        RedisClient::connect(self.port).expect("connect to redis-server")
    }

    /// Stops the server (SIGKILL: what a crash does) and starts it again on the same
    /// port, with what its append-only file kept.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Stops the server; `start_again` brings it back.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn start_again(&mut self) {
        self.spawn();
    }
}

impl crate::fixture::Outage for RedisServer {
    fn stop(&mut self) {
        RedisServer::stop(self);
    }
    fn start_again(&mut self) {
        RedisServer::start_again(self);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A RESP reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    pub fn int(&self) -> i64 {
        match self {
            Reply::Int(n) => *n,
            other => panic!("not an integer: {other:?}"),
        }
    }

    pub fn text(&self) -> String {
        match self {
            Reply::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
            Reply::Status(s) => s.clone(),
            other => panic!("not a string: {other:?}"),
        }
    }

    pub fn items(&self) -> Vec<Reply> {
        match self {
            Reply::Array(Some(items)) => items.clone(),
            Reply::Array(None) => Vec::new(),
            other => panic!("not an array: {other:?}"),
        }
    }
}

/// `args` as a RESP command, appended to `out`.
fn encode<A: AsRef<[u8]>>(out: &mut Vec<u8>, args: &[A]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        let a = a.as_ref();
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// One connection, one command at a time (or a pipeline of them).
pub struct RedisClient {
    reader: BufReader<TcpStream>,
}

impl RedisClient {
    pub fn connect(port: u16) -> std::io::Result<RedisClient> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(RedisClient {
            reader: BufReader::new(stream),
        })
    }

    /// Sends a command; its reply (an error reply is a `Reply::Error`).
    pub fn try_cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> std::io::Result<Reply> {
        let mut out = Vec::new();
        encode(&mut out, args);
        self.reader.get_mut().write_all(&out)?;
        self.read()
    }

    /// Sends `commands` in one write and reads their replies (a backlog loaded in
    /// one round trip instead of one per entry).
    pub fn pipeline<A: AsRef<[u8]>>(&mut self, commands: &[Vec<A>]) -> Vec<Reply> {
        let mut out = Vec::new();
        for args in commands {
            encode(&mut out, args);
        }
        self.reader
            .get_mut()
            .write_all(&out)
            .expect("redis connection");
        (0..commands.len())
            .map(|_| self.read().expect("redis connection"))
            .collect()
    }

    /// Sends a command and panics on an error reply.
    pub fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Reply {
        match self.try_cmd(args).expect("redis connection") {
            Reply::Error(e) => panic!("redis error: {e}"),
            reply => reply,
        }
    }

    fn read(&mut self) -> std::io::Result<Reply> {
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let line = line.trim_end();
        let (kind, rest) = line.split_at(1);
        let n = || rest.parse::<i64>().map_err(std::io::Error::other);
        Ok(match kind {
            "+" => Reply::Status(rest.to_owned()),
            "-" => Reply::Error(rest.to_owned()),
            ":" => Reply::Int(n()?),
            "$" => match n()? {
                -1 => Reply::Bulk(None),
                len => {
                    let mut buf = vec![0; len as usize + 2];
                    self.reader.read_exact(&mut buf)?;
                    buf.truncate(len as usize);
                    Reply::Bulk(Some(buf))
                }
            },
            "*" => match n()? {
                -1 => Reply::Array(None),
                len => Reply::Array(Some(
                    (0..len).map(|_| self.read()).collect::<Result<_, _>>()?,
                )),
            },
            _ => return Err(std::io::Error::other(format!("bad reply line {line:?}"))),
        })
    }

    /// XADD key * field value …; the new entry's id.
    pub fn xadd(&mut self, key: &str, fields: &[(&str, &[u8])]) -> String {
        let mut args: Vec<Vec<u8>> = vec![b"XADD".to_vec(), key.into(), b"*".to_vec()];
        for (k, v) in fields {
            args.push(k.as_bytes().to_vec());
            args.push(v.to_vec());
        }
        self.cmd(&args).text()
    }

    /// How many entries of `group` on `key` are delivered and not acknowledged.
    pub fn pending(&mut self, key: &str, group: &str) -> i64 {
        self.cmd(&["XPENDING", key, group]).items()[0].int()
    }

    /// Every entry of stream `key`, oldest first.
    pub fn entries(&mut self, key: &str) -> Vec<StreamEntry> {
        self.cmd(&["XRANGE", key, "-", "+"])
            .items()
            .into_iter()
            .map(|e| {
                let parts = e.items();
                let flat = parts[1].items();
                let fields = flat
                    .chunks(2)
                    .map(|kv| {
                        let Reply::Bulk(Some(v)) = &kv[1] else {
                            panic!("field value {kv:?}")
                        };
                        (kv[0].text(), v.clone())
                    })
                    .collect();
                StreamEntry {
                    id: parts[0].text(),
                    fields,
                }
            })
            .collect()
    }

    pub fn llen(&mut self, key: &str) -> i64 {
        self.cmd(&["LLEN", key]).int()
    }
}

/// One entry of a stream as XRANGE gives it.
#[derive(Debug)]
pub struct StreamEntry {
    pub id: String,
    /// Field name and value, in the entry's order.
    pub fields: Vec<(String, Vec<u8>)>,
}

impl StreamEntry {
    /// The value of `name`, if the entry has that field.
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }
}
