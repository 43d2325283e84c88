//! Headless Chromium driven through ChromeDriver's W3C WebDriver HTTP API, for tests of web
//! pages served on loopback (Debian packages `chromium` and `chromium-driver`).
//!
//! Why WebDriver and not the DevTools protocol: WebDriver is plain HTTP/1.1 with JSON
//! bodies, so a blocking client of a few dozen lines over `std::net::TcpStream` is all it
//! takes (the DevTools protocol needs a WebSocket client, which the workspace does not
//! have), and its element click and send-keys commands are real input events through the
//! page's own handlers, with the driver's checks that the element is visible and enabled.
//!
//! ```no_run
//! use std::time::Duration;
//! let dir = testkit::TestDir::new("web").unwrap();
//! if !testkit::browser::require_browser() { return; }
//! let b = testkit::browser::Browser::start(&dir).unwrap();
//! b.goto("http://127.0.0.1:8080/").unwrap();
//! b.type_into("#token", "secret").unwrap();
//! b.click("#login-btn").unwrap();
//! b.wait_for_text("#subs", "001010000000001", Duration::from_secs(10)).unwrap();
//! std::fs::write("page.png", b.screenshot_png().unwrap()).unwrap();
//! ```

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::{ChildGuard, Error, TestDir};

/// The browser binary (Debian `chromium`).
pub const CHROMIUM: &str = "chromium";
/// The driver binary (Debian `chromium-driver`).
pub const CHROMEDRIVER: &str = "chromedriver";

/// Chromium's flags: headless without GPU or sandbox (tests run as root in containers),
/// and none of its background traffic to Google's hosts, which this machine's closed
/// network refuses (see the machine notes); QUIC off so everything is plain loopback TCP.
pub const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,960",
];

/// W3C WebDriver's key of an element reference (WebDriver §12.1).
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long one WebDriver command may take (a new session starts the browser).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Both binaries, or the skip-or-fail policy ([`crate::policy`]): skipped loudly when
/// absent, a failure under `CI=true`.
pub fn require_browser() -> bool {
    crate::require_bin(CHROMIUM).is_some() && crate::require_bin(CHROMEDRIVER).is_some()
}

