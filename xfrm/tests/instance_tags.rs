//! Two instances in one network namespace, as separate processes, on the kernel backend
//! (policies only: the host kernel has no ESP; the lab VM test covers SAs): each keeps its
//! own state when the other starts, stops, crashes or restarts; a restarted instance flushes
//! exactly its own leftovers; a second process with an instance's identity is refused before
//! it flushes anything.
//!
//! The instances are this test binary run again (`ip netns exec … <self> --exact <test>`)
//! with `XFRM_TAG_CHILD` set: it opens the backend as its tag's owner (which flushes nothing
//! yet), flushes its leftovers, installs one SA set's policies, prints `READY`, and on EOF of
//! stdin flushes again and exits.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};

use xfrm::netns::{have, is_root, require, NetNs};
use xfrm::{EncryptionAlg, IntegrityAlg, KernelBackend, Side, Tag, XfrmError};

const CHILD: &str = "XFRM_TAG_CHILD";
const TEST: &str = "instances_in_one_namespace_keep_their_own_state";

/// The instance: `<listen addr> <ue addr> <spi base>`.
fn child_main(spec: &str) {
    let mut it = spec.split(' ');
    let (listen, ue, base) = (
        it.next().unwrap_or_default(),
        it.next().unwrap_or_default(),
        it.next().unwrap_or_default(),
    );
    let listen: SocketAddr = listen.parse().expect("child: listen address");
    let tag = Tag::for_instance("pcscf", &[listen]);
    let kb = match KernelBackend::owner(tag) {
        Ok(kb) => kb,
        Err(XfrmError::TagInUse(t)) => {
            println!("CHILD TAG-IN-USE {}", t.selector_user());
            std::process::exit(3);
        }
        Err(e) => panic!("child: {e}"),
    };
    let flushed = kb.flush().expect("child: flush");
    let set = common::set(
        ue,
        &listen.ip().to_string(),
        base.parse().expect("child: spi base"),
        IntegrityAlg::HmacSha1_96,
        EncryptionAlg::AesCbc,
    );
    kb.install_policies_only(&set, Side::Pcscf)
        .expect("child: install");
    println!("CHILD READY flushed={flushed}");
    let _ = std::io::stdout().flush();
    let mut rest = String::new();
    let _ = std::io::stdin().read_line(&mut rest);
    let n = kb.flush().expect("child: flush at stop");
    println!("CHILD STOPPED flushed={n}");
}

struct Instance {
    child: Child,
    stdin: Option<ChildStdin>,
    first: String,
}

/// Starts an instance in `ns` and returns it with its first `CHILD` line.
fn start(ns: &NetNs, spec: &str) -> Instance {
    let exe = std::env::current_exe().expect("own path");
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns.name()])
        .arg(exe)
        .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD, spec)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn instance");
    let stdin = child.stdin.take();
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    loop {
        let mut l = String::new();
        if out.read_line(&mut l).expect("read instance") == 0 {
            break;
        }
        // The harness prints "test <name> ... " before our line, on the same line.
        if let Some(i) = l.find("CHILD ") {
            first = l[i..].trim().to_string();
            break;
        }
    }
    // The rest (the stop line, the harness's summary) is read by `stop`.
    child.stdout = Some(out.into_inner());
    Instance {
        child,
        stdin,
        first,
    }
}

impl Instance {
    /// Graceful stop: EOF on stdin; returns the `CHILD STOPPED` line.
    fn stop(mut self) -> String {
        drop(self.stdin.take());
        let out = self.child.wait_with_output().expect("wait instance");
        assert!(out.status.success(), "instance failed: {out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.find("CHILD STOPPED").map(|i| l[i..].trim().to_string()))
            .unwrap_or_default()
    }

    /// A crash: SIGKILL, nothing cleaned up.
    fn kill(mut self) {
        self.child.kill().expect("kill");
        let _ = self.child.wait();
    }
}

/// SPIs of the policies carrying `tag` in `ns`, sorted.
fn spis(ns: &NetNs, tag: Tag) -> Vec<u32> {
    let st = ns
        .run(|| KernelBackend::new(tag).and_then(|k| k.list()))
        .expect("netns")
        .expect("list");
    let mut v: Vec<u32> = st.policies.iter().filter_map(|p| p.spi).collect();
    v.sort_unstable();
    v
}

#[test]
fn instances_in_one_namespace_keep_their_own_state() {
    if let Ok(spec) = std::env::var(CHILD) {
        child_main(&spec);
        return;
    }
    if !require(
        is_root() && have("ip"),
        "needs root and iproute2 for network namespaces",
    ) {
        return;
    }
    let ns = NetNs::create("xfrmt-tags").unwrap();
    let a_listen = "10.31.0.1:5060";
    let b_listen = "10.31.0.3:5060";
    let ta = Tag::for_instance("pcscf", &[a_listen.parse().unwrap()]);
    let tb = Tag::for_instance("pcscf", &[b_listen.parse().unwrap()]);
    assert_ne!(ta, tb);
    let a_spec = |base: u32| format!("{a_listen} 10.31.0.2 {base}");
    let b_spec = format!("{b_listen} 10.31.0.4 8192");

    let a = start(&ns, &a_spec(4096));
    assert_eq!(a.first, "CHILD READY flushed=0", "fresh namespace");
    let b = start(&ns, &b_spec);
    assert_eq!(
        b.first, "CHILD READY flushed=0",
        "B's start flushed nothing of A's"
    );
    let a_spis = spis(&ns, ta);
    let b_spis = spis(&ns, tb);
    assert_eq!(a_spis, vec![4096, 4097, 4098, 4099]);
    assert_eq!(b_spis, vec![8192, 8193, 8194, 8195]);

    // A second process with B's identity is refused before it flushes B's state.
    let dup = start(&ns, &b_spec);
    assert_eq!(
        dup.first,
        format!("CHILD TAG-IN-USE {}", tb.selector_user())
    );
    assert_eq!(dup.child.wait_with_output().unwrap().status.code(), Some(3));
    assert_eq!(spis(&ns, tb), b_spis, "the duplicate touched B's state");

    // A crashes: its policies stay behind, B's are untouched.
    a.kill();
    assert_eq!(spis(&ns, ta), a_spis, "leftovers of the crashed A");
    assert_eq!(spis(&ns, tb), b_spis);

    // A restarts (same identity, new SAs): it flushes exactly its own four leftovers.
    let a2 = start(&ns, &a_spec(12288));
    assert_eq!(
        a2.first, "CHILD READY flushed=4",
        "A flushes its own leftovers"
    );
    assert_eq!(spis(&ns, ta), vec![12288, 12289, 12290, 12291]);
    assert_eq!(spis(&ns, tb), b_spis, "A's restart touched B's state");

    // B stops cleanly: it deletes its own four, A's stay.
    assert_eq!(b.stop(), "CHILD STOPPED flushed=4");
    assert!(spis(&ns, tb).is_empty());
    assert_eq!(spis(&ns, ta), vec![12288, 12289, 12290, 12291]);
    assert_eq!(a2.stop(), "CHILD STOPPED flushed=4");
    assert!(spis(&ns, ta).is_empty());
    let left = String::from_utf8(ns.ip(&["xfrm", "policy"]).unwrap().stdout).unwrap();
    assert!(left.trim().is_empty(), "left behind: {left}");
}