/// A ChromeDriver with one headless Chromium session and a fresh profile directory; the
/// session is closed and the driver's process group killed on drop.
pub struct Browser {
    driver: ChildGuard,
    addr: SocketAddr,
    session: String,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("addr", &self.addr)
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl Browser {
    /// Starts `chromedriver` on a free loopback port (log in `dir`) and opens a session
    /// with Chromium, its profile in a new directory under `dir`.
    pub fn start(dir: &TestDir) -> Result<Browser, Error> {
        let driver_bin = crate::find_bin(CHROMEDRIVER)
            .ok_or_else(|| Error::parse("PATH", format!("no {CHROMEDRIVER}")))?;
        let chromium = crate::find_bin(CHROMIUM)
            .ok_or_else(|| Error::parse("PATH", format!("no {CHROMIUM}")))?;
        let profile: PathBuf = dir.join("chromium-profile");
        std::fs::create_dir_all(&profile)
            .map_err(|e| Error::io(format!("create {}", profile.display()), e))?;
        let port = crate::free_port();
        let addr = SocketAddr::new(crate::LOOPBACK, port);
        let mut cmd = Command::new(driver_bin);
        cmd.arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1");
        let mut driver =
            ChildGuard::spawn("chromedriver", &mut cmd, &dir.join("chromedriver.log"))?;
        crate::wait_for_tcp(addr, Duration::from_secs(20))
            .map_err(|e| e.with_detail(driver.log_tail(20)))?;
        if let Some(st) = driver.try_wait() {
            return Err(Error::Exited {
                name: "chromedriver".into(),
                status: st.to_string(),
                detail: driver.log_tail(20),
            });
        }
        let mut args: Vec<String> = FLAGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium, "args": args },
        } } });
        let v = request(addr, "POST", "/session", Some(&caps)).map_err(|e| match e {
            Error::Failed { what, detail } => Error::Failed {
                what,
                detail: format!("{detail}\n{}", driver.log_tail(30)),
            },
            e => e,
        })?;
        let session = v["sessionId"]
            .as_str()
            .ok_or_else(|| Error::parse("new session answer", v.to_string()))?
            .to_string();
        Ok(Browser {
            driver,
            addr,
            session,
        })
    }

    fn cmd(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, Error> {
        request(
            self.addr,
            method,
            &format!("/session/{}{path}", self.session),
            body,
        )
    }

    /// Navigates to `url` and waits for the load (WebDriver's default page load strategy).
    pub fn goto(&self, url: &str) -> Result<(), Error> {
        self.cmd("POST", "/url", Some(&json!({ "url": url })))
            .map(drop)
    }

    /// The first element matching the CSS selector.
    fn find(&self, css: &str) -> Result<String, Error> {
        let v = self.cmd(
            "POST",
            "/element",
            Some(&json!({ "using": "css selector", "value": css })),
        )?;
        v[ELEMENT_KEY]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Error::parse("element reference", v.to_string()))
    }

    /// Clicks the element (scrolled into view; fails if it is hidden or covered).
    pub fn click(&self, css: &str) -> Result<(), Error> {
        let id = self.find(css)?;
        self.cmd("POST", &format!("/element/{id}/click"), Some(&json!({})))
            .map(drop)
    }

    /// Clears the field, then types `text` into it as key presses.
    pub fn type_into(&self, css: &str, text: &str) -> Result<(), Error> {
        let id = self.find(css)?;
        self.cmd("POST", &format!("/element/{id}/clear"), Some(&json!({})))?;
        self.cmd(
            "POST",
            &format!("/element/{id}/value"),
            Some(&json!({ "text": text })),
        )
        .map(drop)
    }

    /// The rendered text of the element.
    pub fn text(&self, css: &str) -> Result<String, Error> {
        let id = self.find(css)?;
        let v = self.cmd("GET", &format!("/element/{id}/text"), None)?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    /// Polls the element's text until it contains `needle`, at most `timeout`; returns the
    /// text. The timeout error carries the last text seen.
    pub fn wait_for_text(
        &self,
        css: &str,
        needle: &str,
        timeout: Duration,
    ) -> Result<String, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.text(css) {
                Ok(t) if t.contains(needle) => return Ok(t),
                Ok(t) => t,
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("{css} to show {needle:?}"),
                    after: timeout,
                    detail: format!("last seen: {last}"),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page and returns
    /// what it returns.
    pub fn execute(&self, script: &str, args: &[Value]) -> Result<Value, Error> {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(&json!({ "script": script, "args": args })),
        )
    }

    /// The text of the open `alert`/`confirm` dialog, if there is one.
    pub fn dialog_text(&self) -> Option<String> {
        self.cmd("GET", "/alert/text", None)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
    }

    /// Accepts (OK) the open `alert`/`confirm` dialog.
    pub fn accept_dialog(&self) -> Result<(), Error> {
        self.cmd("POST", "/alert/accept", Some(&json!({})))
            .map(drop)
    }

    /// A PNG of the viewport.
    pub fn screenshot_png(&self) -> Result<Vec<u8>, Error> {
        let v = self.cmd("GET", "/screenshot", None)?;
        let b64 = v
            .as_str()
            .ok_or_else(|| Error::parse("screenshot", v.to_string()))?;
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| Error::parse("screenshot base64", e.to_string()))
    }

    /// The driver's log so far (for failure messages).
    pub fn log_tail(&self, lines: usize) -> String {
        self.driver.log_tail(lines)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Closing the session ends Chromium cleanly; the guard then ends the driver.
        let _ = request(
            self.addr,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
    }
}

/// One WebDriver command: an HTTP/1.1 request with `Connection: close`, the answer read to
/// EOF. Returns the `value` of a 200 answer; a WebDriver error (WebDriver §6.6) becomes
/// [`Error::Failed`] with its `error` code and `message`.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, Error> {
    let what = format!("WebDriver {method} {path}");
    let io = |e| Error::io(what.clone(), e);
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(io)?;
    s.set_read_timeout(Some(COMMAND_TIMEOUT)).map_err(io)?;
    s.set_write_timeout(Some(COMMAND_TIMEOUT)).map_err(io)?;
    let payload = body.map(Value::to_string).unwrap_or_default();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if body.is_some() {
        req.push_str("Content-Type: application/json; charset=utf-8\r\n");
    }
    req.push_str(&format!(
        "Content-Length: {}\r\n\r\n{payload}",
        payload.len()
    ));
    s.write_all(req.as_bytes()).map_err(io)?;
    // ChromeDriver answers `Connection: close` but keeps the socket open: the answer ends
    // where its Content-Length (or last chunk) says, not at EOF.
    let mut raw = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    let (status, body) = loop {
        let n = s.read(&mut buf).map_err(io)?;
        raw.extend_from_slice(&buf[..n]);
        if let Some(r) = parse_response(&raw, n == 0).map_err(|d| Error::parse(&what, d))? {
            break r;
        }
    };
    let v: Value = serde_json::from_slice(&body).map_err(|e| {
        Error::parse(
            &what,
            format!(
                "{e}: {}",
                String::from_utf8_lossy(&body[..body.len().min(500)])
            ),
        )
    })?;
    let value = v.get("value").cloned().unwrap_or(Value::Null);
    if status != 200 {
        return Err(Error::Failed {
            what,
            detail: format!(
                "HTTP {status}: {} {}",
                value["error"].as_str().unwrap_or("?"),
                value["message"].as_str().unwrap_or("")
            ),
        });
    }
    Ok(value)
}

/// Splits an HTTP/1.1 response into its status code and body, undoing chunked transfer
/// coding. `Ok(None)`: incomplete so far, read more; `eof` says no more will come (then an
/// incomplete answer is an error, and one without a length ends here).
fn parse_response(raw: &[u8], eof: bool) -> Result<Option<(u16, Vec<u8>)>, String> {
    let incomplete = |why: &str| {
        if eof {
            Err(format!("connection closed: {why}"))
        } else {
            Ok(None)
        }
    };
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return incomplete("no end of headers");
    };
    let head = std::str::from_utf8(&raw[..split]).map_err(|e| format!("headers: {e}"))?;
    let body = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .filter(|l| l.starts_with("HTTP/1."))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    let (mut length, mut chunked) = (None, false);
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            return Err(format!("bad header line {l:?}"));
        };
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("content-length") {
            length = Some(
                v.parse::<usize>()
                    .map_err(|e| format!("Content-Length {v:?}: {e}"))?,
            );
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.to_ascii_lowercase().contains("chunked");
        }
    }
    if !chunked {
        return match length {
            Some(n) if body.len() >= n => Ok(Some((status, body[..n].to_vec()))),
            Some(_) => incomplete("body shorter than its Content-Length"),
            None if eof => Ok(Some((status, body.to_vec()))),
            None => Ok(None),
        };
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return incomplete("chunk size line not terminated");
        };
        let size_txt = std::str::from_utf8(&rest[..eol]).map_err(|e| format!("chunk: {e}"))?;
        let size_txt = size_txt.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_txt, 16)
            .map_err(|e| format!("chunk size {size_txt:?}: {e}"))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(Some((status, out)));
        }
        let Some(chunk) = rest.get(..size) else {
            return incomplete("chunk truncated");
        };
        out.extend_from_slice(chunk);
        let Some(r) = rest.get(size + 2..) else {
            return incomplete("chunk not terminated");
        };
        rest = r;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_answers() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length:14\r\n\r\n{\"value\":null}";
        let want = Some((200, b"{\"value\":null}".to_vec()));
        assert_eq!(parse_response(plain, false).unwrap(), want);
        // Every prefix is "read more", and an error once the peer has closed.
        for cut in 0..plain.len() {
            assert_eq!(parse_response(&plain[..cut], false).unwrap(), None, "{cut}");
            assert!(parse_response(&plain[..cut], true).is_err(), "{cut}");
        }
        let chunked = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"va\r\na;x=1\r\nlue\":null}\r\n0\r\n\r\n";
        let want = Some((404, b"{\"value\":null}".to_vec()));
        assert_eq!(parse_response(chunked, false).unwrap(), want);
        for cut in 0..chunked.len() - 4 {
            assert_eq!(
                parse_response(&chunked[..cut], false).unwrap(),
                None,
                "{cut}"
            );
        }
        let no_length = b"HTTP/1.0 200 OK\r\n\r\n{}";
        assert_eq!(parse_response(no_length, false).unwrap(), None);
        assert_eq!(
            parse_response(no_length, true).unwrap(),
            Some((200, b"{}".to_vec()))
        );
        for bad in [
            &b"garbage\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        ] {
            assert!(
                parse_response(bad, false).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn drives_chromium_on_a_loopback_page() {
        if !require_browser() {
            return;
        }
        // A one-page server: the form echoes what was typed into a paragraph.
        let page = "<!doctype html><title>t</title><input id=i><button id=b>go</button>\
                    <p id=o></p><script>document.getElementById('b').onclick=()=>{\
                    document.getElementById('o').textContent='got '+document.getElementById('i').value}</script>";
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", l.local_addr().unwrap());
        let page = page.to_string();
        std::thread::spawn(move || {
            for mut c in l.incoming().take(8).flatten() {
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf);
                let _ = write!(
                    c,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                    page.len()
                );
            }
        });
        let dir = TestDir::new("browser").unwrap();
        let b = Browser::start(&dir).unwrap();
        b.goto(&url).unwrap();
        b.type_into("#i", "héllo <b>").unwrap();
        b.click("#b").unwrap();
        let t = b
            .wait_for_text("#o", "got héllo <b>", Duration::from_secs(10))
            .unwrap();
        assert_eq!(t, "got héllo <b>");
        let png = b.screenshot_png().unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert!(b.find("#missing").is_err());
    }
}
